//! Shared by the placement test files: random small worlds (a generated fleet with some
//! perturbation), random workloads, and an oracle that checks decisions against the snapshot
//! independently of the engine (its own RTTs, residency, certifications, GPU calendars,
//! storage arrays, drained servers, quota sweep, score formulas, and the sites that lack the
//! hardware).

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meridian_common::ids::{
    DatasetId, Name, RegionId, ServerId, SiteId, TenantId, TimeWindow, Timestamp, WorkloadId,
};
use meridian_common::model::{
    Accelerator, Assignment, Certification, Constraints, Dataset, GeoPoint, GpuHealth, GpuModel,
    GpuSlot, JurisdictionGroup, LatencyConstraint, MigConfig, MigProfileSpec, Placement, Quotas,
    Region, RejectReason, ResidencyRule, ResidencyTerm, Resources, ScoreWeights, Server, Site,
    SiteState, SiteTier, Spread, Tenant, WorkloadKind, WorkloadSpec,
};
use meridian_plan::placement::{
    Decision, FleetSnapshot, LatencyModel, MeasuredRtt, PlacementRequest,
};
use meridian_sim::fleet::{FleetSpec, generate};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The `now` every test decides at.
pub const NOW: Timestamp = Timestamp(1_000_000);
/// One hour in ms: windows are whole hours after `NOW`.
pub const HOUR: i64 = 3_600_000;

/// The planner's default weights (`PlannerConfig::default`: equal), for tenants whose weights
/// are all 0, written out here so the checker does not share the engine's constant.
pub const DEFAULT_WEIGHTS: ScoreWeights = ScoreWeights {
    latency: 25.0,
    data: 25.0,
    price: 25.0,
    packing: 25.0,
};

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

pub fn id<T: meridian_common::ids::TypedId>(s: &str) -> T {
    T::parse(s).unwrap_or_else(|e| panic!("bad id {s}: {e}"))
}

fn pick<'a, T>(rng: &mut ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Quotas that never bind.
pub fn big_quotas() -> Quotas {
    Quotas {
        gpus_per_model: GpuModel::ALL.iter().map(|m| (*m, 1_000_000)).collect(),
        mig_slices: 1_000_000,
        concurrent_reservations: 1_000_000,
        sites: 1_000_000,
        storage_mib: u64::MAX / 4,
    }
}

/// How a world is perturbed.
#[derive(Debug, Clone, Copy)]
pub struct WorldOptions {
    /// Servers kept per core site (`None`: all 256).
    pub core_servers: Option<usize>,
    /// Percent of sites not online.
    pub offline_pct: u32,
    /// Percent of GPUs degraded or failed.
    pub unhealthy_pct: u32,
    /// Percent of (region, site) pairs with a measured RTT.
    pub measured_pct: u32,
    /// Percent of tenants with small, random quotas (the others get quotas that never bind).
    pub tight_quota_pct: u32,
}

/// Percent of sites without a storage array, and of servers drained, in every world.
pub const NO_ARRAY_PCT: u32 = 20;
pub const DRAINED_PCT: u32 = 4;

