//! Tenant networks: VNIs, routing tables, supernets, per-site subnets, replica addresses and
//! public endpoints, allocated from configured pools.
//!
//! [`NetworkState`] is the allocator: a pure, in-memory structure (no IO, no clock) loaded from
//! the `net/` claims and the tenants' [`Tenant::network`](meridian_common::model::Tenant), changed
//! by [`NetworkState::reconcile`] and written back as [`NetworkClaim`] records by the publish
//! step (central's publisher).
//!
//! # Guarantees
//!
//! - **No collisions.** A VNI, a routing table and a supernet belong to one tenant; a subnet to
//!   one (tenant, site); a replica address to one replica; a public `ip:port/protocol` of a site
//!   to one exposure. Every such resource is a key in the store (`net/...`, see [`claims`]),
//!   created with an "absent" compare, so two publishers cannot take the same one even if their
//!   in-memory views are stale.
//! - **Within the pools.** VNIs and tables come from [`NetworkPools::vni`] and
//!   [`NetworkPools::table`] (tables 0 and 253-255 are never handed out), supernets are aligned
//!   blocks of [`NetworkPools::supernets`], subnets aligned blocks of the tenant's supernet,
//!   public addresses host addresses of the site's `gateway_range`.
//! - **Deterministic.** Every allocation takes the lowest free value, and requests are served in
//!   key order, so the same sequence of requests from the same state gives the same result.
//! - **Released, then reusable.** What nothing demands any more is released at the end of a
//!   reconcile, after the allocations: a value released in one run is free from the next run
//!   on, never handed to someone else in the run that released it (so an intent still using it
//!   and an intent reusing it are never published together).
//! - **Typed exhaustion.** Running out is [`NetworkError::Exhausted`], naming the pool.

mod search;
mod state;

use std::fmt;
use std::net::Ipv4Addr;

use meridian_common::config::ConfigError;
use meridian_common::ids::{SiteId, TenantId};
use meridian_common::model::Ipv4Net;
use meridian_common::validate::limits;
use serde::Deserialize;

pub use meridian_common::model::{HostKey, NetworkClaim, PublicEndpoint, PublicKey};
pub use state::{Coverage, Demand, NetworkState, Reconciled, ReleaseScope};

/// An inclusive range of numbers (`first..=last`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NumberRange {
    /// The lowest value.
    pub first: u32,
    /// The highest value.
    pub last: u32,
}

impl fmt::Display for NumberRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..={}", self.first, self.last)
    }
}

/// The pools tenant networks are carved from (the `networks` section of central's config).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworkPools {
    /// VXLAN network identifiers, one per tenant.
    pub vni: NumberRange,
    /// Routing (VRF) table numbers, one per tenant; 0 and 253-255 are skipped.
    pub table: NumberRange,
    /// Prefixes tenant supernets are carved from, in order.
    pub supernets: Vec<Ipv4Net>,
    /// Prefix length of a tenant's supernet.
    pub supernet_prefix: u8,
    /// Prefix length of a tenant's subnet on one site (inside its supernet).
    pub subnet_prefix: u8,
    /// Host addresses at the start of each site's `gateway_range` kept for the gateway itself
    /// (its egress address); public endpoints never use them.
    pub gateway_reserved: u32,
    /// Public ports used when an exposure's own port is taken on every public address.
    pub fallback_ports: NumberRange,
}

impl Default for NetworkPools {
    fn default() -> Self {
        NetworkPools {
            vni: NumberRange {
                first: 10_000,
                last: 16_000_000,
            },
            table: NumberRange {
                first: 1_000,
                last: 250_000,
            },
            supernets: vec![Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).expect("/8 is valid")],
            supernet_prefix: 16,
            subnet_prefix: 24,
            gateway_reserved: 1,
            fallback_ports: NumberRange {
                first: 20_000,
                last: 65_535,
            },
        }
    }
}

