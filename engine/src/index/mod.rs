//! One-to-many search structures beyond exhaustive matching: the exact int8 face scan over
//! the quantised rows every segment already stores; for fingers, coarse local structures
//! (`local`), fixed-length codes drawn from them (`code`), and the per-segment files that keep
//! both beside the templates (`segment_index`).

pub mod bands;
pub mod code;
pub mod face_scan;
pub mod int8;
pub mod local;
pub mod local_sort;
pub mod segment_index;

/// Why the 1:N index could not answer: a damaged index file, a stored face matrix the scan
/// cannot read, or a malformed local form.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IndexError {
    #[error(transparent)]
    File(#[from] segment_index::IndexFileError),
    #[error(transparent)]
    FaceScan(#[from] face_scan::ScanError),
    #[error(transparent)]
    Form(#[from] local::LocalFormError),
}
