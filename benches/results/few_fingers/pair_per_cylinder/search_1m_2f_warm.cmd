abis-bench search --data /work/g1m --probes 10 --positions 2,7