/// A random small world: a generated fleet plus extra regions next to sites (so tight latency
/// goals can be met), measured RTTs, extra datasets and tenants, offline sites, unhealthy GPUs.
pub fn world(seed: u64, sites: usize, opt: WorldOptions) -> FleetSnapshot {
    let fleet = generate(&FleetSpec::with_sites(seed, sites));
    let mut rng = rng(seed ^ 0x0005_eed0_fa11);
    let mut snap = FleetSnapshot {
        sites: fleet.sites,
        servers: fleet.servers,
        regions: fleet.regions,
        rtts: Vec::new(),
        datasets: fleet.datasets,
        tenants: fleet.tenants,
        placements: Vec::new(),
        drained: Default::default(),
    };
    if let Some(keep) = opt.core_servers {
        let core: BTreeSet<SiteId> = snap
            .sites
            .iter()
            .filter(|s| s.tier == SiteTier::Core)
            .map(|s| s.id.clone())
            .collect();
        let mut per_site: BTreeMap<SiteId, Vec<Server>> = BTreeMap::new();
        let mut others = Vec::new();
        for s in snap.servers.drain(..) {
            if core.contains(&s.site) {
                per_site.entry(s.site.clone()).or_default().push(s);
            } else {
                others.push(s);
            }
        }
        for (_, list) in per_site {
            // Half from the training servers (the front), half from the inference servers
            // (the back, some with MIG on).
            let n = list.len();
            let front = keep.div_ceil(2).min(n);
            let back = (keep - front).min(n - front);
            others.extend(list[..front].iter().cloned());
            others.extend(list[n - back..].iter().cloned());
        }
        snap.servers = others;
    }
    for site in &mut snap.sites {
        if rng.random_range(0..100) < opt.offline_pct {
            site.state = *pick(
                &mut rng,
                &[
                    SiteState::Degraded,
                    SiteState::Disconnected,
                    SiteState::Pending,
                ],
            );
        }
        // More certifications than the generator gives, so every kind is sometimes met.
        for cert in [
            Certification::Hipaa,
            Certification::Sovereign,
            Certification::Gxp,
        ] {
            if rng.random_range(0..100) < 15 {
                site.certifications.insert(cert);
            }
        }
    }
    for server in &mut snap.servers {
        for gpu in &mut server.gpus {
            if rng.random_range(0..100) < opt.unhealthy_pct {
                gpu.health = *pick(&mut rng, &[GpuHealth::Degraded, GpuHealth::Failed]);
            }
        }
    }
    // Regions right next to random sites.
    for i in 0..3 {
        let site = pick(&mut rng, &snap.sites).clone();
        snap.regions.push(Region {
            id: id(&format!("near-{i}")),
            name: id(&format!("near-{i}")),
            location: GeoPoint {
                lat: (site.location.lat + rng.random_range(-0.3..0.3)).clamp(-89.0, 89.0),
                lon: (site.location.lon + rng.random_range(-0.3..0.3)).clamp(-179.0, 179.0),
            },
            country: site.country,
            population: 1_000_000,
        });
    }
    for region in &snap.regions {
        for site in &snap.sites {
            if rng.random_range(0..100) < opt.measured_pct {
                snap.rtts.push(MeasuredRtt {
                    site: site.id.clone(),
                    region: region.id.clone(),
                    rtt_ms: rng.random_range(0.5..120.0),
                });
            }
        }
    }
    // Two more tenants, then quotas and weights.
    for i in 0..2 {
        let residency = match rng.random_range(0..4) {
            0 => ResidencyRule::new([ResidencyTerm::Group(JurisdictionGroup::Eu)]),
            1 => ResidencyRule::new([ResidencyTerm::Country(pick(&mut rng, &snap.sites).country)]),
            _ => ResidencyRule::anywhere(),
        };
        snap.tenants.push(Tenant {
            id: id(&format!("extra-tenant-{i}")),
            name: id(&format!("extra-tenant-{i}")),
            quotas: big_quotas(),
            residency,
            weights: ScoreWeights::default(),
            max_priority: 10,
            network: None,
        });
    }
    for tenant in &mut snap.tenants {
        // The generated tenants' residency rules are often one country; small fleets have few
        // sites there, so half the tenants may go anywhere.
        if rng.random_bool(0.5) {
            tenant.residency = ResidencyRule::anywhere();
        }
        if rng.random_range(0..100) < opt.tight_quota_pct {
            tenant.quotas = Quotas {
                gpus_per_model: GpuModel::ALL
                    .iter()
                    .filter_map(|m| {
                        let limit = rng.random_range(0..24);
                        rng.random_bool(0.7).then_some((*m, limit))
                    })
                    .collect(),
                mig_slices: rng.random_range(0..20),
                concurrent_reservations: rng.random_range(1..12),
                sites: rng.random_range(1..6),
                storage_mib: u64::MAX / 4,
            };
        } else {
            tenant.quotas = big_quotas();
        }
        tenant.weights = if rng.random_bool(0.15) {
            ScoreWeights {
                latency: 0.0,
                data: 0.0,
                price: 0.0,
                packing: 0.0,
            }
        } else {
            let mut w = || f64::from(rng.random_range(0..=20u32) * 5);
            ScoreWeights {
                latency: w(),
                data: w(),
                price: w(),
                packing: w(),
            }
        };
    }
    // Extra datasets per tenant, replicas anywhere, residency the tenant's or broader.
    let tenant_ids: Vec<(TenantId, ResidencyRule)> = snap
        .tenants
        .iter()
        .map(|t| (t.id.clone(), t.residency.clone()))
        .collect();
    for (ti, (tenant, rule)) in tenant_ids.iter().enumerate() {
        for k in 0..2 {
            let n = rng.random_range(1..=3);
            let mut replicas: Vec<SiteId> = (0..n)
                .map(|_| pick(&mut rng, &snap.sites).id.clone())
                .collect();
            replicas.sort();
            replicas.dedup();
            let residency = match rng.random_range(0..3) {
                0 => rule.clone(),
                1 => ResidencyRule::new([ResidencyTerm::Group(JurisdictionGroup::FiveEyes)]),
                _ => ResidencyRule::anywhere(),
            };
            snap.datasets.push(Dataset {
                id: id(&format!("extra-data-{ti}-{k}")),
                tenant: tenant.clone(),
                name: id(&format!("extra-data-{ti}-{k}")),
                size_bytes: rng.random_range(1_000_000_000..20_000_000_000_000),
                replicas,
                residency,
            });
        }
    }
    // Storage arrays (some sites have none, some are small enough to fill), drained servers
    // and storage quotas, from their own stream so the draws above stay as they were.
    let mut rng = self::rng(seed ^ 0x5707_a6e0);
    for site in &mut snap.sites {
        site.storage_mib = if rng.random_range(0..100) < NO_ARRAY_PCT {
            0
        } else {
            rng.random_range(1..=16) * 256 * 1024
        };
    }
    for server in &snap.servers {
        if rng.random_range(0..100) < DRAINED_PCT {
            snap.drained.insert(server.id.clone());
        }
    }
    for tenant in &mut snap.tenants {
        if tenant.quotas != big_quotas() {
            tenant.quotas.storage_mib = rng.random_range(0..=8) * 512 * 1024;
        }
    }
    snap
}

/// The kinds of hardware a world has: whole-GPU models and MIG-enabled models.
pub fn hardware(snap: &FleetSnapshot) -> (Vec<GpuModel>, Vec<GpuModel>) {
    let mut whole = BTreeSet::new();
    let mut mig = BTreeSet::new();
    for s in &snap.servers {
        for g in &s.gpus {
            match g.mig {
                MigConfig::Disabled => whole.insert(g.model),
                MigConfig::Enabled { .. } => mig.insert(g.model),
            };
        }
    }
    (whole.into_iter().collect(), mig.into_iter().collect())
}

/// Knobs of the random workload generator.
#[derive(Debug, Clone, Copy)]
pub struct RequestOptions {
    pub max_replicas: u32,
    /// Percent with `pin_server` (a random server).
    pub pin_pct: u32,
    /// Percent that are bare metal.
    pub bare_metal_pct: u32,
}

