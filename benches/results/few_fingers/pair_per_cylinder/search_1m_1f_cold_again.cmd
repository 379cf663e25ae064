sync; echo 3 > /proc/sys/vm/drop_caches; abis-bench search --data /work/g1m --probes 1 --positions 2
