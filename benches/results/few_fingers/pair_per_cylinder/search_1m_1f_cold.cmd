abis-bench search --data /work/g1m --probes 1 --positions 2
