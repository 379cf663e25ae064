//! Backups of a gallery store: a consistent copy ([`super::Store::checkpoint_to`]) plus a
//! manifest naming every file with its length and SHA-256, written last, so that a backup
//! whose manifest is missing is incomplete (a backup killed midway) and a file whose bytes
//! changed since is found and named before anything is restored.
//!
//! `backup.manifest` (JSON): `{"format": 1, "position": P, "files": [{"name", "size",
//! "sha256"}], "trees": [...]}`. Restoring checks the backup first, copies its files into the
//! store directory's incoming place, fsyncs them and moves them in with [`super::install`]; the
//! store then opens like any restarted one (and a cluster replica replays its shard's log from
//! `position`).
//!
//! **Trees**: directories an upper layer keeps beside the store (the server's adjudication
//! cases and kept images, [`Tree`]) travel in the backup as subdirectories of the same name,
//! listed in `trees` as `<tree>/<file>` with their lengths and hashes. They are copied after the
//! store's checkpoint copy, in passes until a pass finds no file it has not copied (a file
//! renamed during a pass, such as an image settling from pending to kept, is taken under its
//! new name); files ending in `.tmp` are writes in progress and stay behind. Restoring puts
//! each tree beside the restored store, into a directory that must be new or empty.

use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::copy::{incoming_path, install, is_copy_file, StoreCopy};
use super::dir::write_new;
use super::encryption::hex;
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
    #[error("the backup holds directories beside the store ({tree}…) but no place to restore them was given")]
    NoPlaceForTrees { tree: String },
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
    /// Files of the directories kept beside the store, named `<tree>/<file>`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trees: Vec<BackupFile>,
}

impl Manifest {
    /// Bytes of every file.
    pub fn bytes(&self) -> u64 {
        self.files.iter().chain(&self.trees).map(|f| f.size).sum()
    }

    /// The trees the backup holds, each once, in name order.
    pub fn tree_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .trees
            .iter()
            .filter_map(|f| f.name.split_once('/').map(|(t, _)| t))
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }
}

/// A directory kept beside the store whose files a backup carries too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tree {
    /// Its name in the backup and beside the restored store: one plain path component.
    pub name: String,
    /// Where it lives now (a tree whose directory does not exist is left out).
    pub dir: PathBuf,
}

/// Whether `name` is one plain path component (no separator, not `.` or `..`, not empty).
fn plain_component(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains(['/', '\\', '\0'])
}

/// `<tree>/<file>`, both plain components.
fn tree_file_name(name: &str) -> Option<(&str, &str)> {
    name.split_once('/')
        .filter(|(t, f)| plain_component(t) && plain_component(f))
}

