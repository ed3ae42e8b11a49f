//! Meridian's real binaries as processes: finding (or building) them, a clean environment,
//! free ports, waiting for a log line, and stopping them the way an operator would.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use crate::wait::LIMIT;

/// The workspace binary `name` of `package`, next to the running test's executable in the
/// target directory; built with cargo when it is not there yet (a crate's tests run alone).
pub fn binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/{profile}/deps/{test} -> target/{profile}/{name}
    let dir = exe
        .parent()
        .and_then(|deps| {
            if deps.ends_with("deps") {
                deps.parent()
            } else {
                Some(deps)
            }
        })
        .expect("the target directory");
    let path = dir.join(name);
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", package, "--bin", name])
            .status()
            .expect("cargo runs");
        assert!(status.success(), "cannot build {name}");
    }
    path
}

/// `cmd` without the caller's `MERIDIAN_*` and `RUST_LOG` variables, so the test alone
/// configures the process.
pub fn clean(mut cmd: Command) -> Command {
    for (key, _) in std::env::vars() {
        if key.starts_with("MERIDIAN_") || key == "RUST_LOG" {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// A free UDP (`udp`) or TCP port of 127.0.0.1.
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port()
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free TCP port")
            .port()
    }
}

/// Waits until the file at `path` contains `needle`; panics with the file after [`LIMIT`].
pub fn wait_log(path: &Path, needle: &str) {
    let deadline = Instant::now() + LIMIT;
    while Instant::now() < deadline {
        if std::fs::read_to_string(path)
            .unwrap_or_default()
            .contains(needle)
        {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "{needle:?} never appeared in {}:\n{}",
        path.display(),
        std::fs::read_to_string(path).unwrap_or_default()
    );
}

/// A child process killed when dropped, so a failing test leaves no process behind.
#[derive(Debug)]
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Stops a child with SIGTERM (a clean shutdown), SIGKILL after 20 s.
pub fn terminate(mut reaped: Reaped) {
    let child = &mut reaped.0;
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}
