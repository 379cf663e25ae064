//! The `abis` server as a library: configuration, access policy, authentication, audit,
//! limits, metrics, TLS, the `abis.v1` service, and [`serve::run`], which assembles them.
//!
//! Dependencies point one way: [`access`] and [`hex`] are leaves; [`config`] reads the access
//! table; [`audit`] knows nothing of who authenticates; [`auth`] records denials in the audit
//! log; [`limits`], [`metrics`] and [`tls`] read the configuration; [`adjudication`] (cases,
//! their gRPC service and the examiner's page) reads the audit log and the authenticator;
//! [`service`] serves the engine's gallery and opens cases; [`mosip`] puts the same service on MOSIP's message queue; [`serve`] builds
//! everything from a [`config::Config`]. The binary
//! (`main.rs`) only parses the command line.

pub mod access;
pub mod adjudication;
pub mod audit;
pub mod auth;
pub mod config;
pub mod dedup;
pub mod durable;
pub mod hex;
pub mod images;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod mosip;
pub mod serve;
pub mod service;
pub mod tls;
