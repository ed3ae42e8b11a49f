//! [`NetworkState`]: every allocation held, with the pure allocate and release logic.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use meridian_common::ids::{SiteId, TenantId, WorkloadId};
use meridian_common::model::{Ipv4Net, Protocol, Tenant, TenantNetwork};
use meridian_common::validate::limits;

use super::search::{first_free_block, lowest_free_number};
use super::{HostKey, NetworkError, NetworkPools, Pool, PublicEndpoint, PublicKey, SiteSubnet};
use meridian_common::model::NetworkClaim;

/// Which parts of the claims the caller loaded completely. Allocating from (or releasing in) a
/// part that is not covered would risk a collision with a claim the state does not know, so the
/// state refuses it ([`NetworkError::NotLoaded`]). Even then the store's "absent" compare on every
/// new claim is the last line of defence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Coverage {
    /// Everything is loaded.
    pub all: bool,
    /// The tenant-level claims (`net/vni/`, `net/table/`, `net/supernet/`) are loaded.
    pub pools: bool,
    /// These tenants' subnet and host claims are loaded.
    pub tenants: BTreeSet<TenantId>,
    /// These sites' public endpoint claims are loaded.
    pub sites: BTreeSet<SiteId>,
}

impl Coverage {
    /// Everything loaded.
    pub fn all() -> Self {
        Coverage {
            all: true,
            ..Coverage::default()
        }
    }

    fn pools(&self) -> bool {
        self.all || self.pools
    }

    fn tenant(&self, tenant: &TenantId) -> bool {
        self.all || self.tenants.contains(tenant)
    }

    fn site(&self, site: &SiteId) -> bool {
        self.all || self.sites.contains(site)
    }
}

/// What the placed replicas need: per replica, the ports it exposes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Demand {
    /// Every replica to provide for, with its exposed `(port, protocol)`s.
    pub replicas: BTreeMap<HostKey, BTreeSet<(u16, Protocol)>>,
}

/// What a reconcile may release: the claims whose owners' demand the caller knows in full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseScope {
    /// The demand is complete: release whatever it does not name, everything of tenants not
    /// added with [`NetworkState::add_tenant`], and stray tenant-level claims.
    Everything,
    /// Only these owners' demand is complete.
    Only {
        /// Workloads whose every replica is in the demand (those not in it are gone).
        workloads: BTreeSet<(TenantId, WorkloadId)>,
        /// Deleted tenants: release everything they hold.
        deleted_tenants: BTreeSet<TenantId>,
    },
}

impl ReleaseScope {
    /// Releases nothing.
    pub fn nothing() -> Self {
        ReleaseScope::Only {
            workloads: BTreeSet::new(),
            deleted_tenants: BTreeSet::new(),
        }
    }

    /// Whether the demand of this workload is known in full.
    pub fn covers(&self, tenant: &TenantId, workload: &WorkloadId) -> bool {
        match self {
            ReleaseScope::Everything => true,
            ReleaseScope::Only {
                workloads,
                deleted_tenants,
            } => {
                deleted_tenants.contains(tenant)
                    || workloads.contains(&(tenant.clone(), workload.clone()))
            }
        }
    }
}

/// The outcome of [`NetworkState::reconcile`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reconciled {
    /// Replicas whose needs could not all be met, and why (the rest are met).
    pub unmet: BTreeMap<HostKey, NetworkError>,
}

/// Every network allocation held (as far as it was loaded), and the allocator over them.
///
/// Pure: built from tenant records and claims, changed only through its methods, read back as
/// claims with [`NetworkState::claims`] and networks with [`NetworkState::tenant_network`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkState {
    coverage: Coverage,
    /// Tenants that exist (added from their records).
    live: BTreeSet<TenantId>,
    /// The networks of existing tenants (their `Tenant::network`).
    networks: BTreeMap<TenantId, TenantNetwork>,
    vnis: BTreeMap<u32, TenantId>,
    tables: BTreeMap<u32, TenantId>,
    supernets: BTreeMap<Ipv4Net, TenantId>,
    subnets: BTreeMap<(TenantId, SiteId), Ipv4Net>,
    subnet_sites: BTreeMap<(TenantId, Ipv4Net), SiteId>,
    hosts: BTreeMap<HostKey, Ipv4Addr>,
    host_owners: BTreeMap<(TenantId, Ipv4Addr), HostKey>,
    public: BTreeMap<PublicKey, PublicEndpoint>,
    public_owners: BTreeMap<(SiteId, Ipv4Addr, u16, Protocol), PublicKey>,
}

