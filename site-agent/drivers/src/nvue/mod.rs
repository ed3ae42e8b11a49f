//! The switch fabric's tenant configuration in NVUE's JSON tree (Cumulus Linux on Spectrum
//! switches; HBN on BlueField speaks the same API).
//!
//! [`render`] turns a [`FabricSpec`] into the *whole* desired tree: per tenant a VRF with its
//! L3 VNI and BGP EVPN, a VLAN mapped to the tenant's L2 VNI on `br_default`, an anycast SVI
//! gateway (VRR) in the VRF, the tenant's access ports (bonds) with an ingress ACL that admits
//! the tenant subnet and denies the rest of the private range; plus the switch's VXLAN
//! source address, EVPN and BGP. Because the tree is complete, applying it with replace
//! semantics (`DELETE` the revision root, then one root `PATCH`) makes re-applying the same
//! spec a no-op, and [`drift`] compares it with the applied view key by key.
//!
//! [`NvueClient`] ([`client`]) drives a switch through NVUE's revision workflow and implements
//! [`SwitchFabric`](super::SwitchFabric); `meridian-sim`'s `nvue` module emulates the API for
//! tests (see `docs/network.md`).

pub mod client;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use meridian_common::model::TenantNetworkIntent;
use serde_json::{Map, Value, json};

pub use client::{NvueClient, NvueConfig, TransportError, encode_revision_id};

/// Why the fabric could not be rendered or converged.
#[derive(Debug, thiserror::Error)]
pub enum FabricError {
    /// The spec breaks a rule every VTEP must follow.
    #[error("invalid fabric spec: {0}")]
    Spec(String),
    /// The client was configured wrongly (URL, missing trust anchor).
    #[error("bad NVUE client configuration: {0}")]
    Config(String),
    /// The TLS configuration could not be built from the trust anchors.
    #[error("TLS setup for {url} failed")]
    Tls {
        /// The switch's URL.
        url: String,
        /// Why.
        #[source]
        source: rustls::Error,
    },
    /// The switch refused the credentials (401), or the user may not use the API (403, e.g.
    /// the default password is still set). Never retried.
    #[error("NVUE at {url} refused the credentials of user {user:?} ({status}): {message}")]
    Auth {
        /// The switch's URL.
        url: String,
        /// The user.
        user: String,
        /// 401 or 403.
        status: u16,
        /// The switch's error text.
        message: String,
    },
    /// The switch answered a request with an error status (after retries for 502/503/504).
    #[error("NVUE {method} {path} answered {status} after {attempts} attempt(s): {message}")]
    Http {
        /// The request method.
        method: String,
        /// The request path and query.
        path: String,
        /// The last status.
        status: u16,
        /// Attempts made.
        attempts: u32,
        /// The switch's error text.
        message: String,
    },
    /// The switch could not be reached (after retries).
    #[error("NVUE {method} {path} failed after {attempts} attempt(s)")]
    Transport {
        /// The request method.
        method: String,
        /// The request path and query.
        path: String,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        #[source]
        source: TransportError,
    },
    /// A response body was not the JSON expected.
    #[error("NVUE {what}: malformed JSON")]
    Json {
        /// What was being read or written.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A response did not have the expected shape.
    #[error("unexpected NVUE response: {0}")]
    Protocol(String),
    /// The revision ended `invalid` or in a `*_fail` state; the applied configuration is
    /// unchanged.
    #[error("NVUE revision {revision} ended {state}: {issue}")]
    Rejected {
        /// The revision id.
        revision: String,
        /// `invalid`, `apply_fail`, `ays_fail`, ...
        state: String,
        /// The text of `transition.issue`.
        issue: String,
    },
    /// The revision did not reach `applied` in time.
    #[error("NVUE revision {revision} still {state} after {waited:?}")]
    ApplyTimeout {
        /// The revision id.
        revision: String,
        /// Its last state.
        state: String,
        /// How long was waited.
        waited: std::time::Duration,
    },
}

/// One tenant on one switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricTenant {
    /// The tenant's network from the site intent (its VNI is the L2 VNI).
    pub network: TenantNetworkIntent,
    /// The VRF's L3 VNI; must differ from every L2 VNI and be the same on every VTEP.
    pub l3_vni: u32,
    /// The local VLAN mapped to the L2 VNI.
    pub vlan: u16,
    /// This switch's own address on the SVI (the anycast gateway is `network.gateway`).
    pub svi_address: Ipv4Addr,
    /// Access bonds of the tenant's servers on this switch: (bond, member ports).
    pub bonds: Vec<(String, Vec<String>)>,
}

