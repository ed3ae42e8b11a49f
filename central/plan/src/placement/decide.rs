//! One decision: resolve the request, filter sites through the indexes, score candidates,
//! assign replicas to concrete GPUs, and hand the result back for quota check and commit.

use std::collections::BTreeMap;

use meridian_common::model::{
    Accelerator, Certification, GpuModel, MigProfile, MigProfileSpec, RejectReason, ScoreWeights,
    WorkloadKind,
};

use super::capacity::{Booking, Hold, Span, StorageBooking, mig_mask};
use super::fleet::{
    CountrySet, FleetIndex, NO_GPU_KEY, STORAGE_BIT, cert_bit, hardware_key, tier_index,
};
use super::{PlacementError, PlacementRequest};

/// What each replica needs, resolved against the model catalogue.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Need {
    NoGpu,
    Whole {
        model: GpuModel,
        count: u32,
    },
    BareMetal {
        model: GpuModel,
    },
    Mig {
        model: GpuModel,
        profile: MigProfile,
        spec: &'static MigProfileSpec,
    },
}

impl Need {
    pub fn key(&self) -> u8 {
        match self {
            Need::NoGpu => NO_GPU_KEY,
            Need::Whole { model, .. } | Need::BareMetal { model } => hardware_key(*model, false),
            Need::Mig { model, .. } => hardware_key(*model, true),
        }
    }

    /// The hardware in words, plural: `MIG-enabled H100-80GB GPUs`, `H100-80GB GPUs`,
    /// `servers`.
    pub fn hardware(&self) -> String {
        match self {
            Need::NoGpu => "servers".into(),
            Need::Whole { model, .. } | Need::BareMetal { model } => format!("{model} GPUs"),
            Need::Mig { model, .. } => format!("MIG-enabled {model} GPUs"),
        }
    }
}

/// A request resolved into the planner's indices.
#[derive(Debug)]
pub(crate) struct Resolved {
    pub span: Span,
    pub need: Need,
    pub replicas: u32,
    pub cpu_cores: u32,
    pub memory_mib: u64,
    /// Storage per replica on its site's array, in MiB (0: none).
    pub storage_mib: u64,
    pub allowed: CountrySet,
    pub data_allowed: CountrySet,
    pub tiers: [bool; 2],
    pub certs: u8,
    pub latency: Option<(Vec<u32>, f32)>,
    /// (size, replica sites) of each dataset read.
    pub datasets: Vec<(u64, Vec<u32>)>,
    pub bytes_read: u64,
    pub weights: ScoreWeights,
    pub pin: Option<u32>,
    pub colocate: bool,
    pub max_per_site: u32,
    pub min_sites: u32,
}

/// A site that passed every filter but capacity, with its site-level score parts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Candidate {
    pub site: u32,
    pub worst_rtt: f32,
    pub bytes_to_move: u64,
    pub latency: f64,
    pub data: f64,
    pub price: f64,
}

/// A concrete place for one replica.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub server: u32,
    /// GPU positions (into the server's GPU list) and what each holds.
    pub gpus: Vec<(u16, Hold)>,
    pub packing: f64,
}

/// A site that came close, for the explanation of a failure.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Miss {
    /// Larger is closer (a later filter).
    pub depth: u8,
    pub site: u32,
    pub reason: RejectReason,
    /// Smaller is closer, within one depth (an excess, or an RTT for the index-level misses).
    pub value: f32,
}

impl Miss {
    /// Closer misses sort first: a later filter, then a smaller value, then the lower site.
    pub fn closer_first(a: &Miss, b: &Miss) -> std::cmp::Ordering {
        b.depth
            .cmp(&a.depth)
            .then(a.value.total_cmp(&b.value))
            .then(a.site.cmp(&b.site))
    }
}

/// What a decision booked, for undo and release: (server, GPU) cells, and the site of each
/// replica (whose storage array holds its volume, if it has one).
#[derive(Debug, Clone, Default)]
pub(crate) struct Holds {
    pub gpus: Vec<(u32, u16)>,
    pub sites: Vec<u32>,
}

