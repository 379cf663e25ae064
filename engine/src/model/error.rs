use std::path::PathBuf;

use thiserror::Error;

/// Why a model could not be loaded or run.
#[derive(Debug, Error)]
pub enum ModelError {
    #[error("ONNX Runtime library not found at {path}; run `{setup}` or set ORT_DYLIB_PATH")]
    LibraryMissing { path: PathBuf, setup: &'static str },
    #[error("ONNX Runtime library at {path} could not be loaded: {detail}")]
    LibraryLoad { path: PathBuf, detail: String },
    #[error(
        "the ONNX Runtime library is already loaded from {loaded}; cannot also load {requested}"
    )]
    LibraryConflict { loaded: PathBuf, requested: PathBuf },
    #[error("model manifest {path}: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error(
        "no models found (models/manifest.toml); tried {tried}. Get them with `{setup}` in the \
         checkout, or name them with --models DIR or ABIS_MODELS_DIR"
    )]
    ModelsNotFound { tried: String, setup: &'static str },
    #[error("model {name:?} is not in the manifest")]
    UnknownModel { name: String },
    #[error("model file {path} not found; run `{setup}`")]
    ModelMissing { path: PathBuf, setup: &'static str },
    #[error("model file {path} has sha256 {actual}, the manifest pins {expected}; run `{setup}`")]
    Checksum {
        path: PathBuf,
        expected: String,
        actual: String,
        setup: &'static str,
    },
    #[error("model {name:?}: {detail}")]
    Session { name: String, detail: String },
    #[error("model {name:?} produced an unexpected output: {detail}")]
    BadOutput { name: String, detail: String },
}