/// Everything the switch must carry for tenants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FabricSpec {
    /// The VTEP (loopback) address, also the BGP router id.
    pub vtep: Ipv4Addr,
    /// The switch's BGP autonomous system.
    pub asn: u32,
    /// Fabric uplinks, peered BGP unnumbered with L2VPN EVPN.
    pub uplinks: Vec<String>,
    /// The private range tenants must not reach beyond their own subnet (the ACL's deny).
    pub private_range: meridian_common::model::Ipv4Net,
    /// The tenants.
    pub tenants: Vec<FabricTenant>,
}

/// The VRF name of a tenant.
pub fn vrf_name(network: &TenantNetworkIntent) -> String {
    network.tenant.to_string()
}

fn acl_name(network: &TenantNetworkIntent) -> String {
    format!(
        "{}_IN",
        network.tenant.as_str().to_uppercase().replace('-', "_")
    )
}

/// Checks the rules every VTEP must follow: L3 VNIs distinct from every L2 VNI, no tenant in
/// the default VRF, VLANs and VNIs unique and in range.
pub fn validate(spec: &FabricSpec) -> Result<(), FabricError> {
    let l2: BTreeSet<u32> = spec.tenants.iter().map(|t| t.network.vni).collect();
    if l2.len() != spec.tenants.len() {
        return Err(FabricError::Spec("two tenants share an L2 VNI".into()));
    }
    let mut vlans = BTreeSet::new();
    let mut l3 = BTreeSet::new();
    for t in &spec.tenants {
        let name = vrf_name(&t.network);
        if name == "default" || name == "mgmt" {
            return Err(FabricError::Spec(format!(
                "tenant {name} would use the {name} VRF; rename the tenant"
            )));
        }
        if l2.contains(&t.l3_vni) {
            return Err(FabricError::Spec(format!(
                "L3 VNI {} of {name} equals an L2 VNI",
                t.l3_vni
            )));
        }
        if !l3.insert(t.l3_vni) {
            return Err(FabricError::Spec(format!("L3 VNI {} used twice", t.l3_vni)));
        }
        if !(1..=4094).contains(&t.vlan) || !vlans.insert(t.vlan) {
            return Err(FabricError::Spec(format!(
                "VLAN {} of {name} is out of range or used twice",
                t.vlan
            )));
        }
        for vni in [t.network.vni, t.l3_vni] {
            if vni == 0 || vni > 0x00FF_FFFF {
                return Err(FabricError::Spec(format!(
                    "VNI {vni} of {name} out of range"
                )));
            }
        }
    }
    Ok(())
}

/// The whole desired NVUE tree for `spec`.
pub fn render(spec: &FabricSpec) -> Result<Value, FabricError> {
    validate(spec)?;
    let mut vlans = Map::new();
    let mut vrfs = Map::new();
    let mut interfaces = Map::new();
    let mut acls = Map::new();
    let mut tenants = spec.tenants.clone();
    tenants.sort_by_key(|t| t.network.vni);
    for t in &tenants {
        let n = &t.network;
        let vrf = vrf_name(n);
        let len = n.subnet.prefix_len();
        vlans.insert(t.vlan.to_string(), json!({"vni": {n.vni.to_string(): {}}}));
        vrfs.insert(
            vrf.clone(),
            json!({
                "evpn": {"enable": "on", "vni": {t.l3_vni.to_string(): {}}},
                "router": {"bgp": {"enable": "on", "address-family": {"ipv4-unicast": {
                    "enable": "on", "redistribute": {"connected": {"enable": "on"}}}}}}
            }),
        );
        interfaces.insert(
            format!("vlan{}", t.vlan),
            json!({"type": "svi", "vlan": t.vlan, "ip": {
                "vrf": vrf,
                "address": {format!("{}/{len}", t.svi_address): {}},
                "vrr": {"enable": "on", "address": {format!("{}/{len}", n.gateway): {}}}}}),
        );
        let acl = acl_name(n);
        for (bond, members) in &t.bonds {
            let member: Map<String, Value> =
                members.iter().map(|m| (m.clone(), json!({}))).collect();
            interfaces.insert(
                bond.clone(),
                json!({"type": "bond", "bond": {"member": member},
                    "bridge": {"domain": {"br_default": {"access": t.vlan}}},
                    "acl": {acl.clone(): {"inbound": {}}}}),
            );
        }
        acls.insert(
            acl,
            json!({"type": "ipv4", "rule": {
                "10": {"match": {"ip": {"dest-ip": n.subnet.to_string()}}, "action": {"permit": {}}},
                "20": {"match": {"ip": {"dest-ip": spec.private_range.to_string()}}, "action": {"deny": {}}},
                "30": {"action": {"permit": {}}}}}),
        );
    }
    let mut neighbors = Map::new();
    for up in &spec.uplinks {
        neighbors.insert(
            up.clone(),
            json!({"type": "unnumbered", "remote-as": "external",
                "address-family": {"l2vpn-evpn": {"enable": "on"}}}),
        );
        interfaces.insert(up.clone(), json!({"type": "swp"}));
    }
    vrfs.insert(
        "default".into(),
        json!({"router": {"bgp": {"enable": "on",
            "address-family": {"l2vpn-evpn": {"enable": "on"}},
            "neighbor": neighbors}}}),
    );
    Ok(json!({
        "nve": {"vxlan": {"enable": "on", "source": {"address": spec.vtep.to_string()},
            "arp-nd-suppress": "on"}},
        "evpn": {"enable": "on"},
        "router": {"bgp": {"enable": "on", "autonomous-system": spec.asn,
            "router-id": spec.vtep.to_string()}},
        "bridge": {"domain": {"br_default": {"vlan": vlans}}},
        "vrf": vrfs,
        "interface": interfaces,
        "acl": acls,
    }))
}

