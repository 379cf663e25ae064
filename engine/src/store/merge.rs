//! Which segments a checkpoint merges: the seam where compaction policies plug in.
//!
//! A checkpoint writes the memtable into a new segment; it may also merge existing segments
//! into that one, dropping their deleted records. A [`MergePolicy`] picks which, from a summary
//! of each segment, whenever the background thread looks (after every flush and every few
//! hundred milliseconds). The store today ships one policy, [`MergeAllAbove`]: above
//! `max_segments`, merge every segment into one. Merging any subset is correct (a record is
//! live in at most one segment, and the merged segment goes last), which is what size-tiered
//! policies need.

use std::fmt::Debug;

/// One segment as a merge policy sees it (oldest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSummary {
    pub id: u64,
    /// Records written in it (deleted ones included).
    pub records: u64,
    /// Of which deleted since.
    pub deleted: u64,
    /// Its file's length.
    pub bytes: u64,
}

/// Picks the segments the next checkpoint merges. See the module docs.
pub trait MergePolicy: Send + Sync + Debug {
    /// Indices into `segments` to merge into one (empty: none now).
    fn pick(&self, segments: &[SegmentSummary]) -> Vec<usize>;
}

/// Merge every segment into one once there are more than `max_segments`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeAllAbove {
    pub max_segments: usize,
}

impl MergePolicy for MergeAllAbove {
    fn pick(&self, segments: &[SegmentSummary]) -> Vec<usize> {
        if segments.len() > self.max_segments {
            (0..segments.len()).collect()
        } else {
            Vec::new()
        }
    }
}

/// What a checkpoint merges besides the memtable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merge {
    /// Nothing: a flush.
    Nothing,
    /// Every segment (an explicit compaction).
    Everything,
    /// What the store's policy picks.
    ByPolicy,
}
