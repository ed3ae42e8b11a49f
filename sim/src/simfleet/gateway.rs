//! Site gateways for the simulated fleet: whether this process may make them (root, `ip` and
//! `nft`), their namespace names, and the removal of namespaces a killed simulator left behind.

use std::process::{Command, Stdio};

/// Namespaces of this simulator are `mdemo<pid>-<n>`.
const PREFIX: &str = "mdemo";

/// Why site gateways cannot be made here, or `None` when they can. Removes the namespaces of
/// simulators that are gone first.
pub fn unavailable() -> Option<String> {
    if let Some(why) = kernel_unavailable() {
        return Some(why);
    }
    remove_stale();
    None
}

/// Why this process cannot make network namespaces with gateways in them (not root, no `ip`
/// or `nft`), or `None` when it can.
pub fn kernel_unavailable() -> Option<String> {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().nth(1).map(|e| e == "0"))
        })
        .unwrap_or(false);
    if !root {
        return Some("network namespaces need root".into());
    }
    for tool in ["ip", "nft"] {
        let found = Command::new(tool)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("`{tool}` is not installed"));
        }
    }
    None
}

/// The namespace of the gateway of hardware site number `n`.
pub fn netns_name(n: usize) -> String {
    format!("{PREFIX}{}-{n}", std::process::id())
}

/// Deletes `mdemo<pid>-*` namespaces whose process no longer runs.
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = Command::new("ip").args(["netns", "del", &name]).output();
        }
    }
}
