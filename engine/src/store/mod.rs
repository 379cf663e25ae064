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
pub mod backup;
pub mod bitmap;
mod block_cache;
mod checkpoint;
mod commit;
mod companion;
mod copy;
mod dir;
pub mod encryption;
mod error;
#[cfg(feature = "fault-injection")]
mod memdir;
mod merge;
pub mod meta;
mod record;
mod recovery;
pub mod segment;
mod snapshot;
#[cfg(feature = "synth")]
pub mod synth;
mod throttle;
pub mod wal;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

pub use bitmap::DeletionBitmap;
pub use commit::{ReplicatedOp, ReplicatedOutcome};
pub use companion::{Companion, CompanionData, CompanionError, Origin};
pub use copy::{incoming_path, install, is_copy_file, repair_install, CopiedFile, StoreCopy};
pub use dir::{Directory, FileBytes, FileSlice, FileWriter, FsDirectory, Resident};
pub use error::{RecordDefect, StoreError};
#[cfg(feature = "fault-injection")]
pub use memdir::{CrashMode, MemDirectory};
pub use merge::{MergeAllAbove, MergePolicy, SegmentSummary, SizeTiered};
pub use record::{
    validate_reference_id, FingerEntry, Record, MAX_FACES, MAX_FACE_DIM, MAX_FINGERS,
    MAX_METADATA_ENTRIES, MAX_METADATA_KEY_LEN, MAX_METADATA_VALUE_LEN, MAX_REFERENCE_ID_LEN,
    MAX_TEMPLATE_LEN,
};
pub use segment::{quantise, FaceMatrix, FingerTemplates};
pub use snapshot::{SegmentView, Snapshot};

use commit::CommitState;
use error::Result;
use merge::Merge;
use meta::{Meta, META_FILE, META_TMP};
use segment::Segment;
use wal::{parse_wal_name, wal_name};

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
    /// Compact (merge all segments, dropping deleted records) above this many segments: the
    /// parameter of the default merge policy, [`MergeAllAbove`].
    pub max_segments: usize,
    /// Another merge policy instead of [`MergeAllAbove`] (see `merge.rs`).
    pub merge_policy: Option<Arc<dyn MergePolicy>>,
    /// Most bytes per second a merge writes (its segment and companion files together), so a
    /// background merge leaves the disk to the log and to searches. `None`: unthrottled.
    pub merge_write_bytes_per_s: Option<u64>,
    /// Run flushes and compactions on a background thread when thresholds are crossed.
    pub background: bool,
    /// Threads a checkpoint (flush or merge) builds its segment and index files with: a pool
    /// of its own, so that the parallel work of searches never queues behind a merge's in the
    /// shared pool, and a merge takes at most this many cores. 0: half the cores, at least one.
    pub checkpoint_threads: usize,
    /// Niceness of the checkpoint pool's threads, and of the gallery's enrolment pool
    /// ([`crate::priority`]): searches get the cores first. 0: the process's own.
    pub background_nice: i32,
    /// Refuse inserts beyond this many live records ([`StoreError::Full`]).
    pub max_records: Option<u64>,
    /// Seal every file with these keys ([`encryption`]); applied by [`Store::open`].
    pub encryption: Option<encryption::Keyring>,
    /// Bytes of decrypted blocks an encrypted store keeps for reads of its on-demand sections
    /// (templates, local forms, face rows); see [`encryption`].
    pub encrypted_cache_bytes: usize,
    /// Files derived from each segment and kept beside it (the 1:N index); see [`Companion`].
    pub companion: Option<Arc<dyn Companion>>,
}

impl StoreConfig {
    pub fn new(face_dim: usize) -> Self {
        StoreConfig {
            face_dim,
            memtable_max_records: 65_536,
            memtable_max_bytes: 256 << 20,
            max_segments: 16,
            merge_policy: None,
            merge_write_bytes_per_s: None,
            background: true,
            checkpoint_threads: 0,
            background_nice: 10,
            max_records: None,
            encryption: None,
            encrypted_cache_bytes: encryption::DEFAULT_BLOCK_CACHE_BYTES,
            companion: None,
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
    /// Segments whose companion files are missing or damaged: not usable until
    /// [`Store::rebuild_companions`] has run.
    pub companions_missing: usize,
    pub elapsed: Duration,
}

/// What [`Store::rebuild_companions`] did, in segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rebuilt {
    /// Every companion file rebuilt from the segment's records.
    pub whole: usize,
    /// Only the derived file rewritten from the segment's other companion files.
    pub derived: usize,
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
    /// The companion files, opened (`None`: not configured, or missing until rebuilt).
    companion: Option<CompanionData>,
    /// Bumped by each delete applied to this segment.
    version: u64,
    persisted_version: u64,
    persisted_gen: Option<u64>,
}

#[derive(Default)]
struct Visible {
    /// Position of the last replicated-log operation applied (0: none).
    replicated: u64,
    active: HashMap<String, MemRec>,
    active_bytes: usize,
    frozen: Option<Frozen>,
    segments: Vec<SegSlot>,
    live: u64,
    version: u64,
}

/// Where a live record is held in the visible state (the gallery's `Loc` is a snapshot's record).
enum Held {
    Active,
    Frozen(usize),
    Seg(usize, usize),
}

impl Visible {
    /// Live records outside segments: a snapshot's `recent()`.
    fn recent_len(&self) -> usize {
        self.active.len()
            + self
                .frozen
                .as_ref()
                .map_or(0, |f| f.records.len() - f.tombstones.len())
    }