impl NetworkState {
    /// An empty state whose loaded parts are `coverage`.
    pub fn new(coverage: Coverage) -> Self {
        NetworkState {
            coverage,
            ..NetworkState::default()
        }
    }

    /// What is loaded.
    pub fn coverage(&self) -> &Coverage {
        &self.coverage
    }

    /// Declares what is loaded (after adding more claims).
    pub fn set_coverage(&mut self, coverage: Coverage) {
        self.coverage = coverage;
    }

    /// Records an existing tenant and its network, if it has one.
    pub fn add_tenant(&mut self, tenant: &Tenant) {
        self.live.insert(tenant.id.clone());
        if let Some(network) = tenant.network {
            self.networks.insert(tenant.id.clone(), network);
        }
    }

    /// Records a stored claim.
    pub fn add_claim(&mut self, claim: NetworkClaim) {
        match claim {
            NetworkClaim::Vni { vni, tenant } => {
                self.vnis.insert(vni, tenant);
            }
            NetworkClaim::Table { table, tenant } => {
                self.tables.insert(table, tenant);
            }
            NetworkClaim::Supernet { supernet, tenant } => {
                self.supernets.insert(supernet, tenant);
            }
            NetworkClaim::Subnet {
                tenant,
                subnet,
                site,
            } => self.insert_subnet(tenant, site, subnet),
            NetworkClaim::Host { key, address } => self.insert_host(key, address),
            NetworkClaim::Public { key, endpoint } => self.insert_public(key, endpoint),
        }
    }

    /// A tenant's network, if it has one.
    pub fn tenant_network(&self, tenant: &TenantId) -> Option<TenantNetwork> {
        self.networks.get(tenant).copied()
    }

    /// A tenant's subnet on a site, if it has one.
    pub fn subnet(&self, tenant: &TenantId, site: &SiteId) -> Option<SiteSubnet> {
        self.subnets
            .get(&(tenant.clone(), site.clone()))
            .map(|s| SiteSubnet::new(*s))
    }

    /// A replica's address, if it has one.
    pub fn host(&self, key: &HostKey) -> Option<Ipv4Addr> {
        self.hosts.get(key).copied()
    }

    /// An exposure's public endpoint, if it has one.
    pub fn public(&self, key: &PublicKey) -> Option<PublicEndpoint> {
        self.public.get(key).copied()
    }

    /// Every replica address held.
    pub fn hosts(&self) -> &BTreeMap<HostKey, Ipv4Addr> {
        &self.hosts
    }

    /// Every public endpoint held.
    pub fn public_endpoints(&self) -> &BTreeMap<PublicKey, PublicEndpoint> {
        &self.public
    }

    /// Every site subnet held.
    pub fn subnets(&self) -> impl Iterator<Item = (&TenantId, &SiteId, SiteSubnet)> {
        self.subnets
            .iter()
            .map(|((t, s), n)| (t, s, SiteSubnet::new(*n)))
    }

    /// Every tenant network recorded.
    pub fn networks(&self) -> &BTreeMap<TenantId, TenantNetwork> {
        &self.networks
    }