/// A random workload of a random tenant: whole GPUs, a MIG profile valid for the model, or no
/// GPU; latency from one or two regions; residency; certifications; the tenant's datasets;
/// spread or colocation; tier; window; priority.
pub fn request(
    rng: &mut ChaCha8Rng,
    snap: &FleetSnapshot,
    name: &str,
    opt: RequestOptions,
) -> PlacementRequest {
    let tenant = pick(rng, &snap.tenants).clone();
    let (whole, mig) = hardware(snap);
    let roll = rng.random_range(0..100);
    let mut kind = *pick(
        rng,
        &[
            WorkloadKind::InferenceEndpoint,
            WorkloadKind::VirtualMachine,
            WorkloadKind::KubernetesCluster,
            WorkloadKind::BatchJob,
            WorkloadKind::RanFunction,
        ],
    );
    let accelerator = if roll < opt.bare_metal_pct && !whole.is_empty() {
        kind = WorkloadKind::BareMetal;
        Accelerator::WholeGpus {
            model: *pick(rng, &whole),
            count: 8,
        }
    } else if roll < 40 {
        let model = if rng.random_bool(0.05) || whole.is_empty() {
            *pick(rng, &GpuModel::ALL)
        } else {
            *pick(rng, &whole)
        };
        Accelerator::WholeGpus {
            model,
            count: *pick(rng, &[1, 1, 1, 2, 2, 3, 4, 8]),
        }
    } else if roll < 75 {
        let model = if rng.random_bool(0.05) || mig.is_empty() {
            *pick(
                rng,
                &[GpuModel::A100_40GB, GpuModel::A30_24GB, GpuModel::H100_94GB],
            )
        } else {
            *pick(rng, &mig)
        };
        let spec: &MigProfileSpec = pick(rng, model.mig_profiles());
        Accelerator::Mig {
            model,
            profile: spec.profile(),
        }
    } else {
        Accelerator::None
    };
    let replicas = rng.random_range(1..=opt.max_replicas);
    // Users mostly next to a site (the `near-*` regions), sometimes in a big city anywhere.
    let near: Vec<RegionId> = snap
        .regions
        .iter()
        .filter(|r| r.id.as_str().starts_with("near-"))
        .map(|r| r.id.clone())
        .collect();
    let latency = rng.random_bool(0.4).then(|| {
        let first = if !near.is_empty() && rng.random_bool(0.6) {
            pick(rng, &near).clone()
        } else {
            pick(rng, &snap.regions).id.clone()
        };
        let mut from = vec![first];
        if rng.random_bool(0.3) {
            let other = pick(rng, &snap.regions).id.clone();
            if other != from[0] {
                from.push(other);
            }
        }
        LatencyConstraint {
            from,
            max_rtt_ms: rng.random_range(5..=80),
        }
    });
    let residency = match rng.random_range(0..15) {
        0 => ResidencyRule::new([ResidencyTerm::Group(JurisdictionGroup::Eu)]),
        1 => ResidencyRule::new([ResidencyTerm::Country(pick(rng, &snap.sites).country)]),
        2 => ResidencyRule::new([ResidencyTerm::Group(JurisdictionGroup::FiveEyes)]),
        _ => ResidencyRule::anywhere(),
    };
    let certs = [
        Certification::Iso27001,
        Certification::Soc2,
        Certification::Hipaa,
        Certification::PciDss,
        Certification::Sovereign,
        Certification::Gxp,
    ];
    let mut certifications = BTreeSet::new();
    if rng.random_bool(0.15) {
        certifications.insert(*pick(rng, &certs));
        if rng.random_bool(0.2) {
            certifications.insert(*pick(rng, &certs));
        }
    }
    let own: Vec<DatasetId> = snap
        .datasets
        .iter()
        .filter(|d| d.tenant == tenant.id)
        .map(|d| d.id.clone())
        .collect();
    let mut datasets = Vec::new();
    if !own.is_empty() && rng.random_bool(0.3) {
        datasets.push(pick(rng, &own).clone());
        if rng.random_bool(0.3) {
            let other = pick(rng, &own).clone();
            if other != datasets[0] {
                datasets.push(other);
            }
        }
    }
    let (mut spread, mut colocate) = (None, false);
    if replicas > 1 {
        let r = rng.random_range(0..100);
        if r < 35 {
            spread = Some(Spread {
                min_sites: rng.random_range(1..=replicas),
                max_per_site: rng.random_range(1..=replicas),
            });
        } else if r < 50 {
            colocate = true;
        }
    }
    let tier = match rng.random_range(0..100) {
        0..15 => Some(SiteTier::Edge),
        15..20 => Some(SiteTier::Core),
        _ => None,
    };
    let pin_server =
        (rng.random_range(0..100) < opt.pin_pct).then(|| pick(rng, &snap.servers).id.clone());
    let window = rng.random_bool(0.7).then(|| {
        let start = NOW.as_millis() + rng.random_range(0..8) * HOUR;
        let len = rng.random_range(1..=4) * HOUR;
        TimeWindow::new(Timestamp(start), Timestamp(start + len)).expect("a positive window")
    });
    // A volume per replica, sometimes: from 64 GiB to 2 TiB, drawn from a side stream so the
    // other draws stay as they were before storage existed.
    let mut side = self::rng(rng.clone().random::<u64>() ^ 0x5707_a6e0);
    let storage_mib = if side.random_bool(0.3) {
        side.random_range(1..=32) * 64 * 1024
    } else {
        0
    };
    let (cpu_cores, memory_mib) = if rng.random_bool(0.1) {
        (
            rng.random_range(0..=150),
            rng.random_range(0..=3 * 1024 * 1024),
        )
    } else {
        (rng.random_range(0..=16), rng.random_range(0..=64 * 1024))
    };
    PlacementRequest {
        workload: id(name),
        tenant: tenant.id.clone(),
        spec: WorkloadSpec {
            name: Name::parse(name).expect("a valid name"),
            kind,
            resources: Resources {
                accelerator,
                cpu_cores,
                memory_mib,
                storage_mib,
            },
            replicas,
            constraints: Constraints {
                latency,
                residency,
                certifications,
                datasets,
                spread,
                colocate,
                tier,
                pin_server,
            },
            window,
            priority: rng.random_range(0..4),
            image: None,
            expose: Vec::new(),
        },
    }
}

/// What one booking holds on one GPU, as the oracle sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Hold {
    Whole,
    Mig { compute: u8, mask: u16 },
}

#[derive(Debug, Clone, Copy)]
struct Booking {
    start: i64,
    end: i64,
    hold: Hold,
}

impl Booking {
    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.start < end && start < self.end
    }
}

fn span_of(window: Option<&TimeWindow>, decided: Timestamp) -> (i64, i64) {
    match window {
        Some(w) => (w.start().as_millis(), w.end().as_millis()),
        None => (decided.as_millis(), i64::MAX),
    }
}

