//! Unit tests of the rules that span the planner's modules: storage arrays and the storage
//! quota, drained servers, measured against estimated RTTs in explanations, the hardware
//! reason and near misses, and ties between equal scores.

use std::collections::BTreeSet;

use meridian_common::ids::{Name, RegionId, ServerId, SiteId, Timestamp, TypedId};
use meridian_common::model::{
    Accelerator, BmcEndpoint, BmcVendor, Constraints, GeoPoint, Gpu, GpuHealth, GpuModel,
    Jurisdiction, LatencyConstraint, MigConfig, MigProfile, Quotas, Region, RejectReason,
    ResidencyRule, Resources, ScoreWeights, Server, ServerState, Site, SiteState, SiteTier, Spread,
    Tenant, WorkloadKind, WorkloadSpec,
};

use super::{
    Decision, FleetSnapshot, MeasuredRtt, NearMiss, PlacementError, PlacementRequest, Planner,
    PlannerConfig,
};

const NOW: Timestamp = Timestamp(1_000_000);

fn id<T: TypedId>(s: &str) -> T {
    T::parse(s).unwrap_or_else(|e| panic!("bad id {s}: {e}"))
}

fn site(name: &str, country: &str, lat: f64, lon: f64, storage_mib: u64) -> Site {
    Site {
        id: id(name),
        name: Name::parse(name).expect("a name"),
        tier: SiteTier::Core,
        location: GeoPoint { lat, lon },
        country: Jurisdiction::parse(country).expect("a country"),
        certifications: BTreeSet::new(),
        pools: Vec::new(),
        gateway_range: meridian_common::model::Ipv4Net::parse("100.64.0.0/28").expect("a net"),
        price_per_gpu_hour: 1_000_000,
        state: SiteState::Online,
        storage_mib,
    }
}

fn server(name: &str, site: &str, model: GpuModel, gpus: u32, mig: bool) -> Server {
    Server {
        id: id(name),
        site: id(site),
        bmc: BmcEndpoint {
            url: format!("https://bmc-{name}.invalid"),
            vendor: BmcVendor::Generic,
        },
        serial: format!("SN-{name}"),
        cpu_cores: 64,
        memory_mib: 1024 * 1024,
        gpus: (0..gpus)
            .map(|index| Gpu {
                index,
                model,
                memory_mib: model.nominal_memory_mib(),
                mig: if mig {
                    MigConfig::Enabled {
                        instances: Vec::new(),
                    }
                } else {
                    MigConfig::Disabled
                },
                health: GpuHealth::Healthy,
            })
            .collect(),
        dpu: None,
        pool: None,
        state: ServerState::Available,
    }
}

fn quotas(storage_mib: u64) -> Quotas {
    Quotas {
        gpus_per_model: GpuModel::ALL.iter().map(|m| (*m, 1000)).collect(),
        mig_slices: 1000,
        concurrent_reservations: 1000,
        sites: 1000,
        storage_mib,
    }
}

fn tenant(name: &str, residency: &[&str], storage_mib: u64) -> Tenant {
    Tenant {
        id: id(name),
        name: Name::parse(name).expect("a name"),
        quotas: quotas(storage_mib),
        residency: ResidencyRule::parse(residency).expect("a rule"),
        weights: ScoreWeights::default(),
        max_priority: 10,
        network: None,
    }
}

fn region(name: &str, lat: f64, lon: f64) -> Region {
    Region {
        id: id(name),
        name: Name::parse(name).expect("a name"),
        location: GeoPoint { lat, lon },
        country: Jurisdiction::parse("FR").expect("a country"),
        population: 1_000_000,
    }
}

fn whole(model: GpuModel, count: u32) -> Accelerator {
    Accelerator::WholeGpus { model, count }
}

fn request(
    name: &str,
    tenant: &str,
    accelerator: Accelerator,
    storage_mib: u64,
) -> PlacementRequest {
    PlacementRequest {
        workload: id(name),
        tenant: id(tenant),
        spec: WorkloadSpec {
            name: Name::parse(name).expect("a name"),
            kind: WorkloadKind::InferenceEndpoint,
            resources: Resources {
                accelerator,
                cpu_cores: 1,
                memory_mib: 1024,
                storage_mib,
            },
            replicas: 1,
            constraints: Constraints::default(),
            window: None,
            priority: 0,
            image: None,
            expose: Vec::new(),
        },
    }
}

