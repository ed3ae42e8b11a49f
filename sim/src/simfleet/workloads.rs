//! The demo's workload mix, derived from the fleet so that every workload can be placed:
//!
//! - **inference endpoints near cities**: two replicas on L40S/L4 GPUs at two different
//!   sites, within a round trip of a user region a little beyond its fourth-nearest site with
//!   that model;
//! - **EU-only fine-tuning** reading a dataset whose replica lives in Frankfurt (a German site;
//!   another EU site when the fleet has none in Germany): residency EU plus data gravity;
//! - **colocated training** on core sites: four replicas of eight GPUs, all on one core site;
//! - **MIG inference fleets**: replicas of the MIG profile the fleet has most instances of;
//! - **time-window reservations** starting an hour from now (they stay `approved` until then).

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::ids::{
    DatasetId, Name, RegionId, SiteId, TenantId, TimeWindow, Timestamp, TypedId,
};
use meridian_common::model::{
    Accelerator, Constraints, Dataset, GpuModel, JurisdictionGroup, LatencyConstraint, MigConfig,
    MigProfile, PortExposure, Protocol, Quotas, ResidencyRule, ResidencyTerm, Resources,
    ScoreWeights, Server, Site, SiteTier, Spread, Tenant, WorkloadKind, WorkloadSpec,
};
use meridian_plan::placement::LatencyModel;

use crate::fleet::Fleet;
use crate::fleet::geography;

/// Which placement constraint a workload exercises (a workload can count for several).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConstraintKind {
    Latency,
    Residency,
    DataGravity,
    Colocation,
    TimeWindow,
    Mig,
}

impl ConstraintKind {
    pub const ALL: [ConstraintKind; 6] = [
        Self::Latency,
        Self::Residency,
        Self::DataGravity,
        Self::Colocation,
        Self::TimeWindow,
        Self::Mig,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Residency => "residency",
            Self::DataGravity => "data gravity",
            Self::Colocation => "colocation",
            Self::TimeWindow => "time window",
            Self::Mig => "MIG",
        }
    }

    /// The kinds `spec` exercises.
    pub fn of(spec: &WorkloadSpec) -> BTreeSet<ConstraintKind> {
        let c = &spec.constraints;
        let mut kinds = BTreeSet::new();
        if c.latency.is_some() {
            kinds.insert(Self::Latency);
        }
        if c.residency != ResidencyRule::anywhere() {
            kinds.insert(Self::Residency);
        }
        if !c.datasets.is_empty() {
            kinds.insert(Self::DataGravity);
        }
        if c.colocate {
            kinds.insert(Self::Colocation);
        }
        if spec.window.is_some() {
            kinds.insert(Self::TimeWindow);
        }
        if matches!(spec.resources.accelerator, Accelerator::Mig { .. }) {
            kinds.insert(Self::Mig);
        }
        kinds
    }
}

/// The demo's tenants: one per [`WORKLOADS_PER_TENANT`] workloads of a family, named
/// `{family}-{n:02}`.
pub const INFERENCE_TENANT: &str = "demo-inference";
pub const EU_TENANT: &str = "demo-eu-research";
pub const TRAINING_TENANT: &str = "demo-training";
pub const MIG_TENANT: &str = "demo-mig-inference";

/// Workloads of one family per tenant: a tenant's network gives it one /24 per site from a
/// /16 (256 sites) and one /24 of replica addresses per site, so a large fleet's mix is
/// spread over several tenants of each family (MIG fleets: per 100 replicas, as they pack).
pub const WORKLOADS_PER_TENANT: usize = 100;

/// One workload to submit, as its tenant.
#[derive(Debug, Clone)]
pub struct PlannedWorkload {
    pub tenant: TenantId,
    pub spec: WorkloadSpec,
}

/// Tenants, datasets and workloads the demo creates through the API.
#[derive(Debug, Clone)]
pub struct WorkloadMix {
    pub tenants: Vec<Tenant>,
    pub datasets: Vec<Dataset>,
    pub workloads: Vec<PlannedWorkload>,
}