/// The independent model of the fleet and of every committed placement.
#[derive(Debug, Clone)]
pub struct Oracle {
    pub snap: FleetSnapshot,
    sites: HashMap<SiteId, usize>,
    servers: HashMap<ServerId, usize>,
    regions: HashMap<RegionId, usize>,
    datasets: HashMap<DatasetId, usize>,
    tenants: HashMap<TenantId, usize>,
    measured: HashMap<(SiteId, RegionId), f64>,
    online: HashMap<SiteId, bool>,
    max_price: u64,
    /// Committed placements, by workload.
    pub committed: BTreeMap<WorkloadId, (PlacementRequest, Placement)>,
}

impl Oracle {
    pub fn new(snap: &FleetSnapshot) -> Oracle {
        let mut measured = HashMap::new();
        for m in &snap.rtts {
            measured.insert((m.site.clone(), m.region.clone()), m.rtt_ms);
        }
        Oracle {
            sites: snap
                .sites
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            servers: snap
                .servers
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            regions: snap
                .regions
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            datasets: snap
                .datasets
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            tenants: snap
                .tenants
                .iter()
                .enumerate()
                .map(|(i, s)| (s.id.clone(), i))
                .collect(),
            online: snap
                .sites
                .iter()
                .map(|s| (s.id.clone(), s.state == SiteState::Online))
                .collect(),
            max_price: snap
                .sites
                .iter()
                .map(|s| s.price_per_gpu_hour)
                .max()
                .unwrap_or(0),
            measured,
            snap: snap.clone(),
            committed: BTreeMap::new(),
        }
    }

    pub fn site(&self, id: &SiteId) -> &Site {
        &self.snap.sites[self.sites[id]]
    }

    pub fn server(&self, id: &ServerId) -> &Server {
        &self.snap.servers[self.servers[id]]
    }

    pub fn tenant(&self, id: &TenantId) -> &Tenant {
        &self.snap.tenants[self.tenants[id]]
    }

    pub fn set_online(&mut self, site: &SiteId, online: bool) {
        self.online.insert(site.clone(), online);
    }

    pub fn set_measured(&mut self, site: &SiteId, region: &RegionId, rtt: f64) {
        self.measured.insert((site.clone(), region.clone()), rtt);
    }

    /// The RTT the rules use: measured if known, else the documented estimate (as f32, the
    /// precision the engine keeps).
    pub fn rtt(&self, site: &SiteId, region: &RegionId) -> f32 {
        match self.measured.get(&(site.clone(), region.clone())) {
            Some(m) => *m as f32,
            None => {
                let s = self.site(site);
                let r = &self.snap.regions[self.regions[region]];
                LatencyModel::default().estimate_rtt_ms(&r.location, &s.location) as f32
            }
        }
    }

    pub fn weights(&self, tenant: &TenantId) -> ScoreWeights {
        let w = self.tenant(tenant).weights;
        if w.latency + w.data + w.price + w.packing > 0.0 {
            w
        } else {
            DEFAULT_WEIGHTS
        }
    }

    /// Site-level hard constraints (everything but capacity, spread and quota) for `site`.
    pub fn site_ok(&self, req: &PlacementRequest, site: &Site) -> Result<(), String> {
        let c = &req.spec.constraints;
        if !self.online[&site.id] {
            return Err(format!("site {} is not online", site.id));
        }
        if !self.tenant(&req.tenant).residency.allows(site.country) {
            return Err(format!(
                "site {} ({}) breaks the tenant's residency",
                site.id, site.country
            ));
        }
        if !c.residency.allows(site.country) {
            return Err(format!(
                "site {} ({}) breaks the workload's residency",
                site.id, site.country
            ));
        }
        for d in &c.datasets {
            let d = &self.snap.datasets[self.datasets[d]];
            if !d.residency.allows(site.country) {
                return Err(format!(
                    "site {} ({}) breaks dataset {}'s residency",
                    site.id, site.country, d.id
                ));
            }
        }
        if !c.certifications.is_subset(&site.certifications) {
            return Err(format!(
                "site {} lacks a certification of {:?}",
                site.id, c.certifications
            ));
        }
        if let Some(t) = c.tier
            && site.tier != t
        {
            return Err(format!("site {} is {:?}, not {t:?}", site.id, site.tier));
        }
        if let Some(l) = &c.latency {
            for r in &l.from {
                let rtt = self.rtt(&site.id, r);
                if rtt > l.max_rtt_ms as f32 {
                    return Err(format!(
                        "site {} is {rtt} ms from {r}, over {} ms",
                        site.id, l.max_rtt_ms
                    ));
                }
            }
        }
        Ok(())
    }

    /// The bookings one assignment makes, keyed by (server, GPU index).
    fn bookings(&self, a: &Assignment, start: i64, end: i64) -> Vec<((ServerId, u32), Booking)> {
        let server = self.server(&a.server);
        let at = |gpu: u32, hold| ((a.server.clone(), gpu), Booking { start, end, hold });
        match &a.slot {
            GpuSlot::None => Vec::new(),
            GpuSlot::WholeGpus { indices } => indices.iter().map(|i| at(*i, Hold::Whole)).collect(),
            GpuSlot::Mig {
                gpu_index,
                profile,
                placement,
            } => {
                let model = server.gpu(*gpu_index).expect("a checked GPU").model;
                let spec = profile.spec_for(model).expect("a checked profile");
                vec![at(
                    *gpu_index,
                    Hold::Mig {
                        compute: spec.compute_slices,
                        mask: spec.memory_mask(*placement),
                    },
                )]
            }
        }
    }

    /// Bookings per (server, GPU index) of the committed placements.
    fn calendars(&self) -> HashMap<(ServerId, u32), Vec<Booking>> {
        let mut out: HashMap<(ServerId, u32), Vec<Booking>> = HashMap::new();
        for (_, p) in self.committed.values() {
            let (start, end) = span_of(p.window.as_ref(), p.decided_at);
            for a in &p.assignments {
                for (k, b) in self.bookings(a, start, end) {
                    out.entry(k).or_default().push(b);
                }
            }
        }
        out
    }

