//! Snapshot tests of compiled intents for hand-built scenarios (`tests/snapshots/*.toml`).
//! Rerun with `UPDATE_SNAPSHOTS=1` to accept a deliberate change, then review the diff.

mod compiler_support;

use compiler_support::*;
use meridian_common::ids::Timestamp;
use meridian_common::model::{ReservationState, SiteIntent};
use meridian_common::validate::validate_site_intent;
use meridian_plan::compiler::{Compiled, plan};
use meridian_plan::networks::{Coverage, NetworkPools, NetworkState, ReleaseScope};

/// Compiles `fleet` at `now` over `state` (a full run) and checks every intent is valid.
fn compile(
    fleet: &Fleet,
    state: &mut NetworkState,
    now: Timestamp,
    previous: &[SiteIntent],
) -> Compiled {
    let input = fleet.input(now, previous);
    let compiled = plan(
        &input,
        state,
        &NetworkPools::default(),
        &ReleaseScope::Everything,
    );
    for intent in &compiled.intents {
        validate_site_intent(intent).expect("every compiled intent is valid");
    }
    compiled
}

fn fresh() -> NetworkState {
    NetworkState::new(Coverage::all())
}

const INFER: &str = r#"
    name = "chat"
    kind = "inference_endpoint"
    replicas = 1
    image = "oci://registry.example/chat:1.2"
    [resources]
    accelerator = { whole_gpus = { model = "H100-80GB", count = 2 } }
"#;

#[test]
fn one_workload() {
    let mut fleet = Fleet::standard();
    fleet.place(
        workload("acme", "chat", ReservationState::Active, INFER),
        vec![whole(0, "fra-1", "srv-1", &[0, 1])],
    );
    let out = compile(&fleet, &mut fresh(), NOW, &[]);
    // edge-1 has only pool assignments to say, so it gets its first intent too.
    assert_eq!(out.intents.len(), 2);
    assert_snapshot("one_workload", &render(&out));
}

#[test]
fn multi_replica_across_sites() {
    let mut fleet = Fleet::standard();
    let vm = r#"
        name = "render"
        kind = "virtual_machine"
        replicas = 3
        image = "https://images.example/ubuntu-24.04.qcow2"
        [resources]
        accelerator = { whole_gpus = { model = "H100-80GB", count = 1 } }
        storage_mib = 102400
    "#;
    let bm = r#"
        name = "metal"
        kind = "bare_metal"
        replicas = 1
        image = "https://images.example/rocky-9.iso"
        [resources]
        accelerator = { whole_gpus = { model = "H100-80GB", count = 4 } }
    "#;
    let cpu = r#"
        name = "proxy"
        kind = "kubernetes_cluster"
        replicas = 2
        [resources]
        accelerator = "none"
        cpu_cores = 4
    "#;
    // Assignments listed out of order: the intent is sorted anyway.
    fleet
        .place(
            workload("acme", "render", ReservationState::Approved, vm),
            vec![
                whole(2, "edge-1", "e-1", &[1]),
                whole(1, "fra-1", "srv-1", &[3]),
                whole(0, "fra-1", "srv-1", &[2]),
            ],
        )
        .place(
            workload("globex", "metal", ReservationState::Active, bm),
            vec![whole(0, "fra-1", "srv-3", &[0, 1, 2, 3])],
        )
        .place(
            workload("globex", "proxy", ReservationState::Active, cpu),
            vec![no_gpu(0, "fra-1", "cpu-1"), no_gpu(1, "fra-1", "cpu-1")],
        );
    let out = compile(&fleet, &mut fresh(), NOW, &[]);
    assert!(out.unmet.is_empty() && out.held_back.is_empty());
    assert_snapshot("multi_replica_across_sites", &render(&out));
}

#[test]
fn mig_slices() {
    let mut fleet = Fleet::standard();
    let small = r#"
        name = "small"
        kind = "inference_endpoint"
        replicas = 3
        image = "oci://registry.example/small:1"
        [resources]
        accelerator = { mig = { model = "H100-80GB", profile = "3g.40gb" } }
    "#;
    let tiny = r#"
        name = "tiny"
        kind = "batch_job"
        replicas = 1
        [resources]
        accelerator = { mig = { model = "H100-80GB", profile = "1g.10gb" } }
    "#;
    fleet
        .place(
            workload("acme", "small", ReservationState::Active, small),
            vec![
                mig(0, "fra-1", "srv-2", 0, "3g.40gb", 0),
                mig(1, "fra-1", "srv-2", 0, "3g.40gb", 4),
                mig(2, "fra-1", "srv-2", 1, "3g.40gb", 4),
            ],
        )
        .place(
            workload("globex", "tiny", ReservationState::Approved, tiny),
            vec![mig(0, "fra-1", "srv-2", 1, "1g.10gb", 0)],
        );
    let out = compile(&fleet, &mut fresh(), NOW, &[]);
    assert!(out.unmet.is_empty() && out.held_back.is_empty());
    assert_snapshot("mig_slices", &render(&out));
}