    fn locate(&self, id: &str) -> Option<Held> {
        if self.active.contains_key(id) {
            return Some(Held::Active);
        }
        if let Some(f) = &self.frozen {
            if let Ok(i) = f
                .records
                .binary_search_by(|r| r.reference_id.as_str().cmp(id))
            {
                if !f.tombstones.contains(id) {
                    return Some(Held::Frozen(i));
                }
            }
        }
        for (k, s) in self.segments.iter().enumerate().rev() {
            if let Some(o) = s.seg.find(id) {
                if !s.deleted.is_deleted(o) {
                    return Some(Held::Seg(k, o));
                }
            }
        }
        None
    }

    fn get(&self, id: &str) -> Result<Option<Record>> {
        Ok(match self.locate(id) {
            None => None,
            Some(Held::Active) => self.active.get(id).map(|m| (*m.rec).clone()),
            Some(Held::Frozen(i)) => self
                .frozen
                .as_ref()
                .and_then(|f| f.records.get(i))
                .map(|r| (**r).clone()),
            Some(Held::Seg(k, o)) => Some(self.segments[k].seg.record(o)?),
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
            Some(Held::Active) => {
                if let Some(m) = self.active.remove(id) {
                    self.active_bytes -= m.bytes;
                }
            }
            Some(Held::Frozen(_)) => {
                if let Some(f) = &mut self.frozen {
                    f.tombstones.insert(id.to_owned());
                }
            }
            Some(Held::Seg(k, o)) => {
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
    /// The checkpoints' own thread pool (see [`StoreConfig::checkpoint_threads`]), made at the
    /// first checkpoint.
    checkpoint_pool: crate::priority::BackgroundPool,
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

/// The store's own files (companion files aside), temporary meta included.
fn is_store_file(name: &str) -> bool {
    name == META_FILE
        || name == META_TMP
        || parse_wal_name(name).is_some()
        || (name.starts_with("seg-") && name.ends_with(".seg"))
        || (name.starts_with("del-") && name.ends_with(".bits"))
}

/// The face dimension of the store in `path` (`None`: no store there), read from its meta
/// (through `keys` when it is sealed) without opening it, for offline tools that open a store
/// they did not create. Takes the directory's lock for the read: a store in use by a running
/// server is [`StoreError::Locked`].
pub fn stored_face_dim(path: &Path, keys: Option<&encryption::Keyring>) -> Result<Option<usize>> {
    if !path.join(META_FILE).exists() {
        return Ok(None);
    }
    let dir = open_fs_directory(path)?;
    let bytes = match keys {
        Some(k) => encryption::EncryptedDirectory::new(Arc::new(dir), k.clone()).read(META_FILE),
        None => dir.read(META_FILE),
    }
    .map_err(|e| StoreError::io("read", META_FILE, e))?;
    let meta = Meta::decode(&bytes).map_err(|d| StoreError::corrupt(META_FILE, d))?;
    Ok(Some(meta.face_dim as usize))
}

impl Store {
    /// Opens (or creates) the store in directory `path`, recovering from the log.
    pub fn open(path: impl AsRef<Path>, cfg: StoreConfig) -> Result<(Store, RecoveryReport)> {
        let dir = open_fs_directory(path.as_ref())?;
        let dir: Arc<dyn Directory> = match &cfg.encryption {
            Some(keys) => Arc::new(encryption::EncryptedDirectory::with_cache(
                Arc::new(dir),
                keys.clone(),
                cfg.encrypted_cache_bytes,
            )),
            None => Arc::new(dir),
        };
        Store::open_in(dir, cfg)
    }

    /// Opens (or creates) the store in any [`Directory`].
    pub fn open_in(dir: Arc<dyn Directory>, cfg: StoreConfig) -> Result<(Store, RecoveryReport)> {
        let (inner, report) = recovery::recover(dir, cfg)?;
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

    /// Applies operations of a replicated log (a cluster replica's shard of the write stream)
    /// in order, in one group commit, each with its position in that log. Positions at or
    /// below [`Store::replicated_position`] are skipped as redeliveries; every other operation
    /// moves the position durably and atomically with its effect, even when it changes nothing
    /// (see [`ReplicatedOutcome`]). Positions must increase.
    pub fn apply_replicated(
        &self,
        ops: Vec<(u64, ReplicatedOp)>,
    ) -> Result<Vec<ReplicatedOutcome>> {
        self.inner.apply_replicated(ops)
    }

    /// Position of the last replicated-log operation applied (0: none). Survives crashes
    /// exactly: it is written in the same log entry as the operation.
    pub fn replicated_position(&self) -> u64 {
        self.inner.read_visible().replicated
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

    /// What a new snapshot would say, without building one (a snapshot copies the list of the
    /// log's records): how many records are outside segments, and the newest segment's id (0:
    /// none), which grows with every checkpoint that writes a segment.
    pub fn recent_and_newest_segment(&self) -> (usize, u64) {
        let v = self.inner.read_visible();
        let newest = v.segments.iter().map(|s| s.seg.id).max().unwrap_or(0);
        (v.recent_len(), newest)
    }

    /// Writes the memtable (and changed deletion bitmaps) into a new segment and checkpoints.
    pub fn flush(&self) -> Result<CheckpointReport> {
        self.inner.checkpoint(Merge::Nothing)
    }

    /// Flushes, then merges all segments into one without the deleted records.
    pub fn compact(&self) -> Result<CheckpointReport> {
        self.inner.checkpoint(Merge::Everything)
    }

    /// Flushes, merging the segments the merge policy picks now (what the background thread
    /// does when the policy wants a merge).
    pub fn compact_by_policy(&self) -> Result<CheckpointReport> {
        self.inner.checkpoint(Merge::ByPolicy)
    }

    /// A consistent copy of the store in the new directory `dest` (on the same filesystem for
    /// hard links; elsewhere files are copied): flushes, then puts every file the store owns —
    /// meta, log, segments, bitmaps, companion (index) files — there, while inserts and searches
    /// go on. The copy holds exactly what was acknowledged when the log's length was read, and
    /// the replicated position of that moment. See `copy.rs`.
    pub fn checkpoint_to(&self, dest: &Path) -> Result<StoreCopy> {
        self.flush()?;
        self.inner.copy_to(dest)
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

    /// Segments whose companion files are missing or damaged (0 without a companion).
    pub fn missing_companions(&self) -> usize {
        if self.inner.cfg.companion.is_none() {
            return 0;
        }
        self.inner
            .read_visible()
            .segments
            .iter()
            .filter(|s| s.companion.is_none())
            .count()
    }

    /// Rebuilds the companion files of every segment that lacks them (temp files, fsync,
    /// rename, fsync of the directory), then makes them visible to new snapshots: only the
    /// derived file when the others are sound, all of them from the segment otherwise. Holds
    /// off checkpoints meanwhile.
    pub fn rebuild_companions(&self) -> Result<Rebuilt> {
        self.inner.rebuild_companions()
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
            memtable_records: v.recent_len(),
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
        let (flush, merge) = {
            let v = inner.read_visible();
            (inner.memtable_full(&v), inner.wants_merge(&v))
        };
        let r = if flush {
            Some(inner.checkpoint(Merge::Nothing))
        } else if merge {
            Some(inner.checkpoint(Merge::ByPolicy))
        } else {
            None
        };
        if let Some(Err(e)) = r {
            tracing::warn!(error = %e, "background store checkpoint failed");
        }
    }
}

impl Inner {
    /// Whether the memtable should become a segment.
    fn memtable_full(&self, v: &Visible) -> bool {
        v.active.len() >= self.cfg.memtable_max_records
            || v.active_bytes >= self.cfg.memtable_max_bytes
    }

    /// The segments the merge policy picks now (indices into `v.segments`).
    fn merge_pick(&self, v: &Visible) -> Vec<usize> {
        let summaries: Vec<SegmentSummary> = v
            .segments
            .iter()
            .map(|s| SegmentSummary {
                id: s.seg.id,
                records: s.seg.len() as u64,
                deleted: s.deleted.deleted() as u64,
                bytes: s.seg.file_len() as u64,
            })
            .collect();
        match &self.cfg.merge_policy {
            Some(p) => p.pick(&summaries),
            None => MergeAllAbove {
                max_segments: self.cfg.max_segments,
            }
            .pick(&summaries),
        }
    }

    /// Whether the merge policy wants a merge now.
    fn wants_merge(&self, v: &Visible) -> bool {
        !self.merge_pick(v).is_empty()
    }

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
                    companion: s.companion.clone(),
                })
                .collect(),
            recent,
            face_dim: self.cfg.face_dim,
            live: v.live,
        });
        *cache = Some((v.version, Arc::clone(&s)));
        s
    }
}
