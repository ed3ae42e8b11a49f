//! The intent compiler: placements + tenant networks + site inventory -> one [`SiteIntent`] per
//! site whose content changed.
//!
//! Pure (STYLE habit 1): no IO, no clock, no randomness; `now` is an argument. [`plan`] runs the
//! network allocator ([`crate::networks`]) and then [`compile`]; central's publisher is the
//! thin async step that loads the inputs from the store and writes the results.
//!
//! # Guarantees
//!
//! - Only workloads whose reservation holds capacity ([`ReservationState::Approved`] or
//!   [`ReservationState::Active`]), that have a placement, whose tenant exists and whose window
//!   has not ended by `now` produce allocations. The window travels in
//!   [`Allocation::window`] (the placement's, else the spec's).
//! - One intent per compiled site whose content differs from the previous intent's (generation
//!   ignored), with generation `previous + 1` (`1` for a site's first). A site that loses its
//!   last allocation gets an intent with no allocations, not nothing; a site with no previous
//!   intent and nothing to say gets none.
//! - Every list in an intent is sorted (and exact duplicates removed), so equal content
//!   compares equal whatever the input order.
//! - Every intent returned passes [`validate_site_intent`]; a site whose compiled intent does
//!   not (e.g. the planner double-booked a GPU) is held back with the validation error and
//!   keeps its previous intent.
//! - A replica whose needs cannot be met (a network pool exhausted, its server not in the
//!   site's inventory) is left out and reported in [`Compiled::unmet`]; the rest still ship.
//!
//! # Mapping
//!
//! `BareMetal` -> [`AllocationMode::BareMetal`], `VirtualMachine` ->
//! [`AllocationMode::VirtualMachine`], every other kind -> [`AllocationMode::Container`]; the
//! image is the spec's. Each replica gets an address in its tenant's subnet on the site; each
//! exposed port of each replica gets a public endpoint on the site's gateway, whose backend is
//! that address and the exposed port. A workload with storage gets one volume per site, named
//! after the workload, of its per-replica storage times its replicas there. Pool assignments
//! come from the site's inventory. Server actions are the operators' requests still to be
//! carried out at the site ([`SiteInput::actions`]), in request order.

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::ids::{Generation, Name, ServerId, SiteId, TenantId, Timestamp, WorkloadId};
use meridian_common::model::{
    Allocation, AllocationMode, Assignment, Exposure, Ipv4Net, Placement, PoolAssignment,
    ReservationState, Server, ServerAction, Site, SiteIntent, StorageVolume, Tenant,
    TenantNetworkIntent, TenantPeer, Workload, WorkloadKind,
};
use meridian_common::validate::{ValidationError, validate_site_intent};

use crate::networks::{
    Demand, HostKey, NetworkError, NetworkPools, NetworkState, PublicKey, ReleaseScope,
};

/// A workload with its placement, if it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacedWorkload {
    /// The workload.
    pub workload: Workload,
    /// What the planner decided.
    pub placement: Option<Placement>,
}

/// One site to compile.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteInput {
    /// The site.
    pub site: Site,
    /// Its servers (inventory).
    pub servers: Vec<Server>,
    /// The intent published last, if any.
    pub previous: Option<SiteIntent>,
    /// Operators' server actions still to be carried out by the site's agent (any order; the
    /// intent lists them by request).
    pub actions: Vec<ServerAction>,
}

/// Everything the compiler reads.
#[derive(Debug, Clone, PartialEq)]
pub struct CompileInput {
    /// The time the compilation is for.
    pub now: Timestamp,
    /// The sites to compile.
    pub sites: BTreeMap<SiteId, SiteInput>,
    /// Existing tenants.
    pub tenants: BTreeMap<TenantId, Tenant>,
    /// Workloads (with replicas on the compiled sites, and any others the caller wants
    /// provided for), keyed by owner and ID.
    pub workloads: BTreeMap<(TenantId, WorkloadId), PlacedWorkload>,
    /// The gateway ranges of sites that are not compiled but may be a compiled site's tenant
    /// peers (their tunnel endpoints are the first host address of these ranges). Compiled
    /// sites' ranges come from `sites`. A peer site in neither is left out of the peers.
    pub peer_ranges: BTreeMap<SiteId, Ipv4Net>,
}

