//! Neural-network models: the manifest that names them, the ONNX Runtime library that runs
//! them, and pools of sessions that let several threads run one model at once.
//!
//! Nothing here downloads anything. `models/setup.py` fetches and verifies every file the
//! manifest lists; this module only finds those files, checks them again, and opens them. A
//! missing library or model is an error that names the path and the command that fixes it.

mod error;
mod manifest;
mod pool;
mod runtime;

pub use error::ModelError;
pub use manifest::{InputSpec, LeaderDecode, Manifest, ModelSpec, OutputSpec};
pub use pool::{PooledSession, SessionPool};
pub use runtime::{Runtime, RuntimeConfig};

/// The command that installs the runtime library and models, quoted in every "missing" error.
pub const SETUP_COMMAND: &str = "make setup (or: bash scripts/setup.sh)";