/// Filtering outcome: candidates, rejection counts, and misses for explanations.
#[derive(Debug, Default)]
pub(crate) struct Filtered {
    pub candidates: Vec<Candidate>,
    /// Candidates that had capacity, or were not examined (set by replica assignment).
    pub feasible: u32,
    /// Candidates whose capacity was never examined because they could not win.
    pub unexamined: u32,
    pub rejections: BTreeMap<RejectReason, u32>,
    pub misses: Vec<Miss>,
}

impl Filtered {
    pub fn reject(&mut self, reason: RejectReason, n: u32) {
        if n > 0 {
            *self.rejections.entry(reason).or_insert(0) += n;
        }
    }

    /// Keeps the three closest misses of each reason (see [`Miss::closer_first`]): the
    /// explanation names up to three, different reasons first.
    pub fn miss(&mut self, miss: Miss) {
        const KEEP: usize = 3;
        let mut same = 0;
        let mut farthest: Option<usize> = None;
        for (i, m) in self.misses.iter().enumerate() {
            if m.reason != miss.reason {
                continue;
            }
            same += 1;
            if farthest.is_none_or(|f| Miss::closer_first(&self.misses[f], m).is_lt()) {
                farthest = Some(i);
            }
        }
        if same < KEEP {
            self.misses.push(miss);
        } else if let Some(f) = farthest
            && Miss::closer_first(&miss, &self.misses[f]).is_lt()
        {
            self.misses[f] = miss;
        }
    }
}

pub(crate) fn resolve(
    fleet: &FleetIndex,
    request: &PlacementRequest,
    tenant: &meridian_common::model::Tenant,
    default_weights: &ScoreWeights,
    now: i64,
) -> Result<Resolved, PlacementError> {
    let spec = &request.spec;
    let constraints = &spec.constraints;
    let need = match (&spec.resources.accelerator, spec.kind) {
        (Accelerator::WholeGpus { model, .. }, WorkloadKind::BareMetal) => {
            Need::BareMetal { model: *model }
        }
        (Accelerator::WholeGpus { model, count }, _) => Need::Whole {
            model: *model,
            count: *count,
        },
        (Accelerator::Mig { model, profile }, _) => Need::Mig {
            model: *model,
            profile: *profile,
            spec: profile.spec_for(*model).map_err(|e| {
                PlacementError::BadSnapshot(format!("resources.accelerator.profile: {e}"))
            })?,
        },
        (Accelerator::None, _) => Need::NoGpu,
    };
    let mut allowed = fleet.allowed(&tenant.residency);
    let workload_allowed = fleet.allowed(&constraints.residency);
    allowed.intersect(&workload_allowed);
    let mut data_allowed = CountrySet::all(fleet.countries.len());
    let mut datasets = Vec::with_capacity(constraints.datasets.len());
    let mut bytes_read = 0u64;
    for (i, id) in constraints.datasets.iter().enumerate() {
        let found = fleet
            .datasets
            .get(&request.tenant)
            .and_then(|own| own.get(id));
        let Some(d) = found else {
            // Only the tenant's own datasets are looked at: another tenant's dataset of the
            // same ID is a different dataset.
            return Err(PlacementError::UnknownDataset {
                field: format!("constraints.datasets[{i}]"),
                dataset: id.clone(),
            });
        };
        data_allowed.intersect(&fleet.allowed(&d.residency));
        bytes_read = bytes_read.saturating_add(d.size);
        datasets.push((d.size, d.replicas.clone()));
    }
    let latency = match &constraints.latency {
        Some(l) => {
            let mut regions = Vec::with_capacity(l.from.len());
            for (i, r) in l.from.iter().enumerate() {
                let Some(&ix) = fleet.region_ix.get(r) else {
                    return Err(PlacementError::UnknownRegion {
                        field: format!("constraints.latency.from[{i}]"),
                        region: r.clone(),
                    });
                };
                regions.push(ix);
            }
            Some((regions, l.max_rtt_ms as f32))
        }
        None => None,
    };
    let pin = match &constraints.pin_server {
        Some(server) => Some(
            *fleet
                .server_ix
                .get(server)
                .ok_or_else(|| PlacementError::UnknownServer(server.clone()))?,
        ),
        None => None,
    };
    let tiers = match constraints.tier {
        Some(t) => {
            let mut tiers = [false; 2];
            tiers[tier_index(t)] = true;
            tiers
        }
        None => [true; 2],
    };
    let weights = if tenant.weights.latency
        + tenant.weights.data
        + tenant.weights.price
        + tenant.weights.packing
        > 0.0
    {
        tenant.weights
    } else {
        *default_weights
    };
    let (min_sites, max_per_site) = match &constraints.spread {
        Some(s) => (s.min_sites.max(1), s.max_per_site.max(1)),
        None => (1, spec.replicas.max(1)),
    };
    Ok(Resolved {
        span: Span::of(spec.window.as_ref(), now),
        need,
        replicas: spec.replicas.max(1),
        cpu_cores: spec.resources.cpu_cores,
        memory_mib: spec.resources.memory_mib,
        storage_mib: spec.resources.storage_mib,
        allowed,
        data_allowed,
        tiers,
        certs: constraints
            .certifications
            .iter()
            .fold(0, |m, c: &Certification| m | cert_bit(*c)),
        latency,
        datasets,
        bytes_read,
        weights,
        pin,
        colocate: constraints.colocate,
        max_per_site,
        min_sites,
    })
}

