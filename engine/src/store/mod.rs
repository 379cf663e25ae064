//! The durable gallery store: records that are never lost once acknowledged, readable as
//! memory-mapped segments for fast scans.
//!
//! # Data path
//!
//! ```text
//! insert(record) ─ validate ─ encode ─┐            (commit lock: conflict check against
//! delete(id) ─────────────────────────┤             visible state + in-flight operations)
//!                                     ▼
//!                        queue of pending entries ──► leader: one write() + one fdatasync()
//!                                                      for everything queued (group commit)
//!                                     │
//!                                     ▼ applied after the fsync, in log order
//!          memtable (recent records) + segments (mmap) − deletion bitmaps = what reads see
//!                                     │
//!        flush()/threshold ──► checkpoint: rotate log, freeze memtable, write segment,
//!        compact() ─────────►  write changed bitmaps, fsync, replace meta atomically,
//!                              drop old log generations and replaced files
//! ```
//!
//! Files in the store directory (all little-endian, all checksummed):
//!
//! | file                         | what                                      | layout        |
//! |------------------------------|-------------------------------------------|---------------|
//! | `meta.abis`                  | live segments + bitmap generations, replay start (log generation, sequence), next ids, format version, face dimension | [`meta`] docs  |
//! | `wal-<gen>.log`              | write-ahead log, one file per generation  | [`wal`] docs   |
//! | `seg-<id>.seg`               | immutable segment                          | [`segment`] docs |
//! | `del-<seg>-<gen>.bits`       | deletion bitmap of a segment at a checkpoint | [`bitmap`] docs |
//! | `LOCK`                       | `flock` against a second process           | empty         |
//!
//! # Durability argument
//!
//! 1. **Acknowledged ⇒ in the log, synced.** `insert`/`delete` return `Ok` only after the
//!    leader's `fdatasync` of a write containing the entry returned success. Entries carry a
//!    CRC-32 over header and payload, so a half-written entry is never mistaken for data.
//! 2. **A failed fsync is fatal.** After a failed write or fsync the kernel may have dropped the
//!    dirty pages and cleared the error, so retrying could report success for data that is
//!    gone. The store enters the failed state instead: every waiting and later writer gets
//!    [`StoreError::Failed`], reads keep working, and reopening replays what is really on disk.
//! 3. **Visible ⇒ acknowledged.** Operations reach the memtable only after their fsync, so a
//!    read never sees data a crash could take back. An idempotent re-insert of an in-flight
//!    record waits for that record's fsync before answering.
//! 4. **Checkpoints never lose log entries.** A checkpoint first rotates the log to a new
//!    generation (created, header fsynced, directory fsynced) while holding the log lock, so
//!    every entry of the old generations is applied to the frozen memtable or the captured
//!    bitmaps, and nothing else is. The segment and bitmap files are fsynced, the directory
//!    fsynced, and only then the meta is replaced (temp file, fsync, rename, fsync directory)
//!    to say "segments S, replay from generation g+1". A crash before the rename replays the
//!    old generations onto the old segments; after it, the new files are complete. Old log
//!    generations are deleted only after the new meta is durable; unreferenced files are
//!    removed at the next open.
//! 5. **Torn tail vs corruption.** The log is written one batch at a time and each batch is
//!    fsynced before the next is written, so only the last batch can be torn. Each entry
//!    records the first sequence number of its batch; recovery treats damage as a torn tail
//!    (truncated and reported in [`RecoveryReport`]) unless a valid entry of a *later* batch
//!    follows it, which proves the damaged batch had been acknowledged: that is
//!    [`StoreError::Corrupt`], and the store refuses to open rather than drop acknowledged data.
//! 6. **Segments are verified.** Header, footer and chunk table checksums and all section
//!    bounds at open; id sections in full at open; templates and embeddings per 256 KiB chunk
//!    on first random access or in full (parallel) on first scan. Corrupt data is an error,
//!    never a result.
//!
//! Semantics (MOSIP ABIS): insert is idempotent (same id and same bytes → `AlreadyPresent`),
//! different content under a stored id is [`StoreError::AlreadyExists`], delete of an unknown
//! id is [`StoreError::NotFound`]; every acknowledged write is visible to every later read and
//! snapshot. Logs (tracing) carry counts and file names only, never ids or biometric data.
//!
//! # API for the service layer
//!
//! - [`Store::open`]`(dir, `[`StoreConfig::new`]`(face_dim))` → `(Store, RecoveryReport)`; share
//!   the store in an `Arc`. [`Store::close`] on graceful shutdown (flushes).
//! - Insert: [`Store::insert`]`(Record)` → [`InsertOutcome`] (`Inserted` / `AlreadyPresent`
//!   both mean success). Delete: [`Store::delete`]. Get: [`Store::get`]. ReferenceCount:
//!   [`Store::count`]. Health: [`Store::is_failed`], [`Store::stats`].
//! - Identify: take [`Store::snapshot`] once per request and scan
//!   [`Snapshot::segments`] (in parallel; [`SegmentView::faces`] / [`SegmentView::fingers`]
//!   read in place, skip `!is_live(ord)`) plus [`Snapshot::recent`].
//! - Errors: [`StoreError`] maps to gRPC codes as its docs say; [`StoreError::record_defect`]
//!   tells which part of a refused record is wrong.
//!
//! Testing: [`MemDirectory`] implements [`Directory`] in memory and simulates power loss
//! (unsynced bytes and directory entries are lost, or torn) and fsync failures; the tests in
//! `engine/tests/store_*.rs` crash it at many points, and SIGKILL a real child process.

