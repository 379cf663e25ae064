abis-bench search --data /work/g1m --probes 100 --positions 2 --scores benches/results/few_fingers/pair_per_cylinder/search_1m_1f_100_scores.csv
