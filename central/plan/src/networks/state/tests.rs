use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use meridian_common::model::{Ipv4Net, Protocol, Tenant, TenantNetwork};
use proptest::prelude::*;

use super::*;
use crate::networks::{NetworkClaim, NumberRange};

fn t(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn s(x: &str) -> SiteId {
    x.parse().unwrap()
}

fn net(x: &str) -> Ipv4Net {
    x.parse().unwrap()
}

fn tenant(id: &str, network: Option<TenantNetwork>) -> Tenant {
    Tenant {
        id: t(id),
        name: id.parse().unwrap(),
        quotas: Default::default(),
        residency: Default::default(),
        weights: Default::default(),
        max_priority: 0,
        network,
    }
}

fn host(tenant: &str, site: &str, workload: &str, replica: u32) -> HostKey {
    HostKey {
        tenant: t(tenant),
        site: s(site),
        workload: workload.parse().unwrap(),
        replica,
    }
}

fn ranges() -> BTreeMap<SiteId, Ipv4Net> {
    BTreeMap::from([
        (s("fra-1"), net("203.0.113.0/24")),
        (s("par-1"), net("198.51.100.0/30")),
    ])
}

fn state_with(tenants: &[&str]) -> NetworkState {
    let mut st = NetworkState::new(Coverage::all());
    for id in tenants {
        st.add_tenant(&tenant(id, None));
    }
    st
}

fn demand(items: &[(HostKey, &[(u16, Protocol)])]) -> Demand {
    Demand {
        replicas: items
            .iter()
            .map(|(h, p)| (h.clone(), p.iter().copied().collect()))
            .collect(),
    }
}

#[test]
fn lowest_values_first_and_stable() {
    let pools = NetworkPools::default();
    let mut st = state_with(&["acme", "globex"]);
    let d = demand(&[
        (host("acme", "fra-1", "web", 0), &[(443, Protocol::Tcp)]),
        (
            host("acme", "fra-1", "web", 1),
            &[(443, Protocol::Tcp), (80, Protocol::Tcp)],
        ),
        (host("acme", "par-1", "web", 2), &[]),
        (host("globex", "fra-1", "api", 0), &[(443, Protocol::Tcp)]),
    ]);
    let r = st.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    assert!(r.unmet.is_empty(), "{:?}", r.unmet);
    let acme = st.tenant_network(&t("acme")).unwrap();
    let globex = st.tenant_network(&t("globex")).unwrap();
    assert_eq!(
        (acme.vni, acme.table, acme.supernet),
        (10_000, 1_000, net("10.0.0.0/16"))
    );
    assert_eq!(
        (globex.vni, globex.table, globex.supernet),
        (10_001, 1_001, net("10.1.0.0/16"))
    );
    let fra = st.subnet(&t("acme"), &s("fra-1")).unwrap();
    assert_eq!(
        (fra.subnet, fra.gateway),
        (net("10.0.0.0/24"), Ipv4Addr::new(10, 0, 0, 1))
    );
    assert_eq!(
        st.subnet(&t("acme"), &s("par-1")).unwrap().subnet,
        net("10.0.1.0/24")
    );
    assert_eq!(
        st.host(&host("acme", "fra-1", "web", 0)),
        Some(Ipv4Addr::new(10, 0, 0, 2))
    );
    assert_eq!(
        st.host(&host("acme", "fra-1", "web", 1)),
        Some(Ipv4Addr::new(10, 0, 0, 3))
    );
    assert_eq!(
        st.host(&host("acme", "par-1", "web", 2)),
        Some(Ipv4Addr::new(10, 0, 1, 2))
    );
    // The exposure's own port, on the lowest public address where it is free (.1 is the
    // gateway's own).
    let endpoints: Vec<_> = st
        .public_endpoints()
        .iter()
        .map(|(k, e)| {
            (
                k.tenant.to_string(),
                k.replica,
                k.port,
                e.address.to_string(),
                e.port,
            )
        })
        .collect();
    assert_eq!(
        endpoints,
        [
            ("acme".into(), 0, 443, "203.0.113.2".into(), 443),
            ("acme".into(), 1, 80, "203.0.113.2".into(), 80),
            ("acme".into(), 1, 443, "203.0.113.3".into(), 443),
            ("globex".into(), 0, 443, "203.0.113.4".into(), 443),
        ]
    );
    // Reconciling again changes nothing.
    let before = st.claims();
    let r = st.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    assert!(r.unmet.is_empty());
    assert_eq!(st.claims(), before);
    // Claims load back into the same state.
    let mut again = state_with(&[]);
    for c in before.values() {
        again.add_claim(c.clone());
    }
    again.add_tenant(&tenant("acme", Some(acme)));
    again.add_tenant(&tenant("globex", Some(globex)));
    assert_eq!(again.claims(), before);
}

#[test]
fn fallback_ports_when_the_port_is_taken_everywhere() {
    let pools = NetworkPools::default();
    let mut st = state_with(&["acme"]);
    // par-1 is a /30: hosts .1 and .2, .1 reserved: one public address.
    let d = demand(&[
        (
            host("acme", "par-1", "web", 0),
            &[(443, Protocol::Tcp), (443, Protocol::Udp)],
        ),
        (host("acme", "par-1", "web", 1), &[(443, Protocol::Tcp)]),
        (host("acme", "par-1", "web", 2), &[(443, Protocol::Tcp)]),
    ]);
    let r = st.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    assert!(r.unmet.is_empty(), "{:?}", r.unmet);
    let got: Vec<_> = st
        .public_endpoints()
        .iter()
        .map(|(k, e)| (k.replica, k.protocol, e.address.to_string(), e.port))
        .collect();
    assert_eq!(
        got,
        [
            (0, Protocol::Tcp, "198.51.100.2".into(), 443),
            (0, Protocol::Udp, "198.51.100.2".into(), 443),
            (1, Protocol::Tcp, "198.51.100.2".into(), 20_000),
            (2, Protocol::Tcp, "198.51.100.2".into(), 20_001),
        ]
    );
}

#[test]
fn exhaustion_names_the_pool() {
    let pools = NetworkPools {
        vni: NumberRange { first: 7, last: 7 },
        ..NetworkPools::default()
    };
    let mut st = state_with(&["acme", "globex"]);
    let d = demand(&[
        (host("acme", "fra-1", "web", 0), &[]),
        (host("globex", "fra-1", "web", 0), &[]),
    ]);
    let r = st.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    let err = &r.unmet[&host("globex", "fra-1", "web", 0)];
    assert_eq!(
        *err,
        NetworkError::Exhausted {
            pool: Pool::Vni(NumberRange { first: 7, last: 7 })
        }
    );
    assert!(err.to_string().contains("VNI pool 7..=7"), "{err}");
    assert_eq!(r.unmet.len(), 1);

    // Public endpoints: a /30 with one usable address and two fallback ports.
    let pools = NetworkPools {
        fallback_ports: NumberRange {
            first: 9000,
            last: 9000,
        },
        ..NetworkPools::default()
    };
    let mut st = state_with(&["acme"]);
    let d = demand(&[
        (host("acme", "par-1", "a", 0), &[(443, Protocol::Tcp)]),
        (host("acme", "par-1", "b", 0), &[(443, Protocol::Tcp)]),
        (host("acme", "par-1", "c", 0), &[(443, Protocol::Tcp)]),
    ]);
    let r = st.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    let err = &r.unmet[&host("acme", "par-1", "c", 0)];
    assert!(
        err.to_string()
            .contains("public endpoints of site par-1 (gateway range 198.51.100.0/30)"),
        "{err}"
    );
}

#[test]
fn released_values_are_reused_only_from_the_next_run() {
    let pools = NetworkPools::default();
    let mut st = state_with(&["acme", "globex"]);
    let d = demand(&[(host("acme", "fra-1", "web", 0), &[(443, Protocol::Tcp)])]);
    st.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    assert_eq!(st.tenant_network(&t("acme")).unwrap().vni, 10_000);

    // acme is deleted and globex arrives in the same run: globex must not get acme's values.
    let mut st2 = state_with(&[]);
    for c in st.claims().into_values() {
        st2.add_claim(c);
    }
    st2.add_tenant(&tenant("globex", None));
    let d = demand(&[(host("globex", "fra-1", "api", 0), &[(443, Protocol::Tcp)])]);
    st2.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    let g = st2.tenant_network(&t("globex")).unwrap();
    assert_eq!(
        (g.vni, g.table, g.supernet),
        (10_001, 1_001, net("10.1.0.0/16"))
    );
    assert_eq!(
        st2.public(&PublicKey {
            site: s("fra-1"),
            tenant: t("globex"),
            workload: "api".parse().unwrap(),
            replica: 0,
            port: 443,
            protocol: Protocol::Tcp,
        })
        .unwrap()
        .address,
        Ipv4Addr::new(203, 0, 113, 3)
    );
    // acme's claims are gone now ...
    assert!(st2.claims().values().all(|c| c.tenant() == &t("globex")));
    // ... so a newcomer in the next run gets them.
    st2.add_tenant(&tenant("initech", None));
    let d2 = demand(&[
        (host("globex", "fra-1", "api", 0), &[(443, Protocol::Tcp)]),
        (host("initech", "fra-1", "x", 0), &[(443, Protocol::Tcp)]),
    ]);
    st2.reconcile(&pools, &d2, &ranges(), &ReleaseScope::Everything);
    let i = st2.tenant_network(&t("initech")).unwrap();
    assert_eq!(
        (i.vni, i.table, i.supernet),
        (10_000, 1_000, net("10.0.0.0/16"))
    );
}

#[test]
fn scoped_release_touches_only_named_workloads() {
    let pools = NetworkPools::default();
    let mut st = state_with(&["acme"]);
    let both = demand(&[
        (host("acme", "fra-1", "a", 0), &[(80, Protocol::Tcp)]),
        (host("acme", "par-1", "b", 0), &[]),
    ]);
    st.reconcile(&pools, &both, &ranges(), &ReleaseScope::Everything);
    // Only `a` is known (gone); `b` is not named, so it stays although the demand lacks it.
    let scope = ReleaseScope::Only {
        workloads: BTreeSet::from([(t("acme"), "a".parse().unwrap())]),
        deleted_tenants: BTreeSet::new(),
    };
    st.reconcile(&pools, &Demand::default(), &ranges(), &scope);
    assert_eq!(
        st.hosts().keys().cloned().collect::<Vec<_>>(),
        [host("acme", "par-1", "b", 0)]
    );
    assert!(st.public_endpoints().is_empty());
    // fra-1's subnet went with its last address; par-1's stays.
    let subnets: Vec<_> = st.subnets().map(|(_, site, _)| site.to_string()).collect();
    assert_eq!(subnets, ["par-1"]);
    assert!(st.tenant_network(&t("acme")).is_some());
    // A deleted tenant loses everything.
    let scope = ReleaseScope::Only {
        workloads: BTreeSet::new(),
        deleted_tenants: BTreeSet::from([t("acme")]),
    };
    st.reconcile(&pools, &Demand::default(), &ranges(), &scope);
    assert!(st.claims().is_empty(), "{:?}", st.claims());
}

#[test]
fn recorded_networks_are_claimed_or_refused() {
    let pools = NetworkPools::default();
    let manual = TenantNetwork {
        vni: 1001,
        table: 1001,
        supernet: net("10.0.0.0/12"),
    };
    let mut st = state_with(&[]);
    st.add_tenant(&tenant("acme", Some(manual)));
    st.add_tenant(&tenant("globex", None));
    let d = demand(&[
        (host("acme", "fra-1", "a", 0), &[]),
        (host("globex", "fra-1", "b", 0), &[]),
    ]);
    let r = st.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    assert!(r.unmet.is_empty());
    let claims = st.claims();
    assert!(claims.contains_key("vni/00001001") && claims.contains_key("supernet/10.0.0.0_12"));
    // globex's supernet skips the hand-set /12.
    assert_eq!(
        st.tenant_network(&t("globex")).unwrap().supernet,
        net("10.16.0.0/16")
    );

    // A recorded network colliding with another tenant's claim is refused.
    let mut st2 = state_with(&[]);
    for c in claims.into_values() {
        st2.add_claim(c);
    }
    st2.add_tenant(&tenant("acme", Some(manual)));
    st2.add_tenant(&tenant(
        "initech",
        Some(TenantNetwork {
            vni: 5,
            table: 5,
            supernet: net("10.8.0.0/16"),
        }),
    ));
    let d = demand(&[(host("initech", "fra-1", "c", 0), &[])]);
    let r = st2.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    let err = r.unmet[&host("initech", "fra-1", "c", 0)].to_string();
    assert!(
        err.contains("supernet 10.8.0.0/16") && err.contains("acme"),
        "{err}"
    );
}

#[test]
fn a_network_changed_by_hand_moves_its_claims() {
    let pools = NetworkPools::default();
    let mut st = state_with(&["acme"]);
    let d = demand(&[(host("acme", "fra-1", "a", 0), &[])]);
    st.reconcile(&pools, &d, &ranges(), &ReleaseScope::Everything);
    let old = st.claims();
    assert!(old.contains_key("vni/00010000"));
    // The provider gives acme another network; only the tenant-level claims are loaded.
    let mut st2 = NetworkState::new(Coverage {
        pools: true,
        ..Coverage::default()
    });
    for c in old.values().filter(|c| {
        matches!(
            c,
            NetworkClaim::Vni { .. } | NetworkClaim::Table { .. } | NetworkClaim::Supernet { .. }
        )
    }) {
        st2.add_claim(c.clone());
    }
    let manual = TenantNetwork {
        vni: 77,
        table: 77,
        supernet: net("172.16.0.0/16"),
    };
    st2.add_tenant(&tenant("acme", Some(manual)));
    st2.allocate_tenant(&pools, &t("acme")).unwrap();
    st2.reconcile(
        &pools,
        &Demand::default(),
        &ranges(),
        &ReleaseScope::nothing(),
    );
    let keys: Vec<String> = st2.claims().into_keys().collect();
    assert_eq!(
        keys,
        ["supernet/172.16.0.0_16", "table/0000000077", "vni/00000077"]
    );
}

#[test]
fn unloaded_parts_are_refused() {
    let pools = NetworkPools::default();
    let mut st = NetworkState::new(Coverage::default());
    st.add_tenant(&tenant("acme", None));
    let d = demand(&[(host("acme", "fra-1", "a", 0), &[])]);
    let r = st.reconcile(&pools, &d, &ranges(), &ReleaseScope::nothing());
    assert!(matches!(
        r.unmet[&host("acme", "fra-1", "a", 0)],
        NetworkError::NotLoaded { .. }
    ));
    assert!(st.claims().is_empty());
}

#[test]
fn pools_check() {
    assert!(NetworkPools::default().check().is_ok());
    let bad = [
        NetworkPools {
            vni: NumberRange { first: 0, last: 9 },
            ..NetworkPools::default()
        },
        NetworkPools {
            table: NumberRange {
                first: 253,
                last: 255,
            },
            ..NetworkPools::default()
        },
        NetworkPools {
            subnet_prefix: 12,
            ..NetworkPools::default()
        },
        NetworkPools {
            supernets: vec![net("10.0.0.0/8"), net("10.64.0.0/10")],
            ..NetworkPools::default()
        },
        NetworkPools {
            supernets: vec![],
            ..NetworkPools::default()
        },
    ];
    for p in bad {
        assert!(p.check().is_err(), "{p:?}");
    }
    let toml_text = "vni = { first = 5, last = 9 }\nsubnet_prefix = 26";
    let p: NetworkPools = toml::from_str(toml_text).unwrap();
    assert_eq!(
        (p.vni.first, p.subnet_prefix, p.supernet_prefix),
        (5, 26, 16)
    );
    assert!(toml::from_str::<NetworkPools>("bogus = 1").is_err());
}

// ---- Property tests: random demand changes never break the invariants. ----

/// Small pools, so exhaustion and reuse happen often.
fn small_pools() -> NetworkPools {
    NetworkPools {
        vni: NumberRange { first: 1, last: 4 },
        table: NumberRange {
            first: 252,
            last: 257,
        },
        supernets: vec![net("10.0.0.0/22")],
        supernet_prefix: 24,
        subnet_prefix: 26,
        gateway_reserved: 1,
        fallback_ports: NumberRange {
            first: 20_000,
            last: 20_001,
        },
    }
}

const SITES: [&str; 3] = ["s0", "s1", "s2"];
const PORTS: [(u16, Protocol); 3] = [
    (80, Protocol::Tcp),
    (443, Protocol::Tcp),
    (443, Protocol::Udp),
];

fn small_ranges() -> BTreeMap<SiteId, Ipv4Net> {
    SITES
        .iter()
        .enumerate()
        .map(|(i, id)| (s(id), net(&format!("192.0.2.{}/29", i * 8))))
        .collect()
}

#[derive(Debug, Clone)]
enum Step {
    /// Put replica `replica` of workload `w` of tenant `t` on site `site` with ports `ports`.
    Place {
        t: u8,
        w: u8,
        replica: u8,
        site: u8,
        ports: u8,
    },
    /// Remove a workload.
    Remove { t: u8, w: u8 },
    /// Delete a tenant.
    DeleteTenant { t: u8 },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..6u8, 0..3u8, 0..4u8, 0..3u8, 0..8u8)
            .prop_map(|(t, w, replica, site, ports)| Step::Place { t, w, replica, site, ports }),
        2 => (0..6u8, 0..3u8).prop_map(|(t, w)| Step::Remove { t, w }),
        1 => (0..6u8).prop_map(|t| Step::DeleteTenant { t }),
    ]
}

