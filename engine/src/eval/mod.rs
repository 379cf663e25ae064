//! Verification (1:1) evaluation with the FVC protocol (see `shared/docs/evaluation.md`).
//!
//! The pieces a front end (the `abis finger eval` command, the `fvc_eval` example) needs:
//!
//! - [`list_samples`]: the `<finger>_<impression>.<ext>` images of a folder, sorted;
//! - [`fvc_pairs`]: the FVC pair enumeration: **genuine** = every unordered pair of impressions of
//!   the same finger, **impostor** = every unordered pair of impressions of different fingers
//!   (10 fingers x 8 impressions: 10·C(8,2) = 280 genuine and C(80,2) − 280 = 2,880 impostor);
//! - [`extract_all`] then [`compare_all`] (or [`run_fvc`] for both; the `_with_progress`
//!   variants report each extraction, for a progress bar): templates, then every pair's
//!   calibrated score; a failure to extract is **never skipped**: each of its comparisons counts
//!   with [`FAILED_SCORE`], below every real score;
//! - [`Metrics::compute`]: FMR/FNMR curves, EER (FVC definition), FMR100, FMR1000, ZeroFMR;
//! - [`write_scores_csv`]: the raw `a,b,score` rows, so anyone can recompute.
//!
//! A front end (`abis finger eval DIR --scores OUT.csv --det OUT.png`) is:
//!
//! ```no_run
//! # fn demo(dir: &std::path::Path, extractor: &abis_engine::finger::FingerExtractor)
//! # -> Result<(), Box<dyn std::error::Error>> {
//! use abis_engine::{eval, matcher::Matcher};
//! let report = eval::run_fvc(dir, extractor, &Matcher::new(), None)?; // Some(569.0) for DB2
//! eval::write_scores_csv(std::fs::File::create("scores.csv")?, &report.rows)?;
//! eval::draw_det_png("det.png".as_ref(), &[("set", &report.metrics.curve)], 800, 600)?;
//! println!("EER {:.2} %", 100.0 * report.metrics.eer);
//! # Ok(()) }
//! ```
//!
//! Conventions: FMR(t) = share of impostor scores `>= t`, FNMR(t) = share of genuine scores `< t`
//! (a score equal to the threshold is a match).

mod det;

pub use det::{draw_det_png, DetError};

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use thiserror::Error;

use crate::finger::{CaptureInfo, FingerExtractor};
use crate::matcher::{Matcher, PreparedTemplate, Scratch};
use crate::template::FingerTemplate;

/// The score given to a comparison that could not be made (a template failed to extract or
/// prepare). Real calibrated scores are `>= 0`, so this is the lowest score of all.
pub const FAILED_SCORE: f64 = -1.0;

/// Why an evaluation could not run.
#[derive(Debug, Error)]
pub enum EvalError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("no `<finger>_<impression>` images in {0}")]
    NoSamples(PathBuf),
    #[error("need at least one genuine and one impostor score (have {genuine} and {impostor})")]
    NotEnoughScores { genuine: usize, impostor: usize },
    #[error("a score is not a number")]
    NotANumber,
    #[error("writing scores: {0}")]
    Write(#[from] std::io::Error),
}

/// One image of the evaluation folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub path: PathBuf,
    /// File name without extension, e.g. `101_3`; what the score rows name.
    pub name: String,
    pub finger: String,
    pub impression: String,
}

/// Image extensions [`list_samples`] picks up (case-insensitive).
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "tif", "tiff", "png", "bmp", "jpg", "jpeg", "pgm", "pnm", "gif", "wsq",
];

/// Splits a file stem `<finger>_<impression>` at its **last** underscore; both parts non-empty.
pub fn parse_sample_name(stem: &str) -> Option<(&str, &str)> {
    let (finger, impression) = stem.rsplit_once('_')?;
    if finger.is_empty() || impression.is_empty() {
        None
    } else {
        Some((finger, impression))
    }
}

/// The `<finger>_<impression>` images of `dir` (not recursive), sorted by finger then impression
/// (numerically when both are numbers), so pair order and score files are reproducible.
pub fn list_samples(dir: &Path) -> Result<Vec<Sample>, EvalError> {
    let io = |source| EvalError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut samples = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if !path.is_file() {
            continue;
        }
        let ext_ok = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if !ext_ok {
            continue;
        }
        if let Some((finger, impression)) = parse_sample_name(stem) {
            samples.push(Sample {
                name: stem.to_string(),
                finger: finger.to_string(),
                impression: impression.to_string(),
                path: path.clone(),
            });
        }
    }
    if samples.is_empty() {
        return Err(EvalError::NoSamples(dir.to_path_buf()));
    }
    samples.sort_by(|a, b| {
        natural_cmp(&a.finger, &b.finger)
            .then_with(|| natural_cmp(&a.impression, &b.impression))
            .then_with(|| a.path.cmp(&b.path))
    });
    Ok(samples)
}

