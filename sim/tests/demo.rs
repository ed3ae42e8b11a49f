//! The README's main job, in-process and as the real binary, at a small size.

use std::collections::BTreeMap;

use meridian_common::model::{MigConfig, SiteTier};
use meridian_sim::demo::{self, DemoError, DemoOptions};
use meridian_sim::fleet::{self, FleetSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_loads_the_fleet_and_reads_the_same_fleet_back() {
    let options = DemoOptions {
        sites: 60,
        seed: 9,
        batch: 50,
        streams: 4,
        ..DemoOptions::default()
    };
    let mut out = Vec::new();
    let (central, report, _temp) = demo::run(&options, &mut out).await.unwrap();
    let fleet = fleet::generate(&FleetSpec::with_sites(9, 60));

    let core = fleet
        .sites
        .iter()
        .filter(|s| s.tier == SiteTier::Core)
        .count();
    let mut tiers = BTreeMap::new();
    tiers.insert("core".to_owned(), core);
    tiers.insert("edge".to_owned(), fleet.sites.len() - core);
    assert_eq!(report.sites_by_tier, tiers);
    assert_eq!(report.servers, fleet.servers.len());
    let gpus: usize = fleet.servers.iter().map(|s| s.gpus.len()).sum();
    assert_eq!(report.gpus_by_model.values().sum::<usize>(), gpus);
    let mig = fleet
        .servers
        .iter()
        .flat_map(|s| &s.gpus)
        .filter(|g| matches!(g.mig, MigConfig::Enabled { .. }))
        .count();
    assert_eq!(report.mig_enabled_gpus, mig);
    assert_eq!(report.tenants, fleet.tenants.len());
    assert_eq!(report.regions, fleet.regions.len());
    assert_eq!(report.datasets, fleet.datasets.len());
    assert_eq!(report.fleet_fingerprint, fleet.fingerprint());
    assert_eq!(
        report.records_loaded,
        fleet.sites.len()
            + fleet.servers.len()
            + fleet.tenants.len()
            + fleet.regions.len()
            + fleet.datasets.len()
    );
    assert!(report.store_revision > 0);
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("100%"), "no final progress line: {text}");
    let data_dir = central.config().data_dir.clone();
    central.shutdown().await;

    // The same directory again: the demo refuses to load a second fleet on top.
    let again = DemoOptions {
        data_dir: Some(data_dir),
        ..options
    };
    assert!(matches!(
        demo::run(&again, &mut Vec::new()).await,
        Err(DemoError::NotEmpty)
    ));
}

#[test]
fn the_binary_prints_a_summary() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_meridian-sim"))
        .args(["demo", "--sites", "25", "--seed", "3"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "central now holds",
        "sites      25",
        "servers",
        "GPUs",
        "store      revision",
    ] {
        assert!(
            stdout.contains(needle),
            "summary lacks {needle:?}:\n{stdout}"
        );
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_meridian-sim"))
        .args(["demo", "--sites", "0"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--sites"));
}
