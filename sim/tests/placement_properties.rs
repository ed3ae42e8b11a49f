//! Property tests of the placement engine (issue 4, B1q "0 hard-constraint violations").
//!
//! Random small fleets (the seeded generator with 8 to 40 sites, perturbed: sites not online,
//! unhealthy GPUs, measured RTTs, regions next to sites, extra datasets and tenants, some with
//! tight quotas) and random batches of workloads (whole GPUs, MIG profiles valid for the model,
//! bare metal, no GPU; 1 to 4 replicas; latency from one or two regions; residency;
//! certifications; the tenant's datasets; spread or colocation; tier; pinned servers;
//! overlapping and disjoint windows; priorities; volumes on the sites' storage arrays, some
//! sites without one, some servers drained). Every decision is checked by an oracle that
//! recomputes from the snapshot, not from the engine: hard constraints, GPU calendars and
//! storage arrays across all placements, no new placement on a drained server, quotas, the
//! score and its parts, rejection counts (the hardware count exactly), and for single replicas
//! of unconstrained tenants that an "unplaceable" really has no server.

mod placement_support;

use std::collections::BTreeMap;

use meridian_common::ids::{TimeWindow, Timestamp};
use meridian_common::model::{
    Accelerator, Constraints, GpuHealth, GpuModel, MigConfig, RejectReason, Resources, SiteState,
    WorkloadKind, WorkloadSpec,
};
use meridian_plan::placement::{Decision, FleetSnapshot, PlacementRequest, Planner, PlannerConfig};
use placement_support::{
    HOUR, NOW, Oracle, RequestOptions, WorldOptions, big_quotas, check_counts, id, request, rng,
    unbounded, world,
};
use proptest::prelude::*;
use rand::Rng;

const WORLD: WorldOptions = WorldOptions {
    core_servers: None,
    offline_pct: 10,
    unhealthy_pct: 4,
    measured_pct: 8,
    tight_quota_pct: 30,
};

/// Cases per property (each places up to 24 workloads on a fleet of up to 40 sites).
const CASES: u32 = 256;

const REQUESTS: RequestOptions = RequestOptions {
    max_replicas: 4,
    pin_pct: 5,
    bare_metal_pct: 5,
};

fn requests(seed: u64, snap: &FleetSnapshot, n: usize) -> Vec<PlacementRequest> {
    let mut rng = rng(seed ^ 0x0005_eed5);
    (0..n)
        .map(|i| request(&mut rng, snap, &format!("w-{i:03}"), REQUESTS))
        .collect()
}

/// Checks one decision against the oracle; commits it there when it was committed.
fn check(
    oracle: &mut Oracle,
    req: &PlacementRequest,
    d: &Decision,
    committed: bool,
    sites: usize,
) -> Result<(), TestCaseError> {
    check_counts(d, sites, oracle)
        .map_err(|e| TestCaseError::fail(format!("{}: {e}", req.workload)))?;
    oracle
        .check_reasons(req, d)
        .map_err(|e| TestCaseError::fail(format!("{}: {e}", req.workload)))?;
    match d {
        Decision::Placed(p) => {
            oracle.check_placed(req, p, NOW).map_err(|e| {
                TestCaseError::fail(format!("{}: {e}\n{req:#?}\n{p:#?}", req.workload))
            })?;
            if committed {
                oracle.commit(req, p);
                oracle
                    .check_global()
                    .map_err(|e| TestCaseError::fail(format!("after {}: {e}", req.workload)))?;
            }
        }
        Decision::Unplaceable(u) => {
            // A single replica of a tenant whose quotas never bind is refused only when no
            // server in the fleet could take it.
            if req.spec.replicas == 1
                && unbounded(oracle, &req.tenant)
                && let Some(server) = oracle.single_replica_fits_somewhere(req, NOW)
            {
                return Err(TestCaseError::fail(format!(
                    "{} refused ({}) but server {server} fits it\n{req:#?}",
                    req.workload, u.explanation
                )));
            }
        }
    }
    Ok(())
}