/// Numbers compare as numbers, anything else as text.
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    match (a.parse::<u64>(), b.parse::<u64>()) {
        (Ok(x), Ok(y)) => x.cmp(&y).then_with(|| a.cmp(b)),
        _ => a.cmp(b),
    }
}

/// The FVC pairs, as indices `(i, j)` with `i < j` into the sample list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairs {
    pub genuine: Vec<(usize, usize)>,
    pub impostor: Vec<(usize, usize)>,
}

/// Every unordered pair of samples: genuine when the finger labels are equal, else impostor.
pub fn fvc_pairs<S: AsRef<str>>(fingers: &[S]) -> Pairs {
    let mut pairs = Pairs::default();
    for i in 0..fingers.len() {
        for j in i + 1..fingers.len() {
            if fingers[i].as_ref() == fingers[j].as_ref() {
                pairs.genuine.push((i, j));
            } else {
                pairs.impostor.push((i, j));
            }
        }
    }
    pairs
}

/// One point of the error trade-off: at threshold `threshold`, the two error rates.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct DetPoint {
    pub threshold: f64,
    pub fmr: f64,
    pub fnmr: f64,
}

/// The FVC accuracy figures of one set of genuine and impostor scores (rates are fractions).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metrics {
    pub genuine: usize,
    pub impostor: usize,
    /// Equal error rate, FVC definition: the midpoint of the interval where the FMR and FNMR
    /// curves cross.
    pub eer: f64,
    /// Threshold at which the EER is read.
    pub eer_threshold: f64,
    /// Lowest FNMR with FMR <= 1 %.
    pub fmr100: f64,
    /// Lowest FNMR with FMR <= 0.1 %.
    pub fmr1000: f64,
    /// Lowest FNMR with FMR <= 0.01 %.
    pub fmr10000: f64,
    /// Lowest FNMR with no impostor accepted.
    pub zero_fmr: f64,
    /// The whole curve, one point per distinct score (and one above all scores), by threshold.
    #[serde(skip)]
    pub curve: Vec<DetPoint>,
}

impl Metrics {
    /// Computes the curves and figures. Needs at least one score of each kind; NaN is refused.
    pub fn compute(genuine: &[f64], impostor: &[f64]) -> Result<Metrics, EvalError> {
        if genuine.is_empty() || impostor.is_empty() {
            return Err(EvalError::NotEnoughScores {
                genuine: genuine.len(),
                impostor: impostor.len(),
            });
        }
        if genuine.iter().chain(impostor).any(|s| s.is_nan()) {
            return Err(EvalError::NotANumber);
        }
        let mut g = genuine.to_vec();
        let mut im = impostor.to_vec();
        g.sort_by(f64::total_cmp);
        im.sort_by(f64::total_cmp);
        let mut thresholds: Vec<f64> = g.iter().chain(&im).copied().collect();
        thresholds.sort_by(f64::total_cmp);
        thresholds.dedup();
        thresholds.push(f64::INFINITY);
        let (ng, ni) = (g.len() as f64, im.len() as f64);
        // Both lists sorted: walk them alongside the thresholds.
        let (mut gi, mut ii) = (0usize, 0usize);
        let curve: Vec<DetPoint> = thresholds
            .iter()
            .map(|&t| {
                while gi < g.len() && g[gi] < t {
                    gi += 1;
                }
                while ii < im.len() && im[ii] < t {
                    ii += 1;
                }
                DetPoint {
                    threshold: t,
                    fmr: (im.len() - ii) as f64 / ni,
                    fnmr: gi as f64 / ng,
                }
            })
            .collect();

        // FVC EER: t1 = last threshold with FNMR <= FMR, t2 = first with FNMR >= FMR.
        let t1 = curve.iter().rposition(|p| p.fnmr <= p.fmr);
        let t2 = curve.iter().position(|p| p.fnmr >= p.fmr);
        let (eer, eer_threshold) = match (t1, t2) {
            (Some(a), Some(b)) => {
                let (pa, pb) = (curve[a], curve[b]);
                let p = if pa.fnmr + pa.fmr <= pb.fnmr + pb.fmr {
                    pa
                } else {
                    pb
                };
                ((p.fnmr.min(p.fmr) + p.fnmr.max(p.fmr)) / 2.0, p.threshold)
            }
            (Some(a), None) => ((curve[a].fnmr + curve[a].fmr) / 2.0, curve[a].threshold),
            (None, Some(b)) => ((curve[b].fnmr + curve[b].fmr) / 2.0, curve[b].threshold),
            (None, None) => (1.0, f64::INFINITY),
        };
        let at_fmr = |target: f64| {
            curve
                .iter()
                .filter(|p| p.fmr <= target)
                .map(|p| p.fnmr)
                .fold(1.0f64, f64::min)
        };
        Ok(Metrics {
            genuine: g.len(),
            impostor: im.len(),
            eer,
            eer_threshold,
            fmr100: at_fmr(0.01),
            fmr1000: at_fmr(0.001),
            fmr10000: at_fmr(0.0001),
            zero_fmr: at_fmr(0.0),
            curve,
        })
    }

