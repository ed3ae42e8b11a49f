//! Site intents: everything one site must look like, at one generation.
//!
//! The intent compiler writes a [`SiteIntent`] per site; the distributor ships the newest one
//! and the agent reconciles towards it. Generations only grow, and an agent refuses an older
//! one. Allocation windows travel inside the intent so a disconnected agent still starts and
//! ends allocations on time. Consistency (no double-booked GPU, valid VNIs, generation `>= 1`)
//! is checked by [`validate_site_intent`](crate::validate::validate_site_intent).

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::ids::{
    Generation, Name, PoolId, RequestId, ServerId, SiteId, TenantId, TimeWindow, WorkloadId,
};
use crate::net::{Ipv4Net, Protocol};
use crate::placement::GpuSlot;

/// One tenant's network on this site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantNetworkIntent {
    /// The tenant.
    pub tenant: TenantId,
    /// VXLAN network identifier, `1..=16_777_215`.
    pub vni: u32,
    /// VRF routing table.
    pub table: u32,
    /// The tenant's subnet on this site.
    pub subnet: Ipv4Net,
    /// The gateway address inside `subnet`.
    pub gateway: Ipv4Addr,
}

/// How an allocation runs on its server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationMode {
    /// The whole server is the tenant's.
    BareMetal,
    /// A virtual machine.
    VirtualMachine,
    /// A container.
    Container,
}

/// A workload replica's share of one server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Allocation {
    /// The workload.
    pub workload: WorkloadId,
    /// Its owner.
    pub tenant: TenantId,
    /// The server.
    pub server: ServerId,
    /// The GPU share.
    pub slot: GpuSlot,
    /// How it runs.
    pub mode: AllocationMode,
    /// Boot or container image URL.
    #[serde(default)]
    pub image: Option<String>,
    /// When it runs (absent: now on, until removed from the intent).
    #[serde(default)]
    pub window: Option<TimeWindow>,
    /// The replica's address in its tenant's subnet on this site (absent in intents written
    /// before addresses travelled in the intent). A host that runs containers or VMs for the
    /// tenant gives it to the replica; a bare-metal tenant configures its own OS with it.
    #[serde(default)]
    pub address: Option<Ipv4Addr>,
}

/// One of a tenant's other sites, as this site's gateway reaches it: the tenant's subnet
/// there, behind the site-to-site tunnel between the two sites' gateways. The compiler adds
/// one per other site where the tenant has a subnet, so each gateway builds its tunnels alone,
/// also while cut off from central.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantPeer {
    /// The tenant.
    pub tenant: TenantId,
    /// The other site.
    pub site: SiteId,
    /// The other site's tunnel endpoint (its gateway's WAN address).
    pub endpoint: Ipv4Addr,
    /// The tenant's subnet there.
    pub subnet: Ipv4Net,
    /// The tenant's gateway address there (the next hop through the tunnel).
    pub gateway: Ipv4Addr,
}

/// A public port forwarded to a tenant backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Exposure {
    /// The tenant.
    pub tenant: TenantId,
    /// The workload it serves.
    pub workload: WorkloadId,
    /// Public address on the site's gateway.
    pub public_ip: Ipv4Addr,
    /// Public port.
    pub public_port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
    /// Backend address in the tenant's subnet.
    pub backend_ip: Ipv4Addr,
    /// Backend port.
    pub backend_port: u16,
}

/// A workload's published endpoint as a tenant sees it: one exposure of a site's intent, the
/// intent generation that carries it, and whether the site reported that generation applied
/// (its gateway publishes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadEndpoint {
    /// The site whose gateway publishes it.
    pub site: SiteId,
    /// The public address and port, and the replica's address and port behind them.
    pub exposure: Exposure,
    /// The generation of the site's intent that carries it.
    pub generation: Generation,
    /// The site reported that generation (or a later one) applied.
    pub applied: bool,
    /// With endpoint names configured, the workload's DNS name
    /// (`<workload>.<tenant>.<zone>`), whose A records hold the public addresses of its
    /// endpoints at the sites that publish them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_name: Option<String>,
}

