//! The planner is pure (STYLE habit 1): no async, no runtime, no store, no clock, no RNG.

#[test]
fn placement_module_does_no_io_and_reads_no_clock() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/placement");
    let forbidden = [
        "async fn",
        "tokio::",
        "sled::",
        "std::fs",
        "std::net",
        "SystemTime::now",
        "Instant::now",
        "rand::",
        "thread_rng",
    ];
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for word in forbidden {
                assert!(!text.contains(word), "{} uses {word}", path.display());
            }
        }
    }
    assert!(
        files >= 8,
        "expected the placement module's files, found {files}"
    );
}
