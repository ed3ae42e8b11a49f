//! The real `meridian-central` binary: configuration errors, start and clean stop.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meridian-central");

fn central() -> Command {
    let mut cmd = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("MERIDIAN_CENTRAL") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

#[test]
fn bad_configuration_exits_64_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("central.toml");
    std::fs::write(&file, "data_dir = \"x\"\n[store]\nhistroy = 5\n").unwrap();
    let cases: Vec<(Command, &str)> = vec![
        {
            let mut c = central();
            c.args(["--config", file.to_str().unwrap()]);
            (c, "store.histroy")
        },
        {
            let mut c = central();
            c.env("MERIDIAN_CENTRAL_STORE__MAX_BATCH", "0");
            (c, "store.max_batch")
        },
        {
            let mut c = central();
            c.env("MERIDIAN_CENTRAL_TELEMETRY__FILTER", "a=b=c");
            (c, "telemetry.filter")
        },
        {
            let mut c = central();
            c.args(["--config", "/nonexistent/central.toml"]);
            (c, "/nonexistent/central.toml")
        },
    ];
    for (mut cmd, key) in cases {
        let out = cmd
            .env("MERIDIAN_CENTRAL_DATA_DIR", dir.path())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{key}: {stderr}");
        assert!(stderr.contains(key), "error does not name {key}: {stderr}");
    }
    assert!(
        !dir.path().join("store").exists(),
        "a bad configuration must not open the store"
    );
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("central.toml");
    std::fs::write(
        &file,
        "data_dir = \"/tmp/x\"\n[store]\ngroup_commit = false\n",
    )
    .unwrap();
    let out = central()
        .args(["--check-config", "-c", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn starts_opens_the_store_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = central()
        .env("MERIDIAN_CENTRAL_DATA_DIR", dir.path())
        .env("MERIDIAN_CENTRAL_TELEMETRY__FORMAT", "json")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut opened = false;
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) if line.contains("central store open") => {
                let json: serde_json::Value = serde_json::from_str(&line).expect("JSON log line");
                assert_eq!(json["level"], "INFO");
                opened = true;
                break;
            }
            Some(Ok(_)) => continue,
            _ => break,
        }
    }
    assert!(opened, "central did not report its store open");
    assert!(dir.path().join("store").is_dir());
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let code = child.wait().unwrap();
    assert!(code.success(), "exit {code:?}; log: {rest:?}");
    assert!(
        rest.iter().any(|l| l.contains("central stopped")),
        "{rest:?}"
    );
}