/// Places every request one by one (or as one batch), with a few releases, site state
/// changes and new RTT measurements in between, checking each decision.
fn run(
    seed: u64,
    sites: usize,
    n: usize,
    batch: bool,
) -> Result<(Vec<Decision>, Oracle), TestCaseError> {
    let snap = world(seed, sites, WORLD);
    let reqs = requests(seed, &snap, n);
    let mut planner = Planner::new(&snap, PlannerConfig::default()).expect("a valid snapshot");
    let mut oracle = Oracle::new(&snap);
    let mut rng = rng(seed ^ 0xc0ffee);
    let mut decisions = Vec::new();
    if batch {
        let results = planner.place_batch(&reqs, NOW);
        // The batch is placed in priority order (highest first, then workload ID): check the
        // decisions in that order, each against what was committed before it.
        let mut order: Vec<usize> = (0..reqs.len()).collect();
        order.sort_by(|&a, &b| {
            reqs[b]
                .spec
                .priority
                .cmp(&reqs[a].spec.priority)
                .then_with(|| reqs[a].workload.cmp(&reqs[b].workload))
        });
        for i in order {
            let d = results[i]
                .clone()
                .map_err(|e| TestCaseError::fail(format!("{e}")))?;
            check(&mut oracle, &reqs[i], &d, true, sites)?;
        }
        for r in results {
            decisions.push(r.expect("checked"));
        }
    } else {
        for req in &reqs {
            match rng.random_range(0..10) {
                0 if !oracle.committed.is_empty() => {
                    // Release a random committed workload.
                    let k = rng.random_range(0..oracle.committed.len());
                    let w = oracle.committed.keys().nth(k).expect("in range").clone();
                    prop_assert!(planner.release(&w));
                    prop_assert!(!planner.is_placed(&w));
                    prop_assert!(!planner.release(&w), "a second release finds nothing");
                    oracle.release(&w);
                }
                1 => {
                    let site = &snap.sites[rng.random_range(0..snap.sites.len())].id;
                    let online = rng.random_bool(0.5);
                    let state = if online {
                        SiteState::Online
                    } else {
                        SiteState::Disconnected
                    };
                    planner.set_site_state(site, state).expect("a known site");
                    oracle.set_online(site, online);
                }
                2 => {
                    let site = &snap.sites[rng.random_range(0..snap.sites.len())].id;
                    let region = &snap.regions[rng.random_range(0..snap.regions.len())].id;
                    let rtt = rng.random_range(0.5..100.0);
                    planner
                        .set_measured_rtt(site, region, rtt)
                        .expect("known ids");
                    oracle.set_measured(site, region, rtt);
                }
                _ => {}
            }
            let dry = rng.random_bool(0.2);
            let d = if dry {
                planner.dry_run(req, NOW)
            } else {
                planner.place(req, NOW)
            }
            .map_err(|e| TestCaseError::fail(format!("{}: {e}", req.workload)))?;
            check(&mut oracle, req, &d, !dry, sites)?;
            prop_assert_eq!(
                planner.is_placed(&req.workload),
                !dry && d.placement().is_some()
            );
            decisions.push(d);
        }
    }
    oracle.check_global().map_err(TestCaseError::fail)?;
    Ok((decisions, oracle))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: CASES, ..ProptestConfig::default() })]

    /// No placement ever violates a hard constraint; no capacity is double-booked across all
    /// placements of a run; scores and counts are what the oracle recomputes.
    #[test]
    fn placements_respect_every_hard_constraint(
        seed in any::<u64>(),
        sites in 8usize..=40,
        n in 4usize..=24,
        batch in any::<bool>(),
    ) {
        run(seed, sites, n, batch)?;
    }

    /// The same snapshot and requests give identical decisions, and a batch decides exactly
    /// as placing its requests one by one in priority order.
    #[test]
    fn decisions_are_deterministic(seed in any::<u64>(), sites in 8usize..=40, n in 4usize..=16) {
        let (first, _) = run(seed, sites, n, false)?;
        let (again, _) = run(seed, sites, n, false)?;
        prop_assert_eq!(&first, &again);
        let (batch, _) = run(seed, sites, n, true)?;
        let snap = world(seed, sites, WORLD);
        let reqs = requests(seed, &snap, n);
        let mut planner = Planner::new(&snap, PlannerConfig::default()).expect("a valid snapshot");
        let mut order: Vec<usize> = (0..reqs.len()).collect();
        order.sort_by(|&a, &b| {
            reqs[b].spec.priority.cmp(&reqs[a].spec.priority).then_with(|| reqs[a].workload.cmp(&reqs[b].workload))
        });
        let mut one_by_one = vec![None; reqs.len()];
        for i in order {
            one_by_one[i] = Some(planner.place(&reqs[i], NOW).expect("no error"));
        }
        let one_by_one: Vec<Decision> = one_by_one.into_iter().map(|d| d.expect("decided")).collect();
        prop_assert_eq!(&batch, &one_by_one);
    }

    /// Placing W, releasing it and placing it again gives the same decision and leaves the
    /// same free capacity (probes dry-run identically); a dry run followed by a placement gives
    /// the placement a placement alone gives; a planner rebuilt from a snapshot holding the
    /// committed placements decides like the planner that made them.
    #[test]
    fn release_restores_and_dry_run_matches(seed in any::<u64>(), sites in 8usize..=40, n in 4usize..=16) {
        let snap = world(seed, sites, WORLD);
        let reqs = requests(seed, &snap, n + 6);
        let (history, probes) = reqs.split_at(n);
        let mut planner = Planner::new(&snap, PlannerConfig::default()).expect("a valid snapshot");
        for r in history {
            planner.place(r, NOW).expect("no error");
        }
        let dry = |planner: &mut Planner| -> Vec<Decision> {
            probes.iter().map(|p| planner.dry_run(p, NOW).expect("no error")).collect()
        };
        let before = dry(&mut planner);
        prop_assert_eq!(&before, &dry(&mut planner), "dry runs change nothing");
        let w = &probes[0];
        let mut alone = planner.clone();
        let first = alone.place(w, NOW).expect("no error");
        let preview = planner.dry_run(w, NOW).expect("no error");
        prop_assert_eq!(&preview, &first, "a dry run shows what a placement does");
        let placed = planner.place(w, NOW).expect("no error");
        prop_assert_eq!(&placed, &first, "dry run then place = place alone");
        if placed.placement().is_some() {
            prop_assert!(planner.release(&w.workload));
            let again = planner.place(w, NOW).expect("no error");
            prop_assert_eq!(&again, &first, "place, release, place = place");
            prop_assert!(planner.release(&w.workload));
        }
        prop_assert_eq!(&before, &dry(&mut planner), "releasing restores the free capacity");
        // Release a workload from the middle of the history: it fits again (where it goes
        // may differ, as later workloads changed the fleet since).
        if let Some(r) = history.iter().find(|r| planner.is_placed(&r.workload)) {
            prop_assert!(planner.release(&r.workload));
            let back = planner.place(r, NOW).expect("no error");
            prop_assert!(
                back.placement().is_some(),
                "its capacity was just freed, yet {:?}: {}\n{:#?}",
                r.workload,
                back.explanation(),
                r.spec
            );
        }
        // A planner rebuilt from the committed placements decides the same.
        let mut again_snap = snap.clone();
        let mut replay = Planner::new(&snap, PlannerConfig::default()).expect("a valid snapshot");
        for r in history {
            if let Decision::Placed(p) = replay.place(r, NOW).expect("no error") {
                again_snap.placements.push(p);
            }
        }
        let mut rebuilt = Planner::new(&again_snap, PlannerConfig::default()).expect("placements re-book");
        // A placement does not carry its storage: central re-books it from the specs.
        for r in history {
            if replay.is_placed(&r.workload) {
                prop_assert!(rebuilt.rebook_storage(&r.workload, r.spec.resources.storage_mib));
            }
        }
        let from_replay = dry(&mut replay);
        prop_assert_eq!(&from_replay, &dry(&mut rebuilt));
        for r in history {
            prop_assert_eq!(replay.is_placed(&r.workload), rebuilt.is_placed(&r.workload));
        }
    }
}

