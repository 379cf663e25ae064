abis-bench search --data /work/g1m --probes 100 --positions 2
