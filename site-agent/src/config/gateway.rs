//! `[gateway]`: the site's gateway node, whose kernel the agent owns: its tenant networks
//! (bridge, VXLAN towards the leaf VTEPs, a routing table and rules per tenant) and its WAN edge
//! (published endpoints, tenant egress) in nftables.

use std::net::Ipv4Addr;

use meridian_common::config::ConfigError;
use meridian_common::model::Ipv4Net;
use serde::Deserialize;

use super::SwitchConfig;

/// The gateway node. Absent: the agent configures no kernel networking.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// The WAN-facing interface (`wan0`): must exist when the agent starts.
    pub wan_interface: String,
    /// The WAN next hop, every tenant table's default route.
    pub wan_next_hop: Ipv4Addr,
    /// The address tenant egress is translated to (SNAT).
    pub egress_address: Ipv4Addr,
    /// The site's public range: published endpoints must lie in it (central allocates them
    /// from the site's `gateway_range`, which should be the same).
    #[serde(default)]
    pub public_range: Option<Ipv4Net>,
    /// This node's underlay (VTEP) address.
    pub underlay_address: Ipv4Addr,
    /// The VTEPs tenant traffic of the site's servers comes from. Default: the `vtep` of
    /// every `[[switches]]` entry.
    #[serde(default)]
    pub leaf_vteps: Vec<Ipv4Addr>,
    /// A network namespace to configure instead of the agent's own (an emulated site).
    #[serde(default)]
    pub netns: Option<String>,
    /// The nftables table the agent owns (`ip <table>`).
    #[serde(default = "default_table")]
    pub nft_table: String,
}

fn default_table() -> String {
    meridian_drivers::gateway::DEFAULT_TABLE.to_owned()
}

/// Whether `ns` can name a namespace under /run/netns.
pub(super) fn netns_name(ns: &str) -> bool {
    !(ns.is_empty() || ns.len() > 255 || ns == "." || ns == ".." || ns.contains(['/', '\0']))
}

pub(super) fn interface_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() < 16
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl GatewayConfig {
    /// The leaf VTEPs: as given, else the switches'.
    pub fn leaf_vteps(&self, switches: &[SwitchConfig]) -> Vec<Ipv4Addr> {
        if self.leaf_vteps.is_empty() {
            switches.iter().map(|s| s.vtep).collect()
        } else {
            self.leaf_vteps.clone()
        }
    }

    /// Checks the keys that need no look at the kernel.
    pub(super) fn validate(&self, switches: &[SwitchConfig]) -> Result<(), ConfigError> {
        if !interface_name(&self.wan_interface) {
            return Err(ConfigError::invalid(
                "gateway.wan_interface",
                "must be an interface name (1 to 15 letters, digits, '-', '_' or '.')",
            ));
        }
        if !interface_name(&self.nft_table) {
            return Err(ConfigError::invalid(
                "gateway.nft_table",
                "must be a table name (1 to 15 letters, digits, '-', '_' or '.')",
            ));
        }
        if let Some(ns) = &self.netns
            && !netns_name(ns)
        {
            return Err(ConfigError::invalid(
                "gateway.netns",
                "must be a namespace name under /run/netns",
            ));
        }
        if let Some(range) = self.public_range {
            for (i, s) in switches.iter().enumerate() {
                if range.overlaps(&s.private_range) {
                    return Err(ConfigError::invalid(
                        "gateway.public_range",
                        format!(
                            "{range} overlaps switches[{i}].private_range {} (the tenants' range)",
                            s.private_range
                        ),
                    ));
                }
            }
        }
        if self.leaf_vteps(switches).contains(&self.underlay_address) {
            return Err(ConfigError::invalid(
                "gateway.underlay_address",
                format!(
                    "{} is a leaf VTEP; the gateway needs its own",
                    self.underlay_address
                ),
            ));
        }
        Ok(())
    }
}
