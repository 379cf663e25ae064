//! Backups of a gallery store: a consistent copy ([`super::Store::checkpoint_to`]) plus a
//! manifest naming every file with its length and SHA-256, written last, so that a backup
//! whose manifest is missing is incomplete (a backup killed midway) and a file whose bytes
//! changed since is found and named before anything is restored.
//!
//! `backup.manifest` (JSON): `{"format": 1, "position": P, "files": [{"name", "size",
//! "sha256"}]}`. Restoring checks the backup first, copies its files into the store
//! directory's incoming place, fsyncs them and moves them in with [`super::install`]; the
//! store then opens like any restarted one (and a cluster replica replays its shard's log from
//! `position`).

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::copy::{incoming_path, install, is_copy_file, StoreCopy};
use super::dir::write_new;
use super::Companion;

/// File name of a backup's manifest.
pub const MANIFEST: &str = "backup.manifest";
const FORMAT: u32 = 1;

/// Why a backup could not be written, checked or restored.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("backup {dir} is incomplete: it has no {MANIFEST} (was it interrupted?)")]
    Incomplete { dir: PathBuf },
    #[error("backup manifest {path} is unreadable: {detail}")]
    Manifest { path: PathBuf, detail: String },
    #[error("backup file {file} is missing")]
    Missing { file: String },
    #[error("backup file {file} is damaged: {detail}")]
    Damaged { file: String, detail: String },
    #[error("backup holds {file}, which its manifest does not name")]
    Unlisted { file: String },
    #[error("restoring into {dir}: it already holds a store; restore into a new data directory")]
    Occupied { dir: PathBuf },
    #[error(transparent)]
    Store(#[from] super::StoreError),
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BackupFile {
    pub name: String,
    pub size: u64,
    /// Hex SHA-256 of the file's bytes as stored (sealed files: sealed bytes).
    pub sha256: String,
}

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The replicated-log position of the copy (0 for a single node).
    pub position: u64,
    pub files: Vec<BackupFile>,
}

impl Manifest {
    /// Bytes of every file.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }
}

fn io<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(std::io::Error) -> BackupError + 'p {
    move |source| BackupError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// SHA-256 (hex) and length of a file.
fn digest(path: &Path) -> Result<(String, u64), BackupError> {
    let mut f = std::fs::File::open(path).map_err(io("reading", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(io("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        len += n as u64;
    }
    let hex = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((hex, len))
}

/// Writes the manifest of a copy just made in `dir` (hashing every file), last and durably.
pub fn write_manifest(dir: &Path, copy: &StoreCopy) -> Result<Manifest, BackupError> {
    let mut files = Vec::with_capacity(copy.files.len());
    for f in &copy.files {
        let (sha256, size) = digest(&dir.join(&f.name))?;
        if size != f.size {
            return Err(BackupError::Damaged {
                file: f.name.clone(),
                detail: format!("{size} bytes copied, {} expected", f.size),
            });
        }
        files.push(BackupFile {
            name: f.name.clone(),
            size,
            sha256,
        });
    }
    let manifest = Manifest {
        format: FORMAT,
        position: copy.position,
        files,
    };
    let text = serde_json::to_vec_pretty(&manifest).map_err(|e| BackupError::Manifest {
        path: dir.join(MANIFEST),
        detail: e.to_string(),
    })?;
    let tmp = dir.join(format!("{MANIFEST}.tmp"));
    write_new(&tmp, &text[..], text.len() as u64).map_err(io("writing", &tmp))?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(io("renaming", &tmp))?;
    sync_dir(dir)?;
    Ok(manifest)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("syncing directory", dir))
}

/// Checks a backup: its manifest, every file's length and SHA-256, and that it holds no store
/// file the manifest does not name. The first problem is named.
pub fn verify(dir: &Path, companion: Option<&dyn Companion>) -> Result<Manifest, BackupError> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(BackupError::Incomplete {
                dir: dir.to_path_buf(),
            })
        }
        Err(e) => return Err(io("reading", &path)(e)),
    };
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BackupError::Manifest {
        path: path.clone(),
        detail: e.to_string(),
    })?;
    if manifest.format != FORMAT
        || manifest
            .files
            .iter()
            .any(|f| !is_copy_file(&f.name, companion))
    {
        return Err(BackupError::Manifest {
            path,
            detail: "unknown format or a name that is not a store file".into(),
        });
    }
    for f in &manifest.files {
        check_file(dir, f)?;
    }
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
        let name = entry
            .map_err(io("listing", dir))?
            .file_name()
            .to_string_lossy()
            .into_owned();
        if name != MANIFEST && !manifest.files.iter().any(|f| f.name == name) {
            return Err(BackupError::Unlisted { file: name });
        }
    }
    Ok(manifest)
}

fn check_file(dir: &Path, f: &BackupFile) -> Result<(), BackupError> {
    let path = dir.join(&f.name);
    if !path.is_file() {
        return Err(BackupError::Missing {
            file: f.name.clone(),
        });
    }
    let (sha256, size) = digest(&path)?;
    let detail = if size != f.size {
        format!("{size} bytes, the manifest says {}", f.size)
    } else if sha256 != f.sha256 {
        "its SHA-256 differs from the manifest's".to_string()
    } else {
        return Ok(());
    };
    Err(BackupError::Damaged {
        file: f.name.clone(),
        detail,
    })
}

/// Checks the backup in `from`, then makes it the store directory `to`, which must not hold a
/// store yet (see the module docs). Returns the manifest restored.
pub fn restore(
    from: &Path,
    to: &Path,
    companion: Option<&dyn Companion>,
) -> Result<Manifest, BackupError> {
    let manifest = verify(from, companion)?;
    if to.join(super::meta::META_FILE).exists() {
        return Err(BackupError::Occupied {
            dir: to.to_path_buf(),
        });
    }
    let incoming = incoming_path(to);
    if incoming.exists() {
        std::fs::remove_dir_all(&incoming).map_err(io("removing", &incoming))?;
    }
    std::fs::create_dir_all(&incoming).map_err(io("creating", &incoming))?;
    for f in &manifest.files {
        let src = from.join(&f.name);
        let file = std::fs::File::open(&src).map_err(io("reading", &src))?;
        let dest = incoming.join(&f.name);
        write_new(&dest, file, f.size).map_err(io("writing", &dest))?;
    }
    sync_dir(&incoming)?;
    // The copy's hashes are checked again: what was written is what was verified.
    for f in &manifest.files {
        check_file(&incoming, f)?;
    }
    install(&incoming, to)?;
    Ok(manifest)
}
