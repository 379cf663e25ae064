//! The client side of `abis.v1`: connecting (plaintext or TLS, API keys), the `abis client`
//! commands, and a bounded load generator.
//!
//! It depends on the protocol crate only, never on the server or the engine, so a client
//! machine (an enrollment office, a bank counter's back end, a test harness) builds without the
//! models, the matcher or ONNX Runtime.

mod api_key;
mod cases;
mod channel;
mod commands;
mod dedup;
mod error;
mod load;
mod samples;
mod synthetic;

pub use api_key::ApiKeyInterceptor;
pub use channel::{
    connect, connect_cases, endpoint, tls_config, CaseClient, Client, ConnectOptions,
};
pub use commands::{run, ClientArgs};
pub use error::ClientError;
pub use load::{percentile_ms, LoadArgs, LoadRpc};
pub use samples::looks_like_template;
pub use synthetic::synthetic_iso_template;