fn tid(i: u8) -> TenantId {
    t(&format!("t{i}"))
}

fn wid(i: u8) -> WorkloadId {
    format!("w{i}").parse().unwrap()
}

/// The wanted world: per tenant, per workload, per replica: (site, ports).
type World = BTreeMap<u8, BTreeMap<u8, BTreeMap<u8, (u8, u8)>>>;

fn apply(world: &mut World, step: &Step) {
    match *step {
        Step::Place {
            t,
            w,
            replica,
            site,
            ports,
        } => {
            world
                .entry(t)
                .or_default()
                .entry(w)
                .or_default()
                .insert(replica, (site, ports));
        }
        Step::Remove { t, w } => {
            if let Some(ws) = world.get_mut(&t) {
                ws.remove(&w);
            }
        }
        Step::DeleteTenant { t } => {
            world.remove(&t);
        }
    }
}

fn world_demand(world: &World) -> Demand {
    let mut d = Demand::default();
    for (&t, ws) in world {
        for (&w, rs) in ws {
            for (&replica, &(site, ports)) in rs {
                let set = PORTS
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| ports & (1 << i) != 0)
                    .map(|(_, p)| *p)
                    .collect();
                d.replicas.insert(
                    HostKey {
                        tenant: tid(t),
                        site: s(SITES[site as usize]),
                        workload: wid(w),
                        replica: u32::from(replica),
                    },
                    set,
                );
            }
        }
    }
    d
}

