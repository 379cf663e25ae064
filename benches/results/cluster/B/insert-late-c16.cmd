abis client --addr 127.0.0.1:53051 load --rpc insert --synthetic-fingers 10 --id-prefix late- --first 1000000 --requests 2000 --concurrency 16 --max-seconds 600
