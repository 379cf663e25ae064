//! Making the gallery ready to search after it opens or after replicated writes.

use rayon::prelude::*;

use super::cache::retain_recent_of;
use super::error::GalleryError;
use super::open::Gallery;
use super::shortlist;

impl Gallery {
    /// Makes the gallery ready to search: rebuilds missing segment indexes (after damage or
    /// an upgrade), indexes the records still in the log, and, while the gallery is small
    /// enough to be searched exhaustively, prepares every record for the matcher. Returns the
    /// number of live records.
    pub fn warm(&self) -> Result<usize, GalleryError> {
        self.store.rebuild_companions()?;
        let epoch = self.prepared.epoch();
        let snapshot = self.store.snapshot();
        retain_recent_of(&self.index.recent, &snapshot);
        snapshot
            .recent()
            .par_iter()
            .try_for_each(|r| self.index.recent.get_or_compute(r).map(drop))
            .map_err(GalleryError::StoredTemplate)?;
        let everything = shortlist::targets(&snapshot, None, None);
        let count = everything.count as usize;
        if self.search.retain_prepared && count <= self.search.index_above {
            shortlist::live_targets(&snapshot, &everything)
                .par_iter()
                .try_for_each(|&loc| {
                    self.prepared
                        .prepared_at(&self.matcher, &snapshot, (loc, epoch), &[], true)
                        .map(drop)
                })?;
        }
        Ok(count)
    }
}
