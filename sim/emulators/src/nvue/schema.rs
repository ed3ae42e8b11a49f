//! The part of NVUE's schema the emulator knows, and the checks `nv config apply` makes.
//!
//! Keys follow Cumulus Linux 5.x (`nv set` words); `system` and `service` are accepted
//! without checking, so a switch's base configuration can ride along. Anything else unknown
//! makes the revision `invalid`.

use std::collections::BTreeMap;

use serde_json::Value;

enum Node {
    /// Anything.
    Any,
    /// A scalar.
    Leaf,
    /// An object with exactly these keys allowed.
    Obj(Vec<(&'static str, Node)>),
    /// An object with user-chosen keys (names, numbers), each value of this shape.
    Map(Box<Node>),
}

use Node::{Any, Leaf, Obj};

fn map(n: Node) -> Node {
    Node::Map(Box::new(n))
}

fn empty() -> Node {
    Obj(vec![])
}

fn enable() -> (&'static str, Node) {
    ("enable", Leaf)
}

fn bgp() -> Node {
    Obj(vec![
        enable(),
        ("autonomous-system", Leaf),
        ("router-id", Leaf),
        (
            "address-family",
            Obj(vec![
                (
                    "ipv4-unicast",
                    Obj(vec![
                        enable(),
                        (
                            "redistribute",
                            Obj(vec![
                                ("connected", Obj(vec![enable()])),
                                ("static", Obj(vec![enable()])),
                            ]),
                        ),
                    ]),
                ),
                ("l2vpn-evpn", Obj(vec![enable()])),
            ]),
        ),
        (
            "neighbor",
            map(Obj(vec![
                ("type", Leaf),
                ("remote-as", Leaf),
                ("peer-group", Leaf),
                (
                    "address-family",
                    Obj(vec![
                        ("l2vpn-evpn", Obj(vec![enable()])),
                        ("ipv4-unicast", Obj(vec![enable()])),
                    ]),
                ),
            ])),
        ),
        ("peer-group", map(Any)),
    ])
}

fn schema() -> Node {
    let acl_dir = || Obj(vec![("control-plane", Any)]);
    Obj(vec![
        (
            "nve",
            Obj(vec![(
                "vxlan",
                Obj(vec![
                    enable(),
                    ("source", Obj(vec![("address", Leaf)])),
                    ("arp-nd-suppress", Leaf),
                    ("port", Leaf),
                    ("mlag", Obj(vec![("shared-address", Leaf)])),
                    (
                        "flooding",
                        Obj(vec![enable(), ("head-end-replication", map(empty()))]),
                    ),
                ]),
            )]),
        ),
        ("evpn", Obj(vec![enable()])),
        (
            "router",
            Obj(vec![(
                "bgp",
                Obj(vec![
                    enable(),
                    ("autonomous-system", Leaf),
                    ("router-id", Leaf),
                ]),
            )]),
        ),
        (
            "bridge",
            Obj(vec![(
                "domain",
                map(Obj(vec![
                    ("vlan", map(Obj(vec![("vni", map(empty()))]))),
                    ("untagged", Leaf),
                    ("type", Leaf),
                ])),
            )]),
        ),
        (
            "vrf",
            map(Obj(vec![
                ("evpn", Obj(vec![enable(), ("vni", map(empty()))])),
                ("router", Obj(vec![("bgp", bgp())])),
                ("table", Leaf),
            ])),
        ),
        (
            "interface",
            map(Obj(vec![
                ("type", Leaf),
                ("vlan", Leaf),
                (
                    "bond",
                    Obj(vec![
                        ("member", map(empty())),
                        ("mlag", Obj(vec![enable(), ("id", Leaf)])),
                    ]),
                ),
                (
                    "bridge",
                    Obj(vec![(
                        "domain",
                        map(Obj(vec![
                            ("access", Leaf),
                            ("untagged", Leaf),
                            ("vlan", map(empty())),
                        ])),
                    )]),
                ),
                ("link", Obj(vec![("mtu", Leaf), ("state", Any)])),
                (
                    "ip",
                    Obj(vec![
                        ("vrf", Leaf),
                        ("address", map(empty())),
                        (
                            "vrr",
                            Obj(vec![
                                enable(),
                                ("address", map(empty())),
                                ("mac-address", Leaf),
                            ]),
                        ),
                    ]),
                ),
                (
                    "acl",
                    map(Obj(vec![("inbound", acl_dir()), ("outbound", acl_dir())])),
                ),
            ])),
        ),
        (
            "acl",
            map(Obj(vec![
                ("type", Leaf),
                (
                    "rule",
                    map(Obj(vec![
                        (
                            "match",
                            Obj(vec![(
                                "ip",
                                Obj(vec![
                                    ("source-ip", Leaf),
                                    ("dest-ip", Leaf),
                                    ("protocol", Leaf),
                                    ("dest-port", Any),
                                    ("source-port", Any),
                                ]),
                            )]),
                        ),
                        (
                            "action",
                            Obj(vec![
                                ("permit", empty()),
                                ("deny", empty()),
                                ("log", empty()),
                            ]),
                        ),
                    ])),
                ),
            ])),
        ),
        ("system", Any),
        ("service", Any),
    ])
}

fn check(node: &Node, v: &Value, path: &str, out: &mut Vec<String>) {
    let join = |k: &str| {
        if path.is_empty() {
            k.to_owned()
        } else {
            format!("{path}.{k}")
        }
    };
    let at = if path.is_empty() { "the root" } else { path };
    match node {
        Any => {}
        Leaf => {
            if v.is_object() || v.is_array() {
                out.push(format!("{at}: expected a value, got {v}"));
            }
        }
        Obj(fields) => match v.as_object() {
            None => out.push(format!("{at}: expected an object, got {v}")),
            Some(m) => {
                for (k, sub) in m {
                    match fields.iter().find(|(name, _)| name == k) {
                        Some((_, n)) => check(n, sub, &join(k), out),
                        None => out.push(format!("unknown key '{k}' at {at}")),
                    }
                }
            }
        },
        Node::Map(inner) => match v.as_object() {
            None => out.push(format!("{at}: expected an object, got {v}")),
            Some(m) => {
                for (k, sub) in m {
                    check(inner, sub, &join(k), out);
                }
            }
        },
    }
}

fn keys(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every reason `tree` cannot be applied (empty: it can).
pub(super) fn validate(tree: &Value) -> Vec<String> {
    let mut out = Vec::new();
    check(&schema(), tree, "", &mut out);
    if !out.is_empty() {
        return out;
    }
    // L2 VNIs: bridge.domain.<br>.vlan.<vid>.vni.<vni>.
    let mut l2: BTreeMap<String, String> = BTreeMap::new();
    if let Some(domains) = tree.pointer("/bridge/domain").and_then(Value::as_object) {
        for (br, d) in domains {
            if let Some(vlans) = d.get("vlan").and_then(Value::as_object) {
                for (vid, vlan) in vlans {
                    for vni in keys(vlan.get("vni")) {
                        l2.insert(vni, format!("bridge domain {br} vlan {vid}"));
                    }
                }
            }
        }
    }
    let vrfs = tree.get("vrf").and_then(Value::as_object);
    if let Some(vrfs) = vrfs {
        let mut l3: BTreeMap<String, String> = BTreeMap::new();
        for (name, vrf) in vrfs {
            let vnis = keys(vrf.pointer("/evpn/vni"));
            if (name == "default" || name == "mgmt") && !vnis.is_empty() {
                out.push(format!(
                    "vrf {name}: an L3 VNI ({}) cannot be set in the {name} VRF; tenants need \
                     their own VRF",
                    vnis.join(", ")
                ));
            }
            for vni in vnis {
                if let Some(used) = l2.get(&vni) {
                    out.push(format!(
                        "vrf {name}: L3 VNI {vni} is already used as an L2 VNI ({used})"
                    ));
                }
                if let Some(other) = l3.insert(vni.clone(), name.clone()) {
                    out.push(format!(
                        "vrf {name}: L3 VNI {vni} is already used by vrf {other}"
                    ));
                }
            }
        }
    }
    if let Some(ifaces) = tree.get("interface").and_then(Value::as_object) {
        for (name, iface) in ifaces {
            let Some(vrf) = iface.pointer("/ip/vrf").and_then(Value::as_str) else {
                continue;
            };
            let gateway = !keys(iface.pointer("/ip/vrr/address")).is_empty();
            if (vrf == "default" || vrf == "mgmt") && gateway {
                out.push(format!(
                    "interface {name}: a tenant gateway (VRR) cannot be in the {vrf} VRF"
                ));
            } else if vrf != "default"
                && vrf != "mgmt"
                && !vrfs.is_some_and(|v| v.contains_key(vrf))
            {
                out.push(format!("interface {name}: vrf {vrf} does not exist"));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flags_unknown_keys_and_vni_clashes() {
        let ok = json!({"bridge": {"domain": {"br_default": {"vlan": {"101": {"vni": {"10101": {}}}}}}},
            "vrf": {"tenant-a": {"evpn": {"enable": "on", "vni": {"104001": {}}}}}});
        assert!(validate(&ok).is_empty(), "{:?}", validate(&ok));
        let mut bad = ok.clone();
        bad["vrf"]["tenant-a"]["evpn"]["colour"] = json!("red");
        assert!(validate(&bad)[0].contains("unknown key 'colour'"));
        let mut bad = ok.clone();
        bad["vrf"]["tenant-a"]["evpn"]["vni"] = json!({"10101": {}});
        assert!(validate(&bad)[0].contains("L3 VNI 10101 is already used as an L2 VNI"));
        let mut bad = ok;
        bad["vrf"]["default"] = json!({"evpn": {"vni": {"104002": {}}}});
        assert!(validate(&bad)[0].contains("default VRF"));
    }
}