/// Depths of the checks, for ranking near misses: a site stopped by a later check came closer.
/// Residency and hardware are index-level filters; their near misses are sites that fail that
/// one filter and pass every other (see `explain::near_misses`).
pub(crate) const DEPTH_RESIDENCY: u8 = 0;
pub(crate) const DEPTH_HARDWARE: u8 = 1;
const DEPTH_ONLINE: u8 = 2;
const DEPTH_CERT: u8 = 3;
pub(crate) const DEPTH_LATENCY: u8 = 4;
const DEPTH_QUOTA: u8 = 5;
pub(crate) const DEPTH_CAPACITY: u8 = 6;

/// Steps 1 and 2 of the module docs: the index filters, then the per-site checks.
pub(crate) fn filter(
    fleet: &FleetIndex,
    r: &Resolved,
    site_allowance: Option<&std::collections::BTreeSet<u32>>,
    mut reuse: Vec<Candidate>,
) -> Filtered {
    reuse.clear();
    let mut out = Filtered {
        candidates: reuse,
        ..Filtered::default()
    };
    let key = r.need.key();
    let storage = r.storage_mib > 0;
    // Country-level filters and hardware, counted from the per-country totals.
    let mut index_passing = 0u32;
    for (c, per_tier) in fleet.country_tier_sites.iter().enumerate() {
        let c = c as u16;
        let total: u32 = per_tier.iter().sum();
        if !r.allowed.contains(c) {
            out.reject(RejectReason::Residency, total);
            continue;
        }
        if !r.data_allowed.contains(c) {
            out.reject(RejectReason::DatasetResidency, total);
            continue;
        }
        for (t, &n) in per_tier.iter().enumerate() {
            if !r.tiers[t] {
                out.reject(RejectReason::Tier, n);
                continue;
            }
            let with_hw = fleet.sites_with(key, storage, c, t);
            out.reject(RejectReason::Hardware, n - with_hw);
            index_passing += with_hw;
        }
    }
    let passes_index = |s: u32| {
        let site = &fleet.hot[s as usize];
        site.has_all(key, storage)
            && r.tiers[usize::from(site.tier)]
            && r.allowed.contains(site.country)
            && r.data_allowed.contains(site.country)
    };
    let visit = |s: u32, rtt: Option<f32>, out: &mut Filtered| {
        check_site(fleet, r, s, rtt, site_allowance, out)
    };
    if let Some(pin) = r.pin {
        // Pinned: only the pinned server's site is a candidate; the others count as capacity.
        let s = fleet.servers[pin as usize].site;
        let pinned_passes = passes_index(s);
        out.reject(
            RejectReason::Capacity,
            index_passing - u32::from(pinned_passes),
        );
        if pinned_passes {
            visit(s, None, &mut out);
        }
    } else if let Some((regions, max)) = &r.latency {
        let (_, prefix) = regions
            .iter()
            .map(|&rg| (rg, fleet.rtt.within(rg, *max)))
            .min_by_key(|(rg, p)| (p.len(), *rg))
            .expect("a latency constraint names at least one region");
        let mut inside = 0u32;
        for &(rtt, s) in prefix {
            if passes_index(s) {
                inside += 1;
                visit(s, (regions.len() == 1).then_some(rtt), &mut out);
            }
        }
        out.reject(RejectReason::Latency, index_passing - inside);
    } else {
        for (c, per_tier) in fleet.country_tier_sites.iter().enumerate() {
            let c = c as u16;
            if !(r.allowed.contains(c) && r.data_allowed.contains(c)) {
                continue;
            }
            for t in 0..per_tier.len() {
                if !r.tiers[t] {
                    continue;
                }
                if let Some(list) = fleet.lists.get(&(key, c, t as u8)) {
                    for &s in list {
                        // Sites without a storage array were counted under hardware.
                        if !storage || fleet.hot[s as usize].keys & STORAGE_BIT != 0 {
                            visit(s, None, &mut out);
                        }
                    }
                }
            }
        }
    }
    out
}

