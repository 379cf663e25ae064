abis-bench search --data /work/g1m --probes 10 --positions 1,2,7
