//! Which segments a checkpoint merges: the seam where compaction policies plug in.
//!
//! A checkpoint writes the memtable into a new segment; it may also merge existing segments
//! into that one, dropping their deleted records. A [`MergePolicy`] picks which, from a summary
//! of each segment, whenever the background thread looks (after every flush and every few
//! hundred milliseconds). Merging any subset is correct (a record is live in at most one
//! segment, and the merged segment goes last). Two policies:
//!
//! - [`MergeAllAbove`]: above `max_segments`, merge every segment into one (the store's
//!   default, and what it did before policies existed). At a million people that rewrites the
//!   whole gallery (29 GB) at once.
//! - [`SizeTiered`]: the size-tiered policy of the log-structured stores (Cassandra's STCS,
//!   the "tiered" compaction of RocksDB and Lucene's `TieredMergePolicy` in spirit): segments of
//!   similar size form a tier, and once a tier holds `min_merge` of them they merge into one of
//!   the next tier. Each record is rewritten about log_{min_merge}(gallery / flush) times in its
//!   life instead of at every compaction, no merge exceeds `max_merge_bytes` (so neither its
//!   time nor the disk headroom it needs — at most its own size, while old and new files
//!   coexist — grows with the gallery), and a segment with many deleted records is rewritten
//!   alone to reclaim them. Chosen over leveled compaction because a gallery is searched in full
//!   (every segment's codes are read by every 1:N search, so few large segments are what a
//!   search wants, not key-range partitions) and writes are append-mostly: tiering writes each
//!   byte fewest times.

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

/// Size-tiered merging (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SizeTiered {
    /// Segments of one tier that trigger a merge (at least 2).
    pub min_merge: usize,
    /// Most segments merged at once.
    pub max_merge: usize,
    /// A segment joins a tier while its size is at most this many times the tier's smallest.
    pub tier_ratio: f64,
    /// Segments smaller than this all form the first tier (fresh flushes of any size).
    pub small_bytes: u64,
    /// Largest merge (sum of the merged segments' sizes); larger segments are never merged.
    pub max_merge_bytes: u64,
    /// A segment whose deleted share exceeds this is rewritten alone to reclaim them.
    pub reclaim_deleted: f64,
    /// Above this many segments the smallest merge regardless of tiers (searches read every
    /// segment: their number stays bounded).
    pub max_segments: usize,
}

impl Default for SizeTiered {
    fn default() -> Self {
        SizeTiered {
            min_merge: 4,
            max_merge: 16,
            tier_ratio: 3.0,
            small_bytes: 64 << 20,
            max_merge_bytes: 4 << 30,
            reclaim_deleted: 0.2,
            max_segments: 48,
        }
    }
}

impl SizeTiered {
    /// Segment indices by size, smallest first, grouped into tiers.
    fn tiers(&self, segments: &[SegmentSummary]) -> Vec<Vec<usize>> {
        let mut order: Vec<usize> = (0..segments.len())
            .filter(|&i| segments[i].bytes <= self.max_merge_bytes)
            .collect();
        order.sort_by_key(|&i| (segments[i].bytes, segments[i].id));
        let mut tiers: Vec<Vec<usize>> = Vec::new();
        for i in order {
            let b = segments[i].bytes;
            let joins = tiers.last().is_some_and(|t| {
                let first = segments[t[0]].bytes;
                b < self.small_bytes || b as f64 <= first.max(1) as f64 * self.tier_ratio
            });
            match tiers.last_mut() {
                Some(t) if joins => t.push(i),
                _ => tiers.push(vec![i]),
            }
        }
        tiers
    }

    /// The smallest members of `members` (already smallest first) that fit one merge.
    fn fitting(&self, segments: &[SegmentSummary], members: &[usize]) -> Vec<usize> {
        let mut total = 0u64;
        members
            .iter()
            .copied()
            .take(self.max_merge.max(2))
            .take_while(|&i| {
                total += segments[i].bytes;
                total <= self.max_merge_bytes
            })
            .collect()
    }