fn snapshot(sites: Vec<Site>, servers: Vec<Server>, tenants: Vec<Tenant>) -> FleetSnapshot {
    FleetSnapshot {
        sites,
        servers,
        tenants,
        ..FleetSnapshot::default()
    }
}

fn planner(snap: &FleetSnapshot) -> Planner {
    Planner::new(snap, PlannerConfig::default()).expect("a valid snapshot")
}

fn sites_of(d: &Decision) -> Vec<String> {
    let p = d
        .placement()
        .unwrap_or_else(|| panic!("not placed: {}", d.explanation()));
    let mut sites: Vec<String> = p.assignments.iter().map(|a| a.site.to_string()).collect();
    sites.dedup();
    sites
}

fn near(d: &Decision) -> Vec<NearMiss> {
    match d {
        Decision::Unplaceable(u) => u.near_misses.clone(),
        Decision::Placed(p) => panic!("placed: {}", p.explanation),
    }
}

fn miss_of<'a>(misses: &'a [NearMiss], site: &str) -> &'a NearMiss {
    misses
        .iter()
        .find(|m| m.site.as_str() == site)
        .unwrap_or_else(|| panic!("{site} is not among {misses:?}"))
}

fn count(d: &Decision, reason: RejectReason) -> u32 {
    d.rejections().get(&reason).copied().unwrap_or(0)
}

/// Paris without an array, Frankfurt with 1,000 MiB, one L40S server each.
fn storage_fleet(storage_quota: u64) -> FleetSnapshot {
    snapshot(
        vec![
            site("par-1", "FR", 48.86, 2.35, 0),
            site("fra-1", "DE", 50.11, 8.68, 1000),
        ],
        vec![
            server("par-1-s0", "par-1", GpuModel::L40S, 8, false),
            server("fra-1-s0", "fra-1", GpuModel::L40S, 8, false),
        ],
        vec![tenant("media", &["EU"], storage_quota)],
    )
}

#[test]
fn a_site_without_a_storage_array_lacks_the_hardware_and_a_full_one_lacks_capacity() {
    let mut p = planner(&storage_fleet(100_000));
    let l40s = whole(GpuModel::L40S, 1);
    let d = p.place(&request("a", "media", l40s, 600), NOW).unwrap();
    assert_eq!(sites_of(&d), ["fra-1"]);
    assert_eq!(count(&d, RejectReason::Hardware), 1, "Paris has no array");
    let d = p.place(&request("b", "media", l40s, 600), NOW).unwrap();
    let misses = near(&d);
    assert_eq!(count(&d, RejectReason::Hardware), 1);
    assert_eq!(count(&d, RejectReason::Capacity), 1);
    let par = miss_of(&misses, "par-1");
    assert_eq!(
        (par.reason, par.detail.as_str()),
        (RejectReason::Hardware, "no storage array")
    );
    let fra = miss_of(&misses, "fra-1");
    assert_eq!(fra.reason, RejectReason::Capacity);
    assert_eq!(
        fra.detail,
        "storage array full for the window: 600 of 1000 MiB booked, a replica needs 600 MiB"
    );
    // 400 MiB still fit; a dry run books nothing; releasing frees the array.
    let c = request("c", "media", l40s, 400);
    assert!(p.dry_run(&c, NOW).unwrap().placement().is_some());
    assert!(p.dry_run(&c, NOW).unwrap().placement().is_some());
    assert!(p.release(&id("a")));
    assert_eq!(
        sites_of(&p.place(&request("b", "media", l40s, 600), NOW).unwrap()),
        ["fra-1"]
    );
    // Without storage, Paris is a site like any other.
    assert_eq!(
        count(
            &p.dry_run(&request("d", "media", l40s, 0), NOW).unwrap(),
            RejectReason::Hardware
        ),
        0
    );
}