/// The plain files of `dir` worth carrying (not writes in progress), in name order.
fn tree_listing(dir: &Path) -> Result<Vec<String>, BackupError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        if !entry.file_type().map_err(io("listing", dir))?.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            if plain_component(name) && !name.ends_with(".tmp") {
                names.push(name.to_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Copies the trees into `dest` (see the module docs); returns their files for the manifest.
pub fn copy_trees(dest: &Path, trees: &[Tree]) -> Result<Vec<BackupFile>, BackupError> {
    let mut out = Vec::new();
    for tree in trees {
        if !plain_component(&tree.name) {
            return Err(BackupError::Manifest {
                path: dest.join(MANIFEST),
                detail: format!("{:?} is not a plain directory name", tree.name),
            });
        }
        if !tree.dir.is_dir() {
            continue;
        }
        let target = dest.join(&tree.name);
        std::fs::create_dir(&target).map_err(io("creating", &target))?;
        let mut copied = std::collections::BTreeSet::new();
        // Until a pass finds nothing new (at most a few: files only move while records are
        // inserted or deleted during the copy).
        for _ in 0..8 {
            let mut found = false;
            for name in tree_listing(&tree.dir)? {
                if copied.contains(&name) {
                    continue;
                }
                let src = tree.dir.join(&name);
                let bytes = match std::fs::read(&src) {
                    Ok(b) => b,
                    // Renamed or removed since the listing: the next pass sees its new name.
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io("reading", &src)(e)),
                };
                let path = target.join(&name);
                write_new(&path, &bytes[..], bytes.len() as u64).map_err(io("writing", &path))?;
                out.push(BackupFile {
                    name: format!("{}/{name}", tree.name),
                    size: bytes.len() as u64,
                    sha256: hex(&Sha256::digest(&bytes)),
                });
                copied.insert(name);
                found = true;
            }
            if !found {
                break;
            }
        }
        sync_dir(&target)?;
    }
    Ok(out)
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
    Ok((hex(&h.finalize()), len))
}

/// Writes the manifest of a copy just made in `dir` (hashing every file) and of the trees
/// copied beside it, last and durably.
pub fn write_manifest(
    dir: &Path,
    copy: &StoreCopy,
    trees: Vec<BackupFile>,
) -> Result<Manifest, BackupError> {
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
        trees,
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
        || manifest
            .trees
            .iter()
            .any(|f| tree_file_name(&f.name).is_none())
    {
        return Err(BackupError::Manifest {
            path,
            detail: "unknown format or a name that is not a store file".into(),
        });
    }
    for f in manifest.files.iter().chain(&manifest.trees) {
        check_file(dir, f)?;
    }
    let trees = manifest.tree_names();
    for entry in std::fs::read_dir(dir).map_err(io("listing", dir))? {
        let entry = entry.map_err(io("listing", dir))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if trees.contains(&name.as_str()) && entry.path().is_dir() {
            let sub = entry.path();
            for e in std::fs::read_dir(&sub).map_err(io("listing", &sub))? {
                let file = format!(
                    "{name}/{}",
                    e.map_err(io("listing", &sub))?
                        .file_name()
                        .to_string_lossy()
                );
                if !manifest.trees.iter().any(|f| f.name == file) {
                    return Err(BackupError::Unlisted { file });
                }
            }
        } else if name != MANIFEST && !manifest.files.iter().any(|f| f.name == name) {
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
/// store yet, and puts its trees into `trees_to` (see the module docs). Returns the manifest
/// restored.
pub fn restore(
    from: &Path,
    to: &Path,
    trees_to: Option<&Path>,
    companion: Option<&dyn Companion>,
) -> Result<Manifest, BackupError> {
    let manifest = verify(from, companion)?;
    if to.join(super::meta::META_FILE).exists() {
        return Err(BackupError::Occupied {
            dir: to.to_path_buf(),
        });
    }
    restore_trees(from, &manifest, trees_to)?;
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

/// Puts the backup's trees into `trees_to/<tree>`, each a new or empty directory: written into
/// an incoming directory, checked like the store's files, then each renamed into place.
fn restore_trees(
    from: &Path,
    manifest: &Manifest,
    trees_to: Option<&Path>,
) -> Result<(), BackupError> {
    let names = manifest.tree_names();
    let Some(first) = names.first() else {
        return Ok(());
    };
    let Some(root) = trees_to else {
        return Err(BackupError::NoPlaceForTrees {
            tree: (*first).to_owned(),
        });
    };
    for tree in &names {
        let target = root.join(tree);
        let occupied = std::fs::read_dir(&target).is_ok_and(|mut d| d.next().is_some());
        if occupied {
            return Err(BackupError::Occupied { dir: target });
        }
    }
    let incoming = root.join(".trees.incoming");
    if incoming.exists() {
        std::fs::remove_dir_all(&incoming).map_err(io("removing", &incoming))?;
    }
    for tree in &names {
        let dir = incoming.join(tree);
        std::fs::create_dir_all(&dir).map_err(io("creating", &dir))?;
    }
    for f in &manifest.trees {
        let (src, dest) = (from.join(&f.name), incoming.join(&f.name));
        let reader = std::fs::File::open(&src).map_err(io("reading", &src))?;
        write_new(&dest, reader, f.size).map_err(io("writing", &dest))?;
    }
    // What was written is what was verified.
    for f in &manifest.trees {
        check_file(&incoming, f)?;
    }
    for tree in names {
        let (from_dir, target) = (incoming.join(tree), root.join(tree));
        sync_dir(&from_dir)?;
        if target.exists() {
            // Empty (checked above): the rename replaces it.
            std::fs::remove_dir(&target).map_err(io("removing", &target))?;
        }
        std::fs::rename(&from_dir, &target).map_err(io("renaming", &from_dir))?;
    }
    std::fs::remove_dir(&incoming).map_err(io("removing", &incoming))?;
    sync_dir(root)
}
