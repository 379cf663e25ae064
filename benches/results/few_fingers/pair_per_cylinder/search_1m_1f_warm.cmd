abis-bench search --data /work/g1m --probes 20 --positions 2
