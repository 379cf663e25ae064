//! `abis face ...`: detection, embedding, 1:1 verification and evaluation from a shell.
//!
//! Every command prints JSON on stdout. `verify` takes images or stored face templates (the
//! `ABFT` files `embed -o` writes) on either side. `eval` scores every unordered pair of a
//! folder (identities from `labels.csv` `file,identity,...`, else from sub-folders), counts a
//! failure to enroll as a failed comparison with the lowest score (never a skipped pair), and
//! writes the raw scores.

use std::io::Write;
use std::path::{Path, PathBuf};

use abis_engine::face::{FaceChoice, FaceEngine, FaceOptions, FaceTemplate};
use abis_engine::image::Limits;
use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;

use super::ModelsDir;

#[derive(Subcommand)]
pub enum FaceCommand {
    /// Detect faces: boxes, landmarks, quality.
    Detect {
        /// PNG, JPEG, JPEG 2000, WebP, BMP, TIFF, PGM/PPM or GIF image.
        image: PathBuf,
    },
    /// Extract one face's embedding (JSON) and optionally write its template.
    Embed {
        image: PathBuf,
        #[command(flatten)]
        face: FaceArgs,
        /// Write the binary face template (ABFT) here.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
    /// Compare two faces (images or templates) at a false-match rate.
    Verify {
        a: PathBuf,
        b: PathBuf,
        /// Target false-match rate of the decision.
        #[arg(long, default_value_t = 1e-3)]
        fmr: f64,
        #[command(flatten)]
        face: FaceArgs,
    },
    /// Bank counter: a live photo against the portrait of a chip ID card (EF.DG2), with
    /// passive authentication of its EF.SOD; the decision is "match" only when both hold.
    VerifyChip(VerifyChipArgs),
    /// Score every pair of a labelled folder: EER, FNMR at FMR 1e-2/1e-3/1e-4.
    #[cfg(feature = "eval")]
    Eval {
        dir: PathBuf,
        /// Raw scores, one pair a line: a,b,score,cosine.
        #[arg(long)]
        scores: PathBuf,
        /// DET plot (PNG).
        #[arg(long)]
        det: Option<PathBuf>,
        #[command(flatten)]
        face: FaceArgs,
    },
}

#[derive(Args)]
pub struct VerifyChipArgs {
    live: PathBuf,
    /// EF.DG2 as read from the chip.
    #[arg(long)]
    dg2: PathBuf,
    /// EF.SOD as read from the chip.
    #[arg(long)]
    sod: PathBuf,
    /// Trust store: CSCA certificates, master lists (.ml) and CRLs (.crl); without it the
    /// chain check fails.
    #[arg(long, value_name = "DIR")]
    trust: Option<PathBuf>,
    /// Target false-match rate of the face decision.
    #[arg(long, default_value_t = 1e-4)]
    fmr: f64,
    #[command(flatten)]
    face: FaceArgs,
}

#[derive(Args, Clone, Copy)]
pub struct FaceArgs {
    /// The images are portraits (one face filling the frame): if no face is detected, use the
    /// whole image with default landmarks.
    #[arg(long)]
    portrait: bool,
    /// Which face to use when several are found.
    #[arg(long, value_enum, default_value_t = Choice::Only)]
    choice: Choice,
    /// Skip the presentation-attack score (the slowest model; it changes no score).
    #[arg(long)]
    no_pad: bool,
    /// Smallest face to look for, in pixels of the detection image (longest side <= 1024);
    /// default from the manifest (20). Larger is faster (portraits: 60-100).
    #[arg(long, value_name = "PX")]
    min_face: Option<f32>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Choice {
    /// Exactly one face, else an error.
    Only,
    Largest,
    MostCentral,
}

impl FaceArgs {
    fn options(self) -> FaceOptions {
        FaceOptions {
            portrait: self.portrait,
            presentation_attack: !self.no_pad,
            min_face: self.min_face,
            choice: match self.choice {
                Choice::Only => FaceChoice::Only,
                Choice::Largest => FaceChoice::Largest,
                Choice::MostCentral => FaceChoice::MostCentral,
            },
        }
    }
}

fn check_fmr(fmr: f64) -> anyhow::Result<()> {
    if !(fmr > 0.0 && fmr < 1.0) {
        bail!("--fmr must be in (0, 1), got {fmr}");
    }
    Ok(())
}

fn check_json(check: &abis_icao::Check) -> serde_json::Value {
    match check {
        Ok(reason) => json!({"ok": true, "reason": reason}),
        Err(failure) => json!({"ok": false, "reason": failure.to_string()}),
    }
}

/// Passive authentication of the chip, then the live face against its portrait.
fn verify_chip(engine: &FaceEngine, args: &VerifyChipArgs) -> anyhow::Result<()> {
    check_fmr(args.fmr)?;
    let (dg2, sod) = (read(&args.dg2)?, read(&args.sod)?);
    let portrait = abis_icao::parse_dg2(&dg2)?;
    let sod = abis_icao::Sod::parse(&sod)?;
    let trust = match &args.trust {
        Some(dir) => abis_icao::TrustStore::load_dir(dir)?,
        None => abis_icao::TrustStore::new(),
    };
    let groups = [(2, dg2.as_slice())];
    let pa = abis_icao::authenticate(&sod, &groups, &trust, std::time::SystemTime::now());
    let live = engine
        .extract(&read(&args.live)?, args.face.options())
        .context("face in the live photo")?;
    let portrait_options = FaceOptions {
        portrait: true,
        choice: FaceChoice::Largest,
        ..args.face.options()
    };
    let chip_face = engine
        .extract(portrait.first().data, portrait_options)
        .context("face in the DG2 portrait")?;
    let fmr = args.fmr;
    let d = engine.compare(&live.template, &chip_face.template, fmr)?;
    let matched = pa.passed() && d.matched;
    print(&json!({
        "decision": if matched { "match" } else { "no-match" },
        "passive_authentication": pa.passed(),
        "signature": check_json(&pa.signature),
        "chain": check_json(&pa.chain),
        "revocation": check_json(&pa.revocation),
        "hashes": check_json(&pa.hashes),
        "face": {"score": d.score, "decision": if d.matched { "match" } else { "no-match" }, "target_fmr": d.target_fmr},
        "portrait_format": portrait.first().image_type.name(),
    }))
}

fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

pub(super) fn print(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = serde_json::to_vec_pretty(v)?;
    out.push(b'\n');
    std::io::stdout().write_all(&out)?;
    Ok(())
}

pub(super) fn open_engine(models: &ModelsDir) -> anyhow::Result<FaceEngine> {
    let runtime = models.open_runtime()?;
    Ok(FaceEngine::open(&runtime, Limits::default())?)
}

pub fn run(command: FaceCommand, models: &ModelsDir) -> anyhow::Result<()> {
    match command {
        FaceCommand::Detect { image } => {
            let engine = open_engine(models)?;
            let (img, faces) = engine.detect_with_quality(&read(&image)?)?;
            let faces: Vec<_> = faces
                .iter()
                .map(|(f, q)| json!({"bbox": f.bbox, "score": f.score, "landmarks": f.landmarks, "quality": q}))
                .collect();
            print(&json!({"width": img.width, "height": img.height, "faces": faces}))
        }
        FaceCommand::Embed {
            image,
            face,
            output,
        } => {
            let engine = open_engine(models)?;
            let x = engine.extract(&read(&image)?, face.options())?;
            if let Some(path) = output {
                std::fs::write(&path, x.template.encode()?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            let mut v = serde_json::to_value(&x)?;
            v["dimension"] = json!(x.template.embedding.len());
            v["embedding"] = json!(x.template.embedding);
            print(&v)
        }
        FaceCommand::VerifyChip(args) => verify_chip(&open_engine(models)?, &args),
        FaceCommand::Verify { a, b, fmr, face } => {
            check_fmr(fmr)?;
            let engine = open_engine(models)?;
            let (ba, bb) = (read(&a)?, read(&b)?);
            // Each side is a stored template (ABFT magic) or an image; images are embedded in
            // one batch.
            let is_template = |x: &[u8]| x.starts_with(abis_engine::face::template::MAGIC);
            let images: Vec<&[u8]> = [&ba, &bb]
                .into_iter()
                .filter(|x| !is_template(x))
                .map(Vec::as_slice)
                .collect();
            let mut extracted = engine.extract_many(&images, face.options()).into_iter();
            let mut side =
                |bytes: &[u8], path: &Path| -> anyhow::Result<(FaceTemplate, serde_json::Value)> {
                    if is_template(bytes) {
                        let t = FaceTemplate::decode(bytes)
                            .with_context(|| format!("template {}", path.display()))?;
                        Ok((t, json!({"source": "template"})))
                    } else {
                        let x = extracted
                            .next()
                            .context("missing extraction")?
                            .with_context(|| format!("face in {}", path.display()))?;
                        let info = serde_json::to_value(&x)?;
                        Ok((x.template, info))
                    }
                };
            let (ta, ia) = side(&ba, &a)?;
            let (tb, ib) = side(&bb, &b)?;
            let d = engine.compare(&ta, &tb, fmr)?;
            print(&json!({
                "score": d.score,
                "fmr": d.fmr,
                "cosine": d.cosine,
                "decision": if d.matched { "match" } else { "no-match" },
                "target_fmr": d.target_fmr,
                "threshold": d.threshold,
                "calibrated": d.calibrated,
                "calibration_fitted_on": engine.calibration().map(|c| c.fitted_on.clone()),
                "a": ia,
                "b": ib,
            }))
        }
        #[cfg(feature = "eval")]
        FaceCommand::Eval {
            dir,
            scores,
            det,
            face,
        } => {
            // The presentation-attack score changes no comparison: not computed here.
            let opts = FaceOptions {
                presentation_attack: false,
                ..face.options()
            };
            super::face_eval::eval(models, &dir, &scores, det.as_deref(), opts)
        }
    }
}