/// Runs `steps` from an empty store, reloading the state from its claims before each run as
/// a restart would; returns the claims after each step.
fn run(steps: &[Step]) -> Vec<BTreeMap<String, NetworkClaim>> {
    let pools = small_pools();
    let ranges = small_ranges();
    let mut world = World::new();
    let mut networks: BTreeMap<TenantId, TenantNetwork> = BTreeMap::new();
    let mut claims = BTreeMap::new();
    let mut history = Vec::new();
    for step in steps {
        apply(&mut world, step);
        let mut st = NetworkState::new(Coverage::all());
        for c in claims.values() {
            st.add_claim(NetworkClaim::clone(c));
        }
        // Tenants exist while they have a workload or once had a network and were not deleted.
        let deleted = match step {
            Step::DeleteTenant { t } => Some(tid(*t)),
            _ => None,
        };
        if let Some(d) = &deleted {
            networks.remove(d);
        }
        let live: BTreeSet<TenantId> = world
            .keys()
            .map(|&t| tid(t))
            .chain(networks.keys().cloned())
            .collect();
        for id in &live {
            st.add_tenant(&tenant(id.as_str(), networks.get(id).copied()));
        }
        let d = world_demand(&world);
        let r = st.reconcile(&pools, &d, &ranges, &ReleaseScope::Everything);
        check_invariants(&st, &pools, &ranges, &d, &r);
        networks = st.networks().clone();
        claims = st.claims();
        history.push(claims.clone());
    }
    history
}