    /// Every claim held, by its key path under `net/`: what the store should hold for the
    /// loaded parts after this state.
    pub fn claims(&self) -> BTreeMap<String, NetworkClaim> {
        let mut out = BTreeMap::new();
        let mut put = |c: NetworkClaim| {
            out.insert(c.path(), c);
        };
        for (&vni, tenant) in &self.vnis {
            put(NetworkClaim::Vni {
                vni,
                tenant: tenant.clone(),
            });
        }
        for (&table, tenant) in &self.tables {
            put(NetworkClaim::Table {
                table,
                tenant: tenant.clone(),
            });
        }
        for (&supernet, tenant) in &self.supernets {
            put(NetworkClaim::Supernet {
                supernet,
                tenant: tenant.clone(),
            });
        }
        for ((tenant, site), &subnet) in &self.subnets {
            put(NetworkClaim::Subnet {
                tenant: tenant.clone(),
                subnet,
                site: site.clone(),
            });
        }
        for (key, &address) in &self.hosts {
            put(NetworkClaim::Host {
                key: key.clone(),
                address,
            });
        }
        for (key, &endpoint) in &self.public {
            put(NetworkClaim::Public {
                key: key.clone(),
                endpoint,
            });
        }
        out
    }

    /// Provides for every replica of `demand` (in key order, lowest free values first), then
    /// releases what `scope` says is no longer needed. Values released here are free from the
    /// next reconcile on, never reused within this one.
    pub fn reconcile(
        &mut self,
        pools: &NetworkPools,
        demand: &Demand,
        gateway_ranges: &BTreeMap<SiteId, Ipv4Net>,
        scope: &ReleaseScope,
    ) -> Reconciled {
        let mut unmet = BTreeMap::new();
        for (host, ports) in &demand.replicas {
            let range = gateway_ranges.get(&host.site).copied();
            if let Err(e) = self.provide(pools, host, ports, range) {
                unmet.insert(host.clone(), e);
            }
        }
        self.release(demand, scope);
        Reconciled { unmet }
    }

    fn provide(
        &mut self,
        pools: &NetworkPools,
        host: &HostKey,
        ports: &BTreeSet<(u16, Protocol)>,
        gateway_range: Option<Ipv4Net>,
    ) -> Result<(), NetworkError> {
        let network = self.allocate_tenant(pools, &host.tenant)?;
        let subnet = self.allocate_subnet(pools, &host.tenant, &host.site, &network)?;
        self.allocate_host(host, subnet)?;
        for &(port, protocol) in ports {
            let key = PublicKey {
                site: host.site.clone(),
                tenant: host.tenant.clone(),
                workload: host.workload.clone(),
                replica: host.replica,
                port,
                protocol,
            };
            self.allocate_public(pools, &key, gateway_range)?;
        }
        Ok(())
    }

    /// The tenant's network, allocating the lowest free VNI, table and supernet when it has
    /// none. A recorded network is checked against (and, where missing, recorded in) the
    /// tenant-level claims when those are loaded.
    pub fn allocate_tenant(
        &mut self,
        pools: &NetworkPools,
        tenant: &TenantId,
    ) -> Result<TenantNetwork, NetworkError> {
        if let Some(network) = self.networks.get(tenant).copied() {
            if self.coverage.pools() {
                self.claim_recorded(tenant, &network)?;
            }
            return Ok(network);
        }
        if !self.coverage.pools() {
            return Err(NetworkError::NotLoaded {
                what: "the tenant-level claims (net/vni, net/table, net/supernet)".into(),
            });
        }
        let vni = lowest_free_number(
            pools.vni.first,
            pools.vni.last,
            self.vnis
                .range(pools.vni.first..=pools.vni.last)
                .map(|(&v, _)| v),
            &[],
        )
        .ok_or(NetworkError::Exhausted {
            pool: Pool::Vni(pools.vni),
        })?;
        let table = lowest_free_number(
            pools.table.first,
            pools.table.last,
            self.tables
                .range(pools.table.first..=pools.table.last)
                .map(|(&t, _)| t),
            &limits::RESERVED_TABLES,
        )
        .ok_or(NetworkError::Exhausted {
            pool: Pool::Table(pools.table),
        })?;
        let supernet = pools
            .supernets
            .iter()
            .find_map(|&pool| {
                first_free_block(pool, pools.supernet_prefix, self.supernets.keys().copied())
            })
            .ok_or_else(|| NetworkError::Exhausted {
                pool: Pool::Supernets {
                    pools: pools.supernets.clone(),
                    prefix_len: pools.supernet_prefix,
                },
            })?;
        let network = TenantNetwork {
            vni,
            table,
            supernet,
        };
        self.vnis.insert(vni, tenant.clone());
        self.tables.insert(table, tenant.clone());
        self.supernets.insert(supernet, tenant.clone());
        self.networks.insert(tenant.clone(), network);
        self.live.insert(tenant.clone());
        Ok(network)
    }

