//! `abis face eval`: every pair of a labelled folder scored, EER and FNMR at fixed FMRs, raw
//! scores and a DET plot (built with the `eval` feature).

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use abis_engine::eval::{draw_det_png, Metrics};
use abis_engine::face::{FaceOptions, FaceTemplate};
use anyhow::{bail, Context};
use serde_json::json;

use super::face::{open_engine, print};
use super::ModelsDir;

/// `(file path, sample name, identity)` of every image of the folder.
fn list(dir: &Path) -> anyhow::Result<Vec<(PathBuf, String, String)>> {
    let labels = dir.join("labels.csv");
    let mut out = Vec::new();
    if labels.is_file() {
        let text = std::fs::read_to_string(&labels)?;
        for (n, line) in text.lines().enumerate() {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            if n == 0 && cols.first() == Some(&"file") {
                continue;
            }
            if cols.len() < 2 || cols[0].is_empty() {
                continue;
            }
            out.push((dir.join(cols[0]), cols[0].to_string(), cols[1].to_string()));
        }
    } else {
        for entry in std::fs::read_dir(dir)? {
            let sub = entry?.path();
            if !sub.is_dir() {
                continue;
            }
            let identity = sub
                .file_name()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            for f in std::fs::read_dir(&sub)? {
                let p = f?.path();
                if p.is_file() {
                    let name = format!(
                        "{identity}/{}",
                        p.file_name().and_then(|s| s.to_str()).unwrap_or_default()
                    );
                    out.push((p, name, identity.clone()));
                }
            }
        }
    }
    out.sort_by(|a, b| a.1.cmp(&b.1));
    if out.is_empty() {
        bail!("no images in {} (labels.csv or sub-folders)", dir.display());
    }
    Ok(out)
}

/// The score of a comparison that could not be made: below every cosine.
const FAILED_COSINE: f64 = -2.0;

pub fn eval(
    models: &ModelsDir,
    dir: &Path,
    scores: &Path,
    det: Option<&Path>,
    opts: FaceOptions,
) -> anyhow::Result<()> {
    let samples = list(dir)?;
    let engine = open_engine(models)?;
    let bar = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(samples.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut templates: Vec<Option<FaceTemplate>> = Vec::with_capacity(samples.len());
    let mut found_by: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures: BTreeMap<String, usize> = BTreeMap::new();
    let mut total_ms = 0.0;
    let start_all = std::time::Instant::now();
    for chunk in samples.chunks(16) {
        let bytes: Vec<Vec<u8>> = chunk
            .iter()
            .map(|(p, _, _)| std::fs::read(p).unwrap_or_default())
            .collect();
        let refs: Vec<&[u8]> = bytes.iter().map(Vec::as_slice).collect();
        for r in engine.extract_many(&refs, opts) {
            match r {
                Ok(x) => {
                    total_ms += x.detect_ms + x.embed_ms;
                    let key = serde_json::to_value(x.found_by)?
                        .as_str()
                        .unwrap_or_default()
                        .to_string();
                    *found_by.entry(key).or_default() += 1;
                    templates.push(Some(x.template));
                }
                Err(e) => {
                    // The error kind only: no biometric data.
                    *failures.entry(e.to_string()).or_default() += 1;
                    templates.push(None);
                }
            }
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    let wall_ms = start_all.elapsed().as_secs_f64() * 1e3;

    let mut out = std::io::BufWriter::new(
        std::fs::File::create(scores).with_context(|| format!("creating {}", scores.display()))?,
    );
    writeln!(out, "a,b,score,cosine")?;
    let (mut genuine, mut impostor) = (Vec::new(), Vec::new());
    for i in 0..samples.len() {
        for j in i + 1..samples.len() {
            let cos = match (&templates[i], &templates[j]) {
                (Some(a), Some(b)) => a.cosine(b)? as f64,
                _ => FAILED_COSINE,
            };
            let score = if cos <= FAILED_COSINE {
                -1.0
            } else {
                engine
                    .calibration()
                    .map(|c| c.score(cos as f32))
                    .unwrap_or(cos * 100.0)
            };
            writeln!(out, "{},{},{score:.4},{cos:.6}", samples[i].1, samples[j].1)?;
            if samples[i].2 == samples[j].2 {
                genuine.push(cos);
            } else {
                impostor.push(cos);
            }
        }
    }
    out.flush()?;
    // Metrics on the cosine (monotonic with the calibrated score, never clipped).
    let m = Metrics::compute(&genuine, &impostor)?;
    if let Some(path) = det {
        draw_det_png(path, &[("face", &m.curve)], 800, 600)?;
    }
    let identities: std::collections::BTreeSet<&str> =
        samples.iter().map(|s| s.2.as_str()).collect();
    let failed = templates.iter().filter(|t| t.is_none()).count();
    print(&json!({
        "samples": samples.len(),
        "identities": identities.len(),
        "genuine": m.genuine,
        "impostor": m.impostor,
        "failed_to_enroll": failed,
        "failures": failures,
        "found_by": found_by,
        "eer": m.eer,
        "eer_cosine": m.eer_threshold,
        "fnmr_at_fmr_1e-2": m.fmr100,
        "fnmr_at_fmr_1e-3": m.fmr1000,
        "fnmr_at_fmr_1e-4": m.fmr10000,
        "zero_fmr": m.zero_fmr,
        "mean_extraction_ms": total_ms / (samples.len() - failed).max(1) as f64,
        "wall_ms_per_image": wall_ms / samples.len() as f64,
        "calibration_fitted_on": engine.calibration().map(|c| c.fitted_on.clone()),
        "scores": scores,
    }))
}