    /// Checks a placement the engine made for `req` against every hard constraint, and
    /// recomputes its score, given the placements committed before it.
    pub fn check_placed(
        &self,
        req: &PlacementRequest,
        p: &Placement,
        now: Timestamp,
    ) -> Result<(), String> {
        let spec = &req.spec;
        let c = &spec.constraints;
        let replicas = spec.replicas.max(1);
        if p.workload != req.workload
            || p.tenant != req.tenant
            || p.window != spec.window
            || p.decided_at != now
        {
            return Err("placement does not echo the request".into());
        }
        if p.assignments.len() != replicas as usize {
            return Err(format!(
                "{} assignments for {replicas} replicas",
                p.assignments.len()
            ));
        }
        let (start, end) = span_of(spec.window.as_ref(), now);
        let mut calendars = self.calendars();
        let weights = self.weights(&req.tenant);
        let wsum = weights.latency + weights.data + weights.price + weights.packing;
        let bytes_read: u64 = c
            .datasets
            .iter()
            .map(|d| self.snap.datasets[self.datasets[d]].size_bytes)
            .sum();
        let mut parts = [0f64; 5];
        let mut per_site: BTreeMap<SiteId, u32> = BTreeMap::new();
        for (i, a) in p.assignments.iter().enumerate() {
            if a.replica != i as u32 {
                return Err(format!("assignment {i} says replica {}", a.replica));
            }
            let Some(&si) = self.sites.get(&a.site) else {
                return Err(format!("unknown site {}", a.site));
            };
            let site = &self.snap.sites[si];
            let Some(&sv) = self.servers.get(&a.server) else {
                return Err(format!("unknown server {}", a.server));
            };
            let server = &self.snap.servers[sv];
            if server.site != a.site {
                return Err(format!("server {} is not at site {}", a.server, a.site));
            }
            self.site_ok(req, site)?;
            if let Some(pin) = &c.pin_server
                && *pin != a.server
            {
                return Err(format!("pinned to {pin} but placed on {}", a.server));
            }
            if server.cpu_cores < spec.resources.cpu_cores
                || server.memory_mib < spec.resources.memory_mib
            {
                return Err(format!("server {} is too small", a.server));
            }
            if self.snap.drained.contains(&a.server) {
                return Err(format!("new placement on drained server {}", a.server));
            }
            *per_site.entry(a.site.clone()).or_default() += 1;
            // The GPU share, and packing before this replica is booked.
            let packing = match (&spec.resources.accelerator, &a.slot) {
                (Accelerator::None, GpuSlot::None) => 1.0,
                (Accelerator::WholeGpus { model, .. }, GpuSlot::WholeGpus { indices })
                    if spec.kind == WorkloadKind::BareMetal =>
                {
                    let all: BTreeSet<u32> = server.gpus.iter().map(|g| g.index).collect();
                    let got: BTreeSet<u32> = indices.iter().copied().collect();
                    if all != got || got.len() != indices.len() {
                        return Err(format!(
                            "bare metal on {} got GPUs {indices:?}, not all",
                            a.server
                        ));
                    }
                    for g in &server.gpus {
                        if g.model != *model
                            || g.mig != MigConfig::Disabled
                            || g.health != GpuHealth::Healthy
                        {
                            return Err(format!(
                                "bare metal on {} with an unfit GPU {}",
                                a.server, g.index
                            ));
                        }
                        if calendars
                            .get(&(a.server.clone(), g.index))
                            .is_some_and(|b| b.iter().any(|b| b.overlaps(start, end)))
                        {
                            return Err(format!(
                                "bare metal on {} but GPU {} is booked",
                                a.server, g.index
                            ));
                        }
                    }
                    1.0
                }
                (Accelerator::WholeGpus { model, count }, GpuSlot::WholeGpus { indices }) => {
                    let distinct: BTreeSet<u32> = indices.iter().copied().collect();
                    if indices.len() != *count as usize || distinct.len() != indices.len() {
                        return Err(format!("{indices:?} is not {count} distinct GPUs"));
                    }
                    let usable: Vec<u32> = server
                        .gpus
                        .iter()
                        .filter(|g| {
                            g.model == *model
                                && g.mig == MigConfig::Disabled
                                && g.health == GpuHealth::Healthy
                        })
                        .map(|g| g.index)
                        .collect();
                    for i in indices {
                        if !usable.contains(i) {
                            return Err(format!(
                                "GPU {i} of {} is missing, not a healthy {model} or in MIG mode",
                                a.server
                            ));
                        }
                    }
                    let busy = usable
                        .iter()
                        .filter(|i| {
                            calendars
                                .get(&(a.server.clone(), **i))
                                .is_some_and(|b| b.iter().any(|b| b.overlaps(start, end)))
                        })
                        .count();
                    (busy + *count as usize) as f64 / usable.len() as f64
                }
                (
                    Accelerator::Mig { model, profile },
                    GpuSlot::Mig {
                        gpu_index,
                        profile: got,
                        placement,
                    },
                ) => {
                    if got != profile {
                        return Err(format!("MIG profile {got} instead of {profile}"));
                    }
                    let Some(g) = server.gpu(*gpu_index) else {
                        return Err(format!("GPU {gpu_index} of {} does not exist", a.server));
                    };
                    if g.model != *model
                        || g.mig == MigConfig::Disabled
                        || g.health != GpuHealth::Healthy
                    {
                        return Err(format!(
                            "GPU {gpu_index} of {} is not a healthy MIG {model}",
                            a.server
                        ));
                    }
                    let spec = profile.spec_for(*model).map_err(|e| e.to_string())?;
                    if !spec.placements.contains(placement)
                        || placement + spec.memory_slices > model.mig_memory_slices()
                    {
                        return Err(format!("{profile} cannot start at {placement}"));
                    }
                    let used: u32 = calendars
                        .get(&(a.server.clone(), *gpu_index))
                        .map_or(0, |b| {
                            b.iter()
                                .filter(|b| b.overlaps(start, end))
                                .map(|b| match b.hold {
                                    Hold::Mig { compute, .. } => u32::from(compute),
                                    Hold::Whole => 100,
                                })
                                .sum()
                        });
                    f64::from(used + u32::from(spec.compute_slices))
                        / f64::from(model.mig_compute_slices())
                }
                (want, got) => return Err(format!("slot {got:?} does not match {want:?}")),
            };
            // Book it for the following replicas' packing.
            for (k, b) in self.bookings(a, start, end) {
                calendars.entry(k).or_default().push(b);
            }
            // Site-level parts.
            let latency = match &c.latency {
                Some(l) if l.max_rtt_ms > 0 => {
                    let worst = l
                        .from
                        .iter()
                        .map(|r| self.rtt(&a.site, r))
                        .fold(0f32, f32::max);
                    f64::from(worst / l.max_rtt_ms as f32)
                }
                _ => 0.0,
            };
            let latency = if c.latency.is_some() {
                (1.0 - latency).clamp(0.0, 1.0)
            } else {
                1.0
            };
            let to_move: u64 = c
                .datasets
                .iter()
                .map(|d| &self.snap.datasets[self.datasets[d]])
                .filter(|d| !d.replicas.contains(&a.site))
                .map(|d| d.size_bytes)
                .sum();
            let data = if bytes_read == 0 {
                1.0
            } else {
                (1.0 - to_move as f64 / bytes_read as f64).clamp(0.0, 1.0)
            };
            let price = if self.max_price == 0 {
                1.0
            } else {
                (1.0 - site.price_per_gpu_hour as f64 / self.max_price as f64).clamp(0.0, 1.0)
            };
            let total = (weights.latency * latency
                + weights.data * data
                + weights.price * price
                + weights.packing * packing)
                / wsum;
            for (slot, v) in parts.iter_mut().zip([total, latency, data, price, packing]) {
                *slot += v;
            }
        }
        if let Some(s) = c.spread {
            if (per_site.len() as u32) < s.min_sites.max(1) {
                return Err(format!(
                    "{} sites, spread wants at least {}",
                    per_site.len(),
                    s.min_sites
                ));
            }
            if let Some((site, n)) = per_site.iter().find(|(_, n)| **n > s.max_per_site.max(1)) {
                return Err(format!(
                    "{n} replicas on {site}, spread allows {}",
                    s.max_per_site
                ));
            }
        }
        if c.colocate && per_site.len() != 1 {
            return Err(format!("colocated workload on {} sites", per_site.len()));
        }
        // Storage: on each site, every committed volume overlapping the window (taken
        // together, as the engine books) plus this workload's must fit the array.
        let storage = spec.resources.storage_mib;
        if storage > 0 {
            for (site, n) in &per_site {
                let total = self.site(site).storage_mib;
                let booked = self.storage_booked(site, start, end);
                let adding = storage * u64::from(*n);
                if total == 0 || booked + adding > total {
                    return Err(format!(
                        "site {site}: {adding} MiB of storage on an array of {total} MiB with \
                         {booked} MiB booked"
                    ));
                }
            }
        }
        let n = f64::from(replicas);
        let s = &p.score;
        for (name, got, want) in [
            ("total", s.total, parts[0] / n),
            ("latency", s.latency, parts[1] / n),
            ("data", s.data, parts[2] / n),
            ("price", s.price, parts[3] / n),
            ("packing", s.packing, parts[4] / n),
        ] {
            if (got - want).abs() > 1e-9 {
                return Err(format!("score {name} is {got}, recomputed {want}"));
            }
        }
        Ok(())
    }

