//! Errors of setting up and running cluster nodes. The per-request errors of a router are
//! [`RouteError`](crate::RouteError); they map to gRPC statuses in the server.

use std::path::PathBuf;

use crate::entry::EntryError;
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
    #[error("connecting to NATS at {urls}: {detail}")]
    Connect { urls: String, detail: String },
    /// A JetStream or NATS request failed (`what` names the operation).
    #[error("NATS: {what}: {detail}")]
    Nats { what: &'static str, detail: String },
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
    #[error("gallery store {path}: {detail}")]
    Store { path: PathBuf, detail: String },
    #[error("bootstrap of shard {shard}: {detail}")]
    Bootstrap { shard: u32, detail: String },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ClusterError {
    pub(crate) fn nats(what: &'static str, e: impl std::fmt::Display) -> ClusterError {
        ClusterError::Nats {
            what,
            detail: e.to_string(),
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