    /// FMR and FNMR at a fixed threshold.
    pub fn rates_at(&self, threshold: f64) -> DetPoint {
        self.curve
            .iter()
            .find(|p| p.threshold >= threshold)
            .copied()
            .unwrap_or(DetPoint {
                threshold,
                fmr: 0.0,
                fnmr: 1.0,
            })
    }
}

/// What extracting one sample gave.
#[derive(Debug, Clone)]
pub struct Extracted {
    /// `None` when extraction failed (the error is in `error`).
    pub template: Option<FingerTemplate>,
    pub error: Option<String>,
    pub millis: f64,
}

/// Extracts every sample once; `ppi` overrides the file's resolution (FVC TIFFs carry none, and
/// FVC2002 DB2 is 569 ppi). Failures are kept as `None` with their error text.
pub fn extract_all(
    samples: &[Sample],
    extractor: &FingerExtractor,
    ppi: Option<f32>,
) -> Vec<Extracted> {
    extract_all_with_progress(samples, extractor, ppi, &mut |_, _| {})
}

/// [`extract_all`], calling `progress(done, total)` after each sample (for a progress bar).
pub fn extract_all_with_progress(
    samples: &[Sample],
    extractor: &FingerExtractor,
    ppi: Option<f32>,
    progress: &mut dyn FnMut(usize, usize),
) -> Vec<Extracted> {
    let total = samples.len();
    samples
        .iter()
        .enumerate()
        .map(|(done, s)| {
            let start = Instant::now();
            let result = std::fs::read(&s.path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| {
                    extractor
                        .extract(
                            &bytes,
                            CaptureInfo {
                                ppi,
                                ..Default::default()
                            },
                        )
                        .map_err(|e| e.to_string())
                });
            let millis = start.elapsed().as_secs_f64() * 1e3;
            progress(done + 1, total);
            match result {
                Ok(x) => Extracted {
                    template: Some(x.template),
                    error: None,
                    millis,
                },
                Err(e) => Extracted {
                    template: None,
                    error: Some(e),
                    millis,
                },
            }
        })
        .collect()
}

/// One compared pair: sample names, whether genuine, calibrated score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ScoreRow {
    pub a: String,
    pub b: String,
    pub genuine: bool,
    pub score: f64,
}

/// The outcome of the protocol on one folder.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EvalReport {
    pub samples: usize,
    pub failed_to_extract: usize,
    pub metrics: Metrics,
    /// Mean extraction time over the samples, milliseconds (0 when templates were given).
    pub mean_extract_ms: f64,
    /// Mean time of one comparison (both templates already prepared), microseconds.
    pub mean_compare_us: f64,
    pub rows: Vec<ScoreRow>,
}

/// Compares every FVC pair of `samples` (whose templates are `templates`, `None` for a failure)
/// on one thread and computes the metrics. Templates are prepared once each.
pub fn compare_all(
    samples: &[Sample],
    templates: &[Option<FingerTemplate>],
    matcher: &Matcher,
) -> Result<EvalReport, EvalError> {
    let prepared: Vec<Option<PreparedTemplate>> = templates
        .iter()
        .map(|t| t.as_ref().and_then(|t| matcher.prepare(t).ok()))
        .collect();
    let fingers: Vec<&str> = samples.iter().map(|s| s.finger.as_str()).collect();
    let pairs = fvc_pairs(&fingers);
    let mut scratch = Scratch::default();
    let mut rows = Vec::with_capacity(pairs.genuine.len() + pairs.impostor.len());
    let mut compare_time = 0.0f64;
    let mut compared = 0usize;
    for (genuine, list) in [(true, &pairs.genuine), (false, &pairs.impostor)] {
        for &(i, j) in list {
            let score = match (
                prepared.get(i).and_then(Option::as_ref),
                prepared.get(j).and_then(Option::as_ref),
            ) {
                (Some(a), Some(b)) => {
                    let start = Instant::now();
                    let s = matcher.compare(a, b, &mut scratch).score;
                    compare_time += start.elapsed().as_secs_f64();
                    compared += 1;
                    f64::from(s)
                }
                _ => FAILED_SCORE,
            };
            rows.push(ScoreRow {
                a: samples[i].name.clone(),
                b: samples[j].name.clone(),
                genuine,
                score,
            });
        }
    }
    let genuine: Vec<f64> = rows.iter().filter(|r| r.genuine).map(|r| r.score).collect();
    let impostor: Vec<f64> = rows
        .iter()
        .filter(|r| !r.genuine)
        .map(|r| r.score)
        .collect();
    let metrics = Metrics::compute(&genuine, &impostor)?;
    Ok(EvalReport {
        samples: samples.len(),
        failed_to_extract: prepared.iter().filter(|p| p.is_none()).count(),
        metrics,
        mean_extract_ms: 0.0,
        mean_compare_us: if compared > 0 {
            compare_time * 1e6 / compared as f64
        } else {
            0.0
        },
        rows,
    })
}

