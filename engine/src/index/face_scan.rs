//! Exact one-to-many face search over int8 embeddings, as the segments store them
//! (`x ≈ q · scale`, one scale per row): every row is scored, none is skipped, so nothing an
//! exhaustive search would find is lost; only the int8 rounding separates the score from the
//! f32 cosine (callers re-rank their short list with the f32 rows).
//!
//! The scan is memory-bound: 192 bytes per row against one query, read once. Rows are split into
//! blocks across threads; a batch of queries (duplicate search) scores each block for every
//! query while the block is in cache, so the gallery is read once per batch, not per query.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;
use thiserror::Error;

use super::int8;
use crate::store::FaceMatrix;

/// Rows per work item: 1,024 rows of 192 bytes stay in a core's L2 across a batch of queries.
const BLOCK_ROWS: usize = 1024;

#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ScanError {
    #[error("face matrix shape: {0}")]
    Shape(String),
    #[error("query has {got} dimensions, the gallery {want}")]
    Dimension { got: usize, want: usize },
}

/// Quantised rows: `data[r * stride..][..dim]` with `scales[r]`.
#[derive(Debug, Clone, Copy)]
pub struct Int8Rows<'a> {
    data: &'a [i8],
    stride: usize,
    dim: usize,
    scales: &'a [f32],
}

impl<'a> Int8Rows<'a> {
    pub fn new(
        data: &'a [i8],
        stride: usize,
        dim: usize,
        scales: &'a [f32],
    ) -> Result<Int8Rows<'a>, ScanError> {
        if dim == 0 || dim > stride || dim > int8::MAX_DIM {
            return Err(ScanError::Shape(format!(
                "dimension {dim}, stride {stride}"
            )));
        }
        if data.len() != scales.len() * stride {
            return Err(ScanError::Shape(format!(
                "{} bytes for {} rows of stride {stride}",
                data.len(),
                scales.len()
            )));
        }
        Ok(Int8Rows {
            data,
            stride,
            dim,
            scales,
        })
    }

    /// The int8 rows of a segment's face matrix.
    pub fn from_matrix(m: &FaceMatrix<'a>) -> Result<Int8Rows<'a>, ScanError> {
        let (data, stride) = m.i8_matrix();
        Int8Rows::new(&data[..m.rows() * stride], stride, m.dim(), m.scales())
    }

    pub fn rows(&self) -> usize {
        self.scales.len()
    }

    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}

/// A scored row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    pub row: usize,
    /// Approximate cosine similarity (for L2-normalised embeddings).
    pub score: f32,
}

/// Min-heap order: the weakest hit on top (ties: the larger row is weaker, so results are
/// deterministic and independent of the thread split).
#[derive(PartialEq)]
struct Weakest(Hit);
impl Eq for Weakest {}
impl PartialOrd for Weakest {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Weakest {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .0
            .score
            .total_cmp(&self.0.score)
            .then(self.0.row.cmp(&other.0.row))
    }
}

struct TopK {
    heap: BinaryHeap<Weakest>,
    /// The weakest kept score once `k` are kept (−∞ before): a plain float compare rejects
    /// nearly every row before the exact heap order is consulted.
    floor: f32,
}

impl Default for TopK {
    fn default() -> Self {
        TopK {
            heap: BinaryHeap::new(),
            floor: f32::NEG_INFINITY,
        }
    }
}

impl TopK {
    #[inline]
    fn push(&mut self, k: usize, h: Hit) {
        // Strictly below the floor can never enter; ties and NaN take the exact path.
        if h.score < self.floor {
            return;
        }
        if self.heap.len() < k {
            self.heap.push(Weakest(h));
        } else if let Some(top) = self.heap.peek() {
            if Weakest(h) < *top {
                self.heap.pop();
                self.heap.push(Weakest(h));
            }
        }
        if self.heap.len() >= k {
            if let Some(top) = self.heap.peek() {
                self.floor = top.0.score;
            }
        }
    }

    fn merge(mut self, other: TopK, k: usize) -> TopK {
        for w in other.heap {
            self.push(k, w.0);
        }
        self
    }

    fn sorted(self) -> Vec<Hit> {
        let mut v: Vec<Hit> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
        v
    }
}

/// A query quantised like the rows.
struct Query {
    q: Vec<i8>,
    scale: f32,
}

fn quantise(query: &[f32]) -> Query {
    let mut q = vec![0i8; query.len()];
    let scale = crate::store::quantise(query, &mut q);
    Query { q, scale }
}

/// The `k` best rows for each query, best first. Every row is scored (exact search over the
/// int8 rows); threads split the rows in blocks.
pub fn top_k_batch(
    rows: &Int8Rows<'_>,
    queries: &[&[f32]],
    k: usize,
) -> Result<Vec<Vec<Hit>>, ScanError> {
    top_k_batch_where(rows, queries, k, &|_| true)
}