// The file-format modules are public for their documentation (byte layouts); their
// codecs stay crate-private.
pub mod bitmap;
mod dir;
pub mod encryption;
mod error;
#[cfg(feature = "fault-injection")]
mod memdir;
pub mod meta;
mod record;
pub mod segment;
mod snapshot;
#[cfg(feature = "synth")]
pub mod synth;
pub mod wal;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use bitmap::DeletionBitmap;
pub use dir::{Directory, FileBytes, FileWriter, FsDirectory};
pub use error::{RecordDefect, StoreError};
#[cfg(feature = "fault-injection")]
pub use memdir::{CrashMode, MemDirectory};
pub use record::{
    validate_reference_id, FingerEntry, Record, MAX_FACES, MAX_FACE_DIM, MAX_FINGERS,
    MAX_METADATA_ENTRIES, MAX_METADATA_KEY_LEN, MAX_METADATA_VALUE_LEN, MAX_REFERENCE_ID_LEN,
    MAX_TEMPLATE_LEN,
};
pub use segment::{quantise, FaceMatrix, FingerTemplates};
pub use snapshot::{SegmentView, Snapshot};

use bitmap::bitmap_name;
use error::Result;
use meta::{Meta, SegmentMeta, META_FILE, META_TMP};
use segment::{build_segment, segment_name, Item, MergeSource, Segment};
use wal::{encode_entry, parse_file_header, parse_wal_name, wal_name, EntryKind};

/// How a store is opened.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// Face embedding dimension of the gallery (0: no faces). Fixed at creation; opening with
    /// another value is [`StoreError::Incompatible`].
    pub face_dim: usize,
    /// Flush the memtable into a segment when it holds this many records...
    pub memtable_max_records: usize,
    /// ...or this many bytes of encoded records.
    pub memtable_max_bytes: usize,
    /// Compact (merge all segments, dropping deleted records) above this many segments.
    pub max_segments: usize,
    /// Run flushes and compactions on a background thread when thresholds are crossed.
    pub background: bool,
    /// Refuse inserts beyond this many live records ([`StoreError::Full`]).
    pub max_records: Option<u64>,
    /// Seal every file with these keys ([`encryption`]); applied by [`Store::open`].
    pub encryption: Option<encryption::Keyring>,
}

impl StoreConfig {
    pub fn new(face_dim: usize) -> Self {
        StoreConfig {
            face_dim,
            memtable_max_records: 65_536,
            memtable_max_bytes: 256 << 20,
            max_segments: 16,
            background: true,
            max_records: None,
            encryption: None,
        }
    }
}

/// What an insert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    Inserted,
    /// The same record was already stored (a retried insert): success, nothing written.
    AlreadyPresent,
}

/// What recovery found when opening.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// The directory held no store; a new one was created.
    pub created: bool,
    pub segments: usize,
    /// Live records after recovery.
    pub records: u64,
    pub wal_files: usize,
    pub entries_replayed: u64,
    /// Bytes of a torn log tail that were truncated (never acknowledged data).
    pub torn_bytes_dropped: u64,
    /// File and offset of the torn tail.
    pub torn_at: Option<(String, u64)>,
    pub orphan_files_removed: usize,
    pub elapsed: Duration,
}

/// Counters for metrics.
#[derive(Debug, Clone, Default)]
pub struct StoreStats {
    pub records: u64,
    pub segments: usize,
    pub memtable_records: usize,
    pub wal_entries: u64,
    pub wal_syncs: u64,
    pub wal_bytes: u64,
    pub checkpoints: u64,
    pub failed: bool,
}

/// What a flush or compaction did.
#[derive(Debug, Clone, Default)]
pub struct CheckpointReport {
    /// Records in the segment written (0: none written).
    pub segment_records: usize,
    pub segments_before: usize,
    pub segments_after: usize,
    pub bitmaps_written: usize,
    pub elapsed: Duration,
}

enum Op {
    Insert(Arc<Record>, Arc<[u8]>),
    Delete(String),
}

struct Queued {
    seq: u64,
    op: Op,
}

/// Latest in-flight operation on an id: an insert (with its bytes) or a delete.
struct PendingOp {
    seq: u64,
    insert: Option<Arc<[u8]>>,
}

#[derive(Default)]
struct CommitState {
    queue: Vec<Queued>,
    pending: HashMap<String, PendingOp>,
    pending_inserts: u64,
    next_seq: u64,
    durable_seq: u64,
    leader: bool,
    failed: Option<String>,
}

struct WalState {
    file: Box<dyn FileWriter>,
    gen: u64,
    len: u64,
    last_seq: u64,
    buf: Vec<u8>,
}

struct MemRec {
    rec: Arc<Record>,
    bytes: usize,
}

struct Frozen {
    records: Arc<Vec<Arc<Record>>>,
    tombstones: HashSet<String>,
}

struct SegSlot {
    seg: Arc<Segment>,
    deleted: Arc<DeletionBitmap>,
    /// Bumped by each delete applied to this segment.
    version: u64,
    persisted_version: u64,
    persisted_gen: Option<u64>,
}

#[derive(Default)]
struct Visible {
    active: HashMap<String, MemRec>,
    active_bytes: usize,
    frozen: Option<Frozen>,
    segments: Vec<SegSlot>,
    live: u64,
    version: u64,
}

enum Loc {
    Active,
    Frozen(usize),
    Seg(usize, usize),
}

