//! Approximate nearest-neighbour search over face embeddings, for the searches whose cost the
//! exact int8 scan (`abis_engine::index::face_scan`) cannot keep: a face-only 1:N top-k over
//! millions of rows, and the gallery-wide N:N self-join that deduplication needs (every
//! embedding's k nearest neighbours above a cosine threshold, as pairs). It wraps FAISS
//! (the `faiss` crate with its `static` feature: FAISS's C++ sources, vendored by `faiss-sys`,
//! compiled with cmake against the system BLAS and linked in, so nothing is loaded or
//! downloaded at run time). A gallery of at least [`IVF_MIN_ROWS`] rows gets an inverted-file
//! index (IVF-Flat, inner product over L2-normalised rows: k-means cells, `nprobe` of them read
//! per query); a smaller one an exact flat inner-product index. Rows are identified by their
//! position (`u32`) in the slice the index was built from; the caller maps positions to records.
//! Bad input (shape, dimension, NaN or infinite values, a zero vector, `k = 0`) is a typed
//! [`AnnError`] naming the row or the parameter, never a panic.

mod cells;
mod error;
mod face_ann;
mod rows;
mod self_join;

pub use error::AnnError;
pub use face_ann::{AnnConfig, FaceAnn, Layout, Neighbour, ANN_MIN_ROWS};
pub use self_join::{merge_pairs, Pair};
