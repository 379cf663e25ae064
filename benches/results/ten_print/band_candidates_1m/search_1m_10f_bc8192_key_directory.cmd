abis-bench search --data /work/g1m --probes 1000 --band-candidates 8192
