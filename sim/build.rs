//! Generates the tonic client of the small etcd v3 API subset in `proto/etcd_v3_subset.proto`
//! (KV.Put, Watch.Watch) that the B2 baseline speaks, with the pure-Rust `protox` compiler
//! like `meridian-proto` does (no system `protoc`). Output: `OUT_DIR/etcdserverpb.rs`.

use std::error::Error;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir =
        PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR unset")?);
    let root = manifest_dir.join("proto");
    let file = root.join("etcd_v3_subset.proto");
    println!("cargo:rerun-if-changed={}", file.display());
    println!("cargo:rerun-if-changed=build.rs");

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.open_files([&file])?;
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}
