//! Checkpoints: the memtable becomes an immutable segment (merged, when the merge policy or an
//! explicit compaction says so, with some or all segments, without their deleted records),
//! changed deletion bitmaps are written, and a new meta file names the result. Step 4 of the durability argument in
//! [`super`]: nothing acknowledged is ever only in a file the meta does not name.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::bitmap::{bitmap_name, DeletionBitmap};
use super::companion::{self, CompanionData, Origin};
use super::dir::Directory;
use super::error::{Result, StoreError};
use super::merge::Merge;
use super::meta::{Meta, SegmentMeta, META_FILE};
use super::record::Record;
use super::segment::{build_segment, segment_name, Built, Item, MergeSource, Segment};
use super::snapshot::SegmentView;
use super::wal::{self, wal_name};
use super::{
    create_wal, lock, write_meta, CheckpointReport, Frozen, Inner, MemRec, Rebuilt, SegSlot,
};

/// A checkpoint error, and whether it leaves the store's files in a state only a reopen can
/// resolve (then the store fails).
struct CkptErr {
    err: StoreError,
    fatal: bool,
}

fn soft(err: StoreError) -> CkptErr {
    CkptErr { err, fatal: false }
}

fn hard(err: StoreError) -> CkptErr {
    CkptErr { err, fatal: true }
}

/// A segment as the checkpoint found it: its deletions at that moment, and whether they changed
/// since they were last written.
struct Captured {
    seg: Arc<Segment>,
    deleted: Arc<DeletionBitmap>,
    companion: Option<CompanionData>,
    version: u64,
    dirty: bool,
}

impl Captured {
    fn view(&self) -> SegmentView {
        SegmentView {
            seg: Arc::clone(&self.seg),
            deleted: Arc::clone(&self.deleted),
            companion: self.companion.clone(),
        }
    }
}

/// A segment just written, opened, with its companion files built and synced.
struct NewSegment {
    id: u64,
    built: Built,
    seg: Arc<Segment>,
    companion: Option<CompanionData>,
}

/// What phase 1 of a checkpoint took: the frozen memtable, the captured segments (and which of
/// them merge into the new one), the new log generation and the first sequence number it will
/// hold.
struct Frozen1 {
    records: Arc<Vec<Arc<Record>>>,
    /// The replicated position the frozen state includes.
    replicated: u64,
    captured: Vec<Captured>,
    /// Per captured segment: merged into the new segment (and removed).
    merged: Vec<bool>,
    new_gen: u64,
    next_seq: u64,
}

/// Deletion bitmaps written by a checkpoint (`(captured index, generation)`) and the files the
/// new meta no longer names.
#[derive(Default)]
struct Bitmaps {
    written: Vec<(usize, Option<u64>)>,
    removable: Vec<String>,
}

