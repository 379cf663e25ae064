//! Errors of setting up and running cluster nodes. The per-request errors of a router are
//! [`RouteError`](crate::RouteError); they map to gRPC statuses in the server.

use std::path::PathBuf;

use abis_engine::gallery::GalleryError;
use abis_engine::store::StoreError;

use crate::entry::EntryError;
use crate::gallery_shard::ShardError;
use crate::wire::WireError;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("cluster configuration: {0}")]
    Config(String),
    #[error("{what} {path}: {detail}")]
    Secret {
        what: &'static str,
        path: PathBuf,
        detail: String,
    },
    #[error("connecting to NATS at {urls}: {source}")]
    Connect {
        urls: String,
        #[source]
        source: async_nats::ConnectError,
    },
    /// A JetStream or NATS request failed (`what` names the operation).
    #[error("NATS: {what}: {source}")]
    Nats {
        what: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the cluster is not initialised (no `spec` in KV bucket {bucket}): run `abis cluster init`"
    )]
    NotInitialised { bucket: String },
    #[error("the cluster spec in KV bucket {bucket} is unreadable: {detail}")]
    Spec { bucket: String, detail: String },
    #[error("shard {shard} does not exist: the cluster has shards 0..{shards}")]
    NoSuchShard { shard: u32, shards: u32 },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error(transparent)]
    Entry(#[from] EntryError),
    #[error("gallery store {path}: {source}")]
    Gallery {
        path: PathBuf,
        #[source]
        source: ShardError,
    },
    #[error("bootstrap of shard {shard}: {source}")]
    Bootstrap {
        shard: u32,
        #[source]
        source: BootstrapError,
    },
    #[error("gallery store {path}: {source}")]
    Store {
        path: PathBuf,
        #[source]
        source: StoreError,
    },
    /// A task of the node ended abnormally (a panic): `what` it was doing.
    #[error("{0}: the task ended abnormally")]
    Task(&'static str),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClusterError {
    pub(crate) fn nats(
        what: &'static str,
        e: impl std::error::Error + Send + Sync + 'static,
    ) -> ClusterError {
        ClusterError::Nats {
            what,
            source: Box::new(e),
        }
    }

    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ClusterError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Why copying a peer's store (or serving a copy) failed.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("unreadable {what}: {source}")]
    Decode {
        what: &'static str,
        #[source]
        source: prost::DecodeError,
    },
    #[error(transparent)]
    Wire(#[from] WireError),
    #[error("the offer names a foreign session subject")]
    ForeignSubject,
    #[error("the offer lists {0:?}, which is not a file of a gallery")]
    NotAGalleryFile(String),
    #[error("the offer lists no file")]
    Empty,
    #[error("chunk of {file}: {source}")]
    Request {
        file: String,
        #[source]
        source: async_nats::RequestError,
    },
    /// The peer's words.
    #[error("the peer: {0}")]
    Peer(String),
    #[error("an empty chunk of {0}")]
    EmptyChunk(String),
    #[error("{0} is longer than offered")]
    TooLong(String),
    #[error("{0} arrived damaged")]
    Damaged(String),
    #[error("checkpoint: {0}")]
    Checkpoint(#[source] GalleryError),
    #[error("installing the copy: {0}")]
    Install(#[source] StoreError),
}