/// A site's tunnel endpoint: its gateway node's own address, the first host address of its
/// gateway range (the network pools keep `gateway_reserved` addresses there out of exposures).
pub fn tunnel_endpoint(gateway_range: Ipv4Net) -> std::net::Ipv4Addr {
    std::net::Ipv4Addr::from(u32::from(gateway_range.addr()).saturating_add(1))
}

/// Why a replica was left out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnmetReason {
    /// Its network needs could not be met.
    #[error("network allocation failed")]
    Network(#[source] NetworkError),
    /// Its site has no record.
    #[error("site {site} does not exist; re-place the workload")]
    UnknownSite {
        /// The site.
        site: SiteId,
    },
    /// Its server is not in the site's inventory.
    #[error(
        "server {server} is not in the inventory of site {site}; re-place the workload or restore the server"
    )]
    UnknownServer {
        /// The server.
        server: ServerId,
        /// The site.
        site: SiteId,
    },
}

/// A replica left out of its site's intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unmet {
    /// The replica.
    pub replica: HostKey,
    /// Why.
    pub reason: UnmetReason,
}

/// A site whose compiled intent failed validation; its previous intent stays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// The site.
    pub site: SiteId,
    /// What is wrong with the compiled intent.
    pub error: ValidationError,
}

/// What a compilation produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Compiled {
    /// New intents, only for sites whose content changed, in site order.
    pub intents: Vec<SiteIntent>,
    /// Compiled sites whose content did not change.
    pub unchanged: Vec<SiteId>,
    /// Sites whose compiled intent is invalid.
    pub held_back: Vec<HeldBack>,
    /// Replicas left out.
    pub unmet: Vec<Unmet>,
}

/// Whether a workload's reservation holds capacity at `now`, and for which window.
fn holds_capacity<'a>(input: &CompileInput, placed: &'a PlacedWorkload) -> Option<&'a Placement> {
    let w = &placed.workload;
    let placement = placed.placement.as_ref()?;
    let holding = matches!(
        w.state,
        ReservationState::Approved | ReservationState::Active
    );
    let window = placement.window.or(w.spec.window);
    let ended = window.is_some_and(|win| win.end() <= input.now);
    (holding && !ended && input.tenants.contains_key(&w.tenant) && placement.tenant == w.tenant)
        .then_some(placement)
}

/// The allocation mode of a workload kind.
pub fn mode_of(kind: WorkloadKind) -> AllocationMode {
    match kind {
        WorkloadKind::BareMetal => AllocationMode::BareMetal,
        WorkloadKind::VirtualMachine => AllocationMode::VirtualMachine,
        WorkloadKind::InferenceEndpoint
        | WorkloadKind::KubernetesCluster
        | WorkloadKind::BatchJob
        | WorkloadKind::RanFunction => AllocationMode::Container,
    }
}

fn host_key(w: &Workload, a: &Assignment) -> HostKey {
    HostKey {
        tenant: w.tenant.clone(),
        site: a.site.clone(),
        workload: w.id.clone(),
        replica: a.replica,
    }
}

/// What the replicas of `input`'s workloads that hold capacity need from the network pools
/// (replicas on sites not in `input.sites` are not provided for).
pub fn demand(input: &CompileInput) -> Demand {
    let mut demand = Demand::default();
    for placed in input.workloads.values() {
        let Some(placement) = holds_capacity(input, placed) else {
            continue;
        };
        let w = &placed.workload;
        let ports: BTreeSet<_> = w.spec.expose.iter().map(|e| (e.port, e.protocol)).collect();
        for a in placement
            .assignments
            .iter()
            .filter(|a| input.sites.contains_key(&a.site))
        {
            demand.replicas.insert(host_key(w, a), ports.clone());
        }
    }
    demand
}

