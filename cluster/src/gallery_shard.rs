//! The shard seam: what one shard of a gallery answers, wherever it runs — the way Qdrant
//! separates a local shard from a remote one.
//!
//! - [`LocalShard`](crate::local::LocalShard): this process's gallery. A single node's service
//!   reads it directly; a replica answers its shard's requests from it.
//! - [`RemoteShard`](crate::remote::RemoteShard): a NATS request to one replica of the shard
//!   (queue group, retried until the call's deadline). The router reads the cluster through it.
//!
//! Both answer with the same types and the same [`ShardError`], whose [`FailureKind`] is the one
//! mapping of a gallery's errors (the replica sends it over the wire, the server turns it into
//! a gRPC status). Writes are not part of the seam: a remote shard is written only through the
//! write log (the router publishes, replicas apply it with
//! [`LocalShard::apply`](crate::local::LocalShard::apply)).
//!
//! The trait lives in this crate because the remote side needs NATS and the wire format, which
//! the engine must not know, and the server already depends on this crate.

use std::future::Future;

/// A 1:N answer, a shard's or the whole cluster's: the engine's, one type everywhere.
pub use abis_engine::gallery::Identified;
use abis_engine::gallery::{GalleryError, IdentifyOptions, Probe, Verification};
use abis_engine::store::{Record, StoreError};

/// What a shard answers.
pub trait GalleryShard: Send + Sync {
    /// Searches each query; each answer is the one a search of that query alone would give.
    fn identify_batch(
        &self,
        queries: Vec<(Probe, IdentifyOptions)>,
    ) -> impl Future<Output = Vec<Result<Identified, ShardError>>> + Send;
    /// 1:1 against the stored record `id`.
    fn verify(
        &self,
        probe: Probe,
        id: String,
    ) -> impl Future<Output = Result<Verification, ShardError>> + Send;
    /// 1:1 of two sets of samples (nothing stored is read).
    fn verify_samples(
        &self,
        probe: Probe,
        reference: Probe,
    ) -> impl Future<Output = Result<Verification, ShardError>> + Send;
    /// The record stored under `id`.
    fn get(&self, id: String) -> impl Future<Output = Result<Option<Record>, ShardError>> + Send;
    /// Records the shard holds.
    fn count(&self) -> impl Future<Output = Result<u64, ShardError>> + Send;
}

/// How a shard's failure is answered, wherever it happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    NotFound,
    EmptyProbe,
    /// The probe or request is malformed.
    Invalid,
    /// Not now: another replica, or the same one later, may answer.
    Unavailable,
    /// The shard's storage or index failed.
    Internal,
}

impl FailureKind {
    /// The one mapping of a gallery's errors.
    pub fn of(e: &GalleryError) -> FailureKind {
        match e {
            GalleryError::NotFound | GalleryError::Store(StoreError::NotFound) => {
                FailureKind::NotFound
            }
            GalleryError::EmptyProbe => FailureKind::EmptyProbe,
            GalleryError::Probe(_)
            | GalleryError::Template(_)
            | GalleryError::FaceDimension { .. }
            | GalleryError::Store(StoreError::InvalidRecord { .. }) => FailureKind::Invalid,
            // Another replica of the shard may have its index.
            GalleryError::IndexIncomplete => FailureKind::Unavailable,
            GalleryError::Store(_)
            | GalleryError::StoredTemplate(_)
            | GalleryError::StoredRecord(_)
            | GalleryError::Index(_) => FailureKind::Internal,
        }
    }
}

/// A failure a replica sent, or no answer at all: what the router learns of a remote shard.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RemoteFailure {
    /// No replica answered in time: the reason of the last try.
    #[error("{0}")]
    Unavailable(String),
    /// A replica answered with a definite failure (its words).
    #[error("{message}")]
    Refused { kind: FailureKind, message: String },
    /// A replica's answer that cannot be used.
    #[error("{0}")]
    Reply(String),
}

/// Why a shard did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// This process's gallery failed or refused.
    #[error(transparent)]
    Gallery(#[from] GalleryError),
    #[error(transparent)]
    Remote(#[from] RemoteFailure),
    /// The blocking task that ran the request ended abnormally.
    #[error("the request task failed")]
    Task,
}

impl ShardError {
    pub fn kind(&self) -> FailureKind {
        match self {
            ShardError::Gallery(e) => FailureKind::of(e),
            ShardError::Remote(RemoteFailure::Refused { kind, .. }) => *kind,
            ShardError::Remote(RemoteFailure::Unavailable(_)) => FailureKind::Unavailable,
            ShardError::Remote(RemoteFailure::Reply(_)) | ShardError::Task => FailureKind::Internal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gallery_errors_map_to_one_kind_each() {
        assert_eq!(
            FailureKind::of(&GalleryError::NotFound),
            FailureKind::NotFound
        );
        assert_eq!(
            FailureKind::of(&GalleryError::IndexIncomplete),
            FailureKind::Unavailable
        );
        assert_eq!(
            FailureKind::of(&GalleryError::FaceDimension {
                expected: 4,
                got: 3
            }),
            FailureKind::Invalid
        );
        assert_eq!(
            FailureKind::of(&GalleryError::Store(StoreError::Full {
                detail: "x".into()
            })),
            FailureKind::Internal
        );
        let refused = ShardError::from(RemoteFailure::Refused {
            kind: FailureKind::EmptyProbe,
            message: "empty".into(),
        });
        assert_eq!(refused.kind(), FailureKind::EmptyProbe);
        assert_eq!(refused.to_string(), "empty");
    }
}
