//! Biometric samples named on the command line, read from files.

use std::path::{Path, PathBuf};

use abis_proto::v1::{sample, Modality, Sample};
use clap::Args;

use crate::ClientError;

/// Biometric samples given on the command line. FILE is an image or a template in any
/// supported format; POS is the ISO finger position 1..10.
#[derive(Args, Default, Debug, Clone)]
pub struct SampleArgs {
    /// A finger: POS=FILE (repeatable).
    #[arg(long = "finger", value_name = "POS=FILE")]
    pub fingers: Vec<String>,
    /// A face image or face template (repeatable).
    #[arg(long = "face", value_name = "FILE")]
    pub faces: Vec<PathBuf>,
    /// Resolution of the finger images in pixels per inch (default: from the file, else 500).
    #[arg(long)]
    pub ppi: Option<f32>,
}

/// Whether `bytes` are a template rather than an image: the native finger and face formats
/// (`ABFT`), ISO/IEC 19794-2 and ANSI/INCITS 378 (`FMR\0`), or NBIS `.xyt` text (lines of 3 to 5
/// integers). Every image format starts with a binary signature that none of these share.
pub fn looks_like_template(bytes: &[u8]) -> bool {
    if bytes.starts_with(b"ABFT") || bytes.starts_with(b"FMR\0") {
        return true;
    }
    if !bytes.is_ascii() {
        return false;
    }
    let text = String::from_utf8_lossy(bytes);
    let Some(line) = text.lines().find(|l| !l.trim().is_empty()) else {
        return false;
    };
    let tokens: Vec<&str> = line.split_whitespace().collect();
    (3..=5).contains(&tokens.len())
        && tokens
            .iter()
            .take(4)
            .all(|t| t.trim_start_matches(['-', '+']).parse::<u32>().is_ok())
}

fn read(path: &Path) -> Result<sample::Data, ClientError> {
    let bytes = std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(if looks_like_template(&bytes) {
        sample::Data::Template(bytes)
    } else {
        sample::Data::Image(bytes)
    })
}

impl SampleArgs {
    /// The samples, files read.
    pub fn samples(&self) -> Result<Vec<Sample>, ClientError> {
        let mut out = Vec::new();
        for spec in &self.fingers {
            let (pos, file) = spec
                .split_once('=')
                .ok_or_else(|| ClientError::Usage("--finger takes POS=FILE".into()))?;
            let position: u32 = pos
                .parse()
                .ok()
                .filter(|p| (1..=10).contains(p))
                .ok_or_else(|| {
                    ClientError::Usage(format!(
                        "finger position {pos:?} is not an ISO position 1..10"
                    ))
                })?;
            out.push(Sample {
                modality: Modality::Finger as i32,
                finger_position: position,
                ppi: self.ppi.unwrap_or(0.0),
                data: Some(read(Path::new(file))?),
            });
        }
        for file in &self.faces {
            out.push(Sample {
                modality: Modality::Face as i32,
                finger_position: 0,
                ppi: 0.0,
                data: Some(read(file)?),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abis_engine::template::{
        encode_ansi, encode_iso, encode_native, encode_xyt, FingerTemplate,
    };

    #[test]
    fn every_template_format_the_engine_writes_is_a_template() {
        let bytes = crate::synthetic_iso_template(3, 2, 10);
        let template = abis_engine::template::decode_iso(&bytes).unwrap();
        for bytes in [
            encode_native(&template).unwrap(),
            encode_iso(&template).unwrap(),
            encode_ansi(&template).unwrap(),
            encode_xyt(&template).unwrap().into_bytes(),
            bytes,
        ] {
            assert!(
                looks_like_template(&bytes),
                "{:?}",
                &bytes[..8.min(bytes.len())]
            );
            assert!(FingerTemplate::detect_format(&bytes).is_some());
        }
    }

    #[test]
    fn images_are_not_templates() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        let jpeg = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
        let pgm = b"P5\n92 112\n255\n\0\0\0";
        let wsq = b"\xff\xa0\xff\xa8\0\x02";
        for bytes in [&png[..], jpeg, pgm, wsq, b"", b"  \n"] {
            assert!(!looks_like_template(bytes), "{bytes:?}");
        }
    }
}
