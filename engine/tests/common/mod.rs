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

/// The shared extractor, or `None` when setup has not been run (skipped, or a failure under
/// `ABIS_REQUIRE_DATA=1`: see `abis_testkit`). `make test` runs setup first.
#[track_caller]
pub fn extractor() -> Option<&'static FingerExtractor> {
    match try_extractor() {
        Ok(x) => Some(x),
        Err(what) => {
            abis_testkit::skip(&what, "run `make setup`");
            None
        }
    }
}

/// The shared extractor, or what is missing (not reported: for data loaded once).
pub fn try_extractor() -> Result<&'static FingerExtractor, String> {
    static EXTRACTOR: OnceLock<Result<FingerExtractor, String>> = OnceLock::new();
    EXTRACTOR
        .get_or_init(|| {
            let runtime: Arc<Runtime> =
                Runtime::open(models_config()).map_err(|e| e.to_string())?;
            FingerExtractor::new(&runtime, Limits::default()).map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| format!("the LEADER extractor ({e})"))
}

pub fn models_cache() -> PathBuf {
    models_config().cache_dir
}

/// `../shared/data` beside the repository (see `abis_testkit::shared_data`).
#[track_caller]
pub fn shared_data() -> Option<PathBuf> {
    abis_testkit::shared_data()
}

/// The smaller angle between two directions in radians, in degrees.
pub fn angle_diff_deg(a: f32, b: f32) -> f32 {
    let d = (a - b).rem_euclid(std::f32::consts::TAU);
    d.min(std::f32::consts::TAU - d).to_degrees()
}