/// Whether `s` passes the per-site checks that do not depend on bookings: online,
/// certifications and latency from every `from` region (for explanations).
pub(crate) fn passes_site_checks(fleet: &FleetIndex, r: &Resolved, s: u32) -> bool {
    let site = &fleet.hot[s as usize];
    fleet.online[s as usize]
        && site.certs & r.certs == r.certs
        && r.latency
            .as_ref()
            .is_none_or(|(regions, max)| regions.iter().all(|&rg| fleet.rtt.get(rg, s) <= *max))
}

/// The index-level filter `s` fails when it fails exactly one (residency, dataset residency,
/// tier, or hardware: GPU kind or storage array); `None` when it fails none or several.
pub(crate) fn only_index_failure(fleet: &FleetIndex, r: &Resolved, s: u32) -> Option<RejectReason> {
    let site = &fleet.hot[s as usize];
    let checks = [
        (r.allowed.contains(site.country), RejectReason::Residency),
        (
            r.data_allowed.contains(site.country),
            RejectReason::DatasetResidency,
        ),
        (r.tiers[usize::from(site.tier)], RejectReason::Tier),
        (
            site.has_all(r.need.key(), r.storage_mib > 0),
            RejectReason::Hardware,
        ),
    ];
    let mut failed = checks.iter().filter(|(ok, _)| !ok);
    match (failed.next(), failed.next()) {
        (Some((_, reason)), None) => Some(*reason),
        _ => None,
    }
}

/// How many more replicas of `r` the storage array of `site` can hold for the whole window
/// (`u32::MAX` when `r` needs no storage).
pub(crate) fn storage_room(fleet: &FleetIndex, r: &Resolved, site: u32) -> u32 {
    if r.storage_mib == 0 {
        return u32::MAX;
    }
    let free = fleet.sites[site as usize].storage.free(&r.span);
    (free / r.storage_mib).min(u64::from(u32::MAX)) as u32
}

