//! The k-nearest-neighbour self-join: every indexed row's `k` nearest other rows above a cosine
//! threshold, as pairs, each reported once whichever of its two rows found the other.
//!
//! Searching the IVF index once per row reads each probed cell row by row (FAISS's generic
//! build has no wide vector kernels there). The join inverts the loop: each row's `nprobe`
//! nearest cells are found as in a search, then cell by cell the queries that probe the cell
//! are scored against its rows as one matrix product (BLAS), and each query keeps its best
//! across its cells. The candidates are exactly those of one IVF search per row at the same
//! `nprobe`; only the arithmetic is batched. The exact flat index and HNSW are searched row by
//! row, in batches.

use std::ops::Range;

use faiss::index::flat::FlatIndexImpl;
use faiss::index::{ConcurrentIndex, Index};

use crate::cells::Cells;
use crate::face_ann::{neighbours, Neighbour};
use crate::{AnnError, FaceAnn};

/// Query rows per chunk of the blocked join: their probe lists (`nprobe` cells each) and best
/// neighbours so far stay a few tens of MB.
const QUERY_CHUNK: usize = 65_536;

/// Rows searched per FAISS call over the exact flat index or HNSW: large enough for its threads to
/// share out, small enough that the results of one call stay a few MB.
const QUERY_BATCH: usize = 8192;

/// Two rows whose embeddings are among each other's nearest, `a < b`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pair {
    pub a: u32,
    pub b: u32,
    pub cosine: f32,
}

impl FaceAnn {
    /// Every pair of rows where one is among the other's `k` nearest neighbours with a cosine
    /// of at least `min_cosine`, sorted by `(a, b)`. The IVF index reads `nprobe` cells per
    /// cell of queries ([`FaceAnn::set_breadth`]).
    pub fn knn_self_join(&self, k: usize, min_cosine: f32) -> Result<Vec<Pair>, AnnError> {
        self.self_join_rows(0..self.len() as u32, k, min_cosine)
    }

    /// [`FaceAnn::knn_self_join`] for the queries `rows` only (a job's resumable slice): the
    /// pairs those rows find, sorted by `(a, b)` and deduplicated within the slice. Slices
    /// of one gallery may report the same pair (each row found the other): merge with
    /// [`merge_pairs`].
    pub fn self_join_rows(
        &self,
        rows: Range<u32>,
        k: usize,
        min_cosine: f32,
    ) -> Result<Vec<Pair>, AnnError> {
        if rows.start > rows.end || rows.end as usize > self.len() {
            return Err(AnnError::RowRange {
                start: rows.start,
                end: rows.end,
                rows: self.len(),
            });
        }
        if !min_cosine.is_finite() {
            return Err(AnnError::Parameter {
                name: "min_cosine",
                why: "must be a finite number".into(),
            });
        }
        if k == 0 {
            return Err(AnnError::Parameter {
                name: "k",
                why: "must be at least 1".into(),
            });
        }
        let keep = Keep { k, min_cosine };
        let mut pairs = Vec::new();
        match self.cells() {
            None => self.join_by_search(rows, &keep, &mut pairs)?,
            Some(cells) => self.join_blocked(cells, rows, &keep, &mut pairs)?,
        }
        Ok(merge_pairs(pairs))
    }

    /// Every query row searched through the index (exact flat or HNSW), in batches.
    fn join_by_search(
        &self,
        rows: Range<u32>,
        keep: &Keep,
        pairs: &mut Vec<Pair>,
    ) -> Result<(), AnnError> {
        let unit = self.unit_rows();
        let mut start = rows.start;
        while start < rows.end {
            let end = (start as usize + QUERY_BATCH).min(rows.end as usize) as u32;
            let queries = &unit.data[start as usize * unit.dim..end as usize * unit.dim];
            // k + 1: the query row finds itself.
            let found = self.search_unit(queries, keep.k.saturating_add(1))?;
            keep.extend(start..end, found, pairs);
            start = end;
        }
        Ok(())
    }

    /// Query rows in chunks; per chunk, each cell's rows scored against the chunk's queries
    /// that probe it (one matrix product per cell), each query's best kept across its cells.
    fn join_blocked(
        &self,
        cells: &Cells,
        rows: Range<u32>,
        keep: &Keep,
        pairs: &mut Vec<Pair>,
    ) -> Result<(), AnnError> {
        let unit = self.unit_rows();
        let dim = unit.dim;
        let mut start = rows.start as usize;
        while start < rows.end as usize {
            let end = (start + QUERY_CHUNK).min(rows.end as usize);
            let queries = &unit.data[start * dim..end * dim];
            let probes = cells.nearest_cells(queries, dim, self.breadth() as usize)?;
            let mut asking = vec![Vec::new(); cells.members.len()];
            for (q, list) in probes.iter().enumerate() {
                list.iter().for_each(|&c| asking[c as usize].push(q as u32));
            }
            let mut best = vec![Vec::new(); end - start];
            for (members, asked) in cells.members.iter().zip(&asking) {
                if asked.is_empty() || members.is_empty() {
                    continue;
                }
                let mut block = FlatIndexImpl::new_ip(dim as u32)?;
                block.add(&gather(&unit.data, dim, members))?;
                let k = keep.k.saturating_add(1).min(members.len());
                let found = ConcurrentIndex::search(&block, &gather(queries, dim, asked), k)?;
                let lists = neighbours(&found.labels, &found.distances, k, |i| members[i as usize]);
                for (&q, list) in asked.iter().zip(lists) {
                    offer(&mut best[q as usize], list, keep.k.saturating_add(1));
                }
            }
            keep.extend(start as u32..end as u32, best, pairs);
            start = end;
        }
        Ok(())
    }
}

/// Merges `list` into a query's best `k` so far (cosine descending, then row).
fn offer(best: &mut Vec<Neighbour>, list: Vec<Neighbour>, k: usize) {
    best.extend(list);
    best.sort_by(|x, y| y.cosine.total_cmp(&x.cosine).then(x.row.cmp(&y.row)));
    best.truncate(k);
}

/// The `dim`-long rows `ids` of `data`, one after another.
fn gather(data: &[f32], dim: usize, ids: &[u32]) -> Vec<f32> {
    let mut out = Vec::with_capacity(ids.len() * dim);
    for &r in ids {
        out.extend_from_slice(&data[r as usize * dim..][..dim]);
    }
    out
}

/// Which neighbours become pairs: the `k` nearest other rows at `min_cosine` or above.
struct Keep {
    k: usize,
    min_cosine: f32,
}

impl Keep {
    fn extend(
        &self,
        queries: impl Iterator<Item = u32>,
        lists: Vec<Vec<Neighbour>>,
        pairs: &mut Vec<Pair>,
    ) {
        for (row, list) in queries.zip(lists) {
            let others = list.into_iter().filter(|n| n.row != row).take(self.k);
            pairs.extend(
                others
                    .filter(|n| n.cosine >= self.min_cosine)
                    .map(|n| Pair {
                        a: row.min(n.row),
                        b: row.max(n.row),
                        cosine: n.cosine,
                    }),
            );
        }
    }
}

/// Pairs sorted by `(a, b)`, each once (the higher cosine kept where two searches scored one
/// pair with different float rounding).
pub fn merge_pairs(mut pairs: Vec<Pair>) -> Vec<Pair> {
    pairs.sort_by(|x, y| {
        (x.a, x.b)
            .cmp(&(y.a, y.b))
            .then(y.cosine.total_cmp(&x.cosine))
    });
    pairs.dedup_by(|later, first| (later.a, later.b) == (first.a, first.b));
    pairs
}
