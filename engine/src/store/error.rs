//! The store's one error type.
//!
//! Messages never contain a referenceId, a template or an embedding: the caller knows which
//! record it asked about, and logs must not carry personal identifiers.

use std::io;

use thiserror::Error;

/// Why a store operation failed.
///
/// Mapping for the gRPC layer (see the module docs): `InvalidRecord` → INVALID_ARGUMENT,
/// `NotFound` → NOT_FOUND, `AlreadyExists` → ALREADY_EXISTS, `Full` → RESOURCE_EXHAUSTED,
/// `Corrupt` → DATA_LOSS, `Failed`/`Io`/`Locked`/`Incompatible` → UNAVAILABLE or INTERNAL.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The operating system refused a file operation.
    #[error("store I/O error ({op} {file}): {source}")]
    Io {
        op: &'static str,
        file: String,
        #[source]
        source: io::Error,
    },
    /// A file's bytes are not what the store wrote: checksum mismatch, impossible length,
    /// damaged entry in the middle of the log, inconsistent replay.
    #[error("corrupt store file {file}: {detail}")]
    Corrupt { file: String, detail: String },
    /// A segment's companion (index) files could not be built or opened (`what` says which).
    #[error("companion file {file} ({what}): {source}")]
    Companion {
        file: String,
        what: &'static str,
        #[source]
        source: CompanionError,
    },
    /// Insert of a referenceId that is stored with different content.
    #[error("referenceId already exists with different content")]
    AlreadyExists,
    /// Delete or lookup of a referenceId that is not stored.
    #[error("referenceId not found")]
    NotFound,
    /// The record breaks a rule of the data model; `field` names the part.
    #[error("invalid record: {field}: {detail}")]
    InvalidRecord { field: &'static str, detail: String },
    /// A write or fsync failed earlier; durability of later writes cannot be promised, so the
    /// store refuses them until it is reopened (which replays the log from disk).
    #[error("store refuses writes after an earlier write failure ({reason}); reopen to recover")]
    Failed { reason: String },
    /// A configured limit (gallery size) is reached.
    #[error("store limit reached: {detail}")]
    Full { detail: String },
    /// Another process holds the directory.
    #[error("store directory {path} is locked by another process")]
    Locked { path: String },
    /// The directory holds a store this build cannot serve (format version, face dimension).
    #[error("incompatible store: {detail}")]
    Incompatible { detail: String },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, file: impl Into<String>, source: io::Error) -> Self {
        StoreError::Io {
            op,
            file: file.into(),
            source,
        }
    }

    pub(crate) fn corrupt(file: impl Into<String>, detail: impl Into<String>) -> Self {
        StoreError::Corrupt {
            file: file.into(),
            detail: detail.into(),
        }
    }

    pub(crate) fn invalid(field: &'static str, detail: impl Into<String>) -> Self {
        StoreError::InvalidRecord {
            field,
            detail: detail.into(),
        }
    }

    /// Which part of a record an [`StoreError::InvalidRecord`] is about (`None` for other
    /// errors), so the service can tell the caller what kind of input to fix.
    pub fn record_defect(&self) -> Option<RecordDefect> {
        match self {
            StoreError::InvalidRecord { field, detail } => Some(match *field {
                "reference_id" if detail.starts_with("empty") => RecordDefect::MissingReferenceId,
                "biometrics" => RecordDefect::NoBiometrics,
                "fingers" | "faces" => RecordDefect::Biometric,
                _ => RecordDefect::Structure,
            }),
            _ => None,
        }
    }
}

/// Why a segment's companion files could not be built or used: the companion's own typed error,
/// kept as the source (the store does not know the upper layer's types).
#[derive(Debug, Error)]
#[error(transparent)]
pub struct CompanionError(Box<dyn std::error::Error + Send + Sync>);

impl CompanionError {
    pub fn new(e: impl std::error::Error + Send + Sync + 'static) -> CompanionError {
        CompanionError(Box::new(e))
    }
}

/// The part of a record that breaks the data model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordDefect {
    /// The referenceId is empty.
    MissingReferenceId,
    /// Neither a finger nor a face.
    NoBiometrics,
    /// A finger template or face embedding is malformed.
    Biometric,
    /// Anything else: id syntax, metadata, counts.
    Structure,
}

pub(crate) type Result<T, E = StoreError> = std::result::Result<T, E>;
