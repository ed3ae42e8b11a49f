//! The README's main job at a small size: in-process (the summary checked against what
//! central and the emulated hardware hold) and as the real binary (summary, flag errors, and a
//! clean shutdown on SIGTERM while it serves).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_common::model::{ReservationState, SiteTier};
use meridian_emulators::redfish::PowerState;
use meridian_sim::demo::{self, DemoOptions};
use meridian_sim::simfleet::Progress;
use meridian_sim::simfleet::workloads::ConstraintKind;

/// Generous: a loaded 2-core machine running a debug build.
const LIMIT: Duration = Duration::from_secs(300);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_demo_enrols_every_site_and_settles_every_workload() {
    // 12 sites: one core site (agent without servers: central keeps its generated servers)
    // and 11 edge sites, all on emulated hardware (44 emulated servers).
    let options = DemoOptions {
        sites: 12,
        seed: 7,
        hardware_sites: Some(11),
        limit: LIMIT,
        ..DemoOptions::default()
    };
    let (fleet, summary) = demo::run(&options, &Progress::quiet()).await.unwrap();

    assert_eq!(summary.sites, 12);
    assert_eq!(summary.sites_online, 12, "{summary}");
    assert_eq!(summary.hardware_sites, 11);
    assert_eq!(summary.emulated_servers, 44);
    assert!(summary.failed.is_empty(), "{summary}");

    // Every workload is active, or approved for a window that has not opened yet.
    let workloads = fleet.workloads().await.unwrap();
    assert_eq!(workloads.len(), fleet.submitted().len());
    let now = meridian_central::clock::now();
    for w in &workloads {
        match &w.state {
            ReservationState::Active => assert!(w.spec.window.is_none()),
            ReservationState::Approved => {
                assert!(w.spec.window.is_some_and(|win| win.start() > now), "{w:?}")
            }
            other => panic!("{} is {other:?}", w.spec.name),
        }
    }
    let active = workloads
        .iter()
        .filter(|w| w.state == ReservationState::Active)
        .count();
    assert!(active > 0);
    assert_eq!(summary.in_state("active"), active);
    assert_eq!(
        summary.in_state("active") + summary.in_state("approved"),
        workloads.len()
    );

    // Every kind submitted was placed, and every kind is in the mix.
    assert_eq!(
        summary.kinds_submitted(),
        ConstraintKind::ALL.into_iter().collect::<BTreeSet<_>>()
    );
    for kind in summary.kinds_submitted() {
        assert_eq!(
            summary.placed_by_kind.get(&kind),
            summary.submitted_by_kind.get(&kind),
            "{kind:?}: {summary}"
        );
    }

    // Latency: one sample per active workload, positive, p50 <= p99.
    assert_eq!(summary.latency_samples, active);
    let (p50, p99) = (summary.latency_p50.unwrap(), summary.latency_p99.unwrap());
    assert!(p99 > Duration::ZERO && p50 <= p99, "{summary}");

    // Utilisation matches the active placements, per tier, and is above zero on both tiers.
    let tables = fleet.central().tables();
    let tier: BTreeMap<_, _> = fleet
        .fleet()
        .sites
        .iter()
        .map(|s| (s.id.clone(), s.tier))
        .collect();
    let mut held = BTreeSet::new();
    let active_ids: BTreeSet<_> = workloads
        .iter()
        .filter(|w| w.state == ReservationState::Active)
        .map(|w| w.id.clone())
        .collect();
    let placements = tables.placements().list_all(None, 1000).await.unwrap();
    for p in placements
        .iter()
        .filter(|p| active_ids.contains(&p.workload))
    {
        for a in &p.assignments {
            for g in a.slot.gpu_indices() {
                held.insert((a.site.clone(), a.server.clone(), g));
            }
        }
    }
    for (name, t) in [("core", SiteTier::Core), ("edge", SiteTier::Edge)] {
        let expected = held.iter().filter(|(s, _, _)| tier[s] == t).count();
        let got = summary.gpus_by_tier[name];
        assert_eq!(got.allocated, expected, "{name}: {summary}");
        assert!(got.allocated > 0 && got.allocated <= got.gpus, "{name}");
    }
    let gpus: usize = tables
        .servers()
        .list_all(None, 1000)
        .await
        .unwrap()
        .iter()
        .map(|s| s.gpus.len())
        .sum();
    assert_eq!(
        summary.gpus_by_tier.values().map(|u| u.gpus).sum::<usize>(),
        gpus
    );

    // The real site reconciler drove the emulated hardware: every server an active workload
    // holds on a hardware site is powered on at its BMC.
    let mut checked = 0;
    for (i, site) in fleet.fleet().sites.iter().enumerate() {
        let Some(hw) = fleet.hardware(i) else {
            continue;
        };
        for s in &hw.servers {
            if held
                .iter()
                .any(|(st, srv, _)| st == &site.id && srv == &s.server.id)
            {
                assert_eq!(s.bmc.power_state(), PowerState::On, "{}", s.server.id);
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "no active workload landed on emulated hardware"
    );

    // The operator reboots the demo asked for were each carried out once, and every placed
    // workload with storage has its volume on its hardware site's array.
    let actions = summary
        .server_actions
        .clone()
        .expect("the demo reboots servers");
    assert!(actions.requested > 0, "{summary}");
    assert_eq!(actions.done, actions.requested, "{summary}");
    assert!(actions.failed.is_empty(), "{summary}");
    let mut wanted = BTreeSet::new();
    for p in &placements {
        let Some(w) = workloads.iter().find(|w| w.id == p.workload) else {
            continue;
        };
        for a in &p.assignments {
            let on_hardware = fleet
                .fleet()
                .sites
                .iter()
                .position(|s| s.id == a.site)
                .is_some_and(|i| fleet.hardware(i).is_some());
            if w.spec.resources.storage_mib > 0 && on_hardware {
                wanted.insert((a.site.clone(), w.id.clone()));
            }
        }
    }
    assert!(!wanted.is_empty(), "no workload with storage on hardware");
    assert_eq!(summary.volumes, wanted.len(), "{summary}");

    // Every DPU is in DPU mode (a quarter started in NIC mode and were switched), and each
    // hardware site's switch carries a VRF per tenant network of its intent and the bond of
    // every server an active workload holds whole (MIG servers of several tenants join none).
    let hw = summary.hardware;
    assert_eq!((hw.dpus, hw.switches), (44, 11), "{summary}");
    assert_eq!(hw.dpus_in_dpu_mode, hw.dpus, "{summary}");
    assert!(hw.dpus_started_as_nic > 0);
    let mut bonds = 0;
    for (i, site) in fleet.fleet().sites.iter().enumerate() {
        let Some(hw) = fleet.hardware(i) else {
            continue;
        };
        let view = hw.switch_view();
        let tenants: BTreeSet<String> = placements
            .iter()
            .filter(|p| p.assignments.iter().any(|a| a.site == site.id))
            .filter_map(|p| workloads.iter().find(|w| w.id == p.workload))
            .map(|w| w.tenant.to_string())
            .collect();
        let vrfs: BTreeSet<String> = view.vrfs.iter().cloned().collect();
        assert_eq!(vrfs, tenants, "site {}", site.id);
        for s in &hw.servers {
            let owners: BTreeSet<_> = placements
                .iter()
                .filter(|p| active_ids.contains(&p.workload))
                .flat_map(|p| {
                    p.assignments
                        .iter()
                        .filter(|a| a.site == site.id && a.server == s.server.id)
                        .map(|_| p.workload.clone())
                })
                .filter_map(|w| {
                    workloads
                        .iter()
                        .find(|x| x.id == w)
                        .map(|x| x.tenant.clone())
                })
                .collect();
            let in_vlan = view.bonds_in_vlans.iter().any(|(b, _)| *b == s.bond.0);
            assert_eq!(
                in_vlan,
                owners.len() == 1,
                "{} owners {owners:?}",
                s.server.id
            );
            bonds += usize::from(in_vlan);
        }
    }
    assert!(bonds > 0);
    assert_eq!(hw.switch_bonds_in_vlans, bonds);

    // Every hardware site's gateway node (a network namespace; the test runs as root with ip
    // and nft) publishes exactly the exposures its site's intent carries, read from the kernel.
    assert_eq!(summary.gateways_skipped, None, "{summary}");
    assert_eq!(summary.gateways, 11, "{summary}");
    let mut exposures = 0;
    for (i, site) in fleet.fleet().sites.iter().enumerate() {
        if fleet.hardware(i).is_none() {
            continue;
        }
        if let Some(intent) = fleet
            .central()
            .tables()
            .intents()
            .get(&site.id)
            .await
            .unwrap()
        {
            exposures += intent.record.exposures.len();
        }
    }
    assert!(exposures > 0, "no exposure landed on a hardware site");
    assert_eq!(summary.endpoints_published, exposures, "{summary}");

    // Every agent reaches central through its own proxy port.
    for s in &fleet.fleet().sites {
        assert!(fleet.proxy().stats(s.id.as_str()).to_central_packets > 0);
    }
    fleet.shutdown().await;
}

fn demo_bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meridian-sim"))
}

#[test]
fn the_binary_prints_a_summary_and_names_bad_flags() {
    let out = demo_bin()
        .args([
            "demo",
            "--sites",
            "12",
            "--hardware-sites",
            "2",
            "--seed",
            "3",
            "--exit",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "sites online        12/12",
        "2 with emulated hardware, 8 servers",
        "DPUs                8/8 in DPU mode (2 started in NIC mode, switched by the agent)",
        "leaf switches       2 carrying",
        "storage arrays      ",
        "server actions      2/2 reboots done once",
        "GPU utilisation",
        "placements by constraint kind",
        "intent-to-applied   p50",
    ] {
        assert!(
            stdout.contains(needle),
            "summary lacks {needle:?}:\n{stdout}"
        );
    }
    assert!(!stdout.contains("failed"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("enrolling sites"), "no progress: {stderr}");

    for (args, flag) in [
        (vec!["demo", "--sites", "0"], "--sites"),
        (
            vec!["demo", "--sites", "5", "--hardware-sites", "6"],
            "--hardware-sites",
        ),
        (
            vec!["demo", "--sites", "300", "--hardware-sites", "300"],
            "--hardware-sites",
        ),
    ] {
        let bad = demo_bin().args(&args).output().unwrap();
        assert!(!bad.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&bad.stderr);
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
    }
}

#[test]
fn the_binary_serves_until_terminated_then_stops_cleanly() {
    let mut child = demo_bin()
        .args([
            "demo",
            "--sites",
            "3",
            "--hardware-sites",
            "1",
            "--seed",
            "5",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = String::new();
    let serving = loop {
        match lines.next() {
            Some(Ok(line)) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains("export MERIDIAN_ENDPOINT=") {
                    break true;
                }
            }
            _ => break false,
        }
    };
    if !serving {
        let _ = child.kill();
        let _ = child.wait();
        panic!("the demo never said it serves:\n{seen}");
    }
    assert!(seen.contains("MERIDIAN_TOKEN="), "{seen}");
    // The central left serving the CLI runs on the documented rate limit, not the demo's.
    assert!(
        seen.contains("documented rate limit: 500 requests/s per tenant, burst 1000"),
        "{seen}"
    );
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the demo did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
}
