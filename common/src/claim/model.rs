//! Tenant-network claims: one allocated network resource (a VNI, a routing table, a supernet,
//! a site subnet, a replica address, a public endpoint) and its owner. The allocator in
//! `meridian-plan` hands them out; `meridian-store` keeps one record per claim under `net/`,
//! keyed by [`NetworkClaim::path`]:
//!
//! | path | holds | listed by |
//! |---|---|---|
//! | `vni/{vni:08}` | the tenant | `vni/` |
//! | `table/{table:010}` | the tenant | `table/` |
//! | `supernet/{a.b.c.d}_{len}` | the tenant | `supernet/` |
//! | `subnet/{tenant}/{a.b.c.d}_{len}` | the site | tenant: `subnet/{tenant}/` |
//! | `host/{tenant}/{a.b.c.d}` | site, workload, replica | tenant: `host/{tenant}/` |
//! | `public/{site}/{a.b.c.d}_{port:05}_{tcp\|udp}` | tenant, workload, replica, backend port | site: `public/{site}/` |
//!
//! The path *is* the resource, so a store-enforced "absent" compare on create makes each one
//! collision-free across publishers; the record names the owner, so the reverse maps are built
//! by listing. Numbers are zero-padded so key order is numeric order.

use std::net::Ipv4Addr;

use crate::ids::{SiteId, TenantId, WorkloadId};
use crate::net::{Ipv4Net, Protocol};

// The validator lives in `validate.rs`; re-exported so that `model::claim::validate_claim`
// keeps its public path.
pub use super::validate::validate_claim;

/// One replica of a workload on one site: what an address is allocated for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HostKey {
    /// The owner.
    pub tenant: TenantId,
    /// The site the replica runs on.
    pub site: SiteId,
    /// The workload.
    pub workload: WorkloadId,
    /// The replica number.
    pub replica: u32,
}

/// One exposed port of one replica: what a public endpoint is allocated for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicKey {
    /// The site whose gateway publishes it.
    pub site: SiteId,
    /// The owner.
    pub tenant: TenantId,
    /// The workload.
    pub workload: WorkloadId,
    /// The replica number.
    pub replica: u32,
    /// The backend (workload) port.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

impl PublicKey {
    /// The replica this exposure belongs to.
    pub fn host(&self) -> HostKey {
        HostKey {
            tenant: self.tenant.clone(),
            site: self.site.clone(),
            workload: self.workload.clone(),
            replica: self.replica,
        }
    }
}

/// A public address and port on a site's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PublicEndpoint {
    /// The public address.
    pub address: Ipv4Addr,
    /// The public port.
    pub port: u16,
}

/// One allocated network resource and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkClaim {
    /// A tenant's VNI.
    Vni {
        /// The VNI.
        vni: u32,
        /// The owner.
        tenant: TenantId,
    },
    /// A tenant's routing table.
    Table {
        /// The table number.
        table: u32,
        /// The owner.
        tenant: TenantId,
    },
    /// A tenant's supernet.
    Supernet {
        /// The prefix.
        supernet: Ipv4Net,
        /// The owner.
        tenant: TenantId,
    },
    /// A tenant's subnet on one site.
    Subnet {
        /// The owner.
        tenant: TenantId,
        /// The prefix (inside the tenant's supernet).
        subnet: Ipv4Net,
        /// The site.
        site: SiteId,
    },
    /// A replica's address in its tenant's subnet.
    Host {
        /// The replica.
        key: HostKey,
        /// Its address.
        address: Ipv4Addr,
    },
    /// A public endpoint on a site's gateway.
    Public {
        /// The exposure.
        key: PublicKey,
        /// The public address and port.
        endpoint: PublicEndpoint,
    },
}

fn net_key(net: &Ipv4Net) -> String {
    format!("{}_{}", net.addr(), net.prefix_len())
}

impl NetworkClaim {
    /// The key path under `net/`.
    pub fn path(&self) -> String {
        match self {
            NetworkClaim::Vni { vni, .. } => format!("vni/{vni:08}"),
            NetworkClaim::Table { table, .. } => format!("table/{table:010}"),
            NetworkClaim::Supernet { supernet, .. } => format!("supernet/{}", net_key(supernet)),
            NetworkClaim::Subnet { tenant, subnet, .. } => {
                format!("subnet/{tenant}/{}", net_key(subnet))
            }
            NetworkClaim::Host { key, address } => format!("host/{}/{address}", key.tenant),
            NetworkClaim::Public { key, endpoint } => format!(
                "public/{}/{}_{:05}_{}",
                key.site,
                endpoint.address,
                endpoint.port,
                key.protocol.as_str()
            ),
        }
    }

    /// The tenant that holds it.
    pub fn tenant(&self) -> &TenantId {
        match self {
            NetworkClaim::Vni { tenant, .. }
            | NetworkClaim::Table { tenant, .. }
            | NetworkClaim::Supernet { tenant, .. }
            | NetworkClaim::Subnet { tenant, .. } => tenant,
            NetworkClaim::Host { key, .. } => &key.tenant,
            NetworkClaim::Public { key, .. } => &key.tenant,
        }
    }

    /// The listing parent of every tenant-level claim of one kind (`vni`, `table`,
    /// `supernet`).
    pub fn pool_parents() -> [String; 3] {
        ["vni", "table", "supernet"].map(str::to_owned)
    }

    /// The listing parent of a tenant's subnet claims.
    pub fn subnets_of(tenant: &TenantId) -> String {
        format!("subnet/{tenant}")
    }

    /// The listing parent of a tenant's host claims.
    pub fn hosts_of(tenant: &TenantId) -> String {
        format!("host/{tenant}")
    }

    /// The listing parent of a site's public endpoint claims.
    pub fn public_of(site: &SiteId) -> String {
        format!("public/{site}")
    }
}
