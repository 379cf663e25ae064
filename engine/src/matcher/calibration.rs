//! Raw similarity → calibrated score `-10·log10(FMR)`.
//!
//! **How the table was produced** (regenerate with `scripts/calibrate_matcher.sh`, which runs
//! `cargo run --release -p abis-engine --example fvc_eval -- --calibrate` and prints this
//! table): LEADER templates of the four FVC2002 B sets; every pair of images from two
//! **different** sets (6 set pairs x 80 x 80 = 38,400 impostor comparisons, guaranteed
//! non-mated; no within-set pair is used, so no reported set's impostor distribution is fitted
//! on). A knot is placed where the empirical FMR is 10^(-k/10) for k = 15, 20, .., 35 (the last
//! with 12 impostors above it); past the last knot the score continues along the least-squares
//! line of score on raw over the knots with score >= 20, i.e. the impostor tail is taken to be
//! exponential in raw. Below FMR ~3 % the impostor scores are mostly 0 (the alignment gate), so
//! the first segment simply runs from (0, 0).
//!
//! Held-out check (within-set impostors of the four sets, 11,520 comparisons, never fitted on):
//! see the matcher docs and `tests/matcher_fvc.rs`.
//!
//! Scores above ~35 (FMR 3e-4) are extrapolated, not measured.

/// `(raw, score)` knots, both increasing. Between knots the score is linear in raw; below the
/// first knot it is 0 (FMR 1); above the last it continues with the last segment's slope.
pub(super) const TABLE: &[(f32, f32)] = &[
    (0.0, 0.0),
    (0.0526, 15.00),
    (0.0645, 20.00),
    (0.0747, 25.00),
    (0.0869, 30.00),
    (0.3152, 131.67),
    (0.5435, 233.34),
    (1.0000, 436.68),
];

/// Maps a raw similarity to a calibrated score (monotone, `>= 0`).
pub(super) fn calibrate(raw: f32) -> f32 {
    let t = TABLE;
    if raw.is_nan() || raw <= t[0].0 {
        return 0.0;
    }
    for w in t.windows(2) {
        let ((r0, s0), (r1, s1)) = (w[0], w[1]);
        if raw <= r1 {
            return s0 + (raw - r0) / (r1 - r0) * (s1 - s0);
        }
    }
    let n = t.len();
    let ((r0, s0), (r1, s1)) = (t[n - 2], t[n - 1]);
    s1 + (raw - r1) / (r1 - r0) * (s1 - s0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_increasing_and_calibration_monotone() {
        for w in TABLE.windows(2) {
            assert!(w[1].0 > w[0].0 && w[1].1 > w[0].1, "{w:?}");
        }
        let mut prev = 0.0;
        for i in 0..=2000 {
            let s = calibrate(i as f32 / 1000.0);
            assert!(s >= prev, "not monotone at {i}");
            prev = s;
        }
        assert_eq!(calibrate(0.0), 0.0);
        assert_eq!(calibrate(-1.0), 0.0);
        assert_eq!(calibrate(f32::NAN), 0.0);
        assert!((calibrate(TABLE[4].0) - TABLE[4].1).abs() < 1e-3);
    }
}
