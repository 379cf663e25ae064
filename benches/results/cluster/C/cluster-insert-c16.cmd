abis client --addr 127.0.0.1:54051 load --rpc insert --synthetic-fingers 10 --requests 6000 --concurrency 16 --max-seconds 600
