//! Immutable views for scans: a [`Snapshot`] holds `Arc`s to the segments and deletion bitmaps
//! current when it was taken, plus the recent records not yet in a segment. Writers never
//! change what a snapshot sees (bitmaps are copy-on-write, segments immutable), so an
//! identification can scan it in parallel for as long as it likes.

use std::sync::Arc;

use super::bitmap::DeletionBitmap;
use super::error::Result;
use super::record::Record;
use super::segment::{FaceMatrix, FingerTemplates, Segment};

/// What a segment's companion keeps open for it (the upper layer downcasts it; see
/// `companion.rs`).
pub type CompanionData = Arc<dyn std::any::Any + Send + Sync>;

/// One segment as of the snapshot: its records minus the ones deleted by then.
#[derive(Clone)]
pub struct SegmentView {
    pub(crate) seg: Arc<Segment>,
    pub(crate) deleted: Arc<DeletionBitmap>,
    pub(crate) companion: Option<CompanionData>,
}

impl std::fmt::Debug for SegmentView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SegmentView({}, {} records, {} deleted)",
            self.seg.name,
            self.seg.len(),
            self.deleted.deleted()
        )
    }
}

impl SegmentView {
    /// Segment id (file `seg-<id>.seg`).
    pub fn id(&self) -> u64 {
        self.seg.id
    }
    /// Number of ordinals, deleted ones included.
    pub fn len(&self) -> usize {
        self.seg.len()
    }
    pub fn is_empty(&self) -> bool {
        self.seg.len() == 0
    }
    /// Whether ordinal `ord` is a live record (scans skip the others).
    #[inline]
    pub fn is_live(&self, ord: usize) -> bool {
        !self.deleted.is_deleted(ord)
    }
    /// The deletion bitmap as of the snapshot.
    pub fn deletions(&self) -> &DeletionBitmap {
        &self.deleted
    }
    /// Ordinals of live records, increasing (ids increase with ordinals).
    pub fn live_ordinals(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.seg.len()).filter(|&o| self.is_live(o))
    }
    /// referenceId of ordinal `ord` (also for deleted ordinals).
    pub fn reference_id(&self, ord: usize) -> &str {
        self.seg.id(ord)
    }
    /// Live ordinal of `id` in this segment.
    pub fn find(&self, id: &str) -> Option<usize> {
        self.seg.find(id).filter(|&o| self.is_live(o))
    }
    /// Face embeddings read in place. The first call verifies the face sections' checksums in
    /// full (in parallel); later calls are free.
    pub fn faces(&self) -> Result<FaceMatrix<'_>> {
        self.seg.face_matrix()
    }
    /// Finger templates read in place, verified in full on the first call.
    pub fn fingers(&self) -> Result<FingerTemplates<'_>> {
        self.seg.finger_templates()
    }
    /// A copy of record `ord` (deleted or not), verifying only the chunks it touches.
    pub fn record(&self, ord: usize) -> Result<Record> {
        self.seg.record(ord)
    }
    /// What the store's [`super::Companion`] opened for this segment (`None`: no companion
    /// configured, or its files are missing until rebuilt).
    pub fn companion(&self) -> Option<&CompanionData> {
        self.companion.as_ref()
    }
    /// Whether the file is memory-mapped (false for the in-memory test directory).
    pub fn is_mapped(&self) -> bool {
        self.seg.is_mapped()
    }
}

/// A consistent, immutable view of the gallery: every insert acknowledged before the snapshot
/// was taken is in it, every acknowledged delete is applied.
#[derive(Debug)]
pub struct Snapshot {
    pub(crate) segments: Vec<SegmentView>,
    /// Sorted by referenceId.
    pub(crate) recent: Vec<Arc<Record>>,
    pub(crate) face_dim: usize,
    pub(crate) live: u64,
}

impl Snapshot {
    /// Live records in the view.
    pub fn len(&self) -> u64 {
        self.live
    }
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }
    /// Gallery face embedding dimension.
    pub fn face_dim(&self) -> usize {
        self.face_dim
    }
    /// Segments, oldest first; scan them in parallel, skipping `!is_live` ordinals.
    pub fn segments(&self) -> &[SegmentView] {
        &self.segments
    }
    /// Records acknowledged but not yet in a segment, sorted by referenceId; scan them too.
    pub fn recent(&self) -> &[Arc<Record>] {
        &self.recent
    }
    /// The live record `id`, if any.
    pub fn get(&self, id: &str) -> Result<Option<Record>> {
        if let Ok(i) = self
            .recent
            .binary_search_by(|r| r.reference_id.as_str().cmp(id))
        {
            return Ok(Some((*self.recent[i]).clone()));
        }
        for s in self.segments.iter().rev() {
            if let Some(o) = s.find(id) {
                return s.record(o).map(Some);
            }
        }
        Ok(None)
    }
    /// Whether `id` is a live record.
    pub fn contains(&self, id: &str) -> bool {
        self.recent
            .binary_search_by(|r| r.reference_id.as_str().cmp(id))
            .is_ok()
            || self.segments.iter().any(|s| s.find(id).is_some())
    }
    /// referenceIds of every live record (segments first, then recent).
    pub fn reference_ids(&self) -> impl Iterator<Item = &str> + '_ {
        self.segments
            .iter()
            .flat_map(|s| s.live_ordinals().map(move |o| s.reference_id(o)))
            .chain(self.recent.iter().map(|r| r.reference_id.as_str()))
    }
}
