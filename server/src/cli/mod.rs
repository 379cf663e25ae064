//! Command-line subcommands. Each prints JSON on stdout, errors on stderr, non-zero on failure.

pub mod audit;
pub mod cluster;
pub mod face;
#[cfg(feature = "eval")]
pub mod face_eval;
pub mod finger;
#[cfg(feature = "eval")]
pub mod finger_eval;
pub mod keys;
pub mod mosip;
pub mod serve;
pub mod store;

use std::path::PathBuf;
use std::sync::Arc;

use abis_engine::model::{Runtime, RuntimeConfig};

/// The `--models` option shared by every subcommand that runs a model.
pub struct ModelsDir(pub Option<PathBuf>);

impl ModelsDir {
    pub fn runtime_config(&self) -> RuntimeConfig {
        match &self.0 {
            Some(dir) => RuntimeConfig::for_models_dir(dir),
            None => RuntimeConfig::discover(),
        }
    }

    pub fn open_runtime(&self) -> anyhow::Result<Arc<Runtime>> {
        Ok(Runtime::open(self.runtime_config())?)
    }
}