    /// Checks a recorded network against the claims of other tenants and claims what is
    /// unclaimed (a network set by hand, or written before its claims).
    fn claim_recorded(
        &mut self,
        tenant: &TenantId,
        network: &TenantNetwork,
    ) -> Result<(), NetworkError> {
        let conflict = |holder: &TenantId, what: String| NetworkError::Conflict {
            tenant: tenant.clone(),
            holder: holder.clone(),
            what,
        };
        if let Some(holder) = self.vnis.get(&network.vni).filter(|h| *h != tenant) {
            return Err(conflict(holder, format!("VNI {}", network.vni)));
        }
        if let Some(holder) = self.tables.get(&network.table).filter(|h| *h != tenant) {
            return Err(conflict(holder, format!("table {}", network.table)));
        }
        if self.supernets.get(&network.supernet) != Some(tenant)
            && let Some((net, holder)) = self
                .supernets
                .iter()
                .find(|(net, holder)| *holder != tenant && net.overlaps(&network.supernet))
        {
            return Err(conflict(
                holder,
                format!("supernet {} (overlaps {net})", network.supernet),
            ));
        }
        self.vnis.insert(network.vni, tenant.clone());
        self.tables.insert(network.table, tenant.clone());
        self.supernets.insert(network.supernet, tenant.clone());
        Ok(())
    }