/// The whole protocol on a folder: list, extract (with `ppi` overriding the files'), compare.
pub fn run_fvc(
    dir: &Path,
    extractor: &FingerExtractor,
    matcher: &Matcher,
    ppi: Option<f32>,
) -> Result<EvalReport, EvalError> {
    run_fvc_with_progress(dir, extractor, matcher, ppi, &mut |_, _| {})
}

/// [`run_fvc`], calling `progress(done, total)` after each extraction (the slow part).
pub fn run_fvc_with_progress(
    dir: &Path,
    extractor: &FingerExtractor,
    matcher: &Matcher,
    ppi: Option<f32>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<EvalReport, EvalError> {
    let samples = list_samples(dir)?;
    let extracted = extract_all_with_progress(&samples, extractor, ppi, progress);
    let templates: Vec<Option<FingerTemplate>> =
        extracted.iter().map(|e| e.template.clone()).collect();
    let mut report = compare_all(&samples, &templates, matcher)?;
    report.mean_extract_ms =
        extracted.iter().map(|e| e.millis).sum::<f64>() / extracted.len().max(1) as f64;
    Ok(report)
}

/// Writes `a,b,score` rows (with a header line) to `out`.
pub fn write_scores_csv<W: Write>(mut out: W, rows: &[ScoreRow]) -> Result<(), EvalError> {
    writeln!(out, "a,b,score")?;
    for r in rows {
        writeln!(out, "{},{},{:.4}", r.a, r.b, r.score)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fvc_pair_counts_for_a_b_set() {
        let fingers: Vec<String> = (0..80).map(|i| format!("{}", 101 + i / 8)).collect();
        let p = fvc_pairs(&fingers);
        assert_eq!(p.genuine.len(), 280);
        assert_eq!(p.impostor.len(), 80 * 79 / 2 - 280);
        assert_eq!(p.impostor.len(), 2880);
        assert!(p.genuine.iter().chain(&p.impostor).all(|&(i, j)| i < j));
    }

    #[test]
    fn sample_names() {
        assert_eq!(parse_sample_name("101_3"), Some(("101", "3")));
        assert_eq!(parse_sample_name("a_b_3"), Some(("a_b", "3")));
        assert_eq!(parse_sample_name("1013"), None);
        assert_eq!(parse_sample_name("_3"), None);
    }

    #[test]
    fn perfect_separation() {
        let m = Metrics::compute(&[10.0, 11.0, 12.0], &[1.0, 2.0, 3.0]).unwrap();
        assert_eq!(m.eer, 0.0);
        assert_eq!(m.fmr100, 0.0);
        assert_eq!(m.zero_fmr, 0.0);
    }

    #[test]
    fn eer_on_overlapping_scores() {
        // 4 genuine, 4 impostor, one of each on the wrong side.
        let g = [0.5, 5.0, 6.0, 7.0];
        let i = [1.0, 2.0, 3.0, 5.5];
        let m = Metrics::compute(&g, &i).unwrap();
        assert!((m.eer - 0.25).abs() < 1e-12, "{}", m.eer);
        // No impostor accepted needs t > 5.5: genuine 0.5 and 5.0 rejected.
        assert!((m.zero_fmr - 0.5).abs() < 1e-12);
        let r = m.rates_at(5.0);
        assert_eq!((r.fmr, r.fnmr), (0.25, 0.25));
    }

    #[test]
    fn refuses_empty_and_nan() {
        assert!(Metrics::compute(&[], &[1.0]).is_err());
        assert!(Metrics::compute(&[f64::NAN], &[1.0]).is_err());
    }

    #[test]
    fn csv_rows() {
        let rows = vec![ScoreRow {
            a: "101_1".into(),
            b: "101_2".into(),
            genuine: true,
            score: 42.0,
        }];
        let mut out = Vec::new();
        write_scores_csv(&mut out, &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,b,score\n101_1,101_2,42.0000\n"
        );
    }
}
