abis-bench search --data /work/g1m --probes 5 --positions 2,7
