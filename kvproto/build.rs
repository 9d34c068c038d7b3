//! Generates Rust code for the protocol at build time.
//!
//! `protoc` comes from the `protoc-bin-vendored` crate, so a fresh machine needs
//! no system protobuf install.

const PROTOS: &[&str] = &["proto/eraftpb.proto"];

fn main() {
    let protoc =
        protoc_bin_vendored::protoc_bin_path().expect("vendored protoc exists for this platform");
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    config
        .compile_protos(PROTOS, &["proto"])
        .expect("the .proto files compile");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
}