impl Inner {
    /// Writes the memtable (and changed bitmaps) into a new segment, merged with the segments
    /// `merge` says, without their deleted records.
    pub(super) fn checkpoint(&self, merge: Merge) -> Result<CheckpointReport> {
        let t0 = Instant::now();
        let mut meta = lock(&self.maint);
        self.check_failed(&lock(&self.commit))?;
        let Some(frozen) = self.freeze(merge)? else {
            let v = self.read_visible();
            return Ok(CheckpointReport {
                segments_before: v.segments.len(),
                segments_after: v.segments.len(),
                elapsed: t0.elapsed(),
                ..CheckpointReport::default()
            });
        };
        let merged = frozen.merged.iter().filter(|&&m| m).count();
        let meta: &mut Meta = &mut meta;
        let built = self
            .checkpoint_pool
            .run(|| self.build_and_install(meta, &frozen));
        match built {
            Ok(mut r) => {
                r.elapsed = t0.elapsed();
                self.checkpoints.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    merged,
                    segment_records = r.segment_records,
                    segments = r.segments_after,
                    bitmaps = r.bitmaps_written,
                    elapsed_ms = r.elapsed.as_millis() as u64,
                    "gallery store checkpoint"
                );
                Ok(r)
            }
            Err(CkptErr { err, fatal }) => {
                if fatal {
                    self.fail(err.to_string());
                } else {
                    self.thaw();
                }
                Err(err)
            }
        }
    }

    /// Phase 1: rotate the log, freeze the memtable, capture the segments' bitmaps — all while
    /// holding the log lock, so every synced batch is in exactly one of the frozen state and the
    /// new generation. `None` when there is nothing to write.
    fn freeze(&self, merge: Merge) -> Result<Option<Frozen1>> {
        let mut wal = lock(&self.wal);
        let picked = {
            let v = self.read_visible();
            let picked = match merge {
                Merge::Nothing => Vec::new(),
                Merge::Everything => (0..v.segments.len()).collect(),
                Merge::ByPolicy => self.merge_pick(&v),
            };
            let dirty = v.segments.iter().any(|s| s.version != s.persisted_version);
            // Merging one segment without deletions into itself would only rewrite it.
            let worth_merging = picked.len() > 1
                || picked
                    .iter()
                    .any(|&k| v.segments.get(k).is_some_and(|s| s.deleted.deleted() > 0));
            if v.active.is_empty() && !dirty && !worth_merging {
                return Ok(None);
            }
            self.with_headroom(&v, picked)
        };
        let new_gen = wal.gen + 1;
        let file = match create_wal(&*self.dir, new_gen) {
            Ok(f) => f,
            Err(e) => {
                // A failed fsync of the new log or the directory: fatal (never retried).
                if matches!(&e, StoreError::Io { op, .. } if op.starts_with("fsync")) {
                    self.fail(e.to_string());
                }
                return Err(e);
            }
        };
        wal.file = file;
        wal.gen = new_gen;
        wal.len = wal::WAL_HEADER_LEN as u64;
        let next_seq = wal.last_seq + 1;
        let mut v = self.write_visible();
        let mut recs: Vec<Arc<Record>> = v.active.drain().map(|(_, m)| m.rec).collect();
        v.active_bytes = 0;
        recs.sort_unstable_by(|a, b| a.reference_id.cmp(&b.reference_id));
        let records = Arc::new(recs);
        v.frozen = Some(Frozen {
            records: Arc::clone(&records),
            tombstones: HashSet::new(),
        });
        let captured: Vec<Captured> = v
            .segments
            .iter()
            .map(|s| Captured {
                seg: Arc::clone(&s.seg),
                deleted: Arc::clone(&s.deleted),
                companion: s.companion.clone(),
                version: s.version,
                dirty: s.version != s.persisted_version,
            })
            .collect();
        let merged = (0..captured.len()).map(|k| picked.contains(&k)).collect();
        Ok(Some(Frozen1 {
            replicated: v.replicated,
            records,
            captured,
            merged,
            new_gen,
            next_seq,
        }))
    }

    /// `picked` when the filesystem has room for the merged segment and its companion files
    /// beside the ones it replaces (at most their size, plus the memtable's); else no merge
    /// now (the flush goes on), with a warning.
    fn with_headroom(&self, v: &super::Visible, picked: Vec<usize>) -> Vec<usize> {
        // A flush merges nothing: no statvfs and no stat calls for it.
        if picked.is_empty() {
            return picked;
        }
        let Ok(Some(free)) = self.dir.available_bytes() else {
            return picked;
        };
        let stored = |name: String| self.dir.stored_len(&name).unwrap_or(0);
        let extensions = self
            .cfg
            .companion
            .as_ref()
            .map_or(&[][..], |c| c.extensions());
        let needed: u64 = picked
            .iter()
            .filter_map(|&k| v.segments.get(k))
            .map(|s| {
                let id = s.seg.id;
                stored(segment_name(id))
                    + extensions
                        .iter()
                        .map(|e| stored(companion::companion_name(id, e)))
                        .sum::<u64>()
            })
            .sum::<u64>()
            + v.active_bytes as u64;
        if needed <= free {
            return picked;
        }
        tracing::warn!(
            needed_bytes = needed,
            free_bytes = free,
            "not enough disk space for a merge now; segments stay as they are"
        );
        Vec::new()
    }

    /// After a failure that left nothing on disk referring to the new files: the frozen records
    /// go back into the memtable.
    fn thaw(&self) {
        let mut v = self.write_visible();
        if let Some(f) = v.frozen.take() {
            for r in f.records.iter() {
                if !f.tombstones.contains(&r.reference_id) {
                    let bytes = r.encode().map(|b| b.len()).unwrap_or(0);
                    v.active_bytes += bytes;
                    v.active.insert(
                        r.reference_id.clone(),
                        MemRec {
                            rec: Arc::clone(r),
                            bytes,
                        },
                    );
                }
            }
        }
        v.version += 1;
    }

    /// Phase 2: write the new segment and bitmaps, commit them with a new meta file, install
    /// them in the visible state, and remove what they replace.
    fn build_and_install(
        &self,
        meta: &mut Meta,
        frozen: &Frozen1,
    ) -> Result<CheckpointReport, CkptErr> {
        let dir = &*self.dir;
        let dim = self.cfg.face_dim;
        let mut next = meta.clone();
        let segs: Vec<Arc<Segment>> = frozen.captured.iter().map(|c| Arc::clone(&c.seg)).collect();
        let items = merge_items(&frozen.captured, &frozen.merged, &frozen.records)?;
        let writer = self.writer_for(frozen);
        let new_seg = write_segment(&*writer, &mut next, dim, &items, &segs)?;
        let new_seg = match new_seg {
            Some((id, built)) => {
                Some(self.open_new(&*writer, (id, built), &items, &frozen.captured)?)
            }
            None => None,
        };
        let mut bitmaps = write_bitmaps(dir, meta, &mut next, &frozen.captured, &frozen.merged)?;
        if let Some(n) = &new_seg {
            next.segments.push(SegmentMeta {
                id: n.id,
                records: n.built.records as u64,
                file_len: n.built.file_len as u64,
                deletions_gen: None,
                deleted: 0,
            });
        }
        for (c, _) in frozen
            .captured
            .iter()
            .zip(&frozen.merged)
            .filter(|(_, &m)| m)
        {
            for e in self.cfg.companion.iter().flat_map(|c| c.extensions()) {
                bitmaps
                    .removable
                    .push(companion::companion_name(c.seg.id, e));
            }
        }
        dir.sync_dir()
            .map_err(|e| hard(StoreError::io("fsync directory", ".", e)))?;
        for g in meta.wal_gen..frozen.new_gen {
            bitmaps.removable.push(wal_name(g));
        }
        next.wal_gen = frozen.new_gen;
        next.next_seq = frozen.next_seq;
        next.replicated_position = frozen.replicated;
        // From the rename on, the files on disk say the new state: any failure is fatal.
        write_meta(dir, &next).map_err(hard)?;
        let segment_records = new_seg.as_ref().map_or(0, |n| n.built.records);
        let report = self.install(new_seg, &items, frozen, &bitmaps);
        let report = CheckpointReport {
            segment_records,
            ..report
        };
        *meta = next;
        remove_garbage(dir, &bitmaps.removable);
        Ok(report)
    }

    /// Where a checkpoint writes its new files: the store's directory, throttled to
    /// `merge_write_bytes_per_s` when the checkpoint merges segments.
    fn writer_for(&self, frozen: &Frozen1) -> Arc<dyn Directory> {
        match self.cfg.merge_write_bytes_per_s {
            Some(rate) if frozen.merged.contains(&true) => Arc::new(
                super::throttle::ThrottledDirectory::new(Arc::clone(&self.dir), rate),
            ),
            _ => Arc::clone(&self.dir),
        }
    }

    /// Opens the segment just written and builds its companion files (through `writer`) from
    /// the records' origins (copying what the merged segments' companions hold). Any failure
    /// removes both: nothing refers to them yet.
    fn open_new(
        &self,
        writer: &dyn Directory,
        (id, built): (u64, Built),
        items: &[Item],
        captured: &[Captured],
    ) -> Result<NewSegment, CkptErr> {
        let dir = &*self.dir;
        let cleanup = |names: &[String]| {
            let _ = dir.remove(&segment_name(id));
            for n in names {
                let _ = dir.remove(n);
            }
        };
        let seg = match Segment::open(dir, id, self.cfg.face_dim) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                cleanup(&[]);
                return Err(soft(e));
            }
        };
        let Some(c) = self.cfg.companion.as_deref() else {
            return Ok(NewSegment {
                id,
                built,
                seg,
                companion: None,
            });
        };
        let view = SegmentView {
            seg: Arc::clone(&seg),
            deleted: Arc::new(DeletionBitmap::new(seg.len())),
            companion: None,
        };
        let views: Vec<SegmentView> = captured.iter().map(Captured::view).collect();
        let origin = |o: usize| match items.get(o) {
            Some(Item::Mem(r)) => Origin::Memory(r),
            Some(Item::Seg(k, ord)) => Origin::Segment(&views[*k], *ord),
            None => Origin::Rebuild,
        };
        let names: Vec<String> = c
            .extensions()
            .iter()
            .map(|e| companion::companion_name(id, e))
            .collect();
        let opened = companion::build(writer, c, &view, &origin, "").and_then(|_| {
            companion::open(dir, c, &view).map_err(|source| StoreError::Companion {
                file: names[0].clone(),
                what: "opening what was just written",
                source,
            })
        });
        match opened {
            Ok(data) => Ok(NewSegment {
                id,
                built,
                seg,
                companion: Some(data),
            }),
            Err(e) => {
                cleanup(&names);
                Err(if matches!(&e, StoreError::Io { op: "fsync", .. }) {
                    hard(e)
                } else {
                    soft(e)
                })
            }
        }
    }

    /// Builds the companion files of every segment lacking them, each under a temporary name,
    /// then renamed into place and installed for new snapshots.
    pub(super) fn rebuild_companions(&self) -> Result<Rebuilt> {
        let Some(c) = self.cfg.companion.as_deref() else {
            return Ok(Rebuilt::default());
        };
        let _meta = lock(&self.maint);
        let missing: Vec<SegmentView> = self
            .read_visible()
            .segments
            .iter()
            .filter(|s| s.companion.is_none())
            .map(|s| SegmentView {
                seg: Arc::clone(&s.seg),
                deleted: Arc::clone(&s.deleted),
                companion: None,
            })
            .collect();
        let dir = &*self.dir;
        let mut rebuilt = Rebuilt::default();
        for view in &missing {
            let started = Instant::now();
            if let Some(data) = companion::repair_derived(dir, c, view)? {
                self.make_companion_visible(view.id(), data);
                rebuilt.derived += 1;
                tracing::info!(
                    segment = view.id(),
                    ms = started.elapsed().as_millis() as u64,
                    "companion file derived from the others"
                );
                continue;
            }
            tracing::info!(
                segment = view.id(),
                records = view.len(),
                "rebuilding companion files"
            );
            let temps = companion::build(
                dir,
                c,
                view,
                &|_| Origin::Rebuild,
                companion::REBUILD_SUFFIX,
            )?;
            for t in &temps {
                let name = t.strip_suffix(companion::REBUILD_SUFFIX).unwrap_or(t);
                dir.rename(t, name)
                    .map_err(|e| StoreError::io("rename", name.to_owned(), e))?;
            }
            dir.sync_dir()
                .map_err(|e| StoreError::io("fsync directory", ".", e))?;
            let data = companion::open(dir, c, view).map_err(|source| StoreError::Companion {
                file: segment_name(view.id()),
                what: "opening what was just rebuilt",
                source,
            })?;
            self.make_companion_visible(view.id(), data);
            rebuilt.whole += 1;
            tracing::info!(
                segment = view.id(),
                ms = started.elapsed().as_millis() as u64,
                "companion files rebuilt"
            );
        }
        Ok(rebuilt)
    }

    fn make_companion_visible(&self, segment: u64, data: CompanionData) {
        let mut v = self.write_visible();
        if let Some(slot) = v.segments.iter_mut().find(|s| s.seg.id == segment) {
            slot.companion = Some(data);
        }
        v.version += 1;
    }

    /// Makes the new segment and bitmaps what reads see: the new segment's deletions are the
    /// merged records deleted while the checkpoint ran.
    fn install(
        &self,
        opened: Option<NewSegment>,
        items: &[Item],
        frozen: &Frozen1,
        bitmaps: &Bitmaps,
    ) -> CheckpointReport {
        let mut v = self.write_visible();
        let before = v.segments.len();
        let tombstones = v.frozen.take().map(|f| f.tombstones).unwrap_or_default();
        let new_slot = opened.map(|NewSegment { seg, companion, .. }| {
            let mut bits = DeletionBitmap::new(seg.len());
            for (o, item) in items.iter().enumerate() {
                let gone = match item {
                    Item::Mem(r) => tombstones.contains(&r.reference_id),
                    Item::Seg(k, ord) => v
                        .segments
                        .get(*k)
                        .is_some_and(|s| s.deleted.is_deleted(*ord)),
                };
                if gone {
                    bits.set(o);
                }
            }
            let n = bits.deleted() as u64;
            SegSlot {
                seg,
                deleted: Arc::new(bits),
                companion,
                version: n,
                persisted_version: 0,
                persisted_gen: None,
            }
        });
        for (k, gen) in &bitmaps.written {
            if let Some(s) = v.segments.get_mut(*k) {
                s.persisted_version = frozen.captured[*k].version;
                s.persisted_gen = *gen;
            }
        }
        // Segments only change under the checkpoint lock: slot k is still captured segment k.
        let mut k = 0;
        v.segments.retain(|_| {
            k += 1;
            !frozen.merged.get(k - 1).copied().unwrap_or(false)
        });
        if let Some(s) = new_slot {
            v.segments.push(s);
        }
        v.version += 1;
        CheckpointReport {
            segment_records: 0,
            segments_before: before,
            segments_after: v.segments.len(),
            bitmaps_written: bitmaps.written.iter().filter(|(_, g)| g.is_some()).count(),
            elapsed: Duration::ZERO,
        }
    }
}

