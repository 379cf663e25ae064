//! Consistent copies of a live store, and moving a copy into place.
//!
//! [`super::Store::checkpoint_to`] first checkpoints (the memtable becomes a segment, so little
//! log is left to copy), then, holding the checkpoint lock (no file the meta names can be
//! replaced) and, briefly, the log lock (the log's length and the replicated position agree),
//! lists every file the store owns — meta, log generations still replayed, segments, deletion
//! bitmaps, and the companion (index) files of every segment that has them — and puts them in
//! a new directory through [`Directory::export`]: immutable files as hard links where the
//! filesystem allows, the log as a copy of exactly the listed prefix (it grows meanwhile).
//! Inserts and searches go on throughout. A segment whose companion files are being rebuilt
//! is copied without them; the copy rebuilds them when opened.
//!
//! [`install`] moves a complete copy into place as a store directory: the old directory is
//! renamed aside, the copy renamed in, the parent fsynced, the old one removed. A crash between
//! the two renames leaves no store directory and the old one aside: [`repair_install`] (run
//! before opening) puts the old one back and removes leftovers.

use std::path::{Path, PathBuf};

use super::companion::{self, Companion, REBUILD_SUFFIX};
use super::error::{Result, StoreError};
use super::meta::{META_FILE, META_TMP};
use super::segment::segment_name;
use super::wal::wal_name;
use super::{bitmap, is_store_file, lock, Inner};

/// A consistent copy of a store, as [`super::Store::checkpoint_to`] made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreCopy {
    /// Every file of the copy with its length, in name order.
    pub files: Vec<CopiedFile>,
    /// The replicated-log position the copy holds (0: none).
    pub position: u64,
}

/// One file of a [`StoreCopy`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopiedFile {
    pub name: String,
    /// Its length as stored (sealed files: sealed length).
    pub size: u64,
}

/// Whether `name` is a file a store with `companion` puts in a copy: meta, log generation,
/// segment, deletion bitmap, or a companion file — one path component of letters, digits, `-`
/// and `.`, never the lock or a temporary file. What a receiver of a copy accepts.
pub fn is_copy_file(name: &str, companion: Option<&dyn Companion>) -> bool {
    let safe = !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let companion_file = companion
        .is_some_and(|c| companion::is_companion_file(name, c) && !name.ends_with(REBUILD_SUFFIX));
    safe && name != META_TMP && (is_store_file(name) || companion_file)
}

/// Where a copy is assembled before [`install`] moves it in as `dir`.
pub fn incoming_path(dir: &Path) -> PathBuf {
    dir.with_extension("incoming")
}

/// Where [`install`] puts the directory it replaces until the copy is in place.
fn replaced_path(dir: &Path) -> PathBuf {
    dir.with_extension("replaced")
}

fn io_err(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
    StoreError::io(op, path.display().to_string(), source)
}

fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("fsync directory", dir, e))
}

/// Moves the complete copy at `incoming` into place as the store directory `dir` (see the
/// module docs). `incoming` must be durable (its files and itself fsynced).
pub fn install(incoming: &Path, dir: &Path) -> Result<()> {
    let old = replaced_path(dir);
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| io_err("rename", dir, e))?;
    }
    std::fs::rename(incoming, dir).map_err(|e| io_err("rename", incoming, e))?;
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        sync_dir(parent)?;
    }
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| io_err("remove", &old, e))?;
    }
    Ok(())
}

/// Repairs what a crash during [`install`] left: the old store back in place when the copy was
/// not moved in yet, and no half-assembled copy or replaced directory left over.
pub fn repair_install(dir: &Path) -> Result<()> {
    let old = replaced_path(dir);
    if !dir.exists() && old.exists() {
        std::fs::rename(&old, dir).map_err(|e| io_err("rename", &old, e))?;
    }
    for leftover in [incoming_path(dir), old] {
        if leftover.exists() {
            std::fs::remove_dir_all(&leftover).map_err(|e| io_err("remove", &leftover, e))?;
        }
    }
    Ok(())
}

impl Inner {
    /// Puts every file of the store into the new directory `dest` (see the module docs; the
    /// caller has checkpointed).
    pub(super) fn copy_to(&self, dest: &Path) -> Result<StoreCopy> {
        std::fs::create_dir(dest).map_err(|e| io_err("create directory", dest, e))?;
        let meta = lock(&self.maint);
        let (logs, position) = {
            let wal = lock(&self.wal);
            let position = self.read_visible().replicated;
            let logs = (meta.wal_gen..=wal.gen)
                .map(|g| self.stored(wal_name(g)))
                .collect::<Result<Vec<_>>>()?;
            (logs, position)
        };
        let mut fixed = vec![self.stored(META_FILE.to_owned())?];
        let indexed: Vec<u64> = self
            .read_visible()
            .segments
            .iter()
            .filter(|s| s.companion.is_some())
            .map(|s| s.seg.id)
            .collect();
        for sm in &meta.segments {
            fixed.push(self.stored(segment_name(sm.id))?);
            if let Some(g) = sm.deletions_gen {
                fixed.push(self.stored(bitmap::bitmap_name(sm.id, g))?);
            }
            if indexed.contains(&sm.id) {
                for e in self.cfg.companion.iter().flat_map(|c| c.extensions()) {
                    fixed.push(self.stored(companion::companion_name(sm.id, e))?);
                }
            }
        }
        for (f, link) in fixed
            .iter()
            .map(|f| (f, true))
            .chain(logs.iter().map(|f| (f, false)))
        {
            let to = dest.join(&f.name);
            self.dir
                .export(&f.name, &to, f.size, link)
                .map_err(|e| StoreError::io("export", f.name.clone(), e))?;
        }
        drop(meta);
        sync_dir(dest)?;
        let mut files: Vec<CopiedFile> = fixed.into_iter().chain(logs).collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(StoreCopy { files, position })
    }

    fn stored(&self, name: String) -> Result<CopiedFile> {
        let size = self
            .dir
            .stored_len(&name)
            .map_err(|e| StoreError::io("stat", name.clone(), e))?;
        Ok(CopiedFile { name, size })
    }
}