    fn allocate_subnet(
        &mut self,
        pools: &NetworkPools,
        tenant: &TenantId,
        site: &SiteId,
        network: &TenantNetwork,
    ) -> Result<SiteSubnet, NetworkError> {
        let key = (tenant.clone(), site.clone());
        if let Some(&subnet) = self.subnets.get(&key)
            && network.supernet.contains_net(&subnet)
        {
            return Ok(SiteSubnet::new(subnet));
        }
        if !self.coverage.tenant(tenant) {
            return Err(NetworkError::NotLoaded {
                what: format!("tenant {tenant}'s subnet and address claims"),
            });
        }
        // A subnet outside the tenant's supernet (its network was changed by hand) is stale.
        if let Some(stale) = self.subnets.remove(&key) {
            self.subnet_sites.remove(&(tenant.clone(), stale));
        }
        let prefix_len = pools.subnet_prefix.max(network.supernet.prefix_len());
        let taken = self
            .subnet_sites
            .range(
                (
                    tenant.clone(),
                    Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).expect("/0"),
                )..,
            )
            .take_while(|((t, _), _)| t == tenant)
            .map(|((_, net), _)| *net);
        let subnet = (prefix_len <= 30)
            .then(|| first_free_block(network.supernet, prefix_len, taken))
            .flatten()
            .ok_or_else(|| NetworkError::Exhausted {
                pool: Pool::Subnets {
                    tenant: tenant.clone(),
                    supernet: network.supernet,
                    prefix_len,
                },
            })?;
        self.insert_subnet(tenant.clone(), site.clone(), subnet);
        Ok(SiteSubnet::new(subnet))
    }

    fn allocate_host(
        &mut self,
        key: &HostKey,
        subnet: SiteSubnet,
    ) -> Result<Ipv4Addr, NetworkError> {
        let first = u32::from(subnet.gateway) + 1;
        let last = u32::from(subnet.subnet.broadcast()).saturating_sub(1);
        if let Some(&address) = self.hosts.get(key) {
            if (first..=last).contains(&u32::from(address)) {
                return Ok(address);
            }
            // Outside its (new) subnet: stale.
            self.hosts.remove(key);
            self.host_owners.remove(&(key.tenant.clone(), address));
        }
        if !self.coverage.tenant(&key.tenant) {
            return Err(NetworkError::NotLoaded {
                what: format!("tenant {}'s subnet and address claims", key.tenant),
            });
        }
        let range = (key.tenant.clone(), Ipv4Addr::from(first))
            ..=(key.tenant.clone(), Ipv4Addr::from(last));
        let taken = self
            .host_owners
            .range(range)
            .map(|((_, ip), _)| u32::from(*ip));
        let address = lowest_free_number(first, last, taken, &[])
            .map(Ipv4Addr::from)
            .ok_or_else(|| NetworkError::Exhausted {
                pool: Pool::Hosts {
                    tenant: key.tenant.clone(),
                    site: key.site.clone(),
                    subnet: subnet.subnet,
                },
            })?;
        self.insert_host(key.clone(), address);
        Ok(address)
    }

    fn allocate_public(
        &mut self,
        pools: &NetworkPools,
        key: &PublicKey,
        gateway_range: Option<Ipv4Net>,
    ) -> Result<PublicEndpoint, NetworkError> {
        let Some(range) = gateway_range else {
            return Err(NetworkError::UnknownSite {
                site: key.site.clone(),
            });
        };
        let (first, last) = public_hosts(range, pools.gateway_reserved);
        if let Some(&endpoint) = self.public.get(key) {
            if (first..=last).contains(&u64::from(u32::from(endpoint.address))) {
                return Ok(endpoint);
            }
            self.public.remove(key);
            self.public_owners.remove(&(
                key.site.clone(),
                endpoint.address,
                endpoint.port,
                key.protocol,
            ));
        }
        if !self.coverage.site(&key.site) {
            return Err(NetworkError::NotLoaded {
                what: format!("site {}'s public endpoint claims", key.site),
            });
        }
        let addresses = || {
            (first..=last)
                .filter_map(|a| u32::try_from(a).ok())
                .map(Ipv4Addr::from)
        };
        // The exposure's own port on the lowest address where it is free ...
        let mut found = addresses()
            .find(|&address| {
                !self.public_owners.contains_key(&(
                    key.site.clone(),
                    address,
                    key.port,
                    key.protocol,
                ))
            })
            .map(|address| PublicEndpoint {
                address,
                port: key.port,
            });
        // ... else the lowest free fallback port on the lowest address that has one.
        if found.is_none() {
            let (lo, hi) = (pools.fallback_ports.first, pools.fallback_ports.last);
            let (lo16, hi16) = (
                u16::try_from(lo).unwrap_or(u16::MAX),
                u16::try_from(hi).unwrap_or(u16::MAX),
            );
            found = addresses().find_map(|address| {
                let taken = self
                    .public_owners
                    .range(
                        (key.site.clone(), address, lo16, Protocol::Tcp)
                            ..=(key.site.clone(), address, hi16, Protocol::Udp),
                    )
                    .filter(|((_, _, _, p), _)| *p == key.protocol)
                    .map(|((_, _, port, _), _)| u32::from(*port));
                lowest_free_number(lo, hi, taken, &[])
                    .and_then(|p| u16::try_from(p).ok())
                    .map(|port| PublicEndpoint { address, port })
            });
        }
        let endpoint = found.ok_or_else(|| NetworkError::Exhausted {
            pool: Pool::Public {
                site: key.site.clone(),
                range,
            },
        })?;
        self.insert_public(key.clone(), endpoint);
        Ok(endpoint)
    }

    fn release(&mut self, demand: &Demand, scope: &ReleaseScope) {
        let (everything, workloads, deleted) = match scope {
            ReleaseScope::Everything => (true, None, None),
            ReleaseScope::Only {
                workloads,
                deleted_tenants,
            } => (false, Some(workloads), Some(deleted_tenants)),
        };
        let live = std::mem::take(&mut self.live);
        let gone = |t: &TenantId| {
            (everything && !live.contains(t)) || deleted.is_some_and(|d| d.contains(t))
        };
        let in_scope = |t: &TenantId, w: &WorkloadId| {
            everything
                || gone(t)
                || workloads.is_some_and(|ws| ws.contains(&(t.clone(), w.clone())))
        };
        let drop_hosts: Vec<HostKey> = self
            .hosts
            .keys()
            .filter(|k| in_scope(&k.tenant, &k.workload) && !demand.replicas.contains_key(*k))
            .cloned()
            .collect();
        let drop_public: Vec<PublicKey> = self
            .public
            .keys()
            .filter(|k| {
                in_scope(&k.tenant, &k.workload)
                    && !demand
                        .replicas
                        .get(&k.host())
                        .is_some_and(|ports| ports.contains(&(k.port, k.protocol)))
            })
            .cloned()
            .collect();
        for key in drop_hosts {
            if let Some(address) = self.hosts.remove(&key) {
                self.host_owners.remove(&(key.tenant, address));
            }
        }
        for key in drop_public {
            if let Some(e) = self.public.remove(&key) {
                self.public_owners
                    .remove(&(key.site, e.address, e.port, key.protocol));
            }
        }
        // Subnets of tenants whose claims are known, on sites where nothing of theirs remains.
        let touched: BTreeSet<&TenantId> = match workloads {
            None => BTreeSet::new(),
            Some(ws) => ws.iter().map(|(t, _)| t).collect(),
        };
        let used: BTreeSet<(&TenantId, &SiteId)> = self
            .hosts
            .keys()
            .chain(demand.replicas.keys())
            .map(|k| (&k.tenant, &k.site))
            .collect();
        let drop_subnets: Vec<(TenantId, SiteId)> = self
            .subnets
            .keys()
            .filter(|(t, s)| {
                (everything || gone(t) || touched.contains(t))
                    && self.coverage.tenant(t)
                    && !used.contains(&(t, s))
            })
            .cloned()
            .collect();
        for key in drop_subnets {
            if let Some(net) = self.subnets.remove(&key) {
                self.subnet_sites.remove(&(key.0, net));
            }
        }
        // Tenant-level claims of deleted tenants, and strays: claims that do not match their
        // holder's recorded network (a holder whose record is not loaded keeps its claims
        // unless everything is known).
        if self.coverage.pools() {
            let networks = &self.networks;
            let keep = |t: &TenantId, matches: &dyn Fn(&TenantNetwork) -> bool| {
                !gone(t) && networks.get(t).map_or(!everything, matches)
            };
            self.vnis.retain(|&v, t| keep(t, &|n| n.vni == v));
            self.tables.retain(|&v, t| keep(t, &|n| n.table == v));
            self.supernets.retain(|&v, t| keep(t, &|n| n.supernet == v));
        }
        let gone_tenants: Vec<TenantId> =
            self.networks.keys().filter(|t| gone(t)).cloned().collect();
        self.live = live;
        for t in gone_tenants {
            self.networks.remove(&t);
            self.live.remove(&t);
        }
    }

    fn insert_subnet(&mut self, tenant: TenantId, site: SiteId, subnet: Ipv4Net) {
        self.subnet_sites
            .insert((tenant.clone(), subnet), site.clone());
        self.subnets.insert((tenant, site), subnet);
    }

    fn insert_host(&mut self, key: HostKey, address: Ipv4Addr) {
        self.host_owners
            .insert((key.tenant.clone(), address), key.clone());
        self.hosts.insert(key, address);
    }

    fn insert_public(&mut self, key: PublicKey, endpoint: PublicEndpoint) {
        self.public_owners.insert(
            (
                key.site.clone(),
                endpoint.address,
                endpoint.port,
                key.protocol,
            ),
            key.clone(),
        );
        self.public.insert(key, endpoint);
    }
}

/// The public addresses of a gateway range, as `first..=last` (numbers; empty when
/// `first > last`): its host addresses less the first `reserved` ones.
fn public_hosts(range: Ipv4Net, reserved: u32) -> (u64, u64) {
    let start = u64::from(u32::from(range.addr()));
    let end = start + range.size() - 1;
    let (first, last) = if range.prefix_len() >= 31 {
        (start, end)
    } else {
        (start + 1, end - 1)
    };
    (first + u64::from(reserved), last)
}

#[cfg(test)]
mod tests;
