//! Approximate nearest-neighbour search over face embeddings, for the searches whose cost the
//! exact int8 scan (`abis_engine::index::face_scan`) cannot keep: the gallery-wide N:N
//! self-join that deduplication needs (every embedding's k nearest neighbours above a cosine
//! threshold, as pairs) and, where a recall below the exact scan's is acceptable, a face-only
//! 1:N top-k. It wraps FAISS (the `faiss` crate with its `static` feature: FAISS's C++ sources,
//! vendored by `faiss-sys`, compiled with cmake against the system BLAS and linked in, so
//! nothing is loaded or downloaded at run time). Rows are L2-normalised, so inner product is the
//! cosine. A gallery of at least [`ANN_MIN_ROWS`] rows gets an inverted file (IVF-Flat over
//! spherical k-means cells, the default) or an HNSW graph ([`Layout`]); a smaller one an exact
//! flat index. One dial, the breadth, trades recall for speed (IVF cells read, HNSW candidates
//! kept); `abis-bench faces-ann` measures both against the exact scan. Rows are identified by
//! their position (`u32`) in the slice the index was built from; the caller maps positions to
//! records. Bad input (shape, dimension, NaN or infinite values, a zero vector, `k = 0`, a
//! breadth of 0) is a typed [`AnnError`] naming the row or the parameter, never a panic.

mod cells;
mod error;
mod face_ann;
mod rows;
mod self_join;

pub use error::AnnError;
pub use face_ann::{AnnConfig, FaceAnn, Layout, Neighbour, ANN_MIN_ROWS};
pub use self_join::{merge_pairs, Pair};