/// Differences between the desired tree and an applied one, as NVUE paths (`vrf.tenant-a`
/// missing, `interface.bond3.bridge.domain.br_default.access` 101 != 102, extra keys).
pub fn drift(desired: &Value, applied: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff("", desired, applied, &mut out);
    out
}

fn diff(path: &str, want: &Value, have: &Value, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => {
            for (k, wv) in w {
                match h.get(k) {
                    Some(hv) => diff(&join(k), wv, hv, out),
                    None => out.push(format!("{} missing", join(k))),
                }
            }
            for k in h.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{} not desired", join(k)));
            }
        }
        // NVUE shows numbers as numbers or strings depending on the key; compare the text.
        (w, h) if w == h || text(w) == text(h) => {}
        (w, h) => out.push(format!("{path}: {h} != {w}")),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::ids::TenantId;
    use meridian_common::model::Ipv4Net;

    fn spec() -> FabricSpec {
        FabricSpec {
            vtep: Ipv4Addr::new(10, 0, 0, 11),
            asn: 65011,
            uplinks: vec!["swp51".into()],
            private_range: Ipv4Net::parse("10.0.0.0/8").unwrap(),
            tenants: vec![FabricTenant {
                network: TenantNetworkIntent {
                    tenant: TenantId::parse("tenant-a").unwrap(),
                    vni: 10101,
                    table: 110,
                    subnet: Ipv4Net::parse("10.101.0.0/24").unwrap(),
                    gateway: Ipv4Addr::new(10, 101, 0, 1),
                },
                l3_vni: 104001,
                vlan: 101,
                svi_address: Ipv4Addr::new(10, 101, 0, 2),
                bonds: vec![("bond3".into(), vec!["swp3".into()])],
            }],
        }
    }

    #[test]
    fn renders_the_tenant_in_full() {
        let tree = render(&spec()).unwrap();
        assert_eq!(tree["vrf"]["tenant-a"]["evpn"]["vni"]["104001"], json!({}));
        assert_eq!(
            tree["bridge"]["domain"]["br_default"]["vlan"]["101"]["vni"]["10101"],
            json!({})
        );
        assert_eq!(tree["interface"]["vlan101"]["ip"]["vrf"], "tenant-a");
        assert_eq!(
            tree["interface"]["vlan101"]["ip"]["vrr"]["address"]["10.101.0.1/24"],
            json!({})
        );
        assert_eq!(
            tree["interface"]["bond3"]["bridge"]["domain"]["br_default"]["access"],
            101
        );
        assert!(tree["acl"]["TENANT_A_IN"]["rule"]["20"]["action"]["deny"].is_object());
        // Rendering is deterministic, so the same spec gives no drift.
        assert!(drift(&tree, &render(&spec()).unwrap()).is_empty());
    }

    #[test]
    fn refuses_what_nvue_refuses() {
        let mut s = spec();
        s.tenants[0].l3_vni = 10101;
        assert!(matches!(render(&s), Err(FabricError::Spec(_))));
        let mut s = spec();
        s.tenants[0].network.tenant = TenantId::parse("default").unwrap();
        assert!(matches!(render(&s), Err(FabricError::Spec(_))));
    }

    #[test]
    fn drift_names_the_paths() {
        let want = render(&spec()).unwrap();
        let mut have = want.clone();
        have["interface"]["bond3"]["bridge"]["domain"]["br_default"]["access"] = json!(102);
        have["vrf"]["tenant-z"] = json!({});
        have["acl"].as_object_mut().unwrap().remove("TENANT_A_IN");
        let d = drift(&want, &have);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d.iter().any(|x| x.contains("access: 102 != 101")));
        assert!(d.iter().any(|x| x == "vrf.tenant-z not desired"));
        assert!(d.iter().any(|x| x == "acl.TENANT_A_IN missing"));
    }
}