#[test]
fn storage_counts_per_replica_and_follows_the_windows() {
    let mut p = planner(&storage_fleet(100_000));
    let mut three = request("three", "media", whole(GpuModel::L40S, 1), 300);
    three.spec.replicas = 3;
    three.spec.window = Some(
        meridian_common::ids::TimeWindow::new(Timestamp(2_000_000), Timestamp(3_000_000))
            .expect("a window"),
    );
    assert_eq!(sites_of(&p.place(&three, NOW).unwrap()), ["fra-1"]);
    // 900 of 1000 MiB booked in that window: a fourth volume does not fit then, but does after.
    let mut during = request("during", "media", whole(GpuModel::L40S, 1), 300);
    during.spec.window = three.spec.window;
    assert!(p.dry_run(&during, NOW).unwrap().placement().is_none());
    during.spec.window = Some(
        meridian_common::ids::TimeWindow::new(Timestamp(3_000_000), Timestamp(4_000_000))
            .expect("a window"),
    );
    assert!(p.dry_run(&during, NOW).unwrap().placement().is_some());
    // Four replicas cannot all go on Frankfurt's array, and Paris has none.
    let mut four = three.clone();
    four.workload = id("four");
    four.spec.replicas = 4;
    four.spec.window = during.spec.window;
    assert!(p.dry_run(&four, NOW).unwrap().placement().is_none());
    four.spec.constraints.colocate = true;
    assert!(p.dry_run(&four, NOW).unwrap().placement().is_none());
    four.spec.replicas = 3;
    assert!(p.dry_run(&four, NOW).unwrap().placement().is_some());
}

#[test]
fn the_storage_quota_is_named_with_its_numbers() {
    let mut p = planner(&storage_fleet(900));
    let l40s = whole(GpuModel::L40S, 1);
    assert!(
        p.place(&request("a", "media", l40s, 300), NOW)
            .unwrap()
            .placement()
            .is_some()
    );
    let d = p.place(&request("b", "media", l40s, 700), NOW).unwrap();
    assert!(d.placement().is_none());
    assert!(count(&d, RejectReason::Quota) > 0);
    assert!(
        d.explanation().starts_with(
            "not placed: tenant quota for storage: 300 MiB in use during the window, this needs \
             700 MiB, the limit is 900 MiB."
        ),
        "{}",
        d.explanation()
    );
    assert!(p.release(&id("a")));
    assert!(
        p.place(&request("b", "media", l40s, 700), NOW)
            .unwrap()
            .placement()
            .is_some()
    );
}

#[test]
fn storage_is_rebooked_after_a_rebuild() {
    let snap = storage_fleet(100_000);
    let mut p = planner(&snap);
    let a = request("a", "media", whole(GpuModel::L40S, 1), 700);
    let Decision::Placed(placed) = p.place(&a, NOW).unwrap() else {
        panic!("placed")
    };
    let probe = request("probe", "media", whole(GpuModel::L40S, 1), 500);
    assert!(p.dry_run(&probe, NOW).unwrap().placement().is_none());
    let mut again = snap.clone();
    again.placements.push(placed);
    let mut rebuilt = planner(&again);
    // The placement alone does not say how much storage it holds.
    assert!(rebuilt.dry_run(&probe, NOW).unwrap().placement().is_some());
    assert!(rebuilt.rebook_storage(&a.workload, 700));
    assert_eq!(
        rebuilt.dry_run(&probe, NOW).unwrap(),
        p.dry_run(&probe, NOW).unwrap()
    );
    // Idempotent, counted in the quota, freed by release; unknown workloads book nothing.
    assert!(rebuilt.rebook_storage(&a.workload, 700));
    assert_eq!(
        rebuilt.dry_run(&probe, NOW).unwrap(),
        p.dry_run(&probe, NOW).unwrap()
    );
    assert!(!rebuilt.rebook_storage(&id("nobody"), 700));
    assert!(rebuilt.release(&a.workload));
    assert!(rebuilt.dry_run(&probe, NOW).unwrap().placement().is_some());
}