impl Visible {
    fn locate(&self, id: &str) -> Option<Loc> {
        if self.active.contains_key(id) {
            return Some(Loc::Active);
        }
        if let Some(f) = &self.frozen {
            if let Ok(i) = f
                .records
                .binary_search_by(|r| r.reference_id.as_str().cmp(id))
            {
                if !f.tombstones.contains(id) {
                    return Some(Loc::Frozen(i));
                }
            }
        }
        for (k, s) in self.segments.iter().enumerate().rev() {
            if let Some(o) = s.seg.find(id) {
                if !s.deleted.is_deleted(o) {
                    return Some(Loc::Seg(k, o));
                }
            }
        }
        None
    }

    fn get(&self, id: &str) -> Result<Option<Record>> {
        Ok(match self.locate(id) {
            None => None,
            Some(Loc::Active) => self.active.get(id).map(|m| (*m.rec).clone()),
            Some(Loc::Frozen(i)) => self
                .frozen
                .as_ref()
                .and_then(|f| f.records.get(i))
                .map(|r| (**r).clone()),
            Some(Loc::Seg(k, o)) => Some(self.segments[k].seg.record(o)?),
        })
    }

    fn apply_insert(&mut self, rec: Arc<Record>, bytes: usize) -> Result<(), &'static str> {
        if self.locate(&rec.reference_id).is_some() {
            return Err("insert of a referenceId that is already stored");
        }
        self.active
            .insert(rec.reference_id.clone(), MemRec { rec, bytes });
        self.active_bytes += bytes;
        self.live += 1;
        Ok(())
    }

    fn apply_delete(&mut self, id: &str) -> Result<(), &'static str> {
        match self.locate(id) {
            None => return Err("delete of a referenceId that is not stored"),
            Some(Loc::Active) => {
                if let Some(m) = self.active.remove(id) {
                    self.active_bytes -= m.bytes;
                }
            }
            Some(Loc::Frozen(_)) => {
                if let Some(f) = &mut self.frozen {
                    f.tombstones.insert(id.to_owned());
                }
            }
            Some(Loc::Seg(k, o)) => {
                let s = &mut self.segments[k];
                Arc::make_mut(&mut s.deleted).set(o);
                s.version += 1;
            }
        }
        self.live -= 1;
        Ok(())
    }
}

#[derive(Default)]
struct BgState {
    shutdown: bool,
    wake: bool,
}

struct Inner {
    dir: Arc<dyn Directory>,
    cfg: StoreConfig,
    commit: Mutex<CommitState>,
    committed: Condvar,
    wal: Mutex<WalState>,
    visible: RwLock<Visible>,
    snap: Mutex<Option<(u64, Arc<Snapshot>)>>,
    /// Serialises checkpoints; holds the last committed meta.
    maint: Mutex<Meta>,
    bg: Mutex<BgState>,
    bg_cv: Condvar,
    wal_entries: AtomicU64,
    wal_syncs: AtomicU64,
    wal_bytes: AtomicU64,
    checkpoints: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A poisoned lock means a panic elsewhere; the guarded state is kept consistent by
    // construction (no partial updates across a panic point), so carry on.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The gallery store. `Send + Sync`: share it in an `Arc`; any number of threads may read and
/// write concurrently.
pub struct Store {
    inner: Arc<Inner>,
    background: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({:?})", self.inner.dir)
    }
}

pub(crate) fn create_wal(dir: &dyn Directory, gen: u64) -> Result<Box<dyn FileWriter>> {
    let name = wal_name(gen);
    let mut f = dir
        .create(&name)
        .map_err(|e| StoreError::io("create", name.clone(), e))?;
    f.write_all(&wal::encode_file_header(gen))
        .map_err(|e| StoreError::io("write", name.clone(), e))?;
    f.sync()
        .map_err(|e| StoreError::io("fsync", name.clone(), e))?;
    dir.sync_dir()
        .map_err(|e| StoreError::io("fsync directory for", name, e))?;
    Ok(f)
}

/// Replaces the meta file atomically: temp file, fsync, rename, fsync directory.
pub(crate) fn write_meta(dir: &dyn Directory, meta: &Meta) -> Result<()> {
    let mut f = dir
        .create(META_TMP)
        .map_err(|e| StoreError::io("create", META_TMP, e))?;
    f.write_all(&meta.encode())
        .map_err(|e| StoreError::io("write", META_TMP, e))?;
    f.sync().map_err(|e| StoreError::io("fsync", META_TMP, e))?;
    drop(f);
    dir.rename(META_TMP, META_FILE)
        .map_err(|e| StoreError::io("rename", META_FILE, e))?;
    dir.sync_dir()
        .map_err(|e| StoreError::io("fsync directory for", META_FILE, e))
}

/// Opens and locks a store directory; another process holding it is [`StoreError::Locked`].
pub(crate) fn open_fs_directory(path: &Path) -> Result<FsDirectory> {
    FsDirectory::open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            StoreError::Locked {
                path: path.display().to_string(),
            }
        } else {
            StoreError::io("open", path.display().to_string(), e)
        }
    })
}

fn is_store_file(name: &str) -> bool {
    name == META_FILE
        || name == META_TMP
        || parse_wal_name(name).is_some()
        || (name.starts_with("seg-") && name.ends_with(".seg"))
        || (name.starts_with("del-") && name.ends_with(".bits"))
}

impl Store {
    /// Opens (or creates) the store in directory `path`, recovering from the log.
    pub fn open(path: impl AsRef<Path>, cfg: StoreConfig) -> Result<(Store, RecoveryReport)> {
        let dir = open_fs_directory(path.as_ref())?;
        let dir: Arc<dyn Directory> = match &cfg.encryption {
            Some(keys) => Arc::new(encryption::EncryptedDirectory::new(
                Arc::new(dir),
                keys.clone(),
            )),
            None => Arc::new(dir),
        };
        Store::open_in(dir, cfg)
    }

