//! Why an index could not be built or could not answer.

use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Error)]
pub enum AnnError {
    #[error("no rows to index")]
    Empty,
    #[error("embedding dimension must be 1..={max}, got {got}")]
    BadDimension { got: usize, max: usize },
    #[error("{len} values are not a whole number of rows of dimension {dim}")]
    Shape { len: usize, dim: usize },
    #[error("{got} rows exceed the index's limit of {max}")]
    TooManyRows { got: usize, max: usize },
    #[error("query has {got} values, the index's rows {want}")]
    QueryDimension { got: usize, want: usize },
    #[error("{what} {index} holds a NaN or infinite value")]
    NotFinite { what: &'static str, index: usize },
    #[error("{what} {index} is a zero vector (no direction to compare)")]
    ZeroVector { what: &'static str, index: usize },
    #[error("invalid parameter {name}: {why}")]
    Parameter { name: &'static str, why: String },
    #[error("row range {start}..{end} outside the index's {rows} rows")]
    RowRange { start: u32, end: u32, rows: usize },
    #[error("FAISS: {0}")]
    Faiss(String),
}

impl From<faiss::error::Error> for AnnError {
    fn from(e: faiss::error::Error) -> Self {
        AnnError::Faiss(e.to_string())
    }
}