    /// No whole GPU booked twice in overlapping windows; MIG memory slices disjoint and compute
    /// slices within the GPU's among overlapping windows; no whole + MIG mix; every tenant
    /// within its quotas at every instant.
    pub fn check_global(&self) -> Result<(), String> {
        for ((server, gpu), bookings) in self.calendars() {
            let model = self
                .server(&server)
                .gpu(gpu)
                .map(|g| g.model)
                .ok_or("unknown GPU")?;
            for (i, a) in bookings.iter().enumerate() {
                for b in &bookings[i + 1..] {
                    if !a.overlaps(b.start, b.end) {
                        continue;
                    }
                    match (a.hold, b.hold) {
                        (Hold::Mig { mask: m1, .. }, Hold::Mig { mask: m2, .. }) => {
                            if m1 & m2 != 0 {
                                return Err(format!(
                                    "MIG memory slices of {server} GPU {gpu} overlap"
                                ));
                            }
                        }
                        _ => {
                            return Err(format!(
                                "{server} GPU {gpu} is double-booked ({a:?} and {b:?})"
                            ));
                        }
                    }
                }
                // Compute slices in use at the start of each booking (a peak is at a start).
                let compute: u32 = bookings
                    .iter()
                    .filter(|b| b.start <= a.start && a.start < b.end)
                    .map(|b| match b.hold {
                        Hold::Mig { compute, .. } => u32::from(compute),
                        Hold::Whole => 0,
                    })
                    .sum();
                if compute > u32::from(model.mig_compute_slices()) {
                    return Err(format!("{compute} compute slices on {server} GPU {gpu}"));
                }
            }
        }
        // Storage arrays: at every instant (a peak is at a start), within their size.
        for site in &self.snap.sites {
            for (_, p) in self.committed.values() {
                let at = span_of(p.window.as_ref(), p.decided_at).0;
                let used = self.storage_booked(&site.id, at, at + 1);
                if used > site.storage_mib {
                    return Err(format!(
                        "site {}: {used} MiB of storage booked on an array of {} MiB",
                        site.id, site.storage_mib
                    ));
                }
            }
        }
        let mut per_tenant: BTreeMap<&TenantId, Vec<&Placement>> = BTreeMap::new();
        let mut storage_of: HashMap<&WorkloadId, u64> = HashMap::new();
        for (req, p) in self.committed.values() {
            per_tenant.entry(&p.tenant).or_default().push(p);
            storage_of.insert(
                &p.workload,
                req.spec.resources.storage_mib * p.assignments.len() as u64,
            );
        }
        for (tenant, ps) in per_tenant {
            let q = &self.tenant(tenant).quotas;
            for at in ps
                .iter()
                .map(|p| span_of(p.window.as_ref(), p.decided_at).0)
            {
                let active: Vec<&&Placement> = ps
                    .iter()
                    .filter(|p| {
                        let (s, e) = span_of(p.window.as_ref(), p.decided_at);
                        s <= at && at < e
                    })
                    .collect();
                if active.len() as u64 > u64::from(q.concurrent_reservations) {
                    return Err(format!(
                        "tenant {tenant}: {} concurrent reservations",
                        active.len()
                    ));
                }
                let sites: BTreeSet<&SiteId> = active
                    .iter()
                    .flat_map(|p| p.assignments.iter().map(|a| &a.site))
                    .collect();
                if sites.len() as u64 > u64::from(q.sites) {
                    return Err(format!("tenant {tenant}: {} sites at once", sites.len()));
                }
                let mut gpus: BTreeMap<GpuModel, u32> = BTreeMap::new();
                let mut mig = 0u32;
                for p in &active {
                    for a in &p.assignments {
                        let server = self.server(&a.server);
                        match &a.slot {
                            GpuSlot::None => {}
                            GpuSlot::WholeGpus { indices } => {
                                for i in indices {
                                    *gpus
                                        .entry(server.gpu(*i).expect("checked").model)
                                        .or_default() += 1;
                                }
                            }
                            GpuSlot::Mig {
                                gpu_index, profile, ..
                            } => {
                                let model = server.gpu(*gpu_index).expect("checked").model;
                                mig += u32::from(
                                    profile.spec_for(model).expect("checked").compute_slices,
                                );
                            }
                        }
                    }
                }
                for (model, n) in gpus {
                    let limit = q.gpus_per_model.get(&model).copied().unwrap_or(0);
                    if n > limit {
                        return Err(format!(
                            "tenant {tenant}: {n} {model} GPUs at once, quota {limit}"
                        ));
                    }
                }
                if mig > q.mig_slices {
                    return Err(format!(
                        "tenant {tenant}: {mig} MIG slices at once, quota {}",
                        q.mig_slices
                    ));
                }
                let storage: u64 = active.iter().map(|p| storage_of[&p.workload]).sum();
                if storage > q.storage_mib {
                    return Err(format!(
                        "tenant {tenant}: {storage} MiB of storage at once, quota {}",
                        q.storage_mib
                    ));
                }
            }
        }
        Ok(())
    }

