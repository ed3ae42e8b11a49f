//! The compiler's rules on hand-built fleets: ordering, generations, what is left out and why.

mod compiler_support;

use compiler_support::*;
use meridian_common::ids::{Generation, Timestamp};
use meridian_common::model::{ReservationState, SiteIntent};
use meridian_plan::compiler::{Compiled, UnmetReason, plan};
use meridian_plan::networks::{Coverage, NetworkPools, NetworkState, ReleaseScope};

const ONE_GPU: &str = r#"
    name = "job"
    kind = "batch_job"
    replicas = 2
    [resources]
    accelerator = { whole_gpus = { model = "H100-80GB", count = 1 } }
"#;

fn run(fleet: &Fleet, now: Timestamp, previous: &[SiteIntent]) -> Compiled {
    let mut state = NetworkState::new(Coverage::all());
    plan(
        &fleet.input(now, previous),
        &mut state,
        &NetworkPools::default(),
        &ReleaseScope::Everything,
    )
}

fn fra(out: &Compiled) -> &SiteIntent {
    out.intents
        .iter()
        .find(|i| i.site.as_str() == "fra-1")
        .expect("an fra-1 intent")
}

#[test]
fn input_order_does_not_matter() {
    let mut a = Fleet::standard();
    a.place(
        workload("acme", "job", ReservationState::Active, ONE_GPU),
        vec![
            whole(0, "fra-1", "srv-1", &[0]),
            whole(1, "fra-1", "srv-3", &[1]),
        ],
    );
    let mut b = Fleet::standard();
    b.servers.reverse();
    b.sites.reverse();
    b.place(
        workload("acme", "job", ReservationState::Active, ONE_GPU),
        vec![
            whole(1, "fra-1", "srv-3", &[1]),
            whole(0, "fra-1", "srv-1", &[0]),
        ],
    );
    assert_eq!(run(&a, NOW, &[]), run(&b, NOW, &[]));
}

#[test]
fn generation_follows_the_previous_one() {
    let mut fleet = Fleet::standard();
    fleet.place(
        workload("acme", "job", ReservationState::Active, ONE_GPU),
        vec![
            whole(0, "fra-1", "srv-1", &[0]),
            whole(1, "fra-1", "srv-1", &[1]),
        ],
    );
    let mut previous = fra(&run(&fleet, NOW, &[])).clone();
    previous.generation = Generation::new(41);
    previous.allocations.pop();
    let out = run(&fleet, NOW, &[previous]);
    assert_eq!(fra(&out).generation, Generation::new(42));
}

#[test]
fn a_window_ending_now_is_over() {
    let spec = |end_hours: i64| {
        let win = window(-2, end_hours).unwrap();
        ONE_GPU.replace(
            "replicas = 2",
            &format!(
                "replicas = 1\nwindow = {{ start = {}, end = {} }}",
                win.start().0,
                win.end().0
            ),
        )
    };
    let mut fleet = Fleet::standard();
    fleet
        .place(
            workload("acme", "over", ReservationState::Active, &spec(0)),
            vec![whole(0, "fra-1", "srv-1", &[0])],
        )
        .place(
            workload("acme", "running", ReservationState::Active, &spec(1)),
            vec![whole(0, "fra-1", "srv-1", &[1])],
        );
    let out = run(&fleet, NOW, &[]);
    let names: Vec<_> = fra(&out)
        .allocations
        .iter()
        .map(|a| a.workload.to_string())
        .collect();
    assert_eq!(names, ["running"]);
}

#[test]
fn a_double_booked_gpu_holds_the_site_back() {
    let mut fleet = Fleet::standard();
    fleet
        .place(
            workload("acme", "job", ReservationState::Active, ONE_GPU),
            vec![
                whole(0, "fra-1", "srv-1", &[0]),
                whole(1, "edge-1", "e-1", &[0]),
            ],
        )
        .place(
            workload("globex", "other", ReservationState::Active, ONE_GPU),
            vec![
                whole(0, "fra-1", "srv-1", &[0]),
                whole(1, "fra-1", "srv-1", &[1]),
            ],
        );
    let out = run(&fleet, NOW, &[]);
    assert_eq!(out.held_back.len(), 1);
    assert_eq!(out.held_back[0].site.as_str(), "fra-1");
    let fields = out.held_back[0].error.fields();
    assert!(fields.iter().any(|f| f.ends_with(".slot")), "{fields:?}");
    // The other site still ships.
    assert_eq!(out.intents.len(), 1);
    assert_eq!(out.intents[0].site.as_str(), "edge-1");
}

#[test]
fn unknown_servers_and_sites_are_reported_and_left_out() {
    let mut fleet = Fleet::standard();
    fleet.place(
        workload("acme", "job", ReservationState::Active, ONE_GPU),
        vec![
            whole(0, "fra-1", "srv-9", &[0]),
            whole(1, "fra-1", "srv-1", &[0]),
        ],
    );
    fleet.place(
        workload("globex", "job", ReservationState::Active, ONE_GPU),
        vec![
            whole(0, "nowhere-1", "srv-1", &[0]),
            whole(1, "fra-1", "srv-1", &[1]),
        ],
    );
    let out = run(&fleet, NOW, &[]);
    let reasons: Vec<String> = out
        .unmet
        .iter()
        .map(|u| {
            format!(
                "{}/{}#{}",
                u.replica.tenant, u.replica.workload, u.replica.replica
            )
        })
        .collect();
    assert_eq!(reasons, ["acme/job#0", "globex/job#0"]);
    assert!(matches!(
        out.unmet[0].reason,
        UnmetReason::UnknownServer { .. }
    ));
    assert!(matches!(
        out.unmet[1].reason,
        UnmetReason::UnknownSite { .. }
    ));
    assert!(out.unmet[0].reason.to_string().contains("re-place"));
    assert_eq!(fra(&out).allocations.len(), 2);
}

#[test]
fn workloads_of_missing_tenants_produce_nothing() {
    let mut fleet = Fleet::standard();
    fleet.place(
        workload("initech", "job", ReservationState::Active, ONE_GPU),
        vec![whole(0, "fra-1", "srv-1", &[0])],
    );
    let out = run(&fleet, NOW, &[]);
    assert!(fra(&out).allocations.is_empty() && fra(&out).networks.is_empty());
}
