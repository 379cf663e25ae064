abis client --addr 127.0.0.1:52100 load --rpc insert --synthetic-fingers 10 --first 1000 --requests 5000 --concurrency 16 --max-seconds 600
