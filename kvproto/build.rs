//! Generates Rust code for the protocol at build time: prost messages for every
//! package, plus tonic clients and servers for the `TinyKv` and `Scheduler`
//! services and this project's `Debug` service (fault injection).
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so a fresh machine needs
//! no system protobuf install.

const PROTOS: &[&str] = &[
    "proto/eraftpb.proto",
    "proto/metapb.proto",
    "proto/errorpb.proto",
    "proto/kvrpcpb.proto",
    "proto/raft_cmdpb.proto",
    "proto/raft_serverpb.proto",
    "proto/coprocessor.proto",
    "proto/schedulerpb.proto",
    "proto/tinykvpb.proto",
    // Ours alone (fault injection for tests), not TinyKV's.
    "proto/debugpb.proto",
];

fn main() {
    let protoc =
        protoc_bin_vendored::protoc_bin_path().expect("vendored protoc exists for this platform");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    // Hand-written (`src/batch_raft.rs`): same wire format, but one entry
    // that does not decode is skipped instead of failing the batch.
    config.extern_path(
        ".raft_serverpb.BatchRaftMessage",
        "crate::batch_raft::BatchRaftMessage",
    );
    tonic_prost_build::configure()
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, PROTOS, &["proto"])
        .expect("the .proto files compile");
    println!("cargo:rerun-if-changed=build.rs");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
}
