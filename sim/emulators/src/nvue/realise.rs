//! Realising an emulated switch's applied configuration on the real kernel, inside a network
//! namespace that stands for the switch, so traffic tests can run through it.
//!
//! Only the layer-2 overlay is realised: for every VLAN-to-VNI mapping under
//! `bridge.domain.<domain>.vlan.<vlan>.vni.<vni>`, the site agent's [`NetlinkHost`] makes a
//! bridge `mbr<vni>` and a VXLAN device `mvx<vni>` (the VNI, the switch's VTEP address as local
//! address, UDP port 4789, learning on, one all-zeros FDB entry per remote VTEP). Remote VTEPs
//! are the keys of `nve.vxlan.flooding.head-end-replication` where the tree has them, otherwise
//! the peers given to [`NvueEmulator::with_namespace`](super::NvueEmulator::with_namespace)
//! (a real switch learns them over BGP EVPN, which is not emulated). The access ports of a
//! VLAN (`interface.<name>.bridge.domain.<domain>.access`, the interface itself and its bond
//! members) become ports of that bridge where links of those names exist in the namespace.
//! VNIs no longer applied lose their devices. SVIs, VRFs and ACLs are not realised (this
//! kernel has no VRF devices); hosts of one VNI talk over plain L2.
//!
//! Everything reuses the agent's netlink code, so it reads, compares and then changes: applying
//! the same tree twice changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use tokio::sync::Mutex;

use meridian_common::ids::TenantId;
use meridian_common::model::{Ipv4Net, TenantNetworkIntent};
use meridian_drivers::host::attach_ports;
use meridian_drivers::{ChangeReport, HostNetwork, HostNetworkSpec, HostTenant, NetlinkHost};
use serde_json::Value;

/// Where and as which VTEP an emulated switch realises its applied configuration.
#[derive(Debug)]
pub struct KernelSwitch {
    /// The network namespace standing for the switch (under `/run/netns`).
    pub netns: String,
    /// The switch's VTEP (underlay) address, the VXLAN devices' local address.
    pub local_vtep: Ipv4Addr,
    /// The other switches' VTEPs, flooded to when the tree names no head-end replication list.
    pub peers: Vec<Ipv4Addr>,
    /// Serialises realisations of this switch.
    busy: Mutex<()>,
}

/// One L2 segment of the applied tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// The L2 VNI.
    pub vni: u32,
    /// The VLAN mapped to it.
    pub vlan: u16,
    /// Access interfaces of the VLAN and their bond members.
    pub ports: Vec<String>,
}

impl KernelSwitch {
    /// A switch in namespace `netns` with VTEP `local_vtep` and peer VTEPs `peers`.
    pub fn new(netns: impl Into<String>, local_vtep: Ipv4Addr, peers: &[Ipv4Addr]) -> Self {
        Self {
            netns: netns.into(),
            local_vtep,
            peers: peers.to_vec(),
            busy: Mutex::new(()),
        }
    }

    /// Converges the namespace to `applied`; the changes made, or why it failed.
    pub async fn realise(&self, applied: &Value) -> Result<ChangeReport, String> {
        let _one = self.busy.lock().await;
        let segments = segments(applied);
        let remotes = flood_list(applied).unwrap_or_else(|| self.peers.clone());
        let mut tenants = Vec::new();
        for s in &segments {
            tenants.push(HostTenant {
                network: TenantNetworkIntent {
                    tenant: TenantId::parse(&format!("vni{}", s.vni)).map_err(|e| e.to_string())?,
                    vni: s.vni,
                    // Unused without the router role; any non-reserved table passes the check.
                    table: 100,
                    subnet: Ipv4Net::new(Ipv4Addr::UNSPECIFIED, 0).map_err(|e| e.to_string())?,
                    gateway: Ipv4Addr::UNSPECIFIED,
                },
                remote_vteps: remotes
                    .iter()
                    .copied()
                    .filter(|r| *r != self.local_vtep)
                    .collect(),
                workload: None,
                peers: vec![],
            });
        }
        let spec = HostNetworkSpec {
            vtep: self.local_vtep,
            tenants,
            router: None,
            access_port: None,
        };
        // An empty prefix: the driver owns no namespaces here and deletes none.
        let host = NetlinkHost::new(Some(self.netns.clone()), "");
        let mut report = host.apply(&spec).await.map_err(|e| error_chain(&e))?;
        for s in &segments {
            let (bridge, ..) = NetlinkHost::device_names(s.vni);
            let r = attach_ports(Some(&self.netns), &bridge, &s.ports)
                .await
                .map_err(|e| error_chain(&e))?;
            report.changes.extend(r.changes);
        }
        Ok(report)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        out.push_str(": ");
        out.push_str(&s.to_string());
        src = s.source();
    }
    out
}

