abis client --addr 127.0.0.1:52051 load --rpc insert --synthetic-fingers 10 --requests 1000 --concurrency 1 --max-seconds 600