    /// For a single-replica workload of a tenant whose quotas never bind: whether some server
    /// could take it, computed from the snapshot and the committed bookings alone.
    pub fn single_replica_fits_somewhere(
        &self,
        req: &PlacementRequest,
        now: Timestamp,
    ) -> Option<ServerId> {
        let spec = &req.spec;
        let (start, end) = span_of(spec.window.as_ref(), now);
        let calendars = self.calendars();
        let busy = |server: &ServerId, gpu: u32| -> Vec<Booking> {
            calendars
                .get(&(server.clone(), gpu))
                .map(|b| {
                    b.iter()
                        .filter(|b| b.overlaps(start, end))
                        .copied()
                        .collect()
                })
                .unwrap_or_default()
        };
        for server in &self.snap.servers {
            if let Some(pin) = &spec.constraints.pin_server
                && *pin != server.id
            {
                continue;
            }
            if server.cpu_cores < spec.resources.cpu_cores
                || server.memory_mib < spec.resources.memory_mib
                || self.snap.drained.contains(&server.id)
            {
                continue;
            }
            if self.site_ok(req, self.site(&server.site)).is_err() {
                continue;
            }
            let storage = spec.resources.storage_mib;
            if storage > 0
                && self.storage_booked(&server.site, start, end) + storage
                    > self.site(&server.site).storage_mib
            {
                continue;
            }
            let healthy = |g: &&meridian_common::model::Gpu| g.health == GpuHealth::Healthy;
            let fits = match spec.resources.accelerator {
                Accelerator::None => true,
                Accelerator::WholeGpus { model, .. } if spec.kind == WorkloadKind::BareMetal => {
                    !server.gpus.is_empty()
                        && server.gpus.iter().all(|g| {
                            healthy(&g)
                                && g.model == model
                                && g.mig == MigConfig::Disabled
                                && busy(&server.id, g.index).is_empty()
                        })
                }
                Accelerator::WholeGpus { model, count } => {
                    server
                        .gpus
                        .iter()
                        .filter(healthy)
                        .filter(|g| {
                            g.model == model
                                && g.mig == MigConfig::Disabled
                                && busy(&server.id, g.index).is_empty()
                        })
                        .count()
                        >= count as usize
                }
                Accelerator::Mig { model, profile } => {
                    let spec = profile.spec_for(model).expect("valid profile");
                    server.gpus.iter().filter(healthy).any(|g| {
                        if g.model != model || g.mig == MigConfig::Disabled {
                            return false;
                        }
                        let b = busy(&server.id, g.index);
                        let compute: u32 = b
                            .iter()
                            .map(|b| match b.hold {
                                Hold::Mig { compute, .. } => u32::from(compute),
                                Hold::Whole => 100,
                            })
                            .sum();
                        let mask = b.iter().fold(0u16, |m, b| match b.hold {
                            Hold::Mig { mask, .. } => m | mask,
                            Hold::Whole => u16::MAX,
                        });
                        compute + u32::from(spec.compute_slices)
                            <= u32::from(model.mig_compute_slices())
                            && spec.placements.iter().any(|p| {
                                p + spec.memory_slices <= model.mig_memory_slices()
                                    && spec.memory_mask(*p) & mask == 0
                            })
                    })
                }
            };
            if fits {
                return Some(server.id.clone());
            }
        }
        None
    }

