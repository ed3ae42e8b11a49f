//! The intent compiler and the network allocator are pure (STYLE habit 1): no async, no
//! runtime, no store, no clock, no RNG. Only `compiler/publish.rs` does IO.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn compiler_and_networks_do_no_io_and_read_no_clock() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src.join("compiler"), &mut files);
    rust_files(&src.join("networks"), &mut files);
    files.retain(|p| !p.ends_with("compiler/publish.rs"));
    let forbidden = [
        "async fn",
        ".await",
        "tokio::",
        "sled::",
        "std::fs",
        "SystemTime::now",
        "Instant::now",
        "rand::",
        "thread_rng",
    ];
    for path in &files {
        let text = std::fs::read_to_string(path).unwrap();
        for word in forbidden {
            assert!(!text.contains(word), "{} uses {word}", path.display());
        }
    }
    assert!(
        files.len() >= 6,
        "expected the compiler's and allocator's files, found {files:?}"
    );
}