/// The per-site checks; `known_rtt` is the worst RTT when the caller already has it.
fn check_site(
    fleet: &FleetIndex,
    r: &Resolved,
    s: u32,
    known_rtt: Option<f32>,
    site_allowance: Option<&std::collections::BTreeSet<u32>>,
    out: &mut Filtered,
) {
    let site = &fleet.hot[s as usize];
    let miss = |depth, reason, value| Miss {
        depth,
        site: s,
        reason,
        value,
    };
    if !fleet.online[s as usize] {
        out.reject(RejectReason::SiteNotOnline, 1);
        out.miss(miss(DEPTH_ONLINE, RejectReason::SiteNotOnline, 0.0));
        return;
    }
    if site.certs & r.certs != r.certs {
        out.reject(RejectReason::Certification, 1);
        let missing = (r.certs & !site.certs).count_ones() as f32;
        out.miss(miss(DEPTH_CERT, RejectReason::Certification, missing));
        return;
    }
    let mut worst = 0f32;
    if let Some((regions, max)) = &r.latency {
        worst = known_rtt.unwrap_or_else(|| {
            regions
                .iter()
                .map(|&rg| fleet.rtt.get(rg, s))
                .fold(0f32, f32::max)
        });
        if worst > *max {
            out.reject(RejectReason::Latency, 1);
            out.miss(miss(DEPTH_LATENCY, RejectReason::Latency, worst - max));
            return;
        }
    }
    if site_allowance.is_some_and(|allowed| !allowed.contains(&s)) {
        out.reject(RejectReason::Quota, 1);
        out.miss(miss(DEPTH_QUOTA, RejectReason::Quota, 0.0));
        return;
    }
    let bytes_to_move: u64 = r
        .datasets
        .iter()
        .filter(|(_, replicas)| !replicas.contains(&s))
        .map(|(size, _)| *size)
        .sum();
    let latency = match &r.latency {
        Some((_, max)) if *max > 0.0 => 1.0 - f64::from(worst / max),
        _ => 1.0,
    };
    let data = if r.bytes_read == 0 {
        1.0
    } else {
        1.0 - bytes_to_move as f64 / r.bytes_read as f64
    };
    let price = if fleet.max_price == 0 {
        1.0
    } else {
        1.0 - site.price as f64 / fleet.max_price as f64
    };
    out.candidates.push(Candidate {
        site: s,
        worst_rtt: worst,
        bytes_to_move,
        latency: latency.clamp(0.0, 1.0),
        data: data.clamp(0.0, 1.0),
        price: price.clamp(0.0, 1.0),
    });
}

/// The weighted total of a candidate's parts with `packing`.
pub(crate) fn total(w: &ScoreWeights, c: &Candidate, packing: f64) -> f64 {
    let sum = w.latency + w.data + w.price + w.packing;
    (w.latency * c.latency + w.data * c.data + w.price * c.price + w.packing * packing) / sum
}

/// The best slot for one replica at `site` (best fit: highest packing, then server, GPU and
/// placement order), considering bookings already made: on a server that is not drained, with
/// room on the site's storage array when the replica needs storage.
pub(crate) fn find_slot(
    fleet: &FleetIndex,
    r: &Resolved,
    site: u32,
    free: &mut Vec<u16>,
) -> Option<Slot> {
    if storage_room(fleet, r, site) == 0 {
        return None;
    }
    find_server_slot(fleet, r, site, free, false)
}

/// [`find_slot`] on the servers alone (storage not considered), drained servers included
/// when `with_drained` (to explain a miss).
#[inline]
pub(crate) fn find_server_slot(
    fleet: &FleetIndex,
    r: &Resolved,
    site: u32,
    free: &mut Vec<u16>,
    with_drained: bool,
) -> Option<Slot> {
    let mut best: Option<Slot> = None;
    let better =
        |packing: f64, best: &Option<Slot>| best.as_ref().is_none_or(|b| packing > b.packing);
    for &sv in &fleet.sites[site as usize].servers {
        if r.pin.is_some_and(|p| p != sv) {
            continue;
        }
        let server = &fleet.servers[sv as usize];
        if (server.drained && !with_drained)
            || server.cpu_cores < r.cpu_cores
            || server.memory_mib < r.memory_mib
        {
            continue;
        }
        match r.need {
            Need::NoGpu => {
                return Some(Slot {
                    server: sv,
                    gpus: Vec::new(),
                    packing: 1.0,
                });
            }
            Need::Whole { model, count } => {
                let total = server.whole_free(model, &r.span, free);
                if total == 0 || free.len() < count as usize {
                    continue;
                }
                let packing = (total - free.len() + count as usize) as f64 / total as f64;
                if better(packing, &best) {
                    best = Some(Slot {
                        server: sv,
                        gpus: free[..count as usize]
                            .iter()
                            .map(|&g| (g, Hold::Whole))
                            .collect(),
                        packing,
                    });
                    if packing >= 1.0 {
                        break;
                    }
                }
            }
            Need::BareMetal { model } => {
                if server.entirely_free(model, &r.span) {
                    let gpus = (0..server.gpus.len() as u16)
                        .map(|g| (g, Hold::Whole))
                        .collect();
                    return Some(Slot {
                        server: sv,
                        gpus,
                        packing: 1.0,
                    });
                }
            }
            Need::Mig {
                model,
                profile,
                spec,
            } => {
                let slices = f64::from(model.mig_compute_slices());
                for (g, gpu) in server.gpus.iter().enumerate() {
                    if let Some((placement, used)) = gpu.mig_fit(model, spec, &r.span) {
                        let packing = f64::from(used + spec.compute_slices) / slices;
                        if better(packing, &best) {
                            best = Some(Slot {
                                server: sv,
                                gpus: vec![(
                                    g as u16,
                                    Hold::Mig {
                                        compute: spec.compute_slices,
                                        mask: mig_mask(spec, placement),
                                        profile,
                                        placement,
                                    },
                                )],
                                packing,
                            });
                        }
                    }
                }
            }
        }
    }
    best
}

