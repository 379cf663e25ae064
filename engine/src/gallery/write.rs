//! Writes through the gallery: inserts (indexed before they become durable), deletions, and
//! operations of a replicated log; each keeps the caches in step.

use super::error::GalleryError;
use super::open::Gallery;
use crate::store::{InsertOutcome, Record, ReplicatedOp, ReplicatedOutcome};

impl Gallery {
    /// Inserts a record (see [`crate::store::Store::insert`]). Its index entries are computed
    /// first, so that an unreadable template is refused before it becomes durable and the
    /// first search finds them ready.
    pub fn insert(&self, record: Record) -> Result<InsertOutcome, GalleryError> {
        self.index
            .recent
            .get_or_compute(&record)
            .map_err(GalleryError::Template)?;
        Ok(self.store.insert(record)?)
    }

    /// Applies operations of a replicated log (see [`crate::store::Store::apply_replicated`]):
    /// a record whose templates do not decode is rejected like an invalid one (the position
    /// still moves), and deleted records are forgotten by the caches.
    pub fn apply_replicated(
        &self,
        ops: Vec<(u64, ReplicatedOp)>,
    ) -> Result<Vec<ReplicatedOutcome>, GalleryError> {
        let mut rejected = Vec::new();
        let ops = ops
            .into_iter()
            .enumerate()
            .map(|(i, (position, op))| match op {
                ReplicatedOp::Insert(r) => match self.index.recent.get_or_compute(&r) {
                    Ok(_) => (position, ReplicatedOp::Insert(r)),
                    Err(e) => {
                        rejected.push((i, e.to_string()));
                        (position, ReplicatedOp::Skip)
                    }
                },
                other => (position, other),
            })
            .collect::<Vec<_>>();
        let deleted: Vec<String> = ops
            .iter()
            .filter_map(|(_, op)| match op {
                ReplicatedOp::Delete(id) => Some(id.clone()),
                _ => None,
            })
            .collect();
        let mut outcomes = self.store.apply_replicated(ops)?;
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
