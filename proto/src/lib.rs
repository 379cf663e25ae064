//! The `abis.v1` gRPC protocol, generated from `proto/abis/v1/abis.proto`.

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
