SHARDS=1 REPLICAS=2 ABIS__LOGGING__FILTER=info scripts/cluster-demo.sh DIR; abis client --addr ROUTER load --rpc insert --synthetic-fingers 10 --requests 100000 --concurrency 16 --max-seconds 150