#[test]
fn drained_servers_keep_their_placements_and_take_no_new_one() {
    let mut snap = snapshot(
        vec![
            site("fra-1", "DE", 50.11, 8.68, 0),
            Site {
                // Dearer: the first job goes to Frankfurt.
                price_per_gpu_hour: 2_000_000,
                ..site("ber-1", "DE", 52.52, 13.40, 0)
            },
        ],
        vec![
            server("fra-1-s0", "fra-1", GpuModel::H100_80GB, 8, false),
            server("fra-1-s1", "fra-1", GpuModel::H100_80GB, 8, false),
            server("ber-1-s0", "ber-1", GpuModel::H100_80GB, 8, false),
        ],
        vec![tenant("lab", &["DE"], 0)],
    );
    let eight = whole(GpuModel::H100_80GB, 8);
    let mut p = planner(&snap);
    let Decision::Placed(first) = p.place(&request("a", "lab", eight, 0), NOW).unwrap() else {
        panic!("placed")
    };
    assert_eq!(first.assignments[0].server.as_str(), "fra-1-s0");
    // Drain the server it is on, and Berlin's.
    snap.drained = ["fra-1-s0", "ber-1-s0"]
        .iter()
        .map(|s| id::<ServerId>(s))
        .collect();
    snap.placements = vec![first];
    let mut p = planner(&snap);
    assert!(
        p.is_placed(&id("a")),
        "the placement on the drained server stays booked"
    );
    let Decision::Placed(second) = p.place(&request("b", "lab", eight, 0), NOW).unwrap() else {
        panic!("placed")
    };
    assert_eq!(second.assignments[0].server.as_str(), "fra-1-s1");
    assert!(p.release(&id("a")));
    let d = p
        .place(&request("c", "lab", whole(GpuModel::H100_80GB, 1), 0), NOW)
        .unwrap();
    assert_eq!(count(&d, RejectReason::Capacity), 2);
    let misses = near(&d);
    for site in ["fra-1", "ber-1"] {
        let m = miss_of(&misses, site);
        assert_eq!(m.reason, RejectReason::Capacity);
        assert!(m.detail.contains("drained"), "{m:?}");
    }
    // A drained server the fleet does not have is an inconsistent snapshot.
    snap.drained.insert(id("nowhere-s9"));
    assert!(matches!(
        Planner::new(&snap, PlannerConfig::default()),
        Err(PlacementError::BadSnapshot(_))
    ));
}

/// Lille (~5.0 ms from Paris by distance) and Frankfurt (~9.0 ms), L40S each; Lille also has
/// an H200.
fn rtt_fleet(measured_lille: Option<f64>) -> FleetSnapshot {
    let mut snap = snapshot(
        vec![
            site("lil-1", "FR", 50.6292, 3.0573, 0),
            site("fra-1", "DE", 50.1109, 8.6821, 0),
        ],
        vec![
            server("lil-1-s0", "lil-1", GpuModel::L40S, 8, false),
            server("lil-1-s1", "lil-1", GpuModel::H200_141GB, 8, false),
            server("fra-1-s0", "fra-1", GpuModel::L40S, 8, false),
        ],
        vec![tenant("shop", &["EU"], 0)],
    );
    snap.regions = vec![region("paris", 48.8566, 2.3522)];
    if let Some(rtt_ms) = measured_lille {
        snap.rtts.push(MeasuredRtt {
            site: id("lil-1"),
            region: id("paris"),
            rtt_ms,
        });
    }
    snap
}

fn within(mut r: PlacementRequest, max_rtt_ms: u32) -> PlacementRequest {
    r.spec.constraints.latency = Some(LatencyConstraint {
        from: vec![id::<RegionId>("paris")],
        max_rtt_ms,
    });
    r
}