/// A storage volume with a quota.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageVolume {
    /// The owner.
    pub tenant: TenantId,
    /// Volume name, unique per tenant.
    pub name: Name,
    /// Quota in MiB.
    pub size_mib: u64,
}

/// A power action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PowerAction {
    /// Power on.
    On,
    /// Power off.
    Off,
    /// Power cycle.
    Cycle,
    /// Restart now (Redfish `ForceRestart`; from off, a plain power-on).
    Reboot,
}

/// What to do to a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerActionKind {
    /// Change power.
    Power(PowerAction),
    /// Install an image (through BMC virtual media).
    Provision {
        /// Image URL.
        image: String,
    },
    /// Wipe it.
    Clean,
}

/// An action on one server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerAction {
    /// The server.
    pub server: ServerId,
    /// The action.
    pub action: ServerActionKind,
    /// The operator's request it carries out (`>= 1`, unique within an intent): the agent
    /// does each request at most once, however often the intent is applied.
    pub request: RequestId,
}

/// A server's pool membership.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolAssignment {
    /// The server.
    pub server: ServerId,
    /// The pool.
    pub pool: PoolId,
}

/// Everything one site must look like.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteIntent {
    /// The site.
    pub site: SiteId,
    /// The generation, `>= 1`, growing with every change.
    pub generation: Generation,
    /// Tenant networks.
    #[serde(default)]
    pub networks: Vec<TenantNetworkIntent>,
    /// Allocations.
    #[serde(default)]
    pub allocations: Vec<Allocation>,
    /// Public port exposures.
    #[serde(default)]
    pub exposures: Vec<Exposure>,
    /// Storage volumes.
    #[serde(default)]
    pub volumes: Vec<StorageVolume>,
    /// Server actions.
    #[serde(default)]
    pub server_actions: Vec<ServerAction>,
    /// Pool assignments.
    #[serde(default)]
    pub pools: Vec<PoolAssignment>,
    /// This site's tunnel endpoint (its gateway's WAN address, the first host address of its
    /// gateway range): the local end of the site-to-site tunnels to `peers`.
    #[serde(default)]
    pub tunnel_endpoint: Option<Ipv4Addr>,
    /// The tenants' subnets at their other sites.
    #[serde(default)]
    pub peers: Vec<TenantPeer>,
}

impl SiteIntent {
    /// The exposures a site's gateway publishes at `now`: those of a workload with an
    /// allocation here whose window is open (or has no window), and those of a workload with
    /// no allocation here at all; so a reservation's endpoint appears when its window opens
    /// and goes when it ends. With the next instant that changes.
    pub fn published_exposures(
        &self,
        now: crate::ids::Timestamp,
    ) -> (Vec<Exposure>, Option<crate::ids::Timestamp>) {
        let mut next: Option<crate::ids::Timestamp> = None;
        let mut out = Vec::new();
        for e in &self.exposures {
            let mut any = false;
            let mut open = false;
            for a in self
                .allocations
                .iter()
                .filter(|a| a.tenant == e.tenant && a.workload == e.workload)
            {
                any = true;
                let (active, change) = crate::ids::window_state(a.window, now);
                open |= active;
                if let Some(t) = change {
                    next = Some(next.map_or(t, |n| n.min(t)));
                }
            }
            if open || !any {
                out.push(e.clone());
            }
        }
        (out, next)
    }

    /// An intent of `site` at `generation` that asks for nothing (no networks, allocations,
    /// exposures, volumes, actions or pools).
    pub fn empty(site: SiteId, generation: Generation) -> Self {
        SiteIntent {
            site,
            generation,
            networks: vec![],
            allocations: vec![],
            exposures: vec![],
            volumes: vec![],
            server_actions: vec![],
            pools: vec![],
            tunnel_endpoint: None,
            peers: vec![],
        }
    }
}