/// The random runs are not vacuous: over a fixed set of seeds they place and refuse, with
/// every kind of workload and constraint, and refuse for every kind of reason.
#[test]
fn random_runs_cover_every_kind_of_decision() {
    let mut seen: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut reasons: BTreeMap<RejectReason, usize> = BTreeMap::new();
    for seed in 0..24u64 {
        let sites = 8 + (seed as usize * 7) % 33;
        let (decisions, _) =
            run(seed, sites, 24, seed % 2 == 0).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        let snap = world(seed, sites, WORLD);
        for (req, d) in requests(seed, &snap, 24).iter().zip(&decisions) {
            let c = &req.spec.constraints;
            let Some(p) = d.placement() else {
                *seen.entry("unplaceable").or_default() += 1;
                for (r, n) in d.rejections() {
                    *reasons.entry(*r).or_default() += *n as usize;
                }
                if std::env::var("DOMINANT").is_ok() {
                    let top = d
                        .rejections()
                        .iter()
                        .max_by_key(|(_, n)| **n)
                        .map(|(r, _)| *r);
                    println!("DOMINANT {top:?} {}", d.explanation());
                }
                continue;
            };
            let mut tag = |t: &'static str, on: bool| {
                if on {
                    *seen.entry(t).or_default() += 1;
                }
            };
            tag("placed", true);
            tag("multi-replica", p.assignments.len() > 1);
            tag("spread", c.spread.is_some_and(|s| s.min_sites > 1));
            tag("colocate", c.colocate && p.assignments.len() > 1);
            tag("latency", c.latency.is_some());
            tag("datasets", !c.datasets.is_empty());
            tag("residency", !c.residency.is_anywhere());
            tag("certifications", !c.certifications.is_empty());
            tag("tier", c.tier.is_some());
            tag("window", req.spec.window.is_some());
            tag(
                "mig",
                matches!(req.spec.resources.accelerator, Accelerator::Mig { .. }),
            );
            tag(
                "no-gpu",
                req.spec.resources.accelerator == Accelerator::None,
            );
            tag("bare-metal", req.spec.kind == WorkloadKind::BareMetal);
            tag("storage", req.spec.resources.storage_mib > 0);
        }
    }
    println!("decisions: {seen:?}\nrejections of refused workloads: {reasons:?}");
    for want in [
        "placed",
        "unplaceable",
        "multi-replica",
        "spread",
        "colocate",
        "latency",
        "datasets",
        "residency",
        "certifications",
        "tier",
        "window",
        "mig",
        "no-gpu",
        "bare-metal",
        "storage",
    ] {
        assert!(
            seen.contains_key(want),
            "no decision of kind {want}: {seen:?}"
        );
    }
    for want in [
        RejectReason::Residency,
        RejectReason::Latency,
        RejectReason::Capacity,
        RejectReason::Certification,
        RejectReason::Tier,
        RejectReason::Quota,
        RejectReason::SiteNotOnline,
        RejectReason::Hardware,
    ] {
        assert!(
            reasons.contains_key(&want),
            "no refusal for {want:?}: {reasons:?}"
        );
    }
}

