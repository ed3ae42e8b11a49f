//! Compiles `proto/meridian/v1/*.proto` with the pure-Rust `protox` compiler (no system
//! `protoc`) and generates prost messages plus tonic clients and servers.
//!
//! Outputs in `OUT_DIR`: `meridian.v1.rs` (the generated code) and `meridian_descriptor.bin`
//! (the encoded `FileDescriptorSet`, imports and source info included, for gRPC reflection).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::{env, fs};

/// The include root; `.proto` files import each other relative to it.
const PROTO_ROOT: &str = "proto";
/// The package directory under the include root.
const PACKAGE_DIR: &str = "meridian/v1";

fn main() -> Result<(), Box<dyn Error>> {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").ok_or("CARGO_MANIFEST_DIR unset")?);
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").ok_or("OUT_DIR unset")?);
    let root = manifest_dir.join(PROTO_ROOT);

    // A directory makes cargo rerun when any file below it changes (or is added or removed).
    println!("cargo:rerun-if-changed={}", root.display());
    println!("cargo:rerun-if-changed=build.rs");

    let files = proto_files(&root.join(PACKAGE_DIR))?;

    let mut compiler = protox::Compiler::new([&root])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(&files)?;
    let descriptor_path = out_dir.join("meridian_descriptor.bin");
    fs::write(&descriptor_path, compiler.encode_file_descriptor_set())?;

    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Ordered maps: deterministic encoding (the audit log hashes encoded records) and the
        // same iteration order as the model's `BTreeMap`s.
        .btree_map(".")
        // Documents where the set lives; `compile_fds` itself does not write it, we did above.
        .file_descriptor_set_path(&descriptor_path)
        .compile_fds(compiler.file_descriptor_set())?;
    Ok(())
}

/// The `.proto` files in `dir`, sorted so that generation is deterministic.
fn proto_files(dir: &Path) -> Result<Vec<PathBuf>, Box<dyn Error>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "proto") {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(format!("no .proto files in {}", dir.display()).into());
    }
    Ok(files)
}
