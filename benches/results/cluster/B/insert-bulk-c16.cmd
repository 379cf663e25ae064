abis client --addr 127.0.0.1:53051 load --rpc insert --synthetic-fingers 10 --requests 100000 --concurrency 16 --max-seconds 360