/// Books a slot for `owner`, and `storage_mib` on the slot's site's storage array; records
/// what it touched in `holds`, for undo.
pub(crate) fn book(
    fleet: &mut FleetIndex,
    slot: &Slot,
    owner: u32,
    span: Span,
    storage_mib: u64,
    holds: &mut Holds,
) {
    let server = &mut fleet.servers[slot.server as usize];
    let site = server.site;
    for &(g, hold) in &slot.gpus {
        server.book(g, Booking { owner, span, hold });
        holds.gpus.push((slot.server, g));
    }
    fleet.raise_fill(slot.server);
    holds.sites.push(site);
    book_storage(fleet, site, owner, span, storage_mib);
}

/// Books `mib` on `site`'s storage array for `owner` (nothing when `mib` is 0).
pub(crate) fn book_storage(fleet: &mut FleetIndex, site: u32, owner: u32, span: Span, mib: u64) {
    if mib > 0 {
        fleet.sites[site as usize]
            .storage
            .bookings
            .push(StorageBooking { owner, span, mib });
    }
}

/// Removes every volume of `owner` from the storage arrays of `sites`.
pub(crate) fn unbook_storage(fleet: &mut FleetIndex, owner: u32, sites: &[u32]) {
    for &site in sites {
        let array = &mut fleet.sites[site as usize].storage;
        if !array.bookings.is_empty() {
            array.release(owner);
        }
    }
}

/// Removes every booking of `owner` from the given cells and storage arrays.
pub(crate) fn unbook(fleet: &mut FleetIndex, owner: u32, holds: &Holds) {
    let mut sites: Vec<u32> = Vec::new();
    for &(sv, g) in &holds.gpus {
        let server = &mut fleet.servers[sv as usize];
        server.release(g, owner);
        if !sites.contains(&server.site) {
            sites.push(server.site);
        }
    }
    for site in sites {
        fleet.refresh_fill(site);
    }
    unbook_storage(fleet, owner, &holds.sites);
}

/// The highest packing a new slot for `r` at `site` could reach (see `FleetIndex::fill`).
pub(crate) fn packing_bound(fleet: &FleetIndex, r: &Resolved, site: u32) -> f64 {
    let key = usize::from(r.need.key());
    let fill = f64::from(fleet.fill[site as usize][key]);
    let bound = match r.need {
        Need::NoGpu | Need::BareMetal { .. } => 1.0,
        Need::Whole { count, .. } => {
            (fill + f64::from(count)) / f64::from(fleet.min_total[site as usize][key])
        }
        Need::Mig { model, spec, .. } => {
            (fill + f64::from(spec.compute_slices)) / f64::from(model.mig_compute_slices())
        }
    };
    bound.min(1.0)
}
