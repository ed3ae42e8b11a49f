//! B1: placement throughput and decision latency on a generated fleet, commit included, on
//! one core; single-replica workloads with latency + residency + data constraints, and
//! 8-replica spread workloads; and how the cost grows with the fleet size.

use std::time::{Duration, Instant};

use meridian_common::ids::{Name, Timestamp, WorkloadId};
use meridian_common::model::{
    Accelerator, Constraints, GpuModel, LatencyConstraint, MigProfile, Quotas, Resources, Spread,
    Tenant, WorkloadKind, WorkloadSpec,
};
use meridian_plan::placement::{Decision, FleetSnapshot, PlacementRequest, Planner, PlannerConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::percentile;
use crate::fleet::{self, Fleet, FleetSpec};

/// The kind of workload a run places.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// One replica, latency + residency + data constraints.
    Single,
    /// Eight replicas over at least four sites, at most two per site.
    Spread8,
}

/// One measured run.
#[derive(Debug, Clone)]
pub struct B1Result {
    pub sites: usize,
    pub shape: Shape,
    pub build: Duration,
    pub decisions: usize,
    pub placed: usize,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// The snapshot of a generated fleet, with quotas large enough that capacity, not quota,
/// bounds the run (quota checks still run on every decision).
pub fn snapshot(fleet: &Fleet) -> FleetSnapshot {
    let tenants = fleet
        .tenants
        .iter()
        .map(|t| Tenant {
            quotas: Quotas {
                gpus_per_model: [
                    GpuModel::L40S,
                    GpuModel::L4,
                    GpuModel::H100_80GB,
                    GpuModel::A100_80GB,
                    GpuModel::H200_141GB,
                ]
                .into_iter()
                .map(|m| (m, 1_000_000))
                .collect(),
                mig_slices: 1_000_000,
                concurrent_reservations: 1_000_000,
                sites: 1_000_000,
                storage_mib: u64::MAX / 4,
            },
            ..t.clone()
        })
        .collect();
    FleetSnapshot {
        sites: fleet.sites.clone(),
        servers: fleet.servers.clone(),
        regions: fleet.regions.clone(),
        datasets: fleet.datasets.clone(),
        tenants,
        ..FleetSnapshot::default()
    }
}

/// A seeded stream of realistic requests: a user region, a tenant whose residency allows it,
/// often one of that tenant's datasets, 15-40 ms from the region.
pub fn requests(fleet: &Fleet, shape: Shape, n: usize, seed: u64) -> Vec<PlacementRequest> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut out = Vec::with_capacity(n);
    let models = [
        GpuModel::L40S,
        GpuModel::L4,
        GpuModel::H100_80GB,
        GpuModel::A100_80GB,
    ];
    while out.len() < n {
        let region = &fleet.regions[rng.random_range(0..fleet.regions.len())];
        let tenant = &fleet.tenants[rng.random_range(0..fleet.tenants.len())];
        if !tenant.residency.allows(region.country) {
            continue;
        }
        let datasets: Vec<_> = fleet
            .datasets
            .iter()
            .filter(|d| d.tenant == tenant.id && d.residency.allows(region.country))
            .map(|d| d.id.clone())
            .collect();
        let dataset = if !datasets.is_empty() && rng.random_bool(0.5) {
            vec![datasets[rng.random_range(0..datasets.len())].clone()]
        } else {
            Vec::new()
        };
        let model = models[rng.random_range(0..models.len())];
        let accelerator =
            if matches!(model, GpuModel::H100_80GB | GpuModel::A100_80GB) && rng.random_bool(0.5) {
                Accelerator::Mig {
                    model,
                    profile: MigProfile::parse(model, "1g.10gb").expect("a profile of the model"),
                }
            } else {
                Accelerator::WholeGpus { model, count: 1 }
            };
        let (replicas, spread) = match shape {
            Shape::Single => (1, None),
            Shape::Spread8 => (
                8,
                Some(Spread {
                    min_sites: 4,
                    max_per_site: 2,
                }),
            ),
        };
        let i = out.len();
        out.push(PlacementRequest {
            workload: WorkloadId::parse(&format!("bench-{i}")).expect("a valid id"),
            tenant: tenant.id.clone(),
            spec: WorkloadSpec {
                name: Name::parse(&format!("bench-{i}")).expect("a valid name"),
                kind: WorkloadKind::InferenceEndpoint,
                resources: Resources {
                    accelerator,
                    cpu_cores: 4,
                    memory_mib: 16 * 1024,
                    storage_mib: 0,
                },
                replicas,
                constraints: Constraints {
                    latency: Some(LatencyConstraint {
                        from: vec![region.id.clone()],
                        max_rtt_ms: rng.random_range(15..=40),
                    }),
                    residency: tenant.residency.clone(),
                    datasets: dataset,
                    spread,
                    ..Constraints::default()
                },
                window: None,
                priority: 0,
                image: None,
                expose: Vec::new(),
            },
        });
    }
    out
}

