//! Opening a store: read the meta file, open its segments and deletion bitmaps, replay the log
//! generations after the last checkpoint (dropping a torn tail, refusing damage followed by
//! acknowledged data), and remove files no meta refers to. See the durability argument in the
//! module docs of [`super`].

use std::collections::HashSet;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Instant;

use super::bitmap::{bitmap_name, DeletionBitmap};
use super::companion;
use super::dir::{Directory, FileWriter};
use super::encryption;
use super::error::{Result, StoreError};
use super::meta::{Meta, META_FILE, META_TMP};
use super::record::{validate_reference_id, Record, MAX_FACE_DIM};
use super::segment::{segment_name, Segment};
use super::snapshot::SegmentView;
use super::wal::{self, parse_file_header, parse_wal_name, wal_name, EntryKind};
use super::{
    create_wal, is_store_file, write_meta, BgState, CommitState, Inner, RecoveryReport, SegSlot,
    StoreConfig, Visible, WalState,
};

/// Recovers the store in `dir` (creating it when empty) into its in-memory state.
pub(super) fn recover(
    dir: Arc<dyn Directory>,
    cfg: StoreConfig,
) -> Result<(Inner, RecoveryReport)> {
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
    let meta = read_or_create_meta(&*dir, &names, &cfg, &mut report)?;
    let mut visible = open_segments(&*dir, &meta, &cfg, &mut report)?;
    let replayed = replay_log(&*dir, &names, &meta, &cfg, &mut visible, &mut report)?;
    remove_orphans(&*dir, &names, &meta, &cfg, &mut report)?;

    report.segments = visible.segments.len();
    report.records = visible.live;
    report.elapsed = t0.elapsed();
    tracing::info!(
        segments = report.segments,
        records = report.records,
        entries_replayed = report.entries_replayed,
        torn_bytes = report.torn_bytes_dropped,
        elapsed_ms = report.elapsed.as_millis() as u64,
        "gallery store opened"
    );
    Ok((assemble(dir, cfg, meta, visible, replayed), report))
}

/// The meta file, or a new one for an empty directory. A directory with log or segment files
/// but no meta is damage, not a new store.
fn read_or_create_meta(
    dir: &dyn Directory,
    names: &[String],
    cfg: &StoreConfig,
    report: &mut RecoveryReport,
) -> Result<Meta> {
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
        write_meta(dir, &m)?;
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
    Ok(meta)
}

/// Every segment the meta lists, with its deletion bitmap, checked against the meta's counts.
fn open_segments(
    dir: &dyn Directory,
    meta: &Meta,
    cfg: &StoreConfig,
    report: &mut RecoveryReport,
) -> Result<Visible> {
    let dim = cfg.face_dim;
    let mut v = Visible {
        replicated: meta.replicated_position,
        ..Visible::default()
    };
    for sm in &meta.segments {
        let seg = Segment::open(dir, sm.id, dim)?;
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
        let (seg, deleted) = (Arc::new(seg), Arc::new(deleted));
        let companion = cfg.companion.as_deref().and_then(|c| {
            let view = SegmentView {
                seg: Arc::clone(&seg),
                deleted: Arc::clone(&deleted),
                companion: None,
            };
            match companion::open(dir, c, &view) {
                Ok(data) => Some(data),
                Err(why) => {
                    tracing::warn!(segment = sm.id, reason = %why, "companion files unusable; to be rebuilt");
                    report.companions_missing += 1;
                    None
                }
            }
        });
        v.segments.push(SegSlot {
            seg,
            deleted,
            companion,
            version: 0,
            persisted_version: 0,
            persisted_gen: sm.deletions_gen,
        });
    }
    Ok(v)
}

/// Where writing resumes after replay: the log generation and its open file, its length, and
/// the next entry sequence number.
struct Replayed {
    gen: u64,
    file: Box<dyn FileWriter>,
    len: u64,
    next_seq: u64,
}

/// Applies every entry of the log generations from the meta's onwards, in order, to `v`.
fn replay_log(
    dir: &dyn Directory,
    names: &[String],
    meta: &Meta,
    cfg: &StoreConfig,
    v: &mut Visible,
    report: &mut RecoveryReport,
) -> Result<Replayed> {
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
                writer = Some((g, create_wal(dir, g)?));
                continue;
            }
            return Err(StoreError::corrupt(name, d));
        }
        let torn_at;
        (expected, torn_at) = replay_generation(&name, &buf, expected, is_last, cfg, v, report)?;
        if let Some(at) = torn_at {
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
        None => (meta.wal_gen, create_wal(dir, meta.wal_gen)?),
    };
    let len = dir
        .read(&wal_name(gen))
        .map(|b| b.len() as u64)
        .unwrap_or(wal::WAL_HEADER_LEN as u64);
    Ok(Replayed {
        gen,
        file,
        len,
        next_seq: expected,
    })
}