fn within(range: NumberRange, v: u32) -> bool {
    (range.first..=range.last).contains(&v)
}

fn check_invariants(
    st: &NetworkState,
    pools: &NetworkPools,
    ranges: &BTreeMap<SiteId, Ipv4Net>,
    demand: &Demand,
    r: &Reconciled,
) {
    // Tenant networks: distinct VNIs, tables, non-overlapping supernets, all in the pools.
    let nets: Vec<(&TenantId, &TenantNetwork)> = st.networks().iter().collect();
    for (i, (ta, a)) in nets.iter().enumerate() {
        assert!(within(pools.vni, a.vni), "{a:?}");
        assert!(within(pools.table, a.table) && !limits::RESERVED_TABLES.contains(&a.table));
        assert!(pools.supernets[0].contains_net(&a.supernet));
        assert_eq!(a.supernet.prefix_len(), pools.supernet_prefix);
        for (tb, b) in &nets[..i] {
            assert_ne!(a.vni, b.vni, "{ta} and {tb} share a VNI");
            assert_ne!(a.table, b.table, "{ta} and {tb} share a table");
            assert!(!a.supernet.overlaps(&b.supernet), "{ta} and {tb} overlap");
        }
    }
    // Subnets: inside their tenant's supernet, disjoint per tenant.
    let subnets: Vec<_> = st.subnets().collect();
    for (i, (t, site, sn)) in subnets.iter().enumerate() {
        let n = st.networks()[*t];
        assert!(
            n.supernet.contains_net(&sn.subnet),
            "{t}/{site}: {sn:?} outside {n:?}"
        );
        assert_eq!(sn.subnet.prefix_len(), pools.subnet_prefix);
        for (t2, site2, sn2) in &subnets[..i] {
            if t == t2 {
                assert!(!sn.subnet.overlaps(&sn2.subnet), "{t}: {site} and {site2}");
            }
        }
    }
    // Hosts: inside their subnet, not its network, gateway or broadcast; unique per tenant.
    let mut seen = BTreeSet::new();
    for (k, ip) in st.hosts() {
        let sn = st.subnet(&k.tenant, &k.site).expect("a host's subnet");
        assert!(sn.subnet.contains(*ip) && *ip != sn.gateway && *ip != sn.subnet.addr());
        assert_ne!(*ip, sn.subnet.broadcast());
        assert!(seen.insert((k.tenant.clone(), *ip)), "{ip} twice");
    }
    // Public endpoints: inside the gateway range, never its reserved or edge addresses,
    // unique per (site, ip, port, protocol), and their replica has an address.
    let mut seen = BTreeSet::new();
    for (k, e) in st.public_endpoints() {
        let range = ranges[&k.site];
        assert!(range.contains(e.address));
        assert!(u32::from(e.address) > u32::from(range.addr()) + pools.gateway_reserved);
        assert_ne!(e.address, range.broadcast());
        assert!(e.port == k.port || within(pools.fallback_ports, u32::from(e.port)));
        assert!(
            seen.insert((k.site.clone(), e.address, e.port, k.protocol)),
            "{e:?} twice"
        );
        assert!(st.host(&k.host()).is_some());
    }
    // Every demanded replica is met or reported; nothing undemanded is held.
    for (h, ports) in &demand.replicas {
        if let Some(e) = r.unmet.get(h) {
            assert!(matches!(e, NetworkError::Exhausted { .. }), "{e}");
            continue;
        }
        assert!(st.host(h).is_some(), "{h:?} met but has no address");
        for &(port, protocol) in ports {
            let key = PublicKey {
                site: h.site.clone(),
                tenant: h.tenant.clone(),
                workload: h.workload.clone(),
                replica: h.replica,
                port,
                protocol,
            };
            assert!(st.public(&key).is_some());
        }
    }
    for k in st.hosts().keys() {
        assert!(
            demand.replicas.contains_key(k),
            "{k:?} held but not demanded"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_the_invariants(steps in proptest::collection::vec(step(), 1..40)) {
        let first = run(&steps);
        // Deterministic: the same sequence gives the same claims at every step.
        prop_assert_eq!(run(&steps), first);
    }

    #[test]
    fn everything_released_leaves_nothing(steps in proptest::collection::vec(step(), 1..30)) {
        let mut all = steps.clone();
        all.extend((0..6).map(|t| Step::DeleteTenant { t }));
        let history = run(&all);
        prop_assert!(history.last().unwrap().is_empty(), "{:?}", history.last());
    }
}
