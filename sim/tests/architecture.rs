//! The workspace's layering, checked from `cargo metadata`: each crate may depend only on the
//! crates its room allows (see README's folder table and each crate's doc comment). A
//! forbidden edge fails here, so purity and layering are enforced by Cargo, not by a grep.

use std::collections::BTreeMap;
use std::process::Command;

use serde_json::Value;

/// Meridian's crates, and the Meridian crates each may use as a normal dependency.
const MERIDIAN: &[(&str, &[&str])] = &[
    ("meridian-proto", &[]),
    ("meridian-common", &["meridian-proto"]),
    ("meridian-channel", &["meridian-common", "meridian-proto"]),
    ("meridian-plan", &["meridian-common"]),
    ("meridian-store", &["meridian-common", "meridian-proto"]),
    ("meridian-client", &["meridian-common", "meridian-proto"]),
    (
        "meridian-central",
        &[
            "meridian-common",
            "meridian-proto",
            "meridian-channel",
            "meridian-plan",
            "meridian-store",
        ],
    ),
    // Device drivers: no reconciler, no agent, no channel; only the shared vocabulary.
    ("meridian-drivers", &["meridian-common"]),
    (
        "meridian-agent",
        &[
            "meridian-common",
            "meridian-proto",
            "meridian-channel",
            "meridian-drivers",
        ],
    ),
    (
        "meridian-provisioning",
        &["meridian-common", "meridian-proto"],
    ),
    // Emulators implement the drivers' traits; they never see the agent.
    (
        "meridian-emulators",
        &["meridian-common", "meridian-proto", "meridian-drivers"],
    ),
    (
        "meridian-testkit",
        &[
            "meridian-common",
            "meridian-proto",
            "meridian-channel",
            "meridian-store",
            "meridian-central",
            "meridian-agent",
            "meridian-emulators",
        ],
    ),
];

/// Third-party crates a room must never use (any kind of dependency but dev).
const FORBIDDEN: &[(&str, &[&str])] = &[
    // The pure core: no runtime, no store, no network, no RPC.
    (
        "meridian-plan",
        &[
            "tokio", "sled", "quinn", "rustls", "tonic", "hyper", "socket2", "nix", "rand",
        ],
    ),
    // Shared vocabulary: no IO runtime and no sockets.
    (
        "meridian-common",
        &[
            "tokio", "quinn", "sled", "rustls", "socket2", "nix", "hyper", "mio",
        ],
    ),
    // Records, not services.
    ("meridian-store", &["tonic", "quinn", "rustls", "hyper"]),
];

/// The agent may not even test against these (it must stand alone).
const AGENT_NEVER: &[&str] = &["meridian-central", "meridian-store", "meridian-plan"];

/// The drivers may not even test against the agent (and so its reconciler) or central.
const DRIVERS_NEVER: &[&str] = &["meridian-agent", "meridian-central", "meridian-store"];

/// Every broken rule in `metadata` (the output of `cargo metadata --no-deps`).
fn violations(metadata: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let packages = metadata["packages"].as_array().expect("packages");
    let allowed: BTreeMap<&str, &[&str]> = MERIDIAN.iter().copied().collect();
    let forbidden: BTreeMap<&str, &[&str]> = FORBIDDEN.iter().copied().collect();
    for p in packages {
        let name = p["name"].as_str().unwrap_or_default();
        for d in p["dependencies"].as_array().into_iter().flatten() {
            let dep = d["name"].as_str().unwrap_or_default();
            let kind = d["kind"].as_str().unwrap_or("normal");
            if (name == "meridian-agent" && AGENT_NEVER.contains(&dep))
                || (name == "meridian-drivers" && DRIVERS_NEVER.contains(&dep))
            {
                out.push(format!("{name} depends on {dep} ({kind})"));
            }
            if kind == "dev" {
                continue;
            }
            if dep.starts_with("meridian-")
                && let Some(ok) = allowed.get(name)
                && !ok.contains(&dep)
            {
                out.push(format!("{name} depends on {dep} ({kind})"));
            }
            if forbidden.get(name).is_some_and(|bad| bad.contains(&dep)) {
                out.push(format!("{name} depends on {dep} ({kind})"));
            }
        }
    }
    out
}

fn metadata() -> Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata is JSON")
}

#[test]
fn every_crate_depends_only_on_what_its_room_allows() {
    let metadata = metadata();
    let names: Vec<&str> = metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    // Every crate of the workspace has a rule (a new crate must say where it sits).
    for name in &names {
        assert!(
            *name == "meridian-sim" || MERIDIAN.iter().any(|(n, _)| n == name),
            "{name} has no layering rule in sim/tests/architecture.rs"
        );
    }
    assert!(names.len() >= 13, "{names:?}");
    let broken = violations(&metadata);
    assert!(broken.is_empty(), "forbidden dependencies: {broken:#?}");
}

#[test]
fn the_check_catches_a_forbidden_edge() {
    let mut metadata = metadata();
    for p in metadata["packages"].as_array_mut().unwrap() {
        let name = p["name"].as_str().unwrap().to_owned();
        let deps = p["dependencies"].as_array_mut().unwrap();
        match name.as_str() {
            "meridian-plan" => deps.push(serde_json::json!({"name": "tokio", "kind": null})),
            "meridian-agent" => {
                deps.push(serde_json::json!({"name": "meridian-central", "kind": "dev"}))
            }
            "meridian-store" => {
                deps.push(serde_json::json!({"name": "meridian-central", "kind": null}))
            }
            // The drivers reaching for the reconciler (even only in tests), and common for a
            // socket crate: both caught.
            "meridian-drivers" => {
                deps.push(serde_json::json!({"name": "meridian-agent", "kind": "dev"}))
            }
            "meridian-common" => deps.push(serde_json::json!({"name": "socket2", "kind": null})),
            _ => {}
        }
    }
    let broken = violations(&metadata);
    assert_eq!(broken.len(), 5, "{broken:#?}");
}