    /// Opens (or creates) the store in any [`Directory`].
    pub fn open_in(dir: Arc<dyn Directory>, cfg: StoreConfig) -> Result<(Store, RecoveryReport)> {
        let (inner, report) = recover(dir, cfg)?;
        let inner = Arc::new(inner);
        let background = if inner.cfg.background {
            let weak = Arc::downgrade(&inner);
            let h = std::thread::Builder::new()
                .name("abis-store-bg".into())
                .spawn(move || background_loop(weak))
                .map_err(|e| StoreError::io("spawn", "background thread", e))?;
            Some(h)
        } else {
            None
        };
        Ok((Store { inner, background }, report))
    }

    /// Stores `record` durably. Returns after the log entry is fsynced (group commit).
    pub fn insert(&self, record: Record) -> Result<InsertOutcome> {
        self.inner.insert(record)
    }

    /// Deletes `id` durably. Unknown id: [`StoreError::NotFound`].
    pub fn delete(&self, id: &str) -> Result<()> {
        self.inner.delete(id)
    }

    /// The live record `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        validate_reference_id(id)?;
        self.inner.read_visible().get(id)
    }

    /// Whether `id` is a live record.
    pub fn contains(&self, id: &str) -> bool {
        self.inner.read_visible().locate(id).is_some()
    }

    /// Number of live records (ReferenceCount).
    pub fn count(&self) -> u64 {
        self.inner.read_visible().live
    }

    /// An immutable view over everything acknowledged so far, for scans.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.inner.snapshot()
    }

    /// Writes the memtable (and changed deletion bitmaps) into a new segment and checkpoints.
    pub fn flush(&self) -> Result<CheckpointReport> {
        self.inner.checkpoint(false)
    }

    /// Flushes, then merges all segments into one without the deleted records.
    pub fn compact(&self) -> Result<CheckpointReport> {
        self.inner.checkpoint(true)
    }

    /// Verifies every checksum of every segment (in parallel within sections).
    pub fn verify(&self) -> Result<()> {
        let segs: Vec<Arc<Segment>> = self
            .inner
            .read_visible()
            .segments
            .iter()
            .map(|s| Arc::clone(&s.seg))
            .collect();
        segs.iter().try_for_each(|s| s.verify_all())
    }

    /// Whether a write failure put the store in the failed state.
    pub fn is_failed(&self) -> bool {
        lock(&self.inner.commit).failed.is_some()
    }

    pub fn stats(&self) -> StoreStats {
        let i = &self.inner;
        // Lock order is commit → visible (inserts hold the commit lock while they read the
        // visible state): never wait for the commit lock while holding the visible one.
        let failed = lock(&i.commit).failed.is_some();
        let v = i.read_visible();
        StoreStats {
            records: v.live,
            segments: v.segments.len(),
            memtable_records: v.active.len()
                + v.frozen
                    .as_ref()
                    .map_or(0, |f| f.records.len() - f.tombstones.len()),
            wal_entries: i.wal_entries.load(Ordering::Relaxed),
            wal_syncs: i.wal_syncs.load(Ordering::Relaxed),
            wal_bytes: i.wal_bytes.load(Ordering::Relaxed),
            checkpoints: i.checkpoints.load(Ordering::Relaxed),
            failed,
        }
    }

    /// Graceful shutdown: flush the memtable into a segment, stop the background thread.
    pub fn close(self) -> Result<()> {
        if !self.is_failed() {
            self.flush()?;
        }
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        {
            let mut bg = lock(&self.inner.bg);
            bg.shutdown = true;
        }
        self.inner.bg_cv.notify_all();
        if let Some(h) = self.background.take() {
            let _ = h.join();
        }
    }
}

fn background_loop(weak: Weak<Inner>) {
    loop {
        let Some(inner) = weak.upgrade() else {
            return;
        };
        {
            let mut bg = lock(&inner.bg);
            if !bg.shutdown && !bg.wake {
                bg = inner
                    .bg_cv
                    .wait_timeout(bg, Duration::from_millis(500))
                    .map(|(g, _)| g)
                    .unwrap_or_else(|e| e.into_inner().0);
            }
            if bg.shutdown {
                return;
            }
            bg.wake = false;
        }
        if lock(&inner.commit).failed.is_some() {
            continue;
        }
        let (flush, compact) = {
            let v = inner.read_visible();
            (
                v.active.len() >= inner.cfg.memtable_max_records
                    || v.active_bytes >= inner.cfg.memtable_max_bytes,
                v.segments.len() > inner.cfg.max_segments,
            )
        };
        let r = if flush {
            Some(inner.checkpoint(false))
        } else if compact {
            Some(inner.checkpoint(true))
        } else {
            None
        };
        if let Some(Err(e)) = r {
            tracing::warn!(error = %e, "background store checkpoint failed");
        }
    }
}

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

struct Captured {
    seg: Arc<Segment>,
    deleted: Arc<DeletionBitmap>,
    version: u64,
    dirty: bool,
}

