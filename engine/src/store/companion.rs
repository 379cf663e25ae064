//! Companion files: data derived from a segment's records and kept beside it (the 1:N index),
//! with the segment's lifecycle. The store does not know what they hold; an upper layer
//! implements [`Companion`] and the store
//!
//! - builds them right after a new segment is written (flush, compaction, bulk load) and
//!   fsyncs them before the meta file names the segment, so a segment is never live without
//!   them (a crash before the meta leaves orphans, removed at the next open);
//! - opens and checks them with the segment; a missing or damaged one is reported, never used,
//!   and [`super::Store::rebuild_companions`] rebuilds it from the segment (temp file, fsync,
//!   rename, fsync directory) — or, when the companion can derive that one file from its other
//!   files ([`Companion::derived`]) and they are sound, rewrites only that file (an index file
//!   of an older format costs a pass over the others, not the segment's whole rebuild);
//! - removes them with their segment.
//!
//! Files are named `seg-<id>.<extension>`.

use std::sync::Arc;

use super::dir::{Directory, FileBytes, FileWriter};
use super::error::{Result, StoreError};
use super::record::Record;
use super::snapshot::SegmentView;

pub use super::snapshot::CompanionData;

pub use super::error::CompanionError;

/// Where the record at an ordinal of a new segment came from, so that derived data can be
/// copied instead of recomputed.
pub enum Origin<'a> {
    /// Ordinal `.1` of an existing segment (a merge).
    Segment(&'a SegmentView, usize),
    /// A record from memory (a flush or a bulk load).
    Memory(&'a Arc<Record>),
    /// Nothing to copy from: derive it from the segment's own record.
    Rebuild,
}

/// Derived files of a segment. See the module docs.
pub trait Companion: Send + Sync + std::fmt::Debug {
    /// Extensions of the files, in the order [`Companion::build`] writes them.
    fn extensions(&self) -> &'static [&'static str];

    /// Writes the files of `segment` (its records are in ordinal order; `origin(o)` says where
    /// record `o` came from) into `outs`, one writer per extension.
    fn build<'a>(
        &self,
        segment: &SegmentView,
        origin: &(dyn Fn(usize) -> Origin<'a> + Sync + 'a),
        outs: &mut [Box<dyn FileWriter>],
    ) -> std::result::Result<(), CompanionError>;

    /// Checks the files (mapped, in extension order) against `segment` and returns what the
    /// upper layer keeps open. `Err` says why they cannot be used.
    fn open(
        &self,
        segment: &SegmentView,
        files: Vec<FileBytes>,
    ) -> std::result::Result<CompanionData, CompanionError>;

    /// The index (in [`Companion::extensions`]) of the one file [`Companion::derive`] can
    /// write from the others, if any.
    fn derived(&self) -> Option<usize> {
        None
    }

    /// Writes the [`Companion::derived`] file of `segment` into `out` from the other files
    /// (mapped, in extension order, the derived one left out). `Err` when they are not sound:
    /// the store then rebuilds every file from the segment.
    fn derive(
        &self,
        segment: &SegmentView,
        others: Vec<FileBytes>,
        out: &mut dyn FileWriter,
    ) -> std::result::Result<(), CompanionError> {
        let _ = (segment, others, out);
        Err(CompanionError::new(StoreError::corrupt(
            companion_name(segment.id(), ""),
            "this companion derives no file",
        )))
    }
}

pub(crate) fn companion_name(segment_id: u64, extension: &str) -> String {
    format!("seg-{segment_id:010}.{extension}")
}

/// Suffix of a companion file being rebuilt.
pub(crate) const REBUILD_SUFFIX: &str = ".tmp";

/// Whether `name` is a companion file of some segment (or one being rebuilt).
pub(crate) fn is_companion_file(name: &str, companion: &dyn Companion) -> bool {
    let name = name.strip_suffix(REBUILD_SUFFIX).unwrap_or(name);
    name.starts_with("seg-")
        && companion
            .extensions()
            .iter()
            .any(|e| name.ends_with(&format!(".{e}")))
}

/// Builds and syncs the companion files of `segment` under their final names (a new segment,
/// before the meta names it), or under `suffix`ed temporary names (a rebuild).
pub(crate) fn build<'a>(
    dir: &dyn Directory,
    companion: &dyn Companion,
    segment: &SegmentView,
    origin: &(dyn Fn(usize) -> Origin<'a> + Sync + 'a),
    suffix: &str,
) -> Result<Vec<String>> {
    let names: Vec<String> = companion
        .extensions()
        .iter()
        .map(|e| format!("{}{suffix}", companion_name(segment.id(), e)))
        .collect();
    let mut outs = Vec::with_capacity(names.len());
    for n in &names {
        outs.push(
            dir.create(n)
                .map_err(|e| StoreError::io("create", n.clone(), e))?,
        );
    }
    companion
        .build(segment, origin, &mut outs)
        .map_err(|source| StoreError::Companion {
            file: names[0].clone(),
            what: "building",
            source,
        })?;
    for (out, n) in outs.iter_mut().zip(&names) {
        out.sync()
            .map_err(|e| StoreError::io("fsync", n.clone(), e))?;
    }
    Ok(names)
}

/// Rewrites only the [`Companion::derived`] file of `segment` from its other files (temp file,
/// fsync, rename, fsync directory) and opens the whole set again. `Ok(None)` when that is not
/// possible (no derived file, another file missing or unsound, or still unusable after): the
/// caller then rebuilds everything from the segment.
pub(crate) fn repair_derived(
    dir: &dyn Directory,
    companion: &dyn Companion,
    segment: &SegmentView,
) -> Result<Option<CompanionData>> {
    let Some(d) = companion.derived() else {
        return Ok(None);
    };
    let mut others = Vec::new();
    for (i, e) in companion.extensions().iter().enumerate() {
        if i != d {
            match dir.map(&companion_name(segment.id(), e)) {
                Ok(f) => others.push(f),
                Err(_) => return Ok(None),
            }
        }
    }
    let name = companion_name(segment.id(), companion.extensions()[d]);
    let temp = format!("{name}{REBUILD_SUFFIX}");
    let mut out = dir
        .create(&temp)
        .map_err(|e| StoreError::io("create", temp.clone(), e))?;
    if let Err(why) = companion.derive(segment, others, &mut *out) {
        drop(out);
        let _ = dir.remove(&temp);
        tracing::warn!(segment = segment.id(), reason = %why, "cannot derive the file alone");
        return Ok(None);
    }
    out.sync()
        .map_err(|e| StoreError::io("fsync", temp.clone(), e))?;
    drop(out);
    dir.rename(&temp, &name)
        .map_err(|e| StoreError::io("rename", name.clone(), e))?;
    dir.sync_dir()
        .map_err(|e| StoreError::io("fsync directory", ".", e))?;
    match open(dir, companion, segment) {
        Ok(data) => Ok(Some(data)),
        Err(why) => {
            tracing::warn!(segment = segment.id(), reason = %why, "still unusable after deriving");
            Ok(None)
        }
    }
}

/// Opens the companion files of `segment`; `Err` is the reason they cannot be used (missing,
/// damaged, another version).
pub(crate) fn open(
    dir: &dyn Directory,
    companion: &dyn Companion,
    segment: &SegmentView,
) -> std::result::Result<CompanionData, CompanionError> {
    let mut files = Vec::new();
    for e in companion.extensions() {
        let n = companion_name(segment.id(), e);
        files.push(
            dir.map(&n)
                .map_err(|err| CompanionError::new(StoreError::io("map", n, err)))?,
        );
    }
    companion.open(segment, files)
}
