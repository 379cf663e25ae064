//! The `abis.v1` gRPC protocol, generated from `proto/abis/v1/abis.proto`, and the internal
//! messages of a cluster (`abis.cluster.v1`, `proto/abis/cluster/v1/cluster.proto`).

pub mod codec;
pub mod failure;

pub use failure::FailureReason;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod v1 {
    tonic::include_proto!("abis.v1");

    /// Encoded `FileDescriptorSet` of the protocol, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        include_bytes!(concat!(env!("OUT_DIR"), "/abis_v1_descriptor.bin"));
}

/// Messages between cluster routers and shard replicas, and the write log's entries (not a
/// public API; decoded and checked by `abis-cluster`).
pub mod cluster {
    #[allow(clippy::all, clippy::pedantic, missing_docs)]
    pub mod v1 {
        tonic::include_proto!("abis.cluster.v1");
    }
}