#[test]
fn explanations_say_whether_an_rtt_was_measured_or_estimated() {
    let l40s = within(request("a", "shop", whole(GpuModel::L40S, 1), 0), 20);
    let mut p = planner(&rtt_fleet(None));
    let d = p.dry_run(&l40s, NOW).unwrap();
    assert_eq!(sites_of(&d), ["lil-1"]);
    assert!(
        d.explanation()
            .contains("lil-1 x1 (RTT 5.0 ms estimated <= 20 ms)"),
        "{}",
        d.explanation()
    );
    let mut p = planner(&rtt_fleet(Some(3.0)));
    let d = p.dry_run(&l40s, NOW).unwrap();
    assert!(
        d.explanation()
            .contains("lil-1 x1 (RTT 3 ms measured <= 20 ms)"),
        "{}",
        d.explanation()
    );
    // Measured at 30 ms: over the 20 ms goal, however near the site looks on a map.
    let mut p = planner(&rtt_fleet(Some(30.0)));
    let d = p.dry_run(&l40s, NOW).unwrap();
    assert_eq!(sites_of(&d), ["fra-1"]);
    assert!(
        d.explanation()
            .contains("fra-1 x1 (RTT 9.0 ms estimated <= 20 ms)"),
        "{}",
        d.explanation()
    );
    let h200 = within(request("b", "shop", whole(GpuModel::H200_141GB, 1), 0), 20);
    let d = p.dry_run(&h200, NOW).unwrap();
    let lille = miss_of(&near(&d), "lil-1").clone();
    assert_eq!(lille.reason, RejectReason::Latency);
    assert_eq!(
        lille.detail,
        "RTT measured 30 ms > 20 ms from paris (distance estimate 5.0 ms)"
    );
    assert!(
        d.explanation().contains("measured 30 ms"),
        "{}",
        d.explanation()
    );
    // A measurement recorded later is used and named the same way; a fractional one keeps
    // its decimal.
    let mut p = planner(&rtt_fleet(None));
    p.set_measured_rtt(&id::<SiteId>("lil-1"), &id("paris"), 25.5)
        .unwrap();
    let d = p.dry_run(&h200, NOW).unwrap();
    assert_eq!(
        miss_of(&near(&d), "lil-1").detail,
        "RTT measured 25.5 ms > 20 ms from paris (distance estimate 5.0 ms)"
    );
    // Estimated misses (the site beyond the limit of the region's RTT list).
    let d = p
        .dry_run(
            &within(request("c", "shop", whole(GpuModel::L40S, 1), 0), 3),
            NOW,
        )
        .unwrap();
    assert!(
        d.explanation()
            .contains("RTT estimated 9.0 ms > 3 ms from paris"),
        "{}",
        d.explanation()
    );
}

#[test]
fn lacking_hardware_is_not_lacking_capacity() {
    let snap = snapshot(
        vec![
            site("fra-1", "DE", 50.11, 8.68, 0),
            site("par-1", "FR", 48.86, 2.35, 0),
            site("ams-1", "NL", 52.37, 4.90, 0),
            site("lon-1", "GB", 51.51, -0.13, 0),
        ],
        vec![
            server("fra-1-s0", "fra-1", GpuModel::H100_80GB, 8, false),
            server("par-1-s0", "par-1", GpuModel::L40S, 8, false),
            server("ams-1-s0", "ams-1", GpuModel::H100_80GB, 8, true),
            server("lon-1-s0", "lon-1", GpuModel::H100_80GB, 8, false),
        ],
        vec![tenant("lab", &["EU"], 0)],
    );
    let mut p = planner(&snap);
    assert!(
        p.place(
            &request("big", "lab", whole(GpuModel::H100_80GB, 8), 0),
            NOW
        )
        .unwrap()
        .placement()
        .is_some()
    );
    let d = p
        .dry_run(
            &request("one", "lab", whole(GpuModel::H100_80GB, 1), 0),
            NOW,
        )
        .unwrap();
    assert_eq!(count(&d, RejectReason::Capacity), 1);
    assert_eq!(count(&d, RejectReason::Hardware), 2);
    assert_eq!(count(&d, RejectReason::Residency), 1);
    assert!(
        d.explanation()
            .contains("4 sites rejected: 2 hardware, 1 residency, 1 capacity"),
        "{}",
        d.explanation()
    );
    let misses = near(&d);
    let reasons: Vec<(&str, RejectReason)> =
        misses.iter().map(|m| (m.site.as_str(), m.reason)).collect();
    // Three different reasons, latest check first; London (outside the EU, but with H100s)
    // is named for residency.
    assert_eq!(
        reasons,
        [
            ("fra-1", RejectReason::Capacity),
            ("ams-1", RejectReason::Hardware),
            ("lon-1", RejectReason::Residency),
        ]
    );
    assert_eq!(
        misses[0].detail,
        "no H100-80GB GPUs free for the whole window"
    );
    assert_eq!(
        misses[1].detail,
        "no H100-80GB GPU with MIG disabled (its H100-80GB GPUs are MIG-enabled)"
    );
    assert_eq!(
        misses[2].detail,
        "its country GB is outside the residency rule"
    );
    // MIG: Amsterdam has it, Frankfurt and London have the model with MIG disabled.
    let mig = Accelerator::Mig {
        model: GpuModel::H100_80GB,
        profile: MigProfile::parse(GpuModel::H100_80GB, "1g.10gb").expect("a profile"),
    };
    let mut spread = request("fleet", "lab", mig, 0);
    spread.spec.replicas = 2;
    spread.spec.constraints.spread = Some(Spread {
        min_sites: 2,
        max_per_site: 1,
    });
    let d = p.dry_run(&spread, NOW).unwrap();
    assert!(
        d.explanation().starts_with(
            "not placed: too few sites have the hardware (MIG-enabled H100-80GB GPUs): 2 \
             replicas need at least 2 sites, only 1 site that meets the other constraints has \
             it (2 sites have none)."
        ),
        "{}",
        d.explanation()
    );
    assert!(!d.explanation().contains("spread rules"));
    let fra = miss_of(&near(&d), "fra-1").clone();
    assert_eq!(
        (fra.reason, fra.detail.as_str()),
        (
            RejectReason::Hardware,
            "no MIG-enabled H100-80GB GPU (its H100-80GB GPUs have MIG disabled)"
        )
    );
    let d = p
        .dry_run(&request("l4", "lab", whole(GpuModel::L4, 1), 0), NOW)
        .unwrap();
    assert_eq!(count(&d, RejectReason::Hardware), 3);
    assert_eq!(miss_of(&near(&d), "par-1").detail, "no usable L4 GPU");
}

