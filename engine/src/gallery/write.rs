//! Writes through the gallery: inserts (indexed before they become durable), deletions, and
//! operations of a replicated log; each keeps the caches in step.

use super::cache::prune_recent_after_write;
use super::error::GalleryError;
use super::open::Gallery;
use crate::store::{InsertOutcome, Record, ReplicatedOp, ReplicatedOutcome};

impl Gallery {
    /// Inserts a record (see [`crate::store::Store::insert`]). Its index entries are computed
    /// first, so that an unreadable template is refused before it becomes durable and the
    /// first search finds them ready.
    pub fn insert(&self, record: Record) -> Result<InsertOutcome, GalleryError> {
        let recent = &self.index.recent;
        self.enrolment
            .run(|| recent.get_or_compute(&record))
            .map_err(GalleryError::Template)?;
        let outcome = self.store.insert(record)?;
        // Entries of records a flush wrote stay cached for searches on older snapshots; they
        // go once the cache outgrows the log's records, also when no search runs.
        prune_recent_after_write(&self.index.recent, &self.store);
        Ok(outcome)
    }

    /// Applies operations of a replicated log (see [`crate::store::Store::apply_replicated`]):
    /// a record whose templates do not decode is rejected like an invalid one (the position
    /// still moves), and deleted records are forgotten by the caches.
    pub fn apply_replicated(
        &self,
        ops: Vec<(u64, ReplicatedOp)>,
    ) -> Result<Vec<ReplicatedOutcome>, GalleryError> {
        let mut rejected = Vec::new();
        let recent = &self.index.recent;
        let ops = self.enrolment.run(|| {
            ops.into_iter()
                .enumerate()
                .map(|(i, (position, op))| match op {
                    ReplicatedOp::Insert(r) => match recent.get_or_compute(&r) {
                        Ok(_) => (position, ReplicatedOp::Insert(r)),
                        Err(e) => {
                            rejected.push((i, e.to_string()));
                            (position, ReplicatedOp::Skip)
                        }
                    },
                    other => (position, other),
                })
                .collect::<Vec<_>>()
        });
        let deleted: Vec<String> = ops
            .iter()
            .filter_map(|(_, op)| match op {
                ReplicatedOp::Delete(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let mut outcomes = self.store.apply_replicated(ops)?;
        prune_recent_after_write(&self.index.recent, &self.store);
        for (i, why) in rejected {
            if outcomes[i] != ReplicatedOutcome::AlreadyApplied {
                outcomes[i] = ReplicatedOutcome::Rejected(why);
            }
        }
        if !deleted.is_empty() {
            self.prepared.forget(&deleted);
        }
        Ok(outcomes)
    }

    /// Deletes a record and forgets its prepared form.
    pub fn delete(&self, id: &str) -> Result<(), GalleryError> {
        self.store.delete(id)?;
        self.prepared.forget(&[id.to_owned()]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::matcher::Matcher;
    use crate::store::synth::synthetic_record;
    use crate::store::{MemDirectory, StoreConfig};

    /// A flush leaves its records' index entries cached for searches on the snapshot before
    /// it (they are not computed again), also past the first prune after it; the prune after
    /// the next checkpoint drops them.
    #[test]
    fn a_flush_keeps_entries_for_older_snapshots_and_inserts_prune_them() {
        let mut cfg = StoreConfig::new(0);
        cfg.background = false;
        let dir = MemDirectory::new();
        let g = Gallery::open_in(Arc::new(dir), cfg, Matcher::new(), None)
            .unwrap()
            .0;
        let n = super::super::cache::RECENT_SLACK + 16;
        let records: Vec<Record> = (0..n)
            .map(|i| synthetic_record(&format!("r{i:05}"), i as u64, 2, 0, 0))
            .collect();
        for r in &records {
            g.insert(r.clone()).unwrap();
        }
        let before: Vec<_> = records
            .iter()
            .map(|r| g.index.recent.get_or_compute(r).unwrap())
            .collect();
        let old = g.store().snapshot();
        g.store().flush().unwrap();
        assert!(g.store().snapshot().recent().is_empty());
        // A search on the older snapshot finds every entry as it was.
        let indexed = super::super::shortlist::Indexed::new(&old, &g.index.recent).unwrap();
        drop(indexed);
        for (r, b) in records.iter().zip(&before) {
            assert!(Arc::ptr_eq(&g.index.recent.get_or_compute(r).unwrap(), b));
        }
        assert_eq!(g.index.recent.len(), n);
        // The first insert after the flush retires them (still found), and the first one after
        // the next checkpoint drops them.
        g.insert(synthetic_record("z", 99_999, 2, 0, 0)).unwrap();
        assert_eq!(g.index.recent.len(), n + 1);
        let indexed = super::super::shortlist::Indexed::new(&old, &g.index.recent).unwrap();
        drop(indexed);
        assert!(Arc::ptr_eq(
            &g.index.recent.get_or_compute(&records[0]).unwrap(),
            &before[0]
        ));
        g.store().flush().unwrap();
        let slack = super::super::cache::RECENT_SLACK;
        for i in 0..slack as u64 + 2 {
            g.insert(synthetic_record(&format!("y{i:05}"), 200_000 + i, 2, 0, 0))
                .unwrap();
        }
        // Left: "z" (retired by this checkpoint's prune) and the records since.
        assert_eq!(
            g.index.recent.len(),
            slack + 3,
            "the flushed records' entries were not pruned"
        );
    }
}