/// [`top_k_batch`] over the rows `allow` accepts (deleted or excluded records' rows are never
/// kept, so they cannot push a live row out of the `k`).
pub fn top_k_batch_where(
    rows: &Int8Rows<'_>,
    queries: &[&[f32]],
    k: usize,
    allow: &(dyn Fn(usize) -> bool + Sync),
) -> Result<Vec<Vec<Hit>>, ScanError> {
    for q in queries {
        if q.len() != rows.dim {
            return Err(ScanError::Dimension {
                got: q.len(),
                want: rows.dim,
            });
        }
    }
    let qs: Vec<Query> = queries.iter().map(|q| quantise(q)).collect();
    let n = rows.rows();
    let blocks = n.div_ceil(BLOCK_ROWS);
    let merged = (0..blocks)
        .into_par_iter()
        .fold(
            || {
                (
                    vec![0i32; BLOCK_ROWS],
                    (0..qs.len()).map(|_| TopK::default()).collect::<Vec<_>>(),
                )
            },
            |(mut dots, mut tops), b| {
                let first = b * BLOCK_ROWS;
                let count = BLOCK_ROWS.min(n - first);
                let block = &rows.data[first * rows.stride..(first + count) * rows.stride];
                for (q, top) in qs.iter().zip(tops.iter_mut()) {
                    int8::dots(&q.q, block, rows.stride, &mut dots[..count]);
                    for (i, &d) in dots[..count].iter().enumerate() {
                        let r = first + i;
                        if !allow(r) {
                            continue;
                        }
                        let score = d as f32 * q.scale * rows.scales[r];
                        top.push(k, Hit { row: r, score });
                    }
                }
                (dots, tops)
            },
        )
        .map(|(_, tops)| tops)
        .reduce(
            || (0..qs.len()).map(|_| TopK::default()).collect(),
            |a, b| a.into_iter().zip(b).map(|(x, y)| x.merge(y, k)).collect(),
        );
    Ok(merged.into_iter().map(TopK::sorted).collect())
}

/// The `k` best rows for one query, best first.
pub fn top_k(rows: &Int8Rows<'_>, query: &[f32], k: usize) -> Result<Vec<Hit>, ScanError> {
    Ok(top_k_batch(rows, &[query], k)?.pop().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hash::mix;
    use crate::store::synth::synthetic_face;

    /// Rows quantised as the segment writer does, plus their f32 originals.
    fn gallery(n: usize, dim: usize, stride: usize) -> (Vec<i8>, Vec<f32>, Vec<Vec<f32>>) {
        let mut data = vec![0i8; n * stride];
        let mut scales = Vec::with_capacity(n);
        let mut originals = Vec::with_capacity(n);
        let mut f = Vec::new();
        for r in 0..n {
            f.clear();
            synthetic_face(mix(r as u64 + 1), dim, &mut f);
            let norm = f.iter().map(|v| v * v).sum::<f32>().sqrt();
            f.iter_mut().for_each(|v| *v /= norm);
            let q = quantise(&f);
            data[r * stride..r * stride + dim].copy_from_slice(&q.q);
            scales.push(q.scale);
            originals.push(f.clone());
        }
        (data, scales, originals)
    }

    #[test]
    fn index_face_scan_equals_brute_force_and_finds_the_duplicate() {
        let (dim, stride, n) = (48, 64, 5000);
        let (data, scales, originals) = gallery(n, dim, stride);
        let rows = Int8Rows::new(&data, stride, dim, &scales).unwrap();
        // A noisy copy of row 4321 as the query.
        let mut probe = originals[4321].clone();
        for (i, v) in probe.iter_mut().enumerate() {
            *v += ((mix(i as u64) % 1000) as f32 / 1000.0 - 0.5) * 0.02;
        }
        let hits = top_k(&rows, &probe, 10).unwrap();
        assert_eq!(hits[0].row, 4321);
        // Same list as scoring every row one by one, in the same order.
        let q = quantise(&probe);
        let mut all: Vec<Hit> = (0..n)
            .map(|r| {
                let d: i32 =
                    q.q.iter()
                        .zip(&data[r * stride..r * stride + dim])
                        .map(|(&a, &b)| i32::from(a) * i32::from(b))
                        .sum();
                Hit {
                    row: r,
                    score: d as f32 * q.scale * scales[r],
                }
            })
            .collect();
        all.sort_by(|a, b| b.score.total_cmp(&a.score).then(a.row.cmp(&b.row)));
        assert_eq!(hits, all[..10].to_vec());
        // The int8 score stays close to the f32 dot product.
        let cos: f32 = probe.iter().zip(&originals[4321]).map(|(a, b)| a * b).sum();
        assert!(
            (hits[0].score - cos).abs() < 0.02,
            "{} vs {cos}",
            hits[0].score
        );
    }

    #[test]
    fn index_face_scan_batch_equals_single_queries() {
        let (dim, stride, n) = (32, 64, 3000);
        let (data, scales, originals) = gallery(n, dim, stride);
        let rows = Int8Rows::new(&data, stride, dim, &scales).unwrap();
        let queries: Vec<&[f32]> = [7usize, 1500, 2999]
            .iter()
            .map(|&r| &originals[r][..])
            .collect();
        let batch = top_k_batch(&rows, &queries, 5).unwrap();
        for (q, got) in queries.iter().zip(&batch) {
            assert_eq!(got, &top_k(&rows, q, 5).unwrap());
        }
        assert_eq!(batch[1][0].row, 1500);
    }

    #[test]
    fn index_face_scan_refuses_bad_shapes() {
        assert!(Int8Rows::new(&[0; 10], 4, 4, &[1.0; 2]).is_err());
        assert!(Int8Rows::new(&[0; 8], 4, 5, &[1.0; 2]).is_err());
        let data = [0i8; 8];
        let rows = Int8Rows::new(&data, 4, 4, &[1.0; 2]).unwrap();
        assert_eq!(
            top_k(&rows, &[0.0; 3], 1).unwrap_err(),
            ScanError::Dimension { got: 3, want: 4 }
        );
    }
}
