//! `abis finger ...`: extraction, 1:1 matching and FVC evaluation from a shell.
//!
//! `match` takes images or templates (ISO 19794-2, ANSI 378, native, `.xyt`) on either side and
//! prints one JSON line. `eval` runs the FVC protocol on a folder of `<finger>_<impression>`
//! images (every unordered pair; a failure to extract counts with the lowest score, never
//! skipped), writes every pair's score and prints one JSON line of figures.

use std::io::Write;
use std::path::{Path, PathBuf};

use abis_engine::finger::{CaptureInfo, FingerExtractor};
use abis_engine::image::Limits;
use abis_engine::matcher::{self, Matcher};
use abis_engine::template::{
    encode_ansi, encode_iso, encode_native, encode_xyt, FingerPosition, FingerTemplate, XytGeometry,
};
use anyhow::{bail, Context};
use clap::{Subcommand, ValueEnum};
use serde_json::json;

use super::ModelsDir;

#[derive(Subcommand)]
pub enum FingerCommand {
    /// Extract a minutiae template from a fingerprint image.
    Extract {
        /// PNG, JPEG, BMP, TIFF, PGM/PPM, GIF or WSQ image.
        image: PathBuf,
        /// Capture resolution in pixels per inch (default: from the file, else 500).
        #[arg(long)]
        ppi: Option<f32>,
        /// ISO finger position 0..10.
        #[arg(long, default_value_t = 0)]
        position: u8,
        #[arg(long, value_enum, default_value_t = OutputFormat::Json)]
        format: OutputFormat,
        /// Write here instead of stdout.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Compare two fingerprints (images or templates) at a false-match rate.
    Match {
        /// Image (as for `extract`) or template (ISO 19794-2, ANSI 378, native or .xyt).
        a: PathBuf,
        /// Image or template.
        b: PathBuf,
        /// Resolution of the images (and of .xyt templates), pixels per inch (default: from
        /// the file, else 500).
        #[arg(long)]
        ppi: Option<f32>,
        /// Target false-match rate of the decision.
        #[arg(long, default_value_t = 1e-4)]
        fmr: f64,
        /// Also print the mated minutiae (`mated`: [a index, b index] into each template's
        /// minutiae) and the alignment taking A onto B (degrees, 500 ppi pixels).
        #[arg(long)]
        pairs: bool,
    },
    /// FVC protocol on a folder of `<finger>_<impression>` images: EER, FMR100, FMR1000,
    /// ZeroFMR.
    #[cfg(feature = "eval")]
    Eval {
        dir: PathBuf,
        /// Resolution of the images, pixels per inch (default: from the files, else 500;
        /// FVC2002 DB2 is 569).
        #[arg(long)]
        ppi: Option<f32>,
        /// Every pair's score, one a line: a,b,score.
        #[arg(long)]
        scores: PathBuf,
        /// DET plot (PNG).
        #[arg(long)]
        det: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum OutputFormat {
    Json,
    Iso,
    Ansi,
    Xyt,
    Native,
}

pub fn run(command: FingerCommand, models: &ModelsDir) -> anyhow::Result<()> {
    match command {
        FingerCommand::Extract {
            image,
            ppi,
            position,
            format,
            output,
        } => {
            let info = CaptureInfo {
                ppi,
                position: FingerPosition::new(position)?,
                ..Default::default()
            };
            let bytes =
                std::fs::read(&image).with_context(|| format!("reading {}", image.display()))?;
            let runtime = models.open_runtime()?;
            let extractor = FingerExtractor::new(&runtime, Limits::default())?;
            let extraction = extractor.extract(&bytes, info)?;
            let out = match format {
                OutputFormat::Json => {
                    let mut v = serde_json::to_vec_pretty(&extraction)?;
                    v.push(b'\n');
                    v
                }
                OutputFormat::Iso => encode_iso(&extraction.template)?,
                OutputFormat::Ansi => encode_ansi(&extraction.template)?,
                OutputFormat::Xyt => encode_xyt(&extraction.template)?.into_bytes(),
                OutputFormat::Native => encode_native(&extraction.template)?,
            };
            match output {
                Some(path) => std::fs::write(&path, out)
                    .with_context(|| format!("writing {}", path.display()))?,
                None => std::io::stdout().write_all(&out)?,
            }
            Ok(())
        }
        FingerCommand::Match {
            a,
            b,
            ppi,
            fmr,
            pairs,
        } => match_pair(models, &a, &b, ppi, fmr, pairs),
        #[cfg(feature = "eval")]
        FingerCommand::Eval {
            dir,
            ppi,
            scores,
            det,
        } => super::finger_eval::evaluate(models, &dir, ppi, &scores, det.as_deref()),
    }
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

/// Prints `v` as one line of JSON on stdout.
pub(super) fn print_line(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = serde_json::to_vec(v)?;
    out.push(b'\n');
    std::io::stdout().write_all(&out)?;
    Ok(())
}

pub(super) fn check_ppi(ppi: Option<f32>) -> anyhow::Result<()> {
    match ppi {
        Some(p) if !(p.is_finite() && p > 0.0) => bail!("--ppi must be positive, got {p}"),
        _ => Ok(()),
    }
}

pub(super) fn open_extractor(models: &ModelsDir) -> anyhow::Result<FingerExtractor> {
    let runtime = models.open_runtime()?;
    Ok(FingerExtractor::new(&runtime, Limits::default())?)
}

fn match_pair(
    models: &ModelsDir,
    a: &Path,
    b: &Path,
    ppi: Option<f32>,
    fmr: f64,
    with_pairs: bool,
) -> anyhow::Result<()> {
    if !(fmr > 0.0 && fmr <= 1.0) {
        bail!("--fmr must be in (0, 1], got {fmr}");
    }
    check_ppi(ppi)?;
    let (ba, bb) = (read(a)?, read(b)?);
    // A template is recognised by its encoding; anything else is an image, and the model is
    // opened only when there is one.
    let is_template = |x: &[u8]| FingerTemplate::detect_format(x).is_some();
    let extractor = if is_template(&ba) && is_template(&bb) {
        None
    } else {
        Some(open_extractor(models)?)
    };
    let side = |bytes: &[u8], path: &Path| -> anyhow::Result<FingerTemplate> {
        if is_template(bytes) {
            let geometry = XytGeometry {
                ppi: ppi.map_or(500, |p| p.round().clamp(1.0, f32::from(u16::MAX)) as u16),
                ..XytGeometry::default()
            };
            FingerTemplate::decode_any(bytes, Some(geometry))
                .with_context(|| format!("template {}", path.display()))
        } else {
            let extractor = extractor.as_ref().context("no extractor")?;
            let info = CaptureInfo {
                ppi,
                ..Default::default()
            };
            Ok(extractor
                .extract(bytes, info)
                .with_context(|| format!("extracting {}", path.display()))?
                .template)
        }
    };
    let (ta, tb) = (side(&ba, a)?, side(&bb, b)?);
    let m = Matcher::new();
    let (pa, pb) = (m.prepare(&ta)?, m.prepare(&tb)?);
    let mated = m.compare_with_pairs(&pa, &pb, &mut matcher::Scratch::default());
    let c = mated.comparison;
    let mut line = json!({
        "score": c.score,
        "fmr": c.fmr(),
        "decision": matcher::decide(c.score, fmr),
        "target_fmr": fmr,
        "pairs": c.pairs,
    });
    if with_pairs {
        let list: Vec<[u16; 2]> = mated.pairs.iter().map(|q| [q.probe, q.candidate]).collect();
        line["mated"] = json!(list);
        line["alignment"] = json!(mated.alignment);
    }
    print_line(&line)
}
