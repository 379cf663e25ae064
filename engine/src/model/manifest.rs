//! `models/manifest.toml`: what each model is, where its file is, and how to feed it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ModelError;

/// The parts of the manifest the engine reads (sources are only for setup).
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub runtime: RuntimeSpec,
    pub models: BTreeMap<String, ModelSpec>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct RuntimeSpec {
    pub file: PathBuf,
    pub sha256: String,
    pub version: String,
}

/// One model: its file (relative to the cache directory) and its I/O contract.
#[derive(Debug, Clone, Deserialize)]
pub struct ModelSpec {
    pub task: String,
    pub file: PathBuf,
    pub sha256: String,
    pub input: InputSpec,
    pub outputs: Vec<OutputSpec>,
    /// Decoding parameters of a LEADER-style minutiae model.
    #[serde(default)]
    pub decode: Option<LeaderDecode>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputSpec {
    pub name: String,
    pub layout: String,
    #[serde(default)]
    pub channels: Option<u32>,
    #[serde(default)]
    pub size_multiple: Option<u32>,
    #[serde(default)]
    pub ppi: Option<f32>,
    #[serde(default)]
    pub normalisation: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct OutputSpec {
    pub name: String,
    #[serde(default)]
    pub meaning: Option<String>,
}

/// How LEADER's per-pixel output becomes minutiae.
#[derive(Debug, Clone, Copy, Deserialize)]
pub struct LeaderDecode {
    pub quality_threshold: f64,
    pub type_threshold: f64,
    pub max_minutiae: usize,
}

impl Manifest {
    pub fn load(path: &Path) -> Result<Manifest, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|e| ModelError::Manifest {
            path: path.to_owned(),
            detail: e.to_string(),
        })?;
        Self::parse(&text, path)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Manifest, ModelError> {
        toml::from_str(text).map_err(|e| ModelError::Manifest {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    pub fn model(&self, name: &str) -> Result<&ModelSpec, ModelError> {
        self.models
            .get(name)
            .ok_or_else(|| ModelError::UnknownModel {
                name: name.to_owned(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_manifest_parses_and_describes_leader() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/manifest.toml");
        let m = Manifest::load(&path).expect("manifest parses");
        let leader = m.model("leader").expect("leader listed");
        assert_eq!(leader.input.name, "input");
        assert_eq!(leader.input.size_multiple, Some(32));
        assert_eq!(leader.outputs[0].name, "head_conc");
        let d = leader.decode.expect("decode parameters");
        assert_eq!(d.max_minutiae, 150);
        assert!(matches!(
            m.model("nope"),
            Err(ModelError::UnknownModel { .. })
        ));
    }
}
