//! The client's one error type.

use std::path::PathBuf;

/// Why a client command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The command line asks for something impossible (the message says what to give).
    #[error("{0}")]
    Usage(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} {path}: no PEM {kind} block found")]
    Pem {
        what: &'static str,
        path: PathBuf,
        kind: &'static str,
    },
    #[error("bad server address {addr:?}: {detail}")]
    Address { addr: String, detail: String },
    #[error("connecting to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
    #[error("TLS configuration: {0}")]
    Tls(#[source] tonic::transport::Error),
    /// The server answered with an error status.
    #[error("gRPC {code:?}: {message}", code = .0.code(), message = .0.message())]
    Status(tonic::Status),
    #[error("async runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("load task failed: {0}")]
    Task(String),
}

impl From<tonic::Status> for ClientError {
    fn from(s: tonic::Status) -> Self {
        ClientError::Status(s)
    }
}
