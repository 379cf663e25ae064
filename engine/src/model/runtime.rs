//! Loading the ONNX Runtime library once per process and opening models from the manifest.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use sha2::{Digest, Sha256};

use super::{Manifest, ModelError, SessionPool, SETUP_COMMAND};

/// Where the models and the runtime library live, and how many threads each model may use.
#[derive(Debug, Clone)]
pub struct RuntimeConfig {
    /// `models/manifest.toml`.
    pub manifest: PathBuf,
    /// Directory the manifest's relative file paths are resolved against.
    pub cache_dir: PathBuf,
    /// The ONNX Runtime library; `None` takes `ORT_DYLIB_PATH`, then the manifest's file.
    pub library: Option<PathBuf>,
    /// Intra-op threads of each session. Explicit, because ONNX Runtime's default (all cores
    /// per session) oversubscribes a server that runs several sessions at once.
    pub intra_threads: usize,
    /// Sessions per model: how many inferences of one model may run at once.
    pub sessions_per_model: usize,
    /// The models directories [`RuntimeConfig::discover`] looked in without finding a manifest
    /// (named in the error); empty when the directory was given.
    pub searched: Vec<PathBuf>,
}

impl RuntimeConfig {
    /// Configuration for a models directory laid out as in the repository
    /// (`<dir>/manifest.toml`, files under `<dir>/cache`, or `ABIS_MODELS_CACHE`).
    pub fn for_models_dir(dir: &Path) -> RuntimeConfig {
        let cache_dir = std::env::var_os("ABIS_MODELS_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| dir.join("cache"));
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        RuntimeConfig {
            manifest: dir.join("manifest.toml"),
            cache_dir,
            library: None,
            intra_threads: cores,
            sessions_per_model: 1,
            searched: Vec::new(),
        }
    }

    /// Finds the models the way an installed tool does: `ABIS_MODELS_DIR` when set; else the
    /// first of `./models`, `models/` beside the executable or up to three folders above it (a
    /// checkout's `target/release/abis`), [`INSTALLED_MODELS_DIRS`] that holds a manifest.
    pub fn discover() -> RuntimeConfig {
        if let Some(dir) = std::env::var_os("ABIS_MODELS_DIR") {
            return Self::for_models_dir(Path::new(&dir));
        }
        let exe_dirs: Vec<PathBuf> = std::env::current_exe()
            .ok()
            .and_then(|e| e.canonicalize().ok())
            .map(|e| {
                e.ancestors()
                    .skip(1)
                    .take(4)
                    .map(Path::to_path_buf)
                    .collect()
            })
            .unwrap_or_default();
        let candidates: Vec<PathBuf> = std::iter::once(PathBuf::from("models"))
            .chain(exe_dirs.iter().map(|d| d.join("models")))
            .chain(INSTALLED_MODELS_DIRS.iter().map(PathBuf::from))
            .collect();
        match candidates
            .iter()
            .find(|d| d.join("manifest.toml").is_file())
        {
            Some(dir) => Self::for_models_dir(dir),
            None => RuntimeConfig {
                searched: candidates.clone(),
                ..Self::for_models_dir(&candidates[0])
            },
        }
    }
}

/// Where an installed abis looks for its models after the working and executable's folders.
pub const INSTALLED_MODELS_DIRS: &[&str] =
    &["/usr/local/share/abis/models", "/usr/share/abis/models"];

/// The loaded library and manifest; opens session pools for named models.
pub struct Runtime {
    env: ort::environment::Environment,
    manifest: Manifest,
    config: RuntimeConfig,
}

/// ONNX Runtime can be loaded only once per process; remember from where, and its environment.
static LOADED: Mutex<Option<(PathBuf, ort::environment::Environment)>> = Mutex::new(None);

impl Runtime {
    pub fn open(config: RuntimeConfig) -> Result<Arc<Runtime>, ModelError> {
        let manifest = Manifest::load(&config.manifest).map_err(|e| {
            if config.searched.is_empty() {
                return e;
            }
            let tried: Vec<String> = config
                .searched
                .iter()
                .map(|d| d.display().to_string())
                .collect();
            ModelError::ModelsNotFound {
                tried: tried.join(", "),
                setup: SETUP_COMMAND,
            }
        })?;
        let library = config
            .library
            .clone()
            .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
            .unwrap_or_else(|| config.cache_dir.join(&manifest.runtime.file));
        let env = load_library(&library)?;
        Ok(Arc::new(Runtime {
            env,
            manifest,
            config,
        }))
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn config(&self) -> &RuntimeConfig {
        &self.config
    }

    /// Verifies the model file against the manifest and opens a pool of sessions for it.
    pub fn pool(self: &Arc<Self>, name: &str) -> Result<SessionPool, ModelError> {
        let spec = self.manifest.model(name)?.clone();
        let path = self.config.cache_dir.join(&spec.file);
        verify_file(&path, &spec.sha256)?;
        let runtime = Arc::clone(self);
        let model = name.to_owned();
        let open = move || runtime.open_session(&model, &path);
        SessionPool::new(name, spec, self.config.sessions_per_model, Box::new(open))
    }

    fn open_session(&self, name: &str, path: &Path) -> Result<Session, ModelError> {
        let err = |e: &dyn std::fmt::Display| ModelError::Session {
            name: name.to_owned(),
            detail: e.to_string(),
        };
        let threads = self.config.intra_threads.max(1);
        Session::builder(&self.env)
            .map_err(|e| err(&e))?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| err(&e))?
            .with_intra_threads(threads)
            .map_err(|e| err(&e))?
            .with_inter_threads(1)
            .map_err(|e| err(&e))?
            // A server thread waiting on a busy spin steals the core another request needs.
            .with_intra_op_spinning(false)
            .map_err(|e| err(&e))?
            .commit_from_file(path)
            .map_err(|e| err(&e))
    }
}

fn load_library(path: &Path) -> Result<ort::environment::Environment, ModelError> {
    let mut loaded = LOADED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((from, env)) = loaded.as_ref() {
        if from == path {
            return Ok(env.clone());
        }
        return Err(ModelError::LibraryConflict {
            loaded: from.clone(),
            requested: path.to_owned(),
        });
    }
    if !path.is_file() {
        return Err(ModelError::LibraryMissing {
            path: path.to_owned(),
            setup: SETUP_COMMAND,
        });
    }
    let load_err = |detail: String| ModelError::LibraryLoad {
        path: path.to_owned(),
        detail,
    };
    let env = ort::init_from(path)
        .map_err(|e| load_err(e.to_string()))?
        .with_name("abis")
        .build()
        .map_err(|e| load_err(e.to_string()))?;
    *loaded = Some((path.to_owned(), env.clone()));
    Ok(env)
}

/// Checks a model file against the manifest's sha256: a swapped or truncated file must not be
/// run silently.
fn verify_file(path: &Path, expected: &str) -> Result<(), ModelError> {
    let missing = || ModelError::ModelMissing {
        path: path.to_owned(),
        setup: SETUP_COMMAND,
    };
    let mut file = std::fs::File::open(path).map_err(|_| missing())?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(|_| missing())?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let actual: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if !actual.eq_ignore_ascii_case(expected) {
        return Err(ModelError::Checksum {
            path: path.to_owned(),
            expected: expected.to_owned(),
            actual,
            setup: SETUP_COMMAND,
        });
    }
    Ok(())
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Used by [`SessionPool`] to describe a model without reaching back into the runtime.
pub(super) type SessionFactory = Box<dyn Fn() -> Result<Session, ModelError> + Send + Sync>;
