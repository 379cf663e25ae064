//! 1:1 verification: a probe against one enrolled record, or against other samples.

use super::answer::Verification;
use super::error::GalleryError;
use super::open::Gallery;
use super::probe::Probe;
use super::score::PreparedRecord;
use super::shortlist;
use crate::matcher::Scratch;
use crate::template::FingerPosition;

impl Gallery {
    /// 1:1: the probe against one enrolled record.
    pub fn verify(&self, probe: &Probe, reference_id: &str) -> Result<Verification, GalleryError> {
        let epoch = self.prepared.epoch();
        let snapshot = self.store.snapshot();
        let loc = shortlist::locate(&snapshot, reference_id).ok_or(GalleryError::NotFound)?;
        let positions: Vec<FingerPosition> = probe.fingers.iter().map(|(p, _)| *p).collect();
        let indexed = snapshot.len() as usize > self.search.index_above;
        let keep = self.search.retain_prepared && !indexed;
        let (_, record) =
            self.prepared
                .prepared_at(&self.matcher, &snapshot, (loc, epoch), &positions, keep)?;
        self.verify_prepared(probe, &record)
    }

    /// 1:1: the probe against other samples (nothing stored).
    pub fn verify_samples(
        &self,
        probe: &Probe,
        reference: &Probe,
    ) -> Result<Verification, GalleryError> {
        let record = PreparedRecord::of_probe(&self.matcher, reference)?;
        self.verify_prepared(probe, &record)
    }

    fn verify_prepared(
        &self,
        probe: &Probe,
        record: &PreparedRecord,
    ) -> Result<Verification, GalleryError> {
        probe.check(self.store.snapshot().face_dim())?;
        let prepared_probe = PreparedRecord::of_probe(&self.matcher, probe)?;
        let c = self
            .scoring()
            .record(&prepared_probe, record, &mut Scratch::default(), "");
        Ok(Verification {
            score: c.score,
            finger: c.finger,
            face: c.face,
        })
    }
}