/// Allocates what the placed workloads need, releases what `release` says is no longer
/// needed, and compiles every site of `input`. The state must already hold the loaded claims;
/// the input's tenants are added to it here.
pub fn plan(
    input: &CompileInput,
    networks: &mut NetworkState,
    pools: &NetworkPools,
    release: &ReleaseScope,
) -> Compiled {
    for tenant in input.tenants.values() {
        networks.add_tenant(tenant);
    }
    let gateway_ranges: BTreeMap<SiteId, Ipv4Net> = input
        .sites
        .iter()
        .map(|(id, s)| (id.clone(), s.site.gateway_range))
        .collect();
    let reconciled = networks.reconcile(pools, &demand(input), &gateway_ranges, release);
    let mut compiled = compile(input, networks, &reconciled.unmet);
    // Replicas of fully known workloads on sites the input lacks: no such site exists.
    for placed in input.workloads.values() {
        let w = &placed.workload;
        let Some(placement) = holds_capacity(input, placed) else {
            continue;
        };
        if !release.covers(&w.tenant, &w.id) {
            continue;
        }
        for a in &placement.assignments {
            if !input.sites.contains_key(&a.site) {
                compiled.unmet.push(Unmet {
                    replica: host_key(w, a),
                    reason: UnmetReason::UnknownSite {
                        site: a.site.clone(),
                    },
                });
            }
        }
    }
    compiled.unmet.sort_by(|a, b| a.replica.cmp(&b.replica));
    compiled
}

/// Compiles every site of `input` from the allocations in `networks`, leaving out the replicas
/// in `unmet` (and any whose allocations are missing).
pub fn compile(
    input: &CompileInput,
    networks: &NetworkState,
    unmet: &BTreeMap<HostKey, NetworkError>,
) -> Compiled {
    let mut out = Compiled::default();
    for (host, e) in unmet {
        out.unmet.push(Unmet {
            replica: host.clone(),
            reason: UnmetReason::Network(e.clone()),
        });
    }
    // The replicas of each compiled site.
    let mut on_site: BTreeMap<&SiteId, Vec<(&Workload, &Assignment, Option<_>)>> = BTreeMap::new();
    for placed in input.workloads.values() {
        let Some(placement) = holds_capacity(input, placed) else {
            continue;
        };
        let window = placement.window.or(placed.workload.spec.window);
        for a in &placement.assignments {
            if input.sites.contains_key(&a.site) {
                on_site
                    .entry(&a.site)
                    .or_default()
                    .push((&placed.workload, a, window));
            }
        }
    }
    let tunnels = Tunnels::new(input, networks);
    for (site_id, site) in &input.sites {
        let replicas = on_site.remove(site_id).unwrap_or_default();
        let mut content = SiteContent::default();
        for (w, a, window) in replicas {
            let host = host_key(w, a);
            if unmet.contains_key(&host) {
                continue;
            }
            match content.add(networks, site, w, a, window, &host) {
                Ok(()) => {}
                Err(reason) => out.unmet.push(Unmet {
                    replica: host,
                    reason,
                }),
            }
        }
        let mut intent = content.finish(site, &tunnels);
        let generation = match &site.previous {
            Some(prev) if same_content(prev, &intent) => {
                out.unchanged.push(site_id.clone());
                continue;
            }
            Some(prev) => prev.generation.next(),
            None if is_empty(&intent) => {
                out.unchanged.push(site_id.clone());
                continue;
            }
            None => Generation::new(1),
        };
        intent.generation = generation;
        match validate_site_intent(&intent) {
            Ok(()) => out.intents.push(intent),
            Err(error) => out.held_back.push(HeldBack {
                site: site_id.clone(),
                error,
            }),
        }
    }
    out.unmet.sort_by(|a, b| a.replica.cmp(&b.replica));
    out
}

/// Every tenant's subnets with their sites' tunnel endpoints: where each tenant's peers are.
struct Tunnels {
    by_tenant: BTreeMap<TenantId, Vec<TenantPeer>>,
}