/// A GPU with many short MIG bookings over time, then one long reservation across all of
/// them: the engine must stay conservative (never over-book) and must not overflow its
/// per-window compute-slice sum.
#[test]
fn many_short_mig_bookings_then_a_long_window() {
    let mut snap = world(
        7,
        8,
        WorldOptions {
            core_servers: Some(0),
            offline_pct: 0,
            unhealthy_pct: 0,
            measured_pct: 0,
            tight_quota_pct: 0,
        },
    );
    // Exactly one MIG GPU in the fleet.
    let mut kept = false;
    for server in &mut snap.servers {
        for gpu in &mut server.gpus {
            let keep = !kept
                && gpu.model == GpuModel::H100_80GB
                && matches!(gpu.mig, MigConfig::Enabled { .. });
            if keep {
                kept = true;
            } else if matches!(gpu.mig, MigConfig::Enabled { .. }) {
                gpu.health = GpuHealth::Failed;
            }
        }
    }
    if !kept {
        // Make one.
        let gpu = &mut snap.servers[0].gpus[0];
        gpu.model = GpuModel::H100_80GB;
        gpu.mig = MigConfig::Enabled {
            instances: Vec::new(),
        };
        gpu.health = GpuHealth::Healthy;
    }
    let tenant = snap.tenants[0].id.clone();
    for t in &mut snap.tenants {
        t.quotas = big_quotas();
        t.residency = meridian_common::model::ResidencyRule::anywhere();
    }
    let mut planner = Planner::new(&snap, PlannerConfig::default()).expect("a valid snapshot");
    let mut oracle = Oracle::new(&snap);
    let spec = |profile: &str, start: i64, hours: i64| WorkloadSpec {
        name: id("mig"),
        kind: WorkloadKind::InferenceEndpoint,
        resources: Resources {
            accelerator: Accelerator::Mig {
                model: GpuModel::H100_80GB,
                profile: GpuModel::H100_80GB
                    .mig_profile(profile)
                    .expect("a profile")
                    .profile(),
            },
            cpu_cores: 0,
            memory_mib: 0,
            storage_mib: 0,
        },
        replicas: 1,
        constraints: Constraints::default(),
        window: Some(
            TimeWindow::new(
                Timestamp(NOW.0 + start * HOUR),
                Timestamp(NOW.0 + (start + hours) * HOUR),
            )
            .expect("window"),
        ),
        priority: 0,
        image: None,
        expose: Vec::new(),
    };
    // 300 one-hour 1g.10gb reservations, one after the other, all at slice 0.
    for h in 0..300 {
        let req = PlacementRequest {
            workload: id(&format!("short-{h}")),
            tenant: tenant.clone(),
            spec: spec("1g.10gb", h, 1),
        };
        let d = planner.place(&req, NOW).expect("no error");
        let p = d
            .placement()
            .unwrap_or_else(|| panic!("hour {h}: {}", d.explanation()));
        oracle.check_placed(&req, p, NOW).expect("valid");
        oracle.commit(&req, p);
    }
    // Across all 300 hours: the 4g.40gb + 2g.20gb + 2g.20gb layout would need 8 compute
    // slices; whatever the engine decides, the calendars must stay valid.
    for (k, profile) in ["4g.40gb", "2g.20gb", "2g.20gb", "1g.10gb"]
        .iter()
        .enumerate()
    {
        let req = PlacementRequest {
            workload: id(&format!("long-{k}")),
            tenant: tenant.clone(),
            spec: spec(profile, 0, 300),
        };
        let d = planner.place(&req, NOW).expect("no error");
        if let Some(p) = d.placement() {
            oracle.check_placed(&req, p, NOW).expect("valid");
            oracle.commit(&req, p);
        }
        oracle.check_global().expect("no over-booking");
    }
}
