//! What the gallery keeps between searches: the matcher's prepared form of records (while the
//! gallery is small enough to be searched exhaustively) and the index entries of records still
//! in the log ([`RecentIndex`]), each kept in step with deletions and checkpoints.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::error::GalleryError;
use super::score::{compatible, PreparedRecord};
use super::shortlist::{reference_id, Loc};
use crate::index::segment_index::RecentIndex;
use crate::matcher::Matcher;
use crate::store::{Record, Snapshot, Store};
use crate::template::{decode_native, FingerPosition};

/// Cached index entries of records no longer in the log tolerated before a search prunes them.
pub(super) const RECENT_SLACK: usize = 1024;

/// Prepared records by referenceId, and the number of deletions so far. A record prepared from
/// a snapshot taken before a deletion is not cached: it could be the deleted content of an id
/// that is enrolled again.
#[derive(Default)]
pub(super) struct PreparedCache {
    records: RwLock<HashMap<String, Arc<PreparedRecord>>>,
    deletions: AtomicU64,
}

impl PreparedCache {
    /// The deletion count to take with a snapshot (before it).
    pub fn epoch(&self) -> u64 {
        self.deletions.load(Ordering::SeqCst)
    }

    /// Forgets deleted records.
    pub fn forget(&self, ids: &[String]) {
        // Bump first, then evict (under the cache lock): a search that prepared the old
        // content either inserted it before the bump, and the eviction removes it, or sees the
        // new count and does not insert it.
        self.deletions.fetch_add(1, Ordering::SeqCst);
        let mut cache = self.records.write().unwrap_or_else(|p| p.into_inner());
        for id in ids {
            cache.remove(id);
        }
    }

    /// The record at `loc` prepared for the matcher: from the cache when `keep` (exhaustive
    /// searches of a small gallery keep every record prepared), else only the fingers a probe
    /// with fingers at `positions` can be compared with, prepared now and not kept.
    pub fn prepared_at(
        &self,
        matcher: &Matcher,
        snapshot: &Snapshot,
        at: (Loc, u64),
        positions: &[FingerPosition],
        keep: bool,
    ) -> Result<(String, Arc<PreparedRecord>), GalleryError> {
        let (loc, epoch) = at;
        let id = reference_id(snapshot, loc);
        if keep {
            if let Some(p) = self
                .records
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(id)
            {
                return Ok((id.to_owned(), Arc::clone(p)));
            }
        }
        let record = match loc {
            Loc::Seg(s, o) => Arc::new(snapshot.segments()[s as usize].record(o as usize)?),
            Loc::Recent(r) => Arc::clone(&snapshot.recent()[r as usize]),
        };
        let wanted = |g: FingerPosition| keep || positions.iter().any(|&p| compatible(p, g));
        let prepared = Arc::new(PreparedRecord {
            fingers: prepare_fingers(matcher, &record, wanted)?,
            faces: record.faces.clone(),
        });
        if keep {
            let mut c = self.records.write().unwrap_or_else(|p| p.into_inner());
            if self.epoch() == epoch {
                c.insert(record.reference_id.clone(), Arc::clone(&prepared));
            }
        }
        Ok((record.reference_id.clone(), prepared))
    }
}

/// A stored record's finger templates at the positions `wanted` accepts, prepared. A template
/// that does not decode or prepare is damaged data of the gallery, not the caller's input.
fn prepare_fingers(
    matcher: &Matcher,
    record: &Record,
    wanted: impl Fn(FingerPosition) -> bool,
) -> Result<Vec<(FingerPosition, crate::matcher::PreparedTemplate)>, GalleryError> {
    record
        .fingers
        .iter()
        .filter(|f| wanted(f.position))
        .map(|f| {
            let t = decode_native(&f.template).map_err(GalleryError::StoredTemplate)?;
            let p = matcher.prepare(&t).map_err(GalleryError::StoredRecord)?;
            Ok((f.position, p))
        })
        .collect()
}

/// Drops cached index entries of records that are no longer recent (written to a segment, or
/// refused after their entries were computed) one checkpoint after they left, so that the
/// cache stays about two logs' records and a search on a snapshot from before a checkpoint
/// still finds the entries of the records it wrote. Entries of records inserted after
/// `snapshot` may go too; a search recomputes them.
pub(super) fn prune_recent(recent: &RecentIndex, snapshot: &Snapshot) {
    if recent.len() <= snapshot.recent().len() + RECENT_SLACK {
        return;
    }
    // Segment ids grow with every checkpoint: the newest names the checkpoint this snapshot
    // follows. Entries a checkpoint wrote go at the next one (see `prune_retiring`).
    let epoch = snapshot
        .segments()
        .iter()
        .map(|v| v.id())
        .max()
        .unwrap_or(0);
    recent.prune_retiring(epoch, || {
        snapshot
            .recent()
            .iter()
            .map(|r| r.reference_id.as_str())
            .collect()
    });
}

/// [`prune_recent`] after a write, which holds no snapshot: one is taken only when a pass is
/// due (building one per insert would copy the log's record list at every insert).
pub(super) fn prune_recent_after_write(recent: &RecentIndex, store: &Store) {
    let (recent_len, epoch) = store.recent_and_newest_segment();
    if recent.len() <= recent_len + RECENT_SLACK || recent.pruned_epoch() == epoch {
        return;
    }
    prune_recent(recent, &store.snapshot());
}

/// Drops the recent cache's entries of records that are not in `snapshot`'s log records.
pub(super) fn retain_recent_of(recent: &RecentIndex, snapshot: &Snapshot) {
    let live: HashSet<&str> = snapshot
        .recent()
        .iter()
        .map(|r| r.reference_id.as_str())
        .collect();
    recent.retain(&live);
}
