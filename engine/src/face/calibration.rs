//! Calibrated face scores: `score = -10 log10(FMR)`, where FMR is the share of impostor
//! comparisons whose cosine similarity is at least as high (so 30 means 1 false match in 1,000,
//! 40 one in 10,000; the same scale as the fingerprint matcher's).
//!
//! The table (cosine knots, log10 FMR at each) belongs to one embedder and lives in the
//! manifest beside it (`[models.NAME.calibration]`, with where it was fitted); between knots
//! log10 FMR is interpolated linearly, beyond the last knot the last segment's slope is
//! extended (a parametric tail fitted with the table), and scores are clipped to 0..=99.
//! A model without a table still works: its score is then the cosine scaled to 0..100 and
//! `calibrated` is false (no FMR can be claimed).

use serde::Serialize;

use super::config::CalibrationSpec;
use super::FaceError;

#[derive(Debug, Clone, PartialEq)]
pub struct Calibration {
    cosine: Vec<f64>,
    log10_fmr: Vec<f64>,
    pub fitted_on: String,
}

/// A comparison's outcome at a chosen false-match rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Decision {
    /// Calibrated score: -10 log10(FMR at this cosine).
    pub score: f64,
    /// Estimated false-match rate of a threshold at this cosine.
    pub fmr: f64,
    pub cosine: f32,
    /// The FMR the caller asked for and the score threshold it means.
    pub target_fmr: f64,
    pub threshold: f64,
    pub matched: bool,
    pub calibrated: bool,
}

const MAX_SCORE: f64 = 99.0;

impl Calibration {
    pub fn from_spec(spec: &CalibrationSpec) -> Result<Calibration, FaceError> {
        let (c, l) = (&spec.cosine, &spec.log10_fmr);
        let increasing = c.windows(2).all(|w| w[1] > w[0]);
        let decreasing = l.windows(2).all(|w| w[1] < w[0]);
        if c.len() < 2
            || c.len() != l.len()
            || !increasing
            || !decreasing
            || c.iter().chain(l).any(|v| !v.is_finite())
            || l.iter().any(|&v| v > 0.0)
        {
            return Err(FaceError::Config(
                "calibration: cosine must increase and log10_fmr decrease (<= 0), same length >= 2"
                    .into(),
            ));
        }
        Ok(Calibration {
            cosine: c.clone(),
            log10_fmr: l.clone(),
            fitted_on: spec.fitted_on.clone(),
        })
    }

    /// log10 FMR at a cosine (<= 0).
    fn log10_fmr(&self, cos: f64) -> f64 {
        let (c, l) = (&self.cosine, &self.log10_fmr);
        let n = c.len();
        let seg = if cos <= c[0] {
            // Below the table: FMR approaches 1.
            0
        } else if cos >= c[n - 1] {
            n - 2
        } else {
            c.windows(2).position(|w| cos < w[1]).unwrap_or(n - 2)
        };
        let t = (cos - c[seg]) / (c[seg + 1] - c[seg]);
        let v = l[seg] + t * (l[seg + 1] - l[seg]);
        v.clamp(-MAX_SCORE / 10.0, 0.0)
    }

    /// Score = -10 log10(FMR), 0..=99.
    pub fn score(&self, cos: f32) -> f64 {
        -10.0 * self.log10_fmr(cos as f64)
    }
}

/// The decision for `cos` at `target_fmr` with an optional calibration.
pub fn decide(
    calibration: Option<&Calibration>,
    cos: f32,
    target_fmr: f64,
) -> Result<Decision, FaceError> {
    if !(target_fmr > 0.0 && target_fmr < 1.0) {
        return Err(FaceError::BadFmr(target_fmr));
    }
    let threshold = (-10.0 * target_fmr.log10()).min(MAX_SCORE);
    Ok(match calibration {
        Some(c) => {
            let score = c.score(cos);
            Decision {
                score,
                fmr: 10f64.powf(-score / 10.0),
                cosine: cos,
                target_fmr,
                threshold,
                matched: score >= threshold,
                calibrated: true,
            }
        }
        None => Decision {
            score: (cos.max(0.0) as f64) * 100.0,
            fmr: f64::NAN,
            cosine: cos,
            target_fmr,
            threshold: f64::NAN,
            matched: false,
            calibrated: false,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> Calibration {
        Calibration::from_spec(&CalibrationSpec {
            cosine: vec![0.0, 0.3, 0.4, 0.5],
            log10_fmr: vec![-0.3, -2.0, -3.0, -4.0],
            fitted_on: "test".into(),
        })
        .unwrap()
    }

    #[test]
    fn interpolates_and_extrapolates() {
        let c = table();
        assert!((c.score(0.4) - 30.0).abs() < 1e-4);
        assert!((c.score(0.45) - 35.0).abs() < 1e-4);
        assert!((c.score(0.6) - 50.0).abs() < 1e-4);
        assert!((c.score(1.0) - 90.0).abs() < 1e-4);
        assert_eq!(c.score(-1.0), 0.0);
        let d = decide(Some(&c), 0.42, 1e-3).unwrap();
        assert!(d.matched && (d.threshold - 30.0).abs() < 1e-9);
        assert!(!decide(Some(&c), 0.38, 1e-3).unwrap().matched);
        assert!(decide(Some(&c), 0.5, 0.0).is_err());
        assert!(!decide(None, 0.9, 1e-3).unwrap().calibrated);
    }

    #[test]
    fn bad_tables_are_refused() {
        let bad = CalibrationSpec {
            cosine: vec![0.5, 0.4],
            log10_fmr: vec![-1.0, -2.0],
            fitted_on: String::new(),
        };
        assert!(Calibration::from_spec(&bad).is_err());
    }
}
