//! `[[host_network]]`: hosts that run containers or VMs for tenants, whose kernels the agent
//! owns (a bare-metal server's OS is the tenant's and is never configured). Each names the
//! server whose container and VM allocations it runs and its uplink to the leaf switch.

use meridian_common::config::ConfigError;
use meridian_common::ids::ServerId;
use serde::Deserialize;

use super::ServerConfig;
use super::gateway::{interface_name, netns_name};

/// One container/VM host.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostNetworkConfig {
    /// The server (one of `[[servers]]`) whose container and VM allocations run on this host.
    pub server: ServerId,
    /// The host's port cabled to the leaf switch (the server's access bond or port): the switch
    /// puts it in the tenant's segment; the agent makes it the port of the tenant's bridge.
    /// Must exist when the agent starts.
    pub uplink: String,
    /// A network namespace to configure instead of the agent's own (an emulated host).
    #[serde(default)]
    pub netns: Option<String>,
}

impl HostNetworkConfig {
    /// Where the replicas' namespaces are made: `mt-<server>-<tenant>`.
    pub fn tenant_netns_prefix(&self) -> String {
        format!("mt-{}-", self.server)
    }
}

/// Checks the keys that need no look at the kernel.
pub(super) fn validate(
    hosts: &[HostNetworkConfig],
    servers: &[ServerConfig],
) -> Result<(), ConfigError> {
    for (i, h) in hosts.iter().enumerate() {
        let key = |k: &str| format!("host_network[{i}].{k}");
        if !servers.iter().any(|s| s.id == h.server) {
            return Err(ConfigError::invalid(
                key("server"),
                format!(
                    "{} is not one of [[servers]] (the agent runs the host's allocations only on servers it manages)",
                    h.server
                ),
            ));
        }
        if hosts[..i].iter().any(|o| o.server == h.server) {
            return Err(ConfigError::invalid(
                key("server"),
                format!("{} has a host_network entry already", h.server),
            ));
        }
        if !interface_name(&h.uplink) {
            return Err(ConfigError::invalid(
                key("uplink"),
                "must be an interface name (1 to 15 letters, digits, '-', '_' or '.')",
            ));
        }
        if let Some(ns) = &h.netns
            && !netns_name(ns)
        {
            return Err(ConfigError::invalid(
                key("netns"),
                "must be a namespace name under /run/netns",
            ));
        }
    }
    Ok(())
}