/// Applies one generation's entries (from sequence `expected`). Returns the next expected
/// sequence number and where a torn tail begins, if any (the caller truncates it).
fn replay_generation(
    name: &str,
    buf: &[u8],
    mut expected: u64,
    is_last: bool,
    cfg: &StoreConfig,
    v: &mut Visible,
    report: &mut RecoveryReport,
) -> Result<(u64, Option<usize>)> {
    let s = wal::scan(buf, expected, is_last).map_err(|d| StoreError::corrupt(name, d))?;
    for e in &s.entries {
        let bad = |d: String| StoreError::corrupt(name, format!("entry {}: {d}", e.seq));
        let (position, payload) = match e.kind {
            EntryKind::Insert | EntryKind::Delete => (None, e.payload),
            EntryKind::InsertAt | EntryKind::DeleteAt | EntryKind::Advance => {
                let (p, rest) = e
                    .payload
                    .split_first_chunk::<8>()
                    .ok_or_else(|| bad("replicated entry without a position".into()))?;
                let p = u64::from_le_bytes(*p);
                if p <= v.replicated {
                    return Err(bad(format!(
                        "replicated position {p} after {}",
                        v.replicated
                    )));
                }
                (Some(p), rest)
            }
        };
        match e.kind {
            EntryKind::Insert | EntryKind::InsertAt => {
                let rec = Record::decode(payload).map_err(|err| bad(err.to_string()))?;
                rec.validate(cfg.face_dim)
                    .map_err(|err| bad(err.to_string()))?;
                v.apply_insert(Arc::new(rec), payload.len())
                    .map_err(|d| bad(d.into()))?;
            }
            EntryKind::Delete | EntryKind::DeleteAt => {
                let id = std::str::from_utf8(payload)
                    .ok()
                    .filter(|id| validate_reference_id(id).is_ok())
                    .ok_or_else(|| bad("delete of an invalid referenceId".into()))?;
                v.apply_delete(id).map_err(|d| bad(d.into()))?;
            }
            EntryKind::Advance => {
                if !payload.is_empty() {
                    return Err(bad("advance entry with a payload".into()));
                }
            }
        }
        if let Some(p) = position {
            v.replicated = p;
        }
        expected = e.seq + 1;
        report.entries_replayed += 1;
    }
    Ok((expected, s.torn_at))
}

/// Removes files no meta refers to (interrupted checkpoints, replaced files, old logs).
fn remove_orphans(
    dir: &dyn Directory,
    names: &[String],
    meta: &Meta,
    cfg: &StoreConfig,
    report: &mut RecoveryReport,
) -> Result<()> {
    let mut keep: HashSet<String> = HashSet::new();
    keep.insert(META_FILE.to_owned());
    for sm in &meta.segments {
        keep.insert(segment_name(sm.id));
        if let Some(g) = sm.deletions_gen {
            keep.insert(bitmap_name(sm.id, g));
        }
        for e in cfg.companion.iter().flat_map(|c| c.extensions()) {
            keep.insert(companion::companion_name(sm.id, e));
        }
    }
    let derived = |n: &str| {
        cfg.companion
            .as_deref()
            .is_some_and(|c| companion::is_companion_file(n, c))
    };
    for n in names {
        let old_wal = parse_wal_name(n).is_some_and(|g| g < meta.wal_gen);
        let orphan =
            (is_store_file(n) || derived(n)) && parse_wal_name(n).is_none() && !keep.contains(n);
        if (old_wal || orphan) && dir.remove(n).is_ok() {
            report.orphan_files_removed += 1;
        }
    }
    if report.orphan_files_removed > 0 {
        dir.sync_dir()
            .map_err(|e| StoreError::io("fsync directory", ".", e))?;
    }
    Ok(())
}

/// The store's state after recovery, ready to take writes at `replayed`'s position.
fn assemble(
    dir: Arc<dyn Directory>,
    cfg: StoreConfig,
    meta: Meta,
    visible: Visible,
    replayed: Replayed,
) -> Inner {
    let last_seq = replayed.next_seq - 1;
    Inner {
        dir,
        commit: Mutex::new(CommitState::resuming_after(last_seq)),
        committed: Condvar::new(),
        wal: Mutex::new(WalState {
            file: replayed.file,
            gen: replayed.gen,
            len: replayed.len,
            last_seq,
            buf: Vec::new(),
        }),
        visible: RwLock::new(visible),
        snap: Mutex::new(None),
        maint: Mutex::new(meta),
        bg: Mutex::new(BgState::default()),
        bg_cv: Condvar::new(),
        wal_entries: AtomicU64::new(0),
        wal_syncs: AtomicU64::new(0),
        wal_bytes: AtomicU64::new(0),
        checkpoints: AtomicU64::new(0),
        checkpoint_pool: crate::priority::BackgroundPool::new(
            "abis-checkpoint",
            match cfg.checkpoint_threads {
                0 => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
                n => n,
            },
            cfg.background_nice,
        ),
        cfg,
    }
}