    /// The segment most worth rewriting alone for its deleted records, if any.
    fn reclaim(&self, segments: &[SegmentSummary]) -> Option<usize> {
        let share = |s: &SegmentSummary| s.deleted as f64 / s.records.max(1) as f64;
        (0..segments.len())
            .filter(|&i| segments[i].bytes <= self.max_merge_bytes)
            .filter(|&i| segments[i].deleted > 0 && share(&segments[i]) > self.reclaim_deleted)
            .max_by(|&a, &b| share(&segments[a]).total_cmp(&share(&segments[b])))
    }
}

impl MergePolicy for SizeTiered {
    fn pick(&self, segments: &[SegmentSummary]) -> Vec<usize> {
        for tier in self.tiers(segments) {
            if tier.len() >= self.min_merge.max(2) {
                let chosen = self.fitting(segments, &tier);
                if chosen.len() >= 2 {
                    return sorted(chosen);
                }
            }
        }
        if let Some(i) = self.reclaim(segments) {
            return vec![i];
        }
        if segments.len() > self.max_segments {
            let smallest: Vec<usize> = self.tiers(segments).concat();
            let excess = segments.len() - self.max_segments + 1;
            let chosen = self.fitting(segments, &smallest[..excess.max(2).min(smallest.len())]);
            if chosen.len() >= 2 {
                return sorted(chosen);
            }
        }
        Vec::new()
    }
}

fn sorted(mut v: Vec<usize>) -> Vec<usize> {
    v.sort_unstable();
    v
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

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(id: u64, mb: u64, records: u64, deleted: u64) -> SegmentSummary {
        SegmentSummary {
            id,
            records,
            deleted,
            bytes: mb << 20,
        }
    }

    fn policy() -> SizeTiered {
        SizeTiered {
            small_bytes: 8 << 20,
            ..SizeTiered::default()
        }
    }

    #[test]
    fn a_tier_merges_once_it_holds_enough_segments_and_large_ones_are_left_alone() {
        let p = policy();
        // Three small flushes and a large segment: nothing yet.
        let mut s = vec![seg(1, 3000, 1000, 0), seg(2, 4, 10, 0), seg(3, 4, 10, 0)];
        s.push(seg(4, 4, 10, 0));
        assert!(p.pick(&s).is_empty());
        // A fourth small one: the four small ones merge, the 3 GB one stays.
        s.push(seg(5, 5, 10, 0));
        assert_eq!(p.pick(&s), vec![1, 2, 3, 4]);
        // Similar mid-size segments form their own tier.
        let mid = vec![
            seg(1, 100, 1, 0),
            seg(2, 120, 1, 0),
            seg(3, 250, 1, 0),
            seg(4, 90, 1, 0),
        ];
        assert_eq!(p.pick(&mid), vec![0, 1, 2, 3]);
        // ... but not with one far larger.
        let spread = vec![
            seg(1, 100, 1, 0),
            seg(2, 120, 1, 0),
            seg(3, 900, 1, 0),
            seg(4, 90, 1, 0),
        ];
        assert!(p.pick(&spread).is_empty());
    }

    #[test]
    fn no_merge_exceeds_the_cap_and_deletions_are_reclaimed_alone() {
        let p = SizeTiered {
            max_merge_bytes: 10 << 30,
            ..policy()
        };
        let big = vec![
            seg(1, 3000, 1, 0),
            seg(2, 3000, 1, 0),
            seg(3, 3000, 1, 0),
            seg(4, 3000, 1, 0),
        ];
        let picked = p.pick(&big);
        assert_eq!(picked.len(), 3, "three of 3 GB fit under 10 GB");
        let bytes: u64 = picked.iter().map(|&i| big[i].bytes).sum();
        assert!(bytes <= p.max_merge_bytes);
        let deleted = vec![
            seg(1, 500, 100, 10),
            seg(2, 600, 100, 40),
            seg(3, 50, 100, 0),
        ];
        assert_eq!(p.pick(&deleted), vec![1]);
    }

    #[test]
    fn the_number_of_segments_stays_bounded() {
        let p = SizeTiered {
            max_segments: 3,
            ..policy()
        };
        let spread = vec![
            seg(1, 10, 1, 0),
            seg(2, 100, 1, 0),
            seg(3, 1000, 1, 0),
            seg(4, 3000, 1, 0),
        ];
        assert_eq!(p.pick(&spread), vec![0, 1]);
    }
}