    /// MiB of storage that committed placements overlapping `[start, end)` hold on `site`.
    pub fn storage_booked(&self, site: &SiteId, start: i64, end: i64) -> u64 {
        self.committed
            .values()
            .filter(|(_, p)| {
                let (s, e) = span_of(p.window.as_ref(), p.decided_at);
                s < end && start < e
            })
            .map(|(req, p)| {
                let here = p.assignments.iter().filter(|a| a.site == *site).count() as u64;
                here * req.spec.resources.storage_mib
            })
            .sum()
    }

    /// Whether `site` has the hardware `req` asks for at all (a usable GPU of the model in
    /// the right MIG mode, a server for no GPU, a storage array for storage), drained
    /// servers included.
    pub fn has_hardware(&self, req: &PlacementRequest, site: &SiteId) -> bool {
        let spec = &req.spec;
        if spec.resources.storage_mib > 0 && self.site(site).storage_mib == 0 {
            return false;
        }
        let mut servers = self.snap.servers.iter().filter(|s| s.site == *site);
        let (model, mig) = match spec.resources.accelerator {
            Accelerator::None => return servers.next().is_some(),
            Accelerator::WholeGpus { model, .. } => (model, false),
            Accelerator::Mig { model, .. } => (model, true),
        };
        servers.any(|s| {
            s.gpus.iter().any(|g| {
                g.model == model
                    && g.health == GpuHealth::Healthy
                    && (g.mig != MigConfig::Disabled) == mig
            })
        })
    }

    /// Whether `site` passes the residency rules (tenant's, workload's, every dataset's) and
    /// the tier: the filters counted before hardware.
    fn before_hardware(&self, req: &PlacementRequest, site: &Site) -> bool {
        let c = &req.spec.constraints;
        self.tenant(&req.tenant).residency.allows(site.country)
            && c.residency.allows(site.country)
            && c.datasets.iter().all(|d| {
                self.snap.datasets[self.datasets[d]]
                    .residency
                    .allows(site.country)
            })
            && c.tier.is_none_or(|t| t == site.tier)
    }

    /// The hardware reason of a decision: exactly the sites that pass residency and tier but
    /// lack the hardware are counted under `hardware`; a near miss for hardware lacks it, one
    /// for residency breaks a residency rule but has it.
    pub fn check_reasons(&self, req: &PlacementRequest, d: &Decision) -> Result<(), String> {
        let lacking = self
            .snap
            .sites
            .iter()
            .filter(|s| self.before_hardware(req, s) && !self.has_hardware(req, &s.id))
            .count() as u32;
        let counted = d
            .rejections()
            .get(&RejectReason::Hardware)
            .copied()
            .unwrap_or(0);
        if counted != lacking {
            return Err(format!(
                "{counted} sites rejected for hardware, but {lacking} lack it: {:?}",
                d.rejections()
            ));
        }
        if let Decision::Unplaceable(u) = d {
            for m in &u.near_misses {
                let site = self.site(&m.site);
                let ok = match m.reason {
                    RejectReason::Hardware => {
                        self.before_hardware(req, site) && !self.has_hardware(req, &m.site)
                    }
                    RejectReason::Residency => {
                        !self.before_hardware(req, site) && self.has_hardware(req, &m.site)
                    }
                    _ => true,
                };
                if !ok {
                    return Err(format!("near miss {m:?} is not what its reason says"));
                }
            }
        }
        Ok(())
    }

    /// Records a committed placement.
    pub fn commit(&mut self, req: &PlacementRequest, p: &Placement) {
        self.committed
            .insert(req.workload.clone(), (req.clone(), p.clone()));
    }

    pub fn release(&mut self, w: &WorkloadId) -> bool {
        self.committed.remove(w).is_some()
    }
}

/// Checks the shape of any decision: rejection counts within the fleet, and for a failure,
/// counts that add up to the fleet size and at most three near misses at known sites.
pub fn check_counts(d: &Decision, fleet_sites: usize, oracle: &Oracle) -> Result<(), String> {
    let rejected: u64 = d.rejections().values().map(|n| u64::from(*n)).sum();
    match d {
        Decision::Placed(p) => {
            let used: BTreeSet<&SiteId> = p.assignments.iter().map(|a| &a.site).collect();
            if rejected + used.len() as u64 > fleet_sites as u64 {
                return Err(format!(
                    "{rejected} sites rejected + {} used > {fleet_sites} sites: {:?}",
                    used.len(),
                    p.rejections
                ));
            }
        }
        Decision::Unplaceable(u) => {
            if rejected != fleet_sites as u64 {
                return Err(format!(
                    "{rejected} sites rejected of {fleet_sites}: {:?}",
                    u.rejections
                ));
            }
            if u.near_misses.len() > 3 {
                return Err(format!("{} near misses", u.near_misses.len()));
            }
            for m in &u.near_misses {
                if !oracle.sites.contains_key(&m.site) {
                    return Err(format!("near miss at unknown site {}", m.site));
                }
            }
            if !u.explanation.starts_with("not placed") {
                return Err(format!("explanation: {}", u.explanation));
            }
        }
    }
    if d.rejections().values().any(|n| *n == 0) {
        return Err(format!("zero counts listed: {:?}", d.rejections()));
    }
    Ok(())
}

/// A tenant whose quotas never bind.
pub fn unbounded(oracle: &Oracle, tenant: &TenantId) -> bool {
    oracle.tenant(tenant).quotas == big_quotas()
}

/// The site IDs of a placement, in replica order.
pub fn sites_of(p: &Placement) -> Vec<SiteId> {
    p.assignments.iter().map(|a| a.site.clone()).collect()
}

/// Shorthand for a region ID.
pub fn region(s: &str) -> RegionId {
    id(s)
}

/// Shorthand for a residency rule from term strings.
pub fn rule(terms: &[&str]) -> ResidencyRule {
    ResidencyRule::parse(terms).expect("valid terms")
}

pub fn eu() -> ResidencyRule {
    rule(&["EU"])
}

pub fn site_tier(oracle: &Oracle, site: &SiteId) -> SiteTier {
    oracle.site(site).tier
}
