//! Compiles the protos with protox, so that building keysmith needs no protoc.
use std::{env, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        root.join("keysmith/v1/access.proto"),
        root.join("keysmith/v1/pms.proto"),
        root.join("keysmith/v1/audit.proto"),
        root.join("keysmith/sim/v1/lock_simulator.proto"),
    ];
    // Imports are kept so that reflection can describe google.protobuf types too.
    let fds = protox::Compiler::new([&root])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(&files)?
        .file_descriptor_set();
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(out.join("keysmith_descriptor.bin"), fds.encode_to_vec())?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(fds)?;
    // The plugin contract (keysmith/driver/v1) is compiled by keysmith-plugin:
    // plugins must not depend on tonic or on this crate.
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
