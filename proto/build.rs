//! Compiles the protocol with `protox` (pure Rust), so no system `protoc` is needed, and keeps
//! the encoded descriptor set for gRPC server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/abis/v1/abis.proto",
        "proto/abis/v1/adjudication.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("abis_v1_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .codec_path("crate::codec::AbisCodec")
        .compile_fds(fds)?;

    // The cluster's internal messages: plain prost types, no gRPC service, and not in the
    // descriptor set served by reflection (they never cross the public API).
    let internal = ["proto/abis/cluster/v1/cluster.proto"];
    for f in internal {
        println!("cargo:rerun-if-changed={f}");
    }
    tonic_prost_build::configure()
        .build_client(false)
        .build_server(false)
        .compile_fds(protox::compile(internal, ["proto"])?)?;
    Ok(())
}
