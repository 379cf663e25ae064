//! Why a gallery operation could not run.

use thiserror::Error;

use crate::index::IndexError;
use crate::matcher::MatchError;
use crate::store::StoreError;
use crate::template::TemplateError;

/// Why a search, a verification or a write of the gallery failed.
///
/// The caller's fault: `Probe`, `Template`, `EmptyProbe`, `FaceDimension`, `NotFound`. Damaged
/// data of the gallery itself, never the caller's: `StoredTemplate`, `StoredRecord`, `Index`,
/// `Store` (see [`StoreError`] for its own split). `IndexIncomplete` passes: try again (or
/// another replica).
#[derive(Debug, Error)]
pub enum GalleryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stored template of a record is unreadable: {0}")]
    StoredTemplate(TemplateError),
    /// A stored record's template decodes but the matcher cannot use it.
    #[error("stored record cannot be prepared for matching: {0}")]
    StoredRecord(MatchError),
    #[error("probe template rejected: {0}")]
    Probe(MatchError),
    /// A template given for insertion cannot be indexed.
    #[error("template rejected: {0}")]
    Template(TemplateError),
    #[error("the probe has no biometric data")]
    EmptyProbe,
    #[error("referenceId not found")]
    NotFound,
    #[error("face embedding has {got} dimensions, the gallery stores {expected}")]
    FaceDimension { expected: usize, got: usize },
    /// A segment's index is missing or being rebuilt: no 1:N search runs on part of it.
    #[error("the 1:N index is being rebuilt; searches resume when it is complete")]
    IndexIncomplete,
    #[error("1:N index: {0}")]
    Index(#[from] IndexError),
}