impl Tunnels {
    fn new(input: &CompileInput, networks: &NetworkState) -> Self {
        let range = |site: &SiteId| {
            input
                .sites
                .get(site)
                .map(|s| s.site.gateway_range)
                .or_else(|| input.peer_ranges.get(site).copied())
        };
        let mut by_tenant: BTreeMap<TenantId, Vec<TenantPeer>> = BTreeMap::new();
        for (tenant, site, subnet) in networks.subnets() {
            if let Some(range) = range(site) {
                by_tenant
                    .entry(tenant.clone())
                    .or_default()
                    .push(TenantPeer {
                        tenant: tenant.clone(),
                        site: site.clone(),
                        endpoint: tunnel_endpoint(range),
                        subnet: subnet.subnet,
                        gateway: subnet.gateway,
                    });
            }
        }
        Tunnels { by_tenant }
    }

    /// The peers of `tenants` on `site`: their subnets on every other site, in (tenant, site)
    /// order.
    fn peers<'a>(
        &self,
        site: &SiteId,
        tenants: impl Iterator<Item = &'a TenantId>,
    ) -> Vec<TenantPeer> {
        tenants
            .filter_map(|t| self.by_tenant.get(t))
            .flatten()
            .filter(|p| p.site != *site)
            .cloned()
            .collect()
    }
}

/// One site's intent as it is built.
#[derive(Debug, Default)]
struct SiteContent {
    networks: BTreeMap<TenantId, TenantNetworkIntent>,
    allocations: Vec<Allocation>,
    exposures: Vec<Exposure>,
    /// Storage per (tenant, workload): per-replica size and replicas here.
    storage: BTreeMap<(TenantId, WorkloadId), (u64, u64)>,
}

impl SiteContent {
    fn add(
        &mut self,
        networks: &NetworkState,
        site: &SiteInput,
        w: &Workload,
        a: &Assignment,
        window: Option<meridian_common::ids::TimeWindow>,
        host: &HostKey,
    ) -> Result<(), UnmetReason> {
        if !site.servers.iter().any(|s| s.id == a.server) {
            return Err(UnmetReason::UnknownServer {
                server: a.server.clone(),
                site: a.site.clone(),
            });
        }
        let missing = |what: &str| {
            UnmetReason::Network(NetworkError::NotLoaded {
                what: format!(
                    "{what} of replica {} of {}/{}",
                    host.replica, w.tenant, w.id
                ),
            })
        };
        let network = networks
            .tenant_network(&w.tenant)
            .ok_or_else(|| missing("the tenant network"))?;
        let subnet = networks
            .subnet(&w.tenant, &a.site)
            .ok_or_else(|| missing("the site subnet"))?;
        let address = networks.host(host).ok_or_else(|| missing("the address"))?;
        let mut exposures = Vec::with_capacity(w.spec.expose.len());
        for e in &w.spec.expose {
            let key = PublicKey {
                site: a.site.clone(),
                tenant: w.tenant.clone(),
                workload: w.id.clone(),
                replica: a.replica,
                port: e.port,
                protocol: e.protocol,
            };
            let public = networks
                .public(&key)
                .ok_or_else(|| missing("a public endpoint"))?;
            exposures.push(Exposure {
                tenant: w.tenant.clone(),
                workload: w.id.clone(),
                public_ip: public.address,
                public_port: public.port,
                protocol: e.protocol,
                backend_ip: address,
                backend_port: e.port,
            });
        }
        self.networks
            .entry(w.tenant.clone())
            .or_insert_with(|| TenantNetworkIntent {
                tenant: w.tenant.clone(),
                vni: network.vni,
                table: network.table,
                subnet: subnet.subnet,
                gateway: subnet.gateway,
            });
        self.allocations.push(Allocation {
            workload: w.id.clone(),
            tenant: w.tenant.clone(),
            server: a.server.clone(),
            slot: a.slot.clone(),
            mode: mode_of(w.spec.kind),
            image: w.spec.image.clone(),
            window,
            address: Some(address),
        });
        self.exposures.extend(exposures);
        if w.spec.resources.storage_mib > 0 {
            let entry = self
                .storage
                .entry((w.tenant.clone(), w.id.clone()))
                .or_insert((w.spec.resources.storage_mib, 0));
            entry.1 += 1;
        }
        Ok(())
    }

