//! `[[switches]]`: the site's leaf switches (NVUE REST API), and `[servers.switch]`: how a
//! server is cabled to one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use meridian_common::config::ConfigError;
use meridian_common::model::Ipv4Net;
use serde::Deserialize;

use super::{Access, ServerConfig};
use crate::reconcile::fabric::DEFAULT_L3_VNI_BASE;

/// One leaf switch.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchConfig {
    /// Its name (`leaf-1`): servers name it, reports say `switch/<name>`.
    pub name: String,
    /// `https://leaf-1:8765`, or `http://127.0.0.1:<port>` for an emulator.
    pub nvue_url: String,
    /// A user of the switch in group `nvapply`; with `password`, or `credentials_file`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// PEM file with the switch's CA (or its certificate); required for `https`.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// A JSON file with the switch's own configuration that is not about tenants (`system`,
    /// management interface, ...): merged under the tenants, so replacing the tree keeps it.
    #[serde(default)]
    pub base_config_file: Option<PathBuf>,
    /// The VTEP (loopback) address, also the BGP router id.
    pub vtep: Ipv4Addr,
    /// The switch's BGP autonomous system.
    pub asn: u32,
    /// Fabric uplinks (BGP unnumbered, L2VPN EVPN).
    #[serde(default)]
    pub uplinks: Vec<String>,
    /// The range a tenant may not reach beyond its own subnet (default `10.0.0.0/8`).
    #[serde(default = "default_private_range")]
    pub private_range: Ipv4Net,
    /// A tenant VRF's L3 VNI is this plus its VRF table (the same on every switch).
    #[serde(default = "default_l3_vni_base")]
    pub l3_vni_base: u32,
    /// The switch's own SVI address is this many addresses below each tenant subnet's
    /// broadcast (default 1; two switches of one site need different offsets).
    #[serde(default = "default_svi_offset")]
    pub svi_offset: u32,
}

fn default_private_range() -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, 0, 0, 0), 8).expect("valid")
}

fn default_l3_vni_base() -> u32 {
    DEFAULT_L3_VNI_BASE
}

fn default_svi_offset() -> u32 {
    1
}

impl fmt::Debug for SwitchConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SwitchConfig")
            .field("name", &self.name)
            .field("nvue_url", &self.nvue_url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("credentials_file", &self.credentials_file)
            .field("vtep", &self.vtep)
            .field("asn", &self.asn)
            .field("uplinks", &self.uplinks)
            .finish_non_exhaustive()
    }
}

/// A server's cabling to a leaf switch.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SwitchPortConfig {
    /// The switch's `name`.
    pub name: String,
    /// The access bond on the switch (`bond1`).
    pub bond: String,
    /// Its member ports (`["swp1"]`).
    pub ports: Vec<String>,
}

impl SwitchConfig {
    pub(crate) fn access(&self) -> Access<'_> {
        Access {
            url_key: "nvue_url",
            what: "switch",
            url: &self.nvue_url,
            may_be_insecure: false,
            username: &self.username,
            password: &self.password,
            credentials_file: &self.credentials_file,
            tls_ca_file: &self.tls_ca_file,
            tls_insecure: false,
            basic_auth: true,
        }
    }
}

/// An interface name as Linux (and so NVUE) accepts it.
fn interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

/// Checks `switches` and the servers' `switch` tables against them.
pub(super) fn validate(
    switches: &[SwitchConfig],
    servers: &[ServerConfig],
) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    for (i, s) in switches.iter().enumerate() {
        let key = |k: &str| format!("switches[{i}].{k}");
        if s.name.is_empty()
            || !s
                .name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::invalid(
                key("name"),
                "must be lowercase letters, digits and '-'",
            ));
        }
        if !names.insert(s.name.as_str()) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("switch {} is listed twice", s.name),
            ));
        }
        s.access().validate(&key)?;
        if s.asn == 0 || s.asn == u32::MAX {
            return Err(ConfigError::invalid(key("asn"), "must be 1 to 4294967294"));
        }
        if s.svi_offset == 0 {
            return Err(ConfigError::invalid(
                key("svi_offset"),
                "must be at least 1 (1: the last usable address)",
            ));
        }
        if s.l3_vni_base == 0 || s.l3_vni_base >= meridian_common::validate::limits::MAX_VNI {
            return Err(ConfigError::invalid(
                key("l3_vni_base"),
                "must leave room for VRF tables below 16777215",
            ));
        }
        if let Some(u) = s.uplinks.iter().find(|u| !interface_name(u)) {
            return Err(ConfigError::invalid(
                key("uplinks"),
                format!("{u:?} is not an interface name"),
            ));
        }
    }
    let mut cabled: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (i, s) in servers.iter().enumerate() {
        let Some(p) = &s.switch else { continue };
        let key = |k: &str| format!("servers[{i}].switch.{k}");
        if !names.contains(p.name.as_str()) {
            return Err(ConfigError::invalid(
                key("name"),
                format!("no switch named {:?} in [[switches]]", p.name),
            ));
        }
        if p.ports.is_empty() {
            return Err(ConfigError::invalid(
                key("ports"),
                "must list at least one port",
            ));
        }
        for name in std::iter::once(&p.bond).chain(&p.ports) {
            if !interface_name(name) {
                return Err(ConfigError::invalid(
                    key(if *name == p.bond { "bond" } else { "ports" }),
                    format!("{name:?} is not an interface name (1-15 letters, digits, - _ .)"),
                ));
            }
            if !cabled.entry(&p.name).or_default().insert(name) {
                return Err(ConfigError::invalid(
                    key(if *name == p.bond { "bond" } else { "ports" }),
                    format!(
                        "{name} on switch {} is already used by another server",
                        p.name
                    ),
                ));
            }
        }
    }
    Ok(())
}
