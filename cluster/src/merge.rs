//! One answer from the answers of every shard.
//!
//! Scores are calibrated (`-10 log10 FMR`), so candidates from different shards compare as they
//! are. What changes with partitioning is the threshold: a search over `N` records keeps records
//! scoring at least `t(N) = -10 log10(FPIR / N)`. Shard `i` searched `n_i ≤ N` records and
//! returned its candidates at or above `t(n_i) ≤ t(N)` (at most `max_results`, best first); the
//! router computes `N = Σ n_i` and keeps those at or above `t(N)`, best first, ties by
//! referenceId, at most `max_results`. Because `t` grows with `n`, every record a single node
//! holding all `N` records would return is at or above its shard's `t(n_i)`, and because each
//! shard returned its best `max_results`, every record of the global best `max_results` was
//! returned by its shard: the merged answer is exactly the single node's.

use abis_engine::gallery::{fusion, rank, Candidate};

use crate::gallery_shard::Identified;

/// Merges the answers of every shard to one query into the whole cluster's answer (see the
/// module docs; each shard's own threshold is not used).
pub fn merge(answers: Vec<Identified>, target_fpir: f64, max_results: usize) -> Identified {
    let searched: u64 = answers.iter().map(|a| a.searched).sum();
    let threshold = fusion::threshold_for_fpir(target_fpir, searched);
    let mut candidates: Vec<Candidate> = answers
        .into_iter()
        .flat_map(|a| a.candidates)
        .filter(|c| c.score >= threshold)
        .collect();
    rank(&mut candidates, max_results);
    Identified {
        candidates,
        threshold,
        searched,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cand(id: u32, score: f64) -> Candidate {
        Candidate {
            reference_id: format!("{id}"),
            score,
            finger: None,
            face: None,
        }
    }

    /// What one node holding every record answers (the engine's rule).
    fn single_node(scores: &[f64], fpir: f64, max: usize) -> Identified {
        let threshold = fusion::threshold_for_fpir(fpir, scores.len() as u64);
        let mut c: Vec<Candidate> = scores
            .iter()
            .enumerate()
            .filter(|(_, &s)| s >= threshold)
            .map(|(i, &s)| cand(i as u32, s))
            .collect();
        rank(&mut c, max);
        Identified {
            candidates: c,
            threshold,
            searched: scores.len() as u64,
        }
    }

    /// What shard `s` of `shards` answers (records assigned round-robin by index).
    fn shard(scores: &[f64], s: usize, shards: usize, fpir: f64, max: usize) -> Identified {
        let mine: Vec<(usize, f64)> = scores
            .iter()
            .copied()
            .enumerate()
            .filter(|(i, _)| i % shards == s)
            .collect();
        let threshold = fusion::threshold_for_fpir(fpir, mine.len() as u64);
        let mut c: Vec<Candidate> = mine
            .iter()
            .filter(|(_, s)| *s >= threshold)
            .map(|&(i, s)| cand(i as u32, s))
            .collect();
        rank(&mut c, max);
        Identified {
            candidates: c,
            threshold,
            searched: mine.len() as u64,
        }
    }

    #[test]
    fn the_global_threshold_drops_what_a_small_shard_kept() {
        // 1000 records in 10 shards of 100: t(100) = 50, t(1000) = 60 at FPIR 1e-3.
        let a = Identified {
            candidates: vec![cand(1, 55.0), cand(2, 61.0)],
            threshold: 50.0,
            searched: 100,
        };
        let b = Identified {
            candidates: vec![cand(3, 70.0)],
            threshold: 59.5,
            searched: 900,
        };
        let m = merge(vec![a, b], 1e-3, 10);
        assert_eq!(m.searched, 1000);
        assert!((m.threshold - 60.0).abs() < 1e-9);
        let ids: Vec<&str> = m
            .candidates
            .iter()
            .map(|c| c.reference_id.as_str())
            .collect();
        assert_eq!(ids, ["3", "2"]);
        assert_eq!(merge(vec![], 1e-3, 10).candidates, vec![]);
    }

    proptest! {
        #[test]
        fn sharded_answers_merge_into_the_single_node_answer(
            scores in proptest::collection::vec(0.0f64..120.0, 0..300),
            shards in 1usize..9,
            max in 1usize..12,
            fpir_code in 20u32..60,
            ties in any::<bool>(),
        ) {
            // Round scores to force ties (ties break by referenceId on both sides).
            let scores: Vec<f64> = if ties {
                scores.iter().map(|s| (s / 10.0).round() * 10.0).collect()
            } else {
                scores
            };
            let fpir = fusion::fpir_from_mosip(fpir_code);
            let answers = (0..shards).map(|s| shard(&scores, s, shards, fpir, max)).collect();
            prop_assert_eq!(merge(answers, fpir, max), single_node(&scores, fpir, max));
        }
    }
}