fn as_number(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// The VLAN-to-VNI mappings of every bridge domain with their access ports, by VNI.
pub fn segments(tree: &Value) -> Vec<Segment> {
    let mut by_vni: BTreeMap<u32, Segment> = BTreeMap::new();
    let domains = tree.pointer("/bridge/domain").and_then(Value::as_object);
    for (domain, d) in domains.into_iter().flatten() {
        for (vlan, v) in d
            .get("vlan")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            let Ok(vlan) = vlan.parse::<u16>() else {
                continue;
            };
            let mut ports = BTreeSet::new();
            let ifaces = tree.get("interface").and_then(Value::as_object);
            for (name, i) in ifaces.into_iter().flatten() {
                let access = i
                    .pointer(&format!("/bridge/domain/{domain}/access"))
                    .and_then(as_number);
                if access == Some(u64::from(vlan)) {
                    ports.insert(name.clone());
                    let members = i.pointer("/bond/member").and_then(Value::as_object);
                    ports.extend(members.into_iter().flatten().map(|(m, _)| m.clone()));
                }
            }
            for vni in v
                .get("vni")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                if let Ok(vni) = vni.0.parse::<u32>() {
                    by_vni.insert(
                        vni,
                        Segment {
                            vni,
                            vlan,
                            ports: ports.iter().cloned().collect(),
                        },
                    );
                }
            }
        }
    }
    by_vni.into_values().collect()
}

/// The static head-end replication list, if the tree has one.
fn flood_list(tree: &Value) -> Option<Vec<Ipv4Addr>> {
    let list = tree
        .pointer("/nve/vxlan/flooding/head-end-replication")
        .and_then(Value::as_object)?;
    let ips: Vec<Ipv4Addr> = list.keys().filter_map(|k| k.parse().ok()).collect();
    (!ips.is_empty()).then_some(ips)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_segments_ports_and_flood_list() {
        let tree = json!({
            "nve": {"vxlan": {"flooding": {"head-end-replication": {"10.0.0.2": {}}}}},
            "bridge": {"domain": {"br_default": {"vlan": {
                "101": {"vni": {"10101": {}}}, "102": {"vni": {"10102": {}}}}}}},
            "interface": {
                "bond3": {"type": "bond", "bond": {"member": {"swp3": {}}},
                    "bridge": {"domain": {"br_default": {"access": 101}}}},
                "swp5": {"type": "swp", "bridge": {"domain": {"br_default": {"access": "102"}}}},
                "swp51": {"type": "swp"}
            }
        });
        assert_eq!(
            segments(&tree),
            vec![
                Segment {
                    vni: 10101,
                    vlan: 101,
                    ports: vec!["bond3".into(), "swp3".into()]
                },
                Segment {
                    vni: 10102,
                    vlan: 102,
                    ports: vec!["swp5".into()]
                },
            ]
        );
        assert_eq!(flood_list(&tree), Some(vec![Ipv4Addr::new(10, 0, 0, 2)]));
        assert_eq!(flood_list(&json!({})), None);
    }
}
