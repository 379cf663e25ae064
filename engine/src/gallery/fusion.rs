//! Turning several calibrated comparison scores into one calibrated record score.
//!
//! Every score in the engine is calibrated: `s = -10 log10(FMR)`, the chance that an impostor
//! comparison scores at least `s`. Two corrections keep that true after combining:
//!
//! - **Best of several tries.** Taking the best of `m` impostor comparisons (a finger enrolled
//!   from several impressions, or a probe of unknown position tried against every finger) makes a
//!   false match about `m` times as likely: `FMR_best = 1 - (1 - FMR)^m ≈ m · FMR`.
//! - **Independent evidence.** Fingers of one person, and face vs fingers, are independent
//!   between impostors, so their FMRs multiply. The product of `k` FMRs is not itself an FMR
//!   (its distribution depends on `k`), so the sum is converted with Fisher's method: if each
//!   `-ln p_i` is Exp(1) under the impostor hypothesis, their sum `x` is Gamma(k, 1) and
//!   `P(sum >= x) = e^{-x} Σ_{j<k} x^j / j!`, which is the fused FMR.
//!
//! A 1:N search then needs a record-level FMR of `FPIR / N` for a target FPIR over `N` records.

const LN10_OVER_10: f64 = std::f64::consts::LN_10 / 10.0;

/// The score of the best of `tries` comparisons, each scored `score`, as a calibrated score.
pub fn best_of(score: f64, tries: usize) -> f64 {
    if tries <= 1 {
        return score;
    }
    // 1 - (1 - p)^m computed without cancellation for tiny p.
    let p = fmr_of(score);
    let fused = -((tries as f64) * (-p).ln_1p()).exp_m1();
    score_of(fused)
}

/// Fisher's combination of independent calibrated scores into one calibrated score.
pub fn combine(scores: &[f64]) -> f64 {
    match scores.len() {
        0 => 0.0,
        1 => scores[0],
        k => {
            // Negative scores (FMR > 1 cannot happen; clamp noise) contribute nothing.
            let x: f64 = scores.iter().map(|s| s.max(0.0) * LN10_OVER_10).sum();
            // log of Σ_{j<k} x^j / j!, by log-sum-exp over the terms.
            let mut log_terms = Vec::with_capacity(k);
            let mut log_term = 0.0f64; // j = 0: x^0/0! = 1
            log_terms.push(log_term);
            for j in 1..k {
                log_term += x.ln() - (j as f64).ln();
                log_terms.push(log_term);
            }
            let max = log_terms.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let log_sum = max + log_terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
            let log_p = -x + log_sum;
            (-log_p / LN10_OVER_10).max(0.0)
        }
    }
}

/// The record score a 1:N search over `gallery_size` records must reach for a target FPIR.
pub fn threshold_for_fpir(target_fpir: f64, gallery_size: u64) -> f64 {
    score_of(target_fpir / gallery_size.max(1) as f64)
}

/// MOSIP's FPIR encoding: `round(-10 log10(FPIR))`, 30 = 1e-3.
pub fn fpir_from_mosip(code: u32) -> f64 {
    10f64.powf(-(code as f64) / 10.0)
}

pub fn fmr_of(score: f64) -> f64 {
    10f64.powf(-score / 10.0).min(1.0)
}

pub fn score_of(fmr: f64) -> f64 {
    if fmr <= 0.0 {
        f64::INFINITY
    } else {
        (-10.0 * fmr.min(1.0).log10()).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_of_one_is_the_score_and_best_of_ten_costs_ten_db() {
        assert_eq!(best_of(40.0, 1), 40.0);
        // Exactly 1 - (1 - 1e-4)^10 = 9.9955e-4, i.e. 30.002.
        assert!((best_of(40.0, 10) - 30.002).abs() < 1e-3);
        // Near FMR 1 the approximation m·p would exceed 1; the exact form saturates at 0.
        assert!(best_of(0.5, 100) >= 0.0 && best_of(0.5, 100) < 0.01);
    }

    #[test]
    fn one_score_combines_to_itself_and_more_evidence_is_stronger() {
        assert_eq!(combine(&[37.0]), 37.0);
        let two = combine(&[30.0, 30.0]);
        assert!(two > 30.0 && two < 60.0, "{two}");
        let ten = combine(&[20.0; 10]);
        assert!(ten > two, "{ten} vs {two}");
        // Zero evidence from an extra finger weakens the fused score: it is one more try.
        assert!(combine(&[40.0, 0.0]) < 40.0);
    }

    #[test]
    fn fisher_combination_is_calibrated_under_the_impostor_hypothesis() {
        // Draw k independent uniform FMRs (impostors), fuse, and check that the fused FMR is
        // itself uniform: P(fused FMR <= a) ≈ a.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
        };
        for k in [2usize, 4, 10] {
            let n = 40_000;
            let mut below = [0usize; 3];
            let alphas = [0.1, 0.01, 0.001];
            for _ in 0..n {
                let scores: Vec<f64> = (0..k).map(|_| score_of(uniform())).collect();
                let p = fmr_of(combine(&scores));
                for (i, a) in alphas.iter().enumerate() {
                    if p <= *a {
                        below[i] += 1;
                    }
                }
            }
            for (i, a) in alphas.iter().enumerate() {
                let observed = below[i] as f64 / n as f64;
                assert!(
                    observed > a * 0.7 && observed < a * 1.3,
                    "k={k}: P(p<={a}) = {observed}"
                );
            }
        }
    }

    #[test]
    fn threshold_grows_with_the_gallery() {
        assert!((threshold_for_fpir(1e-3, 1) - 30.0).abs() < 1e-9);
        assert!((threshold_for_fpir(fpir_from_mosip(30), 1_000_000) - 90.0).abs() < 1e-9);
        assert!((fpir_from_mosip(40) - 1e-4).abs() < 1e-12);
    }
}