    fn finish(mut self, site: &SiteInput, tunnels: &Tunnels) -> SiteIntent {
        self.allocations
            .sort_by(|a, b| (alloc_key(a), a.address).cmp(&(alloc_key(b), b.address)));
        // Two replicas of one workload on one server with the same slot (CPU-only replicas)
        // are one allocation, with the lower address: the intent cannot tell them apart.
        self.allocations
            .dedup_by(|later, first| alloc_key(later) == alloc_key(first));
        self.exposures.sort_by(|a, b| {
            (
                a.public_ip,
                a.public_port,
                a.protocol,
                &a.tenant,
                &a.workload,
                a.backend_ip,
            )
                .cmp(&(
                    b.public_ip,
                    b.public_port,
                    b.protocol,
                    &b.tenant,
                    &b.workload,
                    b.backend_ip,
                ))
        });
        let volumes = self
            .storage
            .into_iter()
            .filter_map(|((tenant, workload), (per_replica, count))| {
                Some(StorageVolume {
                    tenant,
                    name: Name::parse(workload.as_str()).ok()?,
                    size_mib: per_replica.saturating_mul(count),
                })
            })
            .collect();
        let mut pools: Vec<PoolAssignment> = site
            .servers
            .iter()
            .filter_map(|s| {
                s.pool.clone().map(|pool| PoolAssignment {
                    server: s.id.clone(),
                    pool,
                })
            })
            .collect();
        pools.sort_by(|a, b| (&a.server, &a.pool).cmp(&(&b.server, &b.pool)));
        pools.dedup_by(|a, b| a.server == b.server);
        let peers = tunnels.peers(&site.site.id, self.networks.keys());
        SiteIntent {
            site: site.site.id.clone(),
            generation: Generation::new(0),
            tunnel_endpoint: (!peers.is_empty()).then(|| tunnel_endpoint(site.site.gateway_range)),
            peers,
            networks: self.networks.into_values().collect(),
            allocations: self.allocations,
            exposures: self.exposures,
            volumes,
            server_actions: {
                let mut actions = site.actions.clone();
                actions.sort_by_key(|a| a.request);
                actions.dedup_by_key(|a| a.request);
                actions
            },
            pools,
        }
    }
}

type AllocKey<'a> = (
    &'a TenantId,
    &'a WorkloadId,
    &'a ServerId,
    &'a meridian_common::model::GpuSlot,
    AllocationMode,
    &'a Option<String>,
    Option<meridian_common::ids::TimeWindow>,
);

fn alloc_key(a: &Allocation) -> AllocKey<'_> {
    (
        &a.tenant,
        &a.workload,
        &a.server,
        &a.slot,
        a.mode,
        &a.image,
        a.window,
    )
}

/// Whether two intents say the same, generation aside. Destructures so a new field of
/// [`SiteIntent`] cannot be forgotten here.
pub fn same_content(a: &SiteIntent, b: &SiteIntent) -> bool {
    let SiteIntent {
        site,
        generation: _,
        networks,
        allocations,
        exposures,
        volumes,
        server_actions,
        pools,
        tunnel_endpoint,
        peers,
    } = a;
    *site == b.site
        && *networks == b.networks
        && *allocations == b.allocations
        && *exposures == b.exposures
        && *volumes == b.volumes
        && *server_actions == b.server_actions
        && *pools == b.pools
        && *tunnel_endpoint == b.tunnel_endpoint
        && *peers == b.peers
}

fn is_empty(intent: &SiteIntent) -> bool {
    intent.peers.is_empty()
        && intent.networks.is_empty()
        && intent.allocations.is_empty()
        && intent.exposures.is_empty()
        && intent.volumes.is_empty()
        && intent.server_actions.is_empty()
        && intent.pools.is_empty()
}

#[cfg(test)]
mod tests;