/// What goes into the new segment, in referenceId order: the frozen records, and every live
/// record of the merged segments (each segment verified first).
fn merge_items(
    captured: &[Captured],
    merged: &[bool],
    frozen: &Arc<Vec<Arc<Record>>>,
) -> Result<Vec<Item>, CkptErr> {
    if !merged.contains(&true) {
        return Ok(frozen.iter().map(|r| Item::Mem(Arc::clone(r))).collect());
    }
    let chosen = || captured.iter().enumerate().filter(|(k, _)| merged[*k]);
    for (_, c) in chosen() {
        c.seg.verify_all().map_err(soft)?;
    }
    let mut keyed: Vec<(&str, Item)> = Vec::new();
    for (k, c) in chosen() {
        for o in 0..c.seg.len() {
            if !c.deleted.is_deleted(o) {
                keyed.push((c.seg.id(o), Item::Seg(k, o)));
            }
        }
    }
    for r in frozen.iter() {
        keyed.push((r.reference_id.as_str(), Item::Mem(Arc::clone(r))));
    }
    keyed.sort_unstable_by(|a, b| a.0.cmp(b.0));
    Ok(keyed.into_iter().map(|(_, i)| i).collect())
}

/// Writes `items` as the next segment (none when there are no items). A failed fsync is fatal;
/// any other failure removes the partial file and leaves the store as it was.
fn write_segment(
    dir: &dyn Directory,
    next: &mut Meta,
    dim: usize,
    items: &[Item],
    segs: &[Arc<Segment>],
) -> Result<Option<(u64, Built)>, CkptErr> {
    if items.is_empty() {
        return Ok(None);
    }
    let id = next.next_segment_id;
    next.next_segment_id += 1;
    let src = MergeSource { items, segs };
    match build_segment(dir, id, dim, &src) {
        Ok(b) => Ok(Some((id, b))),
        Err(e) => {
            let _ = dir.remove(&segment_name(id));
            Err(if matches!(&e, StoreError::Io { op: "fsync", .. }) {
                hard(e)
            } else {
                soft(e)
            })
        }
    }
}