#[test]
fn equal_scores_go_to_the_lower_site_id() {
    // Vienna (AT) is nearer to Linz and its country sorts first, so it comes first in both
    // scan orders; Munich has the lower ID.
    let mut snap = snapshot(
        vec![
            site("vie-1", "AT", 48.2082, 16.3738, 0),
            site("mun-1", "DE", 48.1351, 11.5820, 0),
        ],
        vec![
            server("vie-1-s0", "vie-1", GpuModel::L40S, 8, false),
            server("mun-1-s0", "mun-1", GpuModel::L40S, 8, false),
        ],
        vec![Tenant {
            weights: ScoreWeights {
                latency: 0.0,
                data: 1.0,
                price: 1.0,
                packing: 1.0,
            },
            ..tenant("render", &["EU"], 0)
        }],
    );
    snap.regions = vec![region("linz", 48.3069, 14.2858)];
    let mut p = planner(&snap);
    let one = request("one", "render", whole(GpuModel::L40S, 1), 0);
    let near_linz = |mut r: PlacementRequest| {
        r.spec.constraints.latency = Some(LatencyConstraint {
            from: vec![id::<RegionId>("linz")],
            max_rtt_ms: 20,
        });
        r
    };
    assert_eq!(sites_of(&p.dry_run(&one, NOW).unwrap()), ["mun-1"]);
    assert_eq!(
        sites_of(&p.dry_run(&near_linz(one.clone()), NOW).unwrap()),
        ["mun-1"]
    );
    let mut pair = near_linz(request("pair", "render", whole(GpuModel::L40S, 4), 0));
    pair.spec.replicas = 2;
    assert_eq!(sites_of(&p.dry_run(&pair, NOW).unwrap()), ["mun-1"]);
    pair.spec.constraints.colocate = true;
    assert_eq!(sites_of(&p.dry_run(&pair, NOW).unwrap()), ["mun-1"]);
}

#[test]
fn milliseconds_drop_the_decimal_only_when_whole() {
    use super::explain::Ms;
    assert_eq!(Ms(30.0).to_string(), "30");
    assert_eq!(Ms(12.5).to_string(), "12.5");
    assert_eq!(Ms(4.9916).to_string(), "5.0");
    assert_eq!(Ms(9.025).to_string(), "9.0");
    assert_eq!(Ms(0.0).to_string(), "0");
}

#[test]
fn near_misses_keep_three_per_reason() {
    use super::decide::{Filtered, Miss};
    let mut f = Filtered::default();
    for site in 0..5u32 {
        f.miss(Miss {
            depth: 6,
            site,
            reason: RejectReason::Capacity,
            value: site as f32,
        });
    }
    f.miss(Miss {
        depth: 1,
        site: 9,
        reason: RejectReason::Hardware,
        value: 0.0,
    });
    let mut kept: Vec<(RejectReason, u32)> = f.misses.iter().map(|m| (m.reason, m.site)).collect();
    kept.sort();
    assert_eq!(
        kept,
        [
            (RejectReason::Capacity, 0),
            (RejectReason::Capacity, 1),
            (RejectReason::Capacity, 2),
            (RejectReason::Hardware, 9),
        ]
    );
}
