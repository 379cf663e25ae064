/usr/bin/time -v abis-bench dedup --data /work/g1m --restart --max-blocks 20
