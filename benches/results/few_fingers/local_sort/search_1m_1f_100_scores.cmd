abis-bench search --data /work/g1m --probes 100 --positions 2 --scores search_1m_1f_100_scores.csv