fn id<T: TypedId>(s: &str) -> T {
    T::parse(s).unwrap_or_else(|e| panic!("the workload mix built an invalid {}: {e}", T::KIND))
}

fn tenant(tenant: TenantId, residency: ResidencyRule) -> Tenant {
    let models = [
        GpuModel::A100_40GB,
        GpuModel::A100_80GB,
        GpuModel::H100_80GB,
        GpuModel::H100_94GB,
        GpuModel::H200_141GB,
        GpuModel::A30_24GB,
        GpuModel::L40S,
        GpuModel::L4,
    ];
    Tenant {
        name: id(tenant.as_str()),
        id: tenant,
        quotas: Quotas {
            gpus_per_model: models.into_iter().map(|m| (m, 100_000)).collect(),
            mig_slices: 100_000,
            concurrent_reservations: 100_000,
            sites: 100_000,
            storage_mib: 1024 * 1024 * 1024,
        },
        residency,
        weights: ScoreWeights {
            latency: 40.0,
            data: 30.0,
            price: 15.0,
            packing: 15.0,
        },
        max_priority: 100,
        network: None,
    }
}

fn spec(
    name: String,
    kind: WorkloadKind,
    accelerator: Accelerator,
    (cpu_cores, memory_gib): (u32, u64),
    replicas: u32,
    constraints: Constraints,
    window: Option<TimeWindow>,
) -> WorkloadSpec {
    WorkloadSpec {
        name: id::<Name>(&name),
        kind,
        resources: Resources {
            accelerator,
            cpu_cores,
            memory_mib: memory_gib * 1024,
            // An inference endpoint keeps its model weights on a volume at its site.
            storage_mib: if kind == WorkloadKind::InferenceEndpoint {
                20 * 1024
            } else {
                0
            },
        },
        replicas,
        constraints,
        window,
        priority: 10,
        image: None,
        expose: Vec::new(),
    }
}

/// `spec`, also publishing `port`/tcp through its sites' gateways.
fn exposing(mut spec: WorkloadSpec, port: u16) -> WorkloadSpec {
    spec.expose.push(PortExposure {
        port,
        protocol: Protocol::Tcp,
    });
    spec
}

/// The most common GPU model among `servers` (whole GPUs, MIG off), if any.
/// A tenant whose quotas cover anything the simulator asks, placing anywhere.
pub fn open_tenant(id: TenantId) -> Tenant {
    tenant(id, ResidencyRule::anywhere())
}

/// A workload of `replicas` replicas of `count` whole GPUs of `model` as `tenant`, on sites
/// of `tier` when given, in `window` when given (a VM reservation), else a batch job.
pub fn gpu_workload(
    tenant: TenantId,
    name: String,
    model: GpuModel,
    count: u32,
    replicas: u32,
    tier: Option<SiteTier>,
    window: Option<TimeWindow>,
) -> PlannedWorkload {
    let kind = if window.is_some() {
        WorkloadKind::VirtualMachine
    } else {
        WorkloadKind::BatchJob
    };
    PlannedWorkload {
        tenant,
        spec: spec(
            name,
            kind,
            Accelerator::WholeGpus { model, count },
            (4 * count, 16 * u64::from(count)),
            replicas,
            Constraints {
                tier,
                ..Constraints::default()
            },
            window,
        ),
    }
}

/// A VM reservation of one MIG instance of `profile` on a `model` GPU per replica, on sites
/// of `tier` when given, in `window`.
pub fn mig_workload(
    tenant: TenantId,
    name: String,
    model: GpuModel,
    profile: MigProfile,
    tier: Option<SiteTier>,
    window: TimeWindow,
) -> PlannedWorkload {
    PlannedWorkload {
        tenant,
        spec: spec(
            name,
            WorkloadKind::VirtualMachine,
            Accelerator::Mig { model, profile },
            (2, 8),
            1,
            Constraints {
                tier,
                ..Constraints::default()
            },
            Some(window),
        ),
    }
}