/// The deletion bitmaps of the segments that stay and changed since they were last written,
/// with the files they replace; merged segments and their bitmaps go.
fn write_bitmaps(
    dir: &dyn Directory,
    meta: &Meta,
    next: &mut Meta,
    captured: &[Captured],
    merged: &[bool],
) -> Result<Bitmaps, CkptErr> {
    let mut out = Bitmaps::default();
    let gone: Vec<u64> = captured
        .iter()
        .zip(merged)
        .filter(|(_, &m)| m)
        .map(|(c, _)| c.seg.id)
        .collect();
    for id in &gone {
        out.removable.push(segment_name(*id));
    }
    for sm in meta.segments.iter().filter(|sm| gone.contains(&sm.id)) {
        if let Some(g) = sm.deletions_gen {
            out.removable.push(bitmap_name(sm.id, g));
        }
    }
    next.segments.retain(|sm| !gone.contains(&sm.id));
    for (k, c) in captured.iter().enumerate() {
        if !c.dirty || merged[k] {
            continue;
        }
        let sm = next
            .segments
            .iter_mut()
            .find(|s| s.id == c.seg.id)
            .ok_or_else(|| hard(StoreError::corrupt(META_FILE, "segment list out of step")))?;
        if let Some(g) = sm.deletions_gen {
            out.removable.push(bitmap_name(sm.id, g));
        }
        let gen = if c.deleted.deleted() > 0 {
            let g = next.next_file_gen;
            next.next_file_gen += 1;
            let name = bitmap_name(c.seg.id, g);
            let mut f = dir
                .create(&name)
                .map_err(|e| soft(StoreError::io("create", name.clone(), e)))?;
            f.write_all(&c.deleted.encode(c.seg.id))
                .map_err(|e| soft(StoreError::io("write", name.clone(), e)))?;
            f.sync()
                .map_err(|e| hard(StoreError::io("fsync", name.clone(), e)))?;
            Some(g)
        } else {
            None
        };
        sm.deletions_gen = gen;
        sm.deleted = c.deleted.deleted() as u64;
        out.written.push((k, gen));
    }
    Ok(out)
}

/// Old files are garbage once the new meta is durable; a failure to remove them is cleaned up
/// at the next open.
fn remove_garbage(dir: &dyn Directory, removable: &[String]) {
    let mut removed = 0;
    for name in removable {
        if dir.remove(name).is_ok() {
            removed += 1;
        }
    }
    if removed > 0 {
        let _ = dir.sync_dir();
    }
}
