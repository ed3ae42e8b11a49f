//! Tenant network isolation: the three network drivers the reconciler sees as traits, and
//! their real implementations.
//!
//! - [`SwitchFabric`]: the leaf switches (and BlueField HBN), configured over the NVUE REST
//!   API. A tenant is a VRF with an L3 VNI, VLAN-to-L2-VNI mappings, access ports, an anycast
//!   SVI gateway and an ingress ACL; [`nvue`] renders that tree, detects drift, and its
//!   `NvueClient` applies it through the revision workflow.
//! - [`HostNetwork`]: a server's (or the site gateway's) kernel networking over netlink
//!   ([`host`]): a bridge and VXLAN device per tenant, veth pairs into per-tenant network
//!   namespaces, and on the gateway node per-tenant routing tables selected by policy rules.
//! - [`WanGateway`]: the site's WAN edge over nftables ([`gateway`]): DNAT of published
//!   endpoints, SNAT of tenant subnets, a default-drop forward chain, replaced atomically.
//!
//! Every driver takes the *whole* desired state and converges to it (replace semantics):
//! whatever it manages and is not desired is removed. Each returns a [`ChangeReport`]; an empty
//! report means the kernel or device already matched and nothing was touched, which is how
//! re-applying the same intent is shown to be a no-op. See `docs/network.md`.

pub mod gateway;
pub mod host;
pub mod nvue;

use std::fmt;

pub use gateway::GatewayTenant;
pub use gateway::{GatewayError, GatewaySpec, NftGateway};
pub use host::{HostNetworkError, HostNetworkSpec, HostTenant, NetlinkHost, RouterRole};
pub use nvue::{FabricError, FabricSpec, FabricTenant};

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
pub trait HostNetwork: Send + Sync + fmt::Debug {
    /// Converges the node to `desired`; tenants it manages that are not in `desired` are
    /// removed with everything of theirs.
    fn apply(&self, desired: &HostNetworkSpec) -> Result<ChangeReport, HostNetworkError>;
}

/// The site's WAN edge: published endpoints and tenant egress.
pub trait WanGateway: Send + Sync + fmt::Debug {
    /// Replaces the gateway's whole ruleset with the one `desired` renders, atomically, unless
    /// the installed one already matches.
    fn apply(&self, desired: &GatewaySpec) -> Result<ChangeReport, GatewayError>;
    /// Removes the gateway's ruleset entirely.
    fn remove(&self) -> Result<ChangeReport, GatewayError>;
}

/// The switch fabric (leaf switches or DPUs speaking NVUE).
pub trait SwitchFabric: Send + Sync + fmt::Debug {
    /// Renders `desired` in full and applies it as one revision, unless the applied
    /// configuration already matches.
    fn apply(&self, desired: &FabricSpec) -> Result<ChangeReport, FabricError>;
    /// Differences between the applied configuration and `desired` (empty: no drift).
    fn drift(&self, desired: &FabricSpec) -> Result<Vec<String>, FabricError>;
}
