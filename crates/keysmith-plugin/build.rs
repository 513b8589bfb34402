//! Compiles the plugin contract (keysmith.driver.v1) with protox and
//! prost-build: messages only, no protoc and no tonic.
use std::{env, path::PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let contract = root.join("keysmith/driver/v1/driver.proto");
    let fds = protox::Compiler::new([&root])?
        .include_imports(true)
        .open_files([&contract])?
        .file_descriptor_set();
    // google.protobuf types map to prost-types by default.
    prost_build::Config::new().compile_fds(fds)?;
    println!("cargo:rerun-if-changed={}", contract.display());
    Ok(())
}
