abis-bench search --data /work/g1m --probes 3 --positions 1,2,7
