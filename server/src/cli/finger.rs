//! `abis finger ...`: extraction (and, as they land, matching and evaluation) from a shell.

use std::io::Write;
use std::path::PathBuf;

use abis_engine::finger::{CaptureInfo, FingerExtractor};
use abis_engine::image::Limits;
use abis_engine::template::{encode_ansi, encode_iso, encode_native, encode_xyt, FingerPosition};
use anyhow::Context;
use clap::{Subcommand, ValueEnum};

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
    }
}
