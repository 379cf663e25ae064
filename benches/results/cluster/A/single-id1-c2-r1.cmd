abis client --addr 127.0.0.1:52100 load --rpc identify --finger 1=/tmp/clm/probe/1.abft --requests 40 --concurrency 2 --max-seconds 600
