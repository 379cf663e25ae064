//! A partitioned, replicated gallery on NATS JetStream.
//!
//! ```text
//!  gRPC ─► router (abis serve, role "router")                 KV abis_cluster: spec, trim points
//!           │ Insert/Delete: per-subject optimistic            KV abis_replicas: heartbeats
//!           │   publish to stream ABIS, subject
//!           │   abis.rec.<shard>.<key>, R3 on NATS servers ──► shard replicas (role "replica"):
//!           │                                                  own store, apply their subjects
//!           │ Identify: abis.search.<shard> to one replica      in stream order from their
//!           ▼   of every shard (queue groups), merge at the     durable position, answer
//!             threshold of the whole gallery                    searches, heartbeat
//! ```
//!
//! - [`shard`]: which shard holds an id, and the subjects (no personal identifier in any).
//! - [`entry`]: one log message (sealed with the gallery key under encryption at rest).
//! - [`wire`]: the engine's types on the wire (`abis.cluster.v1`), checked when decoded.
//! - [`catalog`]: the stream and buckets `abis cluster init` creates.
//! - [`gallery_shard`]: the shard seam — what a shard answers, by [`local`] (this process's
//!   gallery: a single node, a replica) or [`remote`] (NATS request-reply: the router), and the
//!   one mapping of a gallery's errors.
//! - [`router`]: the write path (optimistic concurrency) and the read path (plan, call every
//!   shard, merge; read-your-writes); [`merge`]: the global threshold; [`served`]: which
//!   replica answered, for the audit.
//! - [`replica`]: applying a shard's log, answering its requests; [`bootstrap`]: copying a
//!   peer's store when the log was trimmed past a replica; [`membership`]: heartbeats;
//!   [`retention`]: trimming the log; [`status`]: `abis cluster status`.
//!
//! The engine knows nothing of this crate; the server wires it (`[cluster]` configuration).

pub mod bootstrap;
pub mod catalog;
pub mod connect;
pub mod entry;
mod error;
pub mod gallery_shard;
pub mod local;
pub mod membership;
pub mod merge;
pub mod remote;
pub mod replica;
pub mod retention;
pub mod router;
pub mod served;
pub mod shard;
pub mod status;
pub mod wire;

pub use catalog::{Catalog, ClusterSpec, InitOptions};
pub use connect::NatsConfig;
pub use error::{BootstrapError, ClusterError};
pub use gallery_shard::{FailureKind, GalleryShard, Identified, ShardError};
pub use local::{GalleryOptions, LocalShard};
pub use membership::ReplicaState;
pub use replica::ReplicaConfig;
pub use router::{InternalError, LogError, RouteError, Router, RouterConfig};
pub use served::Served;