impl NetworkPools {
    /// Checks the pools, naming the key (under `networks.`) of the first problem.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |key: &str, message: String| {
            Err(ConfigError::invalid(format!("networks.{key}"), message))
        };
        for (key, r) in [("vni", self.vni), ("table", self.table)] {
            if r.first > r.last {
                return bad(
                    key,
                    format!("first ({}) must not be above last ({})", r.first, r.last),
                );
            }
        }
        if self.vni.first == 0 || self.vni.last > limits::MAX_VNI {
            return bad(
                "vni",
                format!("must lie in 1..={}, got {}", limits::MAX_VNI, self.vni),
            );
        }
        if (self.table.first..=self.table.last).all(|t| limits::RESERVED_TABLES.contains(&t)) {
            return bad("table", "holds only reserved tables (0, 253-255)".into());
        }
        if self.supernets.is_empty() {
            return bad(
                "supernets",
                "must list at least one prefix (e.g. 10.0.0.0/8)".into(),
            );
        }
        for (i, a) in self.supernets.iter().enumerate() {
            if a.prefix_len() > self.supernet_prefix {
                return bad(
                    "supernets",
                    format!("{a} is smaller than one /{} supernet", self.supernet_prefix),
                );
            }
            if let Some(b) = self.supernets[..i].iter().find(|b| b.overlaps(a)) {
                return bad("supernets", format!("{a} overlaps {b}"));
            }
        }
        if self.subnet_prefix < self.supernet_prefix || self.subnet_prefix > 30 {
            return bad(
                "subnet_prefix",
                format!(
                    "must lie in {}..=30 (inside the /{} supernet, with room for a gateway and a host), got {}",
                    self.supernet_prefix, self.supernet_prefix, self.subnet_prefix
                ),
            );
        }
        let ports = self.fallback_ports;
        if ports.first == 0 || ports.last > u32::from(u16::MAX) || ports.first > ports.last {
            return bad(
                "fallback_ports",
                format!("must lie in 1..=65535, got {ports}"),
            );
        }
        Ok(())
    }
}

/// A tenant's subnet on one site and its gateway (the subnet's first host address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SiteSubnet {
    /// The subnet.
    pub subnet: Ipv4Net,
    /// The gateway address.
    pub gateway: Ipv4Addr,
}

impl SiteSubnet {
    /// The subnet with its gateway at the first host address.
    pub fn new(subnet: Ipv4Net) -> Self {
        SiteSubnet {
            subnet,
            gateway: Ipv4Addr::from(u32::from(subnet.addr()) + 1),
        }
    }
}

/// A pool values are allocated from, for error messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pool {
    /// Tenant VNIs.
    Vni(NumberRange),
    /// Tenant routing tables.
    Table(NumberRange),
    /// Tenant supernets.
    Supernets {
        /// The configured prefixes.
        pools: Vec<Ipv4Net>,
        /// The supernet size.
        prefix_len: u8,
    },
    /// One tenant's site subnets.
    Subnets {
        /// The tenant.
        tenant: TenantId,
        /// Its supernet.
        supernet: Ipv4Net,
        /// The subnet size.
        prefix_len: u8,
    },
    /// Replica addresses of one tenant's subnet on one site.
    Hosts {
        /// The tenant.
        tenant: TenantId,
        /// The site.
        site: SiteId,
        /// The subnet.
        subnet: Ipv4Net,
    },
    /// Public endpoints of one site's gateway.
    Public {
        /// The site.
        site: SiteId,
        /// Its gateway range.
        range: Ipv4Net,
    },
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pool::Vni(r) => write!(f, "the VNI pool {r} (config networks.vni)"),
            Pool::Table(r) => write!(f, "the routing table pool {r} (config networks.table)"),
            Pool::Supernets { pools, prefix_len } => {
                let list: Vec<String> = pools.iter().map(ToString::to_string).collect();
                write!(
                    f,
                    "the supernet pool (/{prefix_len} blocks of {}; config networks.supernets)",
                    list.join(", ")
                )
            }
            Pool::Subnets {
                tenant,
                supernet,
                prefix_len,
            } => write!(
                f,
                "the site subnets of tenant {tenant} (/{prefix_len} blocks of {supernet}; one per site it uses)"
            ),
            Pool::Hosts {
                tenant,
                site,
                subnet,
            } => write!(
                f,
                "the replica addresses of tenant {tenant} on site {site} ({subnet})"
            ),
            Pool::Public { site, range } => {
                write!(
                    f,
                    "the public endpoints of site {site} (gateway range {range})"
                )
            }
        }
    }
}

/// Why a network allocation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// Every value of the pool is taken.
    #[error("{pool} is exhausted; widen the pool or delete what no longer needs it")]
    Exhausted {
        /// The pool.
        pool: Pool,
    },
    /// A tenant's recorded network uses a value another tenant holds (set by hand?).
    #[error(
        "tenant {tenant}'s network uses {what}, which tenant {holder} holds; give one of them another network"
    )]
    Conflict {
        /// The tenant whose network collides.
        tenant: TenantId,
        /// The other tenant.
        holder: TenantId,
        /// The colliding value (`VNI 1001`, `table 1001`, `supernet 10.64.0.0/16`).
        what: String,
    },
    /// The site is unknown (no site record), so it has no gateway range.
    #[error("site {site} is unknown, so it has no public gateway range; re-place the workload")]
    UnknownSite {
        /// The site.
        site: SiteId,
    },
    /// The allocator was asked about a pool the caller did not load (a bug in the caller).
    #[error("{what} was not loaded before allocating from it")]
    NotLoaded {
        /// What is missing.
        what: String,
    },
}
