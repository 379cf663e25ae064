//! Helpers shared by the engine's integration tests: where the models and the shared data are.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use abis_engine::finger::FingerExtractor;
use abis_engine::image::Limits;
use abis_engine::model::{Runtime, RuntimeConfig};

pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn models_config() -> RuntimeConfig {
    let mut config = RuntimeConfig::for_models_dir(&repo_root().join("models"));
    config.intra_threads = 2;
    config
}

/// The shared extractor, or `None` (with a message saying why and how to fix it) when setup
/// has not been run. `make test` always runs setup first, so in CI this is never `None`.
pub fn extractor() -> Option<&'static FingerExtractor> {
    static EXTRACTOR: OnceLock<Option<FingerExtractor>> = OnceLock::new();
    EXTRACTOR
        .get_or_init(|| {
            let runtime: Arc<Runtime> = match Runtime::open(models_config()) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("SKIPPED: models are not set up ({e}); run `make setup`");
                    return None;
                }
            };
            match FingerExtractor::new(&runtime, Limits::default()) {
                Ok(x) => Some(x),
                Err(e) => {
                    eprintln!("SKIPPED: LEADER model unavailable ({e}); run `make setup`");
                    None
                }
            }
        })
        .as_ref()
}

pub fn models_cache() -> PathBuf {
    models_config().cache_dir
}

/// `../shared/data` beside the repository, or `None` with a message.
pub fn shared_data() -> Option<PathBuf> {
    let dir = std::env::var_os("ABIS_SHARED_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/data"));
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: shared data not found at {} (set ABIS_SHARED_DATA)",
            dir.display()
        );
        None
    }
}
