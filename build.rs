//! Compiles `proto/` with protox (pure Rust, no system protoc) and writes the
//! descriptor set to OUT_DIR so the server can serve gRPC reflection.

use std::path::PathBuf;

const PROTOS: &[&str] = &[
    "proto/tallyq/v1/broker.proto",
    "proto/tallyq/v1/admin.proto",
    "proto/tallyq/v1/operator.proto",
    "proto/tallyq/v1/billing.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_imports(true).include_source_info(true);
    compiler.open_files(PROTOS.iter().map(|p| p.trim_start_matches("proto/")))?;

    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("tallyq_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    tonic_prost_build::configure()
        .bytes(".")
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