#[test]
fn windowed_reservation() {
    let mut fleet = Fleet::standard();
    let spec = |name: &str, window: &str| {
        format!(
            r#"
            name = "{name}"
            kind = "batch_job"
            replicas = 1
            window = {window}
            [resources]
            accelerator = {{ whole_gpus = {{ model = "H100-80GB", count = 8 }} }}
            "#
        )
    };
    let w = |start: i64, end: i64| {
        let win = window(start, end).unwrap();
        format!("{{ start = {}, end = {} }}", win.start().0, win.end().0)
    };
    fleet
        // Tomorrow, 8 hours: approved, so it ships now with its window.
        .place(
            workload(
                "acme",
                "train-a",
                ReservationState::Approved,
                &spec("train-a", &w(24, 32)),
            ),
            vec![whole(0, "fra-1", "srv-1", &[0, 1, 2, 3, 4, 5, 6, 7])],
        )
        // The same GPUs right after it: no overlap, so both fit.
        .place(
            workload(
                "globex",
                "train-b",
                ReservationState::Approved,
                &spec("train-b", &w(32, 40)),
            ),
            vec![whole(0, "fra-1", "srv-1", &[0, 1, 2, 3, 4, 5, 6, 7])],
        )
        // Ended an hour ago: nothing to ship.
        .place(
            workload(
                "acme",
                "done",
                ReservationState::Active,
                &spec("done", &w(-5, -1)),
            ),
            vec![whole(0, "fra-1", "srv-3", &[0])],
        )
        // Not approved yet, and canceled: neither holds capacity.
        .place(
            workload(
                "acme",
                "waiting",
                ReservationState::Pending,
                &spec("waiting", &w(1, 2)),
            ),
            vec![whole(0, "edge-1", "e-1", &[0])],
        )
        .place(
            workload(
                "globex",
                "gone",
                ReservationState::Canceled,
                &spec("gone", &w(1, 2)),
            ),
            vec![whole(0, "edge-1", "e-1", &[1])],
        );
    let out = compile(&fleet, &mut fresh(), NOW, &[]);
    let fra = out
        .intents
        .iter()
        .find(|i| i.site.as_str() == "fra-1")
        .unwrap();
    assert_eq!(fra.allocations.len(), 2);
    assert!(fra.allocations.iter().all(|a| a.window.is_some()));
    assert_snapshot("windowed_reservation", &render(&out));
}

#[test]
fn exposure_with_public_ips() {
    let mut fleet = Fleet::standard();
    let web = r#"
        name = "web"
        kind = "inference_endpoint"
        replicas = 3
        image = "oci://registry.example/web:3"
        expose = [ { port = 443, protocol = "tcp" }, { port = 443, protocol = "udp" }, { port = 80, protocol = "tcp" } ]
        [resources]
        accelerator = { whole_gpus = { model = "H100-80GB", count = 1 } }
    "#;
    let api = r#"
        name = "api"
        kind = "ran_function"
        replicas = 2
        expose = [ { port = 443, protocol = "tcp" } ]
        [resources]
        accelerator = { whole_gpus = { model = "H100-80GB", count = 1 } }
    "#;
    fleet
        .place(
            workload("acme", "web", ReservationState::Active, web),
            vec![
                whole(0, "fra-1", "srv-1", &[0]),
                whole(1, "fra-1", "srv-1", &[1]),
                whole(2, "edge-1", "e-1", &[0]),
            ],
        )
        // edge-1's /30 has one public address and acme took 443/tcp on it: globex gets a
        // fallback port there.
        .place(
            workload("globex", "api", ReservationState::Active, api),
            vec![
                whole(0, "fra-1", "srv-1", &[2]),
                whole(1, "edge-1", "e-1", &[1]),
            ],
        );
    let out = compile(&fleet, &mut fresh(), NOW, &[]);
    assert!(out.unmet.is_empty(), "{:?}", out.unmet);
    let fra = out
        .intents
        .iter()
        .find(|i| i.site.as_str() == "fra-1")
        .unwrap();
    assert_eq!(fra.exposures.len(), 7);
    assert_snapshot("exposure_with_public_ips", &render(&out));
}

#[test]
fn deletion_produces_an_emptied_intent() {
    let mut fleet = Fleet::standard();
    fleet.place(
        workload("acme", "chat", ReservationState::Active, INFER),
        vec![whole(0, "fra-1", "srv-1", &[0, 1])],
    );
    let mut state = fresh();
    let first = compile(&fleet, &mut state, NOW, &[]);
    fleet.remove_workload(&"acme".parse().unwrap(), &"chat".parse().unwrap());
    let second = compile(&fleet, &mut state, NOW, &first.intents);
    assert_eq!(second.intents.len(), 1, "only fra-1 changed");
    let fra = &second.intents[0];
    assert_eq!(fra.generation.get(), 2);
    assert!(fra.allocations.is_empty() && fra.networks.is_empty());
    assert!(
        state.hosts().is_empty(),
        "the replica's address is released"
    );
    assert!(
        state.tenant_network(&"acme".parse().unwrap()).is_some(),
        "the tenant keeps its network"
    );
    assert_snapshot("deletion_produces_an_emptied_intent", &render(&second));
}

#[test]
fn unchanged_input_produces_no_new_generation() {
    let mut fleet = Fleet::standard();
    fleet.place(
        workload("acme", "chat", ReservationState::Active, INFER),
        vec![whole(0, "fra-1", "srv-1", &[0, 1])],
    );
    let mut state = fresh();
    let first = compile(&fleet, &mut state, NOW, &[]);
    // Later, with the inputs listed in another order: nothing changed.
    fleet.servers.reverse();
    let later = NOW.saturating_add_millis(HOUR);
    let second = compile(&fleet, &mut state, later, &first.intents);
    assert!(second.intents.is_empty());
    assert_eq!(second.unchanged.len(), 2);
    assert_snapshot(
        "unchanged_input_produces_no_new_generation",
        &render(&second),
    );
}