/// The GPU model (MIG off) most of `servers` have.
pub fn main_model<'a>(servers: impl Iterator<Item = &'a Server>) -> Option<GpuModel> {
    let mut count: BTreeMap<GpuModel, usize> = BTreeMap::new();
    for g in servers.flat_map(|s| &s.gpus) {
        if g.mig == MigConfig::Disabled {
            *count.entry(g.model).or_default() += 1;
        }
    }
    count.into_iter().max_by_key(|(_, n)| *n).map(|(m, _)| m)
}

/// The workload mix for `fleet` at `now`; sizes grow with the fleet.
pub fn mix(fleet: &Fleet, now: Timestamp) -> WorkloadMix {
    let sites = fleet.sites.len();
    let mut by_site: BTreeMap<&SiteId, Vec<&Server>> = BTreeMap::new();
    for s in &fleet.servers {
        by_site.entry(&s.site).or_default().push(s);
    }
    let servers_of = |site: &Site| by_site.get(&site.id).cloned().unwrap_or_default();
    let eu_rule = ResidencyRule::new([ResidencyTerm::Group(JurisdictionGroup::Eu)]);
    let mut workloads = Vec::new();
    let mut datasets = Vec::new();
    let mut tenants: BTreeMap<TenantId, ResidencyRule> = BTreeMap::new();
    let mut tenant_of = |family: &str, i: usize, rule: &ResidencyRule| -> TenantId {
        let t = id::<TenantId>(&format!("{family}-{:02}", i / WORKLOADS_PER_TENANT));
        tenants.entry(t.clone()).or_insert_with(|| rule.clone());
        t
    };
    let anywhere = ResidencyRule::anywhere();

    // Inference endpoints near cities.
    let latency = LatencyModel::default();
    for i in 0..(sites / 4).max(1) {
        let region = &fleet.regions[i % fleet.regions.len()];
        let model = if i % 2 == 0 {
            GpuModel::L40S
        } else {
            GpuModel::L4
        };
        let mut rtts: Vec<f64> = fleet
            .sites
            .iter()
            .filter(|s| {
                servers_of(s)
                    .iter()
                    .any(|srv| srv.gpus.iter().any(|g| g.model == model))
            })
            .map(|s| latency.estimate_rtt_ms(&region.location, &s.location))
            .collect();
        if rtts.is_empty() {
            continue;
        }
        rtts.sort_by(f64::total_cmp);
        let reach = rtts[rtts.len().min(4) - 1];
        let replicas = rtts.len().min(2) as u32;
        workloads.push(PlannedWorkload {
            tenant: tenant_of(INFERENCE_TENANT, i, &anywhere),
            spec: exposing(
                spec(
                    format!("infer-{}-{i:04}", region.name),
                    WorkloadKind::InferenceEndpoint,
                    Accelerator::WholeGpus { model, count: 1 },
                    (8, 32),
                    replicas,
                    Constraints {
                        latency: Some(LatencyConstraint {
                            from: vec![id::<RegionId>(region.id.as_str())],
                            max_rtt_ms: (reach * 1.1 + 5.0).ceil() as u32,
                        }),
                        spread: Some(Spread {
                            min_sites: replicas,
                            max_per_site: 1,
                        }),
                        ..Constraints::default()
                    },
                    None,
                ),
                443,
            ),
        });
    }

    // EU-only fine-tuning next to a dataset in Frankfurt.
    let eu_site = |s: &&Site| geography::country_of(s.country).is_some_and(|c| c.is_eu());
    let german = fleet
        .sites
        .iter()
        .filter(|s| geography::country_of(s.country).is_some_and(|c| c.code == "DE"))
        .min_by_key(|s| (s.tier != SiteTier::Core, s.id.as_str().to_owned()));
    if let Some(home) = german.or_else(|| fleet.sites.iter().find(eu_site))
        && let Some(model) = main_model(servers_of(home).into_iter())
    {
        for i in 0..(sites / 25).max(1) {
            let tenant = tenant_of(EU_TENANT, i, &eu_rule);
            let dataset = id::<DatasetId>(&format!("ds-frankfurt-{}", tenant.as_str()));
            if !datasets.iter().any(|d: &Dataset| d.id == dataset) {
                datasets.push(Dataset {
                    id: dataset.clone(),
                    tenant: tenant.clone(),
                    name: id("frankfurt-corpus"),
                    size_bytes: 2_000_000_000_000,
                    replicas: vec![home.id.clone()],
                    residency: eu_rule.clone(),
                });
            }
            workloads.push(PlannedWorkload {
                tenant,
                spec: spec(
                    format!("finetune-eu-{i:04}"),
                    WorkloadKind::BatchJob,
                    Accelerator::WholeGpus { model, count: 4 },
                    (16, 128),
                    1,
                    Constraints {
                        residency: eu_rule.clone(),
                        datasets: vec![dataset],
                        ..Constraints::default()
                    },
                    None,
                ),
            });
        }
    }

    // Colocated training on core sites.
    for (c, core) in fleet
        .sites
        .iter()
        .filter(|s| s.tier == SiteTier::Core)
        .enumerate()
    {
        let Some(model) = main_model(servers_of(core).into_iter()) else {
            continue;
        };
        for j in 0..2 {
            workloads.push(PlannedWorkload {
                tenant: tenant_of(TRAINING_TENANT, 2 * c + j, &anywhere),
                spec: spec(
                    format!("train-{}-{c:03}-{j}", model.as_str().to_ascii_lowercase()),
                    WorkloadKind::BatchJob,
                    Accelerator::WholeGpus { model, count: 8 },
                    (64, 512),
                    4,
                    Constraints {
                        colocate: true,
                        tier: Some(SiteTier::Core),
                        ..Constraints::default()
                    },
                    None,
                ),
            });
        }
    }

    // MIG inference fleets on the profile the fleet has most instances of.
    let mut instances: BTreeMap<(GpuModel, MigProfile), usize> = BTreeMap::new();
    for g in fleet.servers.iter().flat_map(|s| &s.gpus) {
        if let (true, MigConfig::Enabled { instances: list }) = (
            matches!(g.model, GpuModel::A100_80GB | GpuModel::H100_80GB),
            &g.mig,
        ) {
            for inst in list {
                *instances.entry((g.model, inst.profile)).or_default() += 1;
            }
        }
    }
    if let Some(((model, profile), available)) = instances.into_iter().max_by_key(|(_, n)| *n) {
        let fleets = (sites / 20).max(1);
        let replicas = (available / (2 * fleets)).clamp(1, 4) as u32;
        for i in 0..fleets {
            workloads.push(PlannedWorkload {
                tenant: tenant_of(MIG_TENANT, i * replicas as usize, &anywhere),
                spec: spec(
                    format!("mig-fleet-{i:04}"),
                    WorkloadKind::InferenceEndpoint,
                    Accelerator::Mig { model, profile },
                    (4, 16),
                    replicas,
                    Constraints::default(),
                    None,
                ),
            });
        }
    }

    // Time-window reservations, an hour from now for two hours.
    let hour = 3_600_000;
    let window = TimeWindow::new(
        now.saturating_add_millis(hour),
        now.saturating_add_millis(3 * hour),
    )
    .expect("a later end");
    for i in 0..(sites / 10).max(1) {
        let model = if i % 2 == 0 {
            GpuModel::L40S
        } else {
            GpuModel::L4
        };
        workloads.push(PlannedWorkload {
            tenant: tenant_of(TRAINING_TENANT, i, &anywhere),
            spec: spec(
                format!("reserved-{i:04}"),
                WorkloadKind::VirtualMachine,
                Accelerator::WholeGpus { model, count: 2 },
                (16, 64),
                1,
                Constraints::default(),
                Some(window),
            ),
        });
    }

    WorkloadMix {
        tenants: tenants
            .into_iter()
            .map(|(id, rule)| tenant(id, rule))
            .collect(),
        datasets,
        workloads,
    }
}
