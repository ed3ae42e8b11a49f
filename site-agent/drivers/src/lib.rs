//! Meridian's device drivers: everything the site agent knows about talking to hardware, and
//! nothing about why it talks to it. Each driver is an `async` trait with its real
//! implementation beside it; vendor differences live beside the driver they affect.
//!
//! Compute:
//!
//! - [`Bmc`]: a server's baseboard management controller over DMTF Redfish ([`bmc::redfish`]):
//!   discovery by following links, power with the reset types the BMC advertises, one-time and
//!   continuous boot override, virtual media, hardware and firmware inventory, firmware update
//!   tasks. Vendor differences live in [`bmc::quirks`] and nowhere else.
//! - [`Dpu`]: a BlueField-3 DPU through its own BMC ([`dpu`]): mode (DPU/NIC, effective after a
//!   reset), BFB installation with RShim ownership, firmware inventory.
//! - [`GpuInventory`]: the node's NVIDIA GPUs through NVML ([`gpu::nvml`]): devices, memory,
//!   utilisation, MIG mode and MIG devices. A node without the library or driver reports "no
//!   GPUs" as a typed answer, not an error, and the agent keeps running.
//!
//! Network (see `docs/network.md`):
//!
//! - [`SwitchFabric`]: the leaf switches (and BlueField HBN), configured over the NVUE REST
//!   API. A tenant is a VRF with an L3 VNI, VLAN-to-L2-VNI mappings, access ports, an anycast
//!   SVI gateway and an ingress ACL; [`nvue`] renders that tree, detects drift, and its
//!   `NvueClient` applies it through the revision workflow.
//! - [`HostNetwork`]: a node's kernel networking over netlink ([`host`]): a bridge and VXLAN
//!   device per tenant (or, on a host in access mode, its uplink port in the tenant's bridge),
//!   veth pairs into per-tenant network namespaces, and on the gateway node per-tenant routing
//!   tables selected by policy rules and per-tenant site-to-site tunnels to the tenant's other
//!   sites.
//! - [`WanGateway`]: the site's WAN edge over nftables ([`gateway`]): DNAT of published
//!   endpoints, SNAT of tenant subnets, a default-drop forward chain that also lets each tenant
//!   through its own site-to-site tunnel, site-to-site tunnel packets only from the peer
//!   gateways, replaced atomically.
//!
//! Storage:
//!
//! - [`StorageArray`]: a shared array's NFS volumes for tenants ([`storage`]): each volume with
//!   a hard quota and an export policy admitting only the tenant's subnets, converged
//!   idempotently. [`OntapArray`] speaks the NetApp ONTAP REST API, waiting for its
//!   asynchronous jobs.
//!
//! Every method is `async`, bounded in time, and never blocks the runtime: a driver that must
//! run on a thread of its own (entering a network namespace) does so without a runtime of its
//! own. The network drivers take the *whole* desired state and converge to it (replace
//! semantics): whatever they manage and is not desired is removed, and each returns a
//! [`ChangeReport`] (empty: the device already matched and nothing was touched).
//!
//! Callers hold `Arc<dyn Trait>`; the emulators (`meridian-emulators`) implement the same
//! traits. This crate depends on `meridian-common` only among Meridian's crates and never on
//! the agent or its reconciler (checked by `sim/tests/architecture.rs`). See
//! `docs/compute-drivers.md` and `docs/network.md`.

pub mod bmc;
pub mod dpu;
pub mod gateway;
pub mod gpu;
pub mod host;
pub mod http_client;
pub mod nvue;
pub mod storage;

use std::fmt;

use async_trait::async_trait;

pub use bmc::{Bmc, BmcError};
pub use dpu::{Dpu, DpuError};
pub use gateway::{
    Counters as GatewayCounters, GatewayError, GatewaySpec, GatewayTenant, NftGateway,
};
pub use gpu::{GpuError, GpuInventory};
pub use host::{HostNetworkError, HostNetworkSpec, HostPeer, HostTenant, NetlinkHost, RouterRole};
pub use nvue::{FabricError, FabricSpec, FabricTenant};
pub use storage::{
    ArrayCapacity, ArrayVolume, OntapArray, OntapConfig, StorageArray, StorageError, VolumeWant,
};

/// What a driver changed while converging. Empty when the state already matched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeReport {
    /// One line per change made, in the order made (`"add link mbr10101"`).
    pub changes: Vec<String>,
}

impl ChangeReport {
    /// Whether anything was changed.
    pub fn changed(&self) -> bool {
        !self.changes.is_empty()
    }

    pub(crate) fn push(&mut self, change: impl Into<String>) {
        self.changes.push(change.into());
    }
}

impl fmt::Display for ChangeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.changes.is_empty() {
            return f.write_str("no changes");
        }
        write!(
            f,
            "{} change(s): {}",
            self.changes.len(),
            self.changes.join("; ")
        )
    }
}

/// A node's kernel networking for tenants (bridges, VXLAN, veths, tables, rules).
#[async_trait]
pub trait HostNetwork: Send + Sync + fmt::Debug {
    /// Converges the node to `desired`; tenants it manages that are not in `desired` are
    /// removed with everything of theirs.
    async fn apply(&self, desired: &HostNetworkSpec) -> Result<ChangeReport, HostNetworkError>;
}

/// The site's WAN edge: published endpoints and tenant egress.
#[async_trait]
pub trait WanGateway: Send + Sync + fmt::Debug {
    /// Replaces the gateway's whole ruleset with the one `desired` renders, atomically, unless
    /// the installed one already matches.
    async fn apply(&self, desired: &GatewaySpec) -> Result<ChangeReport, GatewayError>;
    /// Removes the gateway's ruleset entirely.
    async fn remove(&self) -> Result<ChangeReport, GatewayError>;
    /// The ruleset's counters since it was installed (replacing the ruleset starts them from
    /// zero); `None` when no ruleset is installed.
    async fn counters(&self) -> Result<Option<gateway::Counters>, GatewayError>;
}

/// The switch fabric (leaf switches or DPUs speaking NVUE).
#[async_trait]
pub trait SwitchFabric: Send + Sync + fmt::Debug {
    /// Renders `desired` in full and applies it as one revision, unless the applied
    /// configuration already matches.
    async fn apply(&self, desired: &FabricSpec) -> Result<ChangeReport, FabricError>;
    /// Differences between the applied configuration and `desired` (empty: no drift).
    async fn drift(&self, desired: &FabricSpec) -> Result<Vec<String>, FabricError>;
}
