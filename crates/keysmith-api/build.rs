//! Compiles the protos with protox, so that building keysmith needs no protoc.
use std::{env, path::PathBuf};

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let api = [
        root.join("keysmith/v1/access.proto"),
        root.join("keysmith/v1/pms.proto"),
        root.join("keysmith/v1/audit.proto"),
        root.join("keysmith/v1/encryption.proto"),
        root.join("keysmith/sim/v1/lock_simulator.proto"),
    ];
    // Errors carry google.rpc.ErrorInfo and BadRequest in their details, which
    // no keysmith message imports: reflection must describe them too, or
    // grpcurl cannot decode an error. They are vendored under proto/google.
    let error_details = [
        root.join("google/rpc/status.proto"),
        root.join("google/rpc/error_details.proto"),
    ];
    // Imports are kept so that reflection can describe google.protobuf types too.
    let reflected = protox::Compiler::new([&root])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(api.iter().chain(&error_details))?
        .file_descriptor_set();
    let out = PathBuf::from(env::var("OUT_DIR")?);
    std::fs::write(
        out.join("keysmith_descriptor.bin"),
        reflected.encode_to_vec(),
    )?;
    // Code only for keysmith's own packages (tonic-types already has the
    // google.rpc messages), with the protos' comments as its docs.
    let generated = protox::Compiler::new([&root])?
        .include_imports(true)
        .include_source_info(true)
        .open_files(&api)?
        .file_descriptor_set();
    tonic_prost_build::configure()
        // Bytes that are not the method's message: INVALID_ARGUMENT, not
        // tonic-prost's INTERNAL (src/codec.rs).
        .codec_path("crate::codec::EdgeCodec")
        .build_server(true)
        .build_client(true)
        .compile_fds(generated)?;
    // The plugin contract (keysmith/driver/v1) is compiled by keysmith-plugin:
    // plugins must not depend on tonic or on this crate.
    println!("cargo:rerun-if-changed={}", root.display());
    Ok(())
}
