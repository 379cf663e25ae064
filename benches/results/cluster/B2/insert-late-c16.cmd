abis client --addr 127.0.0.1:30151 load --rpc insert --synthetic-fingers 10 --id-prefix late- --first 1000000 --requests 20000 --concurrency 16 --max-seconds 600