/// Builds the planner for a `sites`-site fleet and places `n` requests, timing each.
pub fn run(sites: usize, shape: Shape, n: usize, seed: u64) -> B1Result {
    let fleet = fleet::generate(&FleetSpec::with_sites(seed, sites));
    let snap = snapshot(&fleet);
    let requests = requests(&fleet, shape, n, seed ^ 0x5eed);
    drop(fleet);
    let started = Instant::now();
    let mut planner = Planner::new(&snap, PlannerConfig::default()).expect("a consistent snapshot");
    let build = started.elapsed();
    drop(snap);
    let mut latencies = Vec::with_capacity(n);
    let mut placed = 0;
    let now = Timestamp::from_millis(1_800_000_000_000);
    let started = Instant::now();
    for request in &requests {
        let t = Instant::now();
        let decision = planner
            .place(request, now)
            .expect("a known tenant, region and dataset");
        latencies.push(t.elapsed());
        if matches!(decision, Decision::Placed(_)) {
            placed += 1;
        }
    }
    let total = started.elapsed();
    latencies.sort();
    B1Result {
        sites,
        shape,
        build,
        decisions: n,
        placed,
        per_second: n as f64 / total.as_secs_f64(),
        p50: percentile(&latencies, 0.50),
        p99: percentile(&latencies, 0.99),
        max: *latencies.last().expect("at least one decision"),
    }
}

impl std::fmt::Display for B1Result {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>6} sites  {:<8} {:>9.0} placements/s  p50 {:>7.1} us  p99 {:>7.1} us  max {:>8.1} us  placed {}/{}  (index built in {} ms)",
            self.sites,
            match self.shape {
                Shape::Single => "single",
                Shape::Spread8 => "spread-8",
            },
            self.per_second,
            self.p50.as_secs_f64() * 1e6,
            self.p99.as_secs_f64() * 1e6,
            self.max.as_secs_f64() * 1e6,
            self.placed,
            self.decisions,
            self.build.as_millis()
        )
    }
}

/// What `meridian-sim bench placement` measures: single-replica runs at each fleet size (the
/// cost growth) and one spread-8 run.
#[derive(Debug, Clone)]
pub struct PlacementBenchReport {
    /// Decisions per single-replica run.
    pub workloads: usize,
    /// One single-replica run per fleet size, smallest first.
    pub growth: Vec<B1Result>,
    /// The spread-8 run.
    pub spread: B1Result,
}

impl PlacementBenchReport {
    /// The run the B1 target is checked on: 10,000 sites, or the largest fleet measured.
    pub fn headline(&self) -> &B1Result {
        self.growth
            .iter()
            .find(|r| r.sites == 10_000)
            .or(self.growth.last())
            .expect("at least one fleet size")
    }
}

/// Runs B1 at each of `sizes` (single-replica, `workloads` decisions each) and a spread-8 run
/// of `workloads / 4` decisions at `spread_sites`, printing each result as it comes and the
/// verdict at the end.
pub fn bench(
    sizes: &[usize],
    spread_sites: usize,
    workloads: usize,
    seed: u64,
) -> PlacementBenchReport {
    assert!(!sizes.is_empty(), "at least one fleet size");
    println!("B1 placement, commit included, one core, {workloads} decisions per run");
    let mut growth = Vec::new();
    for &sites in sizes {
        let result = run(sites, Shape::Single, workloads, seed);
        println!("  {result}");
        growth.push(result);
    }
    let spread = run(spread_sites, Shape::Spread8, (workloads / 4).max(1), seed);
    println!("  {spread}");
    println!("  cost per decision by fleet size:");
    for r in &growth {
        println!("    {:>6} sites  {:>7.1} us", r.sites, 1e6 / r.per_second);
    }
    let report = PlacementBenchReport {
        workloads,
        growth,
        spread,
    };
    let r = report.headline();
    let met = r.per_second >= 20_000.0 && r.p99.as_secs_f64() <= 1e-3;
    println!(
        "  target B1 ({} sites): >= 20000 placements/s and p99 <= 1 ms: {:.0}/s, p99 {:.0} us: {}",
        r.sites,
        r.per_second,
        r.p99.as_secs_f64() * 1e6,
        if met { "met" } else { "NOT met" }
    );
    report
}