impl Inner {
    fn read_visible(&self) -> RwLockReadGuard<'_, Visible> {
        self.visible.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_visible(&self) -> RwLockWriteGuard<'_, Visible> {
        self.visible.write().unwrap_or_else(|e| e.into_inner())
    }

    fn check_failed(&self, st: &CommitState) -> Result<()> {
        match &st.failed {
            Some(r) => Err(StoreError::Failed { reason: r.clone() }),
            None => Ok(()),
        }
    }

    fn fail(&self, reason: String) {
        tracing::error!(reason = %reason, "gallery store failed; refusing writes until reopened");
        let mut st = lock(&self.commit);
        if st.failed.is_none() {
            st.failed = Some(reason);
        }
        drop(st);
        self.committed.notify_all();
    }

    fn insert(&self, record: Record) -> Result<InsertOutcome> {
        record.validate(self.cfg.face_dim)?;
        let payload: Arc<[u8]> = record.encode()?.into();
        let mut st = lock(&self.commit);
        self.check_failed(&st)?;
        match st.pending.get(&record.reference_id) {
            Some(PendingOp {
                seq,
                insert: Some(bytes),
            }) => {
                if **bytes != *payload {
                    return Err(StoreError::AlreadyExists);
                }
                // The same record is in flight: answer once it is durable.
                let seq = *seq;
                self.wait_durable(st, seq)?;
                return Ok(InsertOutcome::AlreadyPresent);
            }
            Some(PendingOp { insert: None, .. }) => {} // deleted in flight: absent
            None => {
                let v = self.read_visible();
                if let Some(loc) = v.locate(&record.reference_id) {
                    let same = match loc {
                        Loc::Active => v
                            .active
                            .get(&record.reference_id)
                            .is_some_and(|m| m.rec.same_content(&record)),
                        Loc::Frozen(i) => v
                            .frozen
                            .as_ref()
                            .and_then(|f| f.records.get(i))
                            .is_some_and(|r| r.same_content(&record)),
                        Loc::Seg(k, o) => v.segments[k].seg.record(o)?.same_content(&record),
                    };
                    return if same {
                        Ok(InsertOutcome::AlreadyPresent)
                    } else {
                        Err(StoreError::AlreadyExists)
                    };
                }
            }
        }
        if let Some(max) = self.cfg.max_records {
            if self.read_visible().live + st.pending_inserts >= max {
                return Err(StoreError::Full {
                    detail: format!("the gallery holds its configured maximum of {max} records"),
                });
            }
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.pending.insert(
            record.reference_id.clone(),
            PendingOp {
                seq,
                insert: Some(Arc::clone(&payload)),
            },
        );
        st.pending_inserts += 1;
        st.queue.push(Queued {
            seq,
            op: Op::Insert(Arc::new(record), payload),
        });
        self.wait_durable(st, seq)?;
        Ok(InsertOutcome::Inserted)
    }

    fn delete(&self, id: &str) -> Result<()> {
        validate_reference_id(id)?;
        let mut st = lock(&self.commit);
        self.check_failed(&st)?;
        let exists = match st.pending.get(id) {
            Some(p) => p.insert.is_some(),
            None => self.read_visible().locate(id).is_some(),
        };
        if !exists {
            return Err(StoreError::NotFound);
        }
        let seq = st.next_seq;
        st.next_seq += 1;
        st.pending
            .insert(id.to_owned(), PendingOp { seq, insert: None });
        st.queue.push(Queued {
            seq,
            op: Op::Delete(id.to_owned()),
        });
        self.wait_durable(st, seq)
    }

    /// Group commit: waits until entry `seq` is durable, leading a batch when no one else is.
    fn wait_durable<'a>(&'a self, mut st: MutexGuard<'a, CommitState>, seq: u64) -> Result<()> {
        loop {
            if st.durable_seq >= seq {
                return Ok(());
            }
            self.check_failed(&st)?;
            if !st.leader && !st.queue.is_empty() {
                st.leader = true;
                let batch = std::mem::take(&mut st.queue);
                let inserts = batch
                    .iter()
                    .filter(|q| matches!(q.op, Op::Insert(..)))
                    .count() as u64;
                drop(st);
                let res = self.write_batch(batch);
                st = lock(&self.commit);
                st.leader = false;
                st.pending_inserts -= inserts;
                match res {
                    Ok(last) => {
                        st.durable_seq = last;
                        st.pending.retain(|_, p| p.seq > last);
                    }
                    Err(reason) => {
                        tracing::error!(reason = %reason, "log write failed; gallery store refuses writes until reopened");
                        st.failed.get_or_insert(reason);
                    }
                }
                self.committed.notify_all();
            } else {
                st = self.committed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }

    /// Writes and fsyncs one batch, then applies it. `Err` is fatal.
    fn write_batch(&self, batch: Vec<Queued>) -> Result<u64, String> {
        let mut wal = lock(&self.wal);
        let first = batch.first().map_or(0, |q| q.seq);
        let last = batch.last().map_or(0, |q| q.seq);
        let mut buf = std::mem::take(&mut wal.buf);
        buf.clear();
        for q in &batch {
            match &q.op {
                Op::Insert(_, p) => encode_entry(&mut buf, EntryKind::Insert, q.seq, first, p),
                Op::Delete(id) => {
                    encode_entry(&mut buf, EntryKind::Delete, q.seq, first, id.as_bytes())
                }
            }
        }
        let name = wal_name(wal.gen);
        wal.file
            .write_all(&buf)
            .map_err(|e| format!("write to {name}: {e}"))?;
        wal.file
            .sync()
            .map_err(|e| format!("fsync of {name}: {e}"))?;
        wal.len += buf.len() as u64;
        wal.last_seq = last;
        self.wal_syncs.fetch_add(1, Ordering::Relaxed);
        self.wal_entries
            .fetch_add(batch.len() as u64, Ordering::Relaxed);
        self.wal_bytes
            .fetch_add(buf.len() as u64, Ordering::Relaxed);
        if buf.capacity() <= 8 << 20 {
            wal.buf = buf;
        }
        // Apply under the log lock, so a checkpoint's rotation sees every synced batch applied.
        let mut v = self.write_visible();
        for q in batch {
            let r = match q.op {
                Op::Insert(rec, p) => v.apply_insert(rec, p.len()),
                Op::Delete(id) => v.apply_delete(&id),
            };
            r.map_err(|d| format!("internal inconsistency at entry {}: {d}", q.seq))?;
        }
        v.version += 1;
        let over = v.active.len() >= self.cfg.memtable_max_records
            || v.active_bytes >= self.cfg.memtable_max_bytes
            || v.segments.len() > self.cfg.max_segments;
        drop(v);
        drop(wal);
        if over && self.cfg.background {
            lock(&self.bg).wake = true;
            self.bg_cv.notify_all();
        }
        Ok(last)
    }

    fn snapshot(&self) -> Arc<Snapshot> {
        let v = self.read_visible();
        let mut cache = lock(&self.snap);
        if let Some((ver, s)) = &*cache {
            if *ver == v.version {
                return Arc::clone(s);
            }
        }
        let mut recent: Vec<Arc<Record>> = v.active.values().map(|m| Arc::clone(&m.rec)).collect();
        if let Some(f) = &v.frozen {
            recent.extend(
                f.records
                    .iter()
                    .filter(|r| !f.tombstones.contains(&r.reference_id))
                    .cloned(),
            );
        }
        recent.sort_unstable_by(|a, b| a.reference_id.cmp(&b.reference_id));
        let s = Arc::new(Snapshot {
            segments: v
                .segments
                .iter()
                .map(|s| SegmentView {
                    seg: Arc::clone(&s.seg),
                    deleted: Arc::clone(&s.deleted),
                })
                .collect(),
            recent,
            face_dim: self.cfg.face_dim,
            live: v.live,
        });
        *cache = Some((v.version, Arc::clone(&s)));
        s
    }

    fn checkpoint(&self, compact: bool) -> Result<CheckpointReport> {
        let t0 = Instant::now();
        let mut meta = lock(&self.maint);
        self.check_failed(&lock(&self.commit))?;
        // Phase 1: rotate the log, freeze the memtable, capture the bitmaps.
        let (frozen, captured, new_gen, next_seq) = {
            let mut wal = lock(&self.wal);
            {
                let v = self.read_visible();
                let dirty = v.segments.iter().any(|s| s.version != s.persisted_version);
                let merge = compact
                    && (v.segments.len() > 1 || v.segments.iter().any(|s| s.deleted.deleted() > 0));
                if v.active.is_empty() && !dirty && !merge {
                    return Ok(CheckpointReport {
                        segments_before: v.segments.len(),
                        segments_after: v.segments.len(),
                        elapsed: t0.elapsed(),
                        ..CheckpointReport::default()
                    });
                }
            }
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
            let recs = Arc::new(recs);
            v.frozen = Some(Frozen {
                records: Arc::clone(&recs),
                tombstones: HashSet::new(),
            });
            let captured: Vec<Captured> = v
                .segments
                .iter()
                .map(|s| Captured {
                    seg: Arc::clone(&s.seg),
                    deleted: Arc::clone(&s.deleted),
                    version: s.version,
                    dirty: s.version != s.persisted_version,
                })
                .collect();
            (recs, captured, new_gen, next_seq)
        };
        match self.build_and_install(&mut meta, &frozen, &captured, compact, new_gen, next_seq) {
            Ok(mut r) => {
                r.elapsed = t0.elapsed();
                self.checkpoints.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    compact,
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
                    // Nothing on disk refers to the new files: put the frozen records back.
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
                Err(err)
            }
        }
    }

    fn build_and_install(
        &self,
        meta: &mut Meta,
        frozen: &Arc<Vec<Arc<Record>>>,
        captured: &[Captured],
        compact: bool,
        new_gen: u64,
        next_seq: u64,
    ) -> Result<CheckpointReport, CkptErr> {
        let dir = &*self.dir;
        let dim = self.cfg.face_dim;
        let mut next = meta.clone();
        let segs: Vec<Arc<Segment>> = captured.iter().map(|c| Arc::clone(&c.seg)).collect();

        // What goes into the new segment.
        let items: Vec<Item> = if compact {
            for s in &segs {
                s.verify_all().map_err(soft)?;
            }
            let mut keyed: Vec<(&str, Item)> = Vec::new();
            for (k, c) in captured.iter().enumerate() {
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
            keyed.into_iter().map(|(_, i)| i).collect()
        } else {
            frozen.iter().map(|r| Item::Mem(Arc::clone(r))).collect()
        };

        let mut new_seg = None;
        if !items.is_empty() {
            let id = next.next_segment_id;
            next.next_segment_id += 1;
            let src = MergeSource {
                items: &items,
                segs: &segs,
            };
            match build_segment(dir, id, dim, &src) {
                Ok(b) => new_seg = Some((id, b)),
                Err(e) => {
                    let _ = dir.remove(&segment_name(id));
                    return Err(if matches!(&e, StoreError::Io { op: "fsync", .. }) {
                        hard(e)
                    } else {
                        soft(e)
                    });
                }
            }
        }

        // Deletion bitmaps of the segments that stay.
        let mut written: Vec<(usize, Option<u64>)> = Vec::new(); // (captured index, gen)
        let mut removable: Vec<String> = Vec::new();
        if compact {
            for c in captured {
                removable.push(segment_name(c.seg.id));
            }
            for sm in &meta.segments {
                if let Some(g) = sm.deletions_gen {
                    removable.push(bitmap_name(sm.id, g));
                }
            }
            next.segments.clear();
        } else {
            for (k, c) in captured.iter().enumerate() {
                if !c.dirty {
                    continue;
                }
                let sm = next
                    .segments
                    .iter_mut()
                    .find(|s| s.id == c.seg.id)
                    .ok_or_else(|| {
                        hard(StoreError::corrupt(META_FILE, "segment list out of step"))
                    })?;
                if let Some(g) = sm.deletions_gen {
                    removable.push(bitmap_name(sm.id, g));
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
                written.push((k, gen));
            }
        }
        if let Some((id, b)) = &new_seg {
            next.segments.push(SegmentMeta {
                id: *id,
                records: b.records as u64,
                file_len: b.file_len as u64,
                deletions_gen: None,
                deleted: 0,
            });
        }
        dir.sync_dir()
            .map_err(|e| hard(StoreError::io("fsync directory", ".", e)))?;
        for g in meta.wal_gen..new_gen {
            removable.push(wal_name(g));
        }
        next.wal_gen = new_gen;
        next.next_seq = next_seq;
        // From the rename on, the files on disk say the new state: any failure is fatal.
        write_meta(dir, &next).map_err(hard)?;
        let opened = match &new_seg {
            Some((id, _)) => Some(Arc::new(Segment::open(dir, *id, dim).map_err(hard)?)),
            None => None,
        };

        // Install.
        let report;
        {
            let mut v = self.write_visible();
            let before = v.segments.len();
            let tombstones = v.frozen.take().map(|f| f.tombstones).unwrap_or_default();
            let mut new_slot = opened.map(|seg| {
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
                    version: n,
                    persisted_version: 0,
                    persisted_gen: None,
                }
            });
            if compact {
                v.segments.clear();
            } else {
                for (k, gen) in &written {
                    if let Some(s) = v.segments.get_mut(*k) {
                        s.persisted_version = captured[*k].version;
                        s.persisted_gen = *gen;
                    }
                }
            }
            if let Some(s) = new_slot.take() {
                v.segments.push(s);
            }
            v.version += 1;
            report = CheckpointReport {
                segment_records: new_seg.as_ref().map_or(0, |(_, b)| b.records),
                segments_before: before,
                segments_after: v.segments.len(),
                bitmaps_written: written.iter().filter(|(_, g)| g.is_some()).count(),
                elapsed: Duration::ZERO,
            };
        }
        *meta = next;
        // Old files are garbage now; a failure to remove them is cleaned up at the next open.
        let mut removed = 0;
        for name in &removable {
            if dir.remove(name).is_ok() {
                removed += 1;
            }
        }
        if removed > 0 {
            let _ = dir.sync_dir();
        }
        Ok(report)
    }
}

fn recover(dir: Arc<dyn Directory>, cfg: StoreConfig) -> Result<(Inner, RecoveryReport)> {
    let t0 = Instant::now();
    let mut report = RecoveryReport::default();
    if cfg.face_dim > MAX_FACE_DIM {
        return Err(StoreError::Incompatible {
            detail: format!("face dimension {} exceeds {MAX_FACE_DIM}", cfg.face_dim),
        });
    }
    let names = dir
        .list()
        .map_err(|e| StoreError::io("list", "store directory", e))?;
    let meta = if names.iter().any(|n| n == META_FILE) {
        let b = dir
            .read(META_FILE)
            .map_err(|e| StoreError::io("read", META_FILE, e))?;
        if encryption::is_sealed(&b) {
            return Err(StoreError::Incompatible {
                detail: "the store is encrypted; open it with its key file \
                         (store.encryption_key_file)"
                    .into(),
            });
        }
        Meta::decode(&b).map_err(|d| StoreError::corrupt(META_FILE, d))?
    } else {
        if names.iter().any(|n| is_store_file(n) && n != META_TMP) {
            return Err(StoreError::corrupt(
                META_FILE,
                "missing, but log or segment files are present",
            ));
        }
        let m = Meta::new(cfg.face_dim as u32);
        write_meta(&*dir, &m)?;
        report.created = true;
        m
    };
    if meta.face_dim as usize != cfg.face_dim {
        return Err(StoreError::Incompatible {
            detail: format!(
                "the store holds {}-dimensional faces, the configuration says {}",
                meta.face_dim, cfg.face_dim
            ),
        });
    }

    let mut v = Visible::default();
    for sm in &meta.segments {
        let seg = Segment::open(&*dir, sm.id, cfg.face_dim)?;
        if seg.len() as u64 != sm.records || seg.file_len() as u64 != sm.file_len {
            return Err(StoreError::corrupt(
                segment_name(sm.id),
                "size differs from the meta file",
            ));
        }
        let deleted = match sm.deletions_gen {
            Some(g) => {
                let name = bitmap_name(sm.id, g);
                let b = dir
                    .read(&name)
                    .map_err(|e| StoreError::io("read", name.clone(), e))?;
                let d = DeletionBitmap::decode(&b, sm.id, seg.len())
                    .map_err(|d| StoreError::corrupt(name.clone(), d))?;
                if d.deleted() as u64 != sm.deleted {
                    return Err(StoreError::corrupt(name, "deleted count differs from meta"));
                }
                d
            }
            None => DeletionBitmap::new(seg.len()),
        };
        v.live += (seg.len() - deleted.deleted()) as u64;
        v.segments.push(SegSlot {
            seg: Arc::new(seg),
            deleted: Arc::new(deleted),
            version: 0,
            persisted_version: 0,
            persisted_gen: sm.deletions_gen,
        });
    }

    // Replay the log generations from the meta's.
    let mut gens: Vec<u64> = names
        .iter()
        .filter_map(|n| parse_wal_name(n))
        .filter(|&g| g >= meta.wal_gen)
        .collect();
    gens.sort_unstable();
    for (i, &g) in gens.iter().enumerate() {
        if g != meta.wal_gen + i as u64 {
            return Err(StoreError::corrupt(
                wal_name(g),
                "an earlier log generation is missing",
            ));
        }
    }
    let mut expected = meta.next_seq;
    let mut writer: Option<(u64, Box<dyn FileWriter>)> = None;
    for (i, &g) in gens.iter().enumerate() {
        let name = wal_name(g);
        let is_last = i + 1 == gens.len();
        let buf = dir
            .read(&name)
            .map_err(|e| StoreError::io("read", name.clone(), e))?;
        report.wal_files += 1;
        if let Err(d) = parse_file_header(&buf, g) {
            if is_last && buf.len() <= wal::WAL_HEADER_LEN {
                // Crash while the generation was being created: nothing was acknowledged in it.
                report.torn_bytes_dropped += buf.len() as u64;
                report.torn_at = Some((name.clone(), 0));
                writer = Some((g, create_wal(&*dir, g)?));
                continue;
            }
            return Err(StoreError::corrupt(name, d));
        }
        let s = wal::scan(&buf, expected, is_last).map_err(|d| StoreError::corrupt(&name, d))?;
        for e in &s.entries {
            let bad = |d: String| StoreError::corrupt(&name, format!("entry {}: {d}", e.seq));
            match e.kind {
                EntryKind::Insert => {
                    let rec = Record::decode(e.payload).map_err(|err| bad(err.to_string()))?;
                    rec.validate(cfg.face_dim)
                        .map_err(|err| bad(err.to_string()))?;
                    v.apply_insert(Arc::new(rec), e.payload.len())
                        .map_err(|d| bad(d.into()))?;
                }
                EntryKind::Delete => {
                    let id = std::str::from_utf8(e.payload)
                        .ok()
                        .filter(|id| validate_reference_id(id).is_ok())
                        .ok_or_else(|| bad("delete of an invalid referenceId".into()))?;
                    v.apply_delete(id).map_err(|d| bad(d.into()))?;
                }
            }
            expected = e.seq + 1;
            report.entries_replayed += 1;
        }
        if let Some(at) = s.torn_at {
            report.torn_bytes_dropped += (buf.len() - at) as u64;
            report.torn_at = Some((name.clone(), at as u64));
            dir.truncate(&name, at as u64)
                .map_err(|e| StoreError::io("truncate", name.clone(), e))?;
            tracing::warn!(
                file = %name,
                offset = at,
                bytes = buf.len() - at,
                "dropped a torn log tail (never acknowledged)"
            );
        }
        if is_last {
            let f = dir
                .append(&name)
                .map_err(|e| StoreError::io("open", name.clone(), e))?;
            writer = Some((g, f));
        }
    }
    let (gen, file) = match writer {
        Some(w) => w,
        None => (meta.wal_gen, create_wal(&*dir, meta.wal_gen)?),
    };
    let wal_len = dir
        .read(&wal_name(gen))
        .map(|b| b.len() as u64)
        .unwrap_or(wal::WAL_HEADER_LEN as u64);

    // Remove files no meta refers to (interrupted checkpoints, replaced files).
    let mut keep: HashSet<String> = HashSet::new();
    keep.insert(META_FILE.to_owned());
    for sm in &meta.segments {
        keep.insert(segment_name(sm.id));
        if let Some(g) = sm.deletions_gen {
            keep.insert(bitmap_name(sm.id, g));
        }
    }
    for n in &names {
        let old_wal = parse_wal_name(n).is_some_and(|g| g < meta.wal_gen);
        let orphan = is_store_file(n) && parse_wal_name(n).is_none() && !keep.contains(n);
        if (old_wal || orphan) && dir.remove(n).is_ok() {
            report.orphan_files_removed += 1;
        }
    }
    if report.orphan_files_removed > 0 {
        dir.sync_dir()
            .map_err(|e| StoreError::io("fsync directory", ".", e))?;
    }

    report.segments = v.segments.len();
    report.records = v.live;
    report.elapsed = t0.elapsed();
    tracing::info!(
        segments = report.segments,
        records = report.records,
        entries_replayed = report.entries_replayed,
        torn_bytes = report.torn_bytes_dropped,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "gallery store opened"
    );
    let last_seq = expected - 1;
    let inner = Inner {
        dir,
        commit: Mutex::new(CommitState {
            next_seq: expected,
            durable_seq: last_seq,
            ..CommitState::default()
        }),
        committed: Condvar::new(),
        wal: Mutex::new(WalState {
            file,
            gen,
            len: wal_len,
            last_seq,
            buf: Vec::new(),
        }),
        visible: RwLock::new(v),
        snap: Mutex::new(None),
        maint: Mutex::new(meta),
        bg: Mutex::new(BgState::default()),
        bg_cv: Condvar::new(),
        wal_entries: AtomicU64::new(0),
        wal_syncs: AtomicU64::new(0),
        wal_bytes: AtomicU64::new(0),
        checkpoints: AtomicU64::new(0),
        cfg,
    };
    Ok((inner, report))
}
