//! Site-to-site tunnels on the real kernel: two sites, each with a gateway node (WAN link to a
//! shared "internet" namespace that routes between the two sites' WAN /28s), a leaf switch
//! namespace doing the VXLAN between its access ports and the gateway, and two hosts in access
//! mode cabled to the leaf, one per tenant. Tenant A and tenant B each have a subnet at both
//! sites; the gateways join each tenant's sites with the tenant's own routed VXLAN tunnel
//! (`msx<vni>`, UDP 8472) over the WAN.
//!
//! Shown: each tenant's workloads reach each other across the sites (ping and TCP) and never
//! the other tenant's (ping and TCP fail, nftables probes in the workload namespaces count 0
//! packets of the other tenant); a VXLAN datagram injected from the internet into the tunnel
//! port or the segments' port is dropped by the gateway and teaches it nothing; the gateway refuses tunnels while
//! `net.ipv4.conf.all.rp_filter` is on; a second apply changes nothing on any node; removing
//! tenant B from both gateways leaves nothing of it there; dropping site 2 from A's peers at
//! site 1 removes A's tunnel there and A's cross-site traffic stops; a host in access mode
//! giving up its tenant keeps its uplink, released from the bridge.
//!
//! Needs root (it makes network namespaces) and `ip`, `nft`, `ping`, which `scripts/test.sh`
//! installs; without them it fails with a message saying so rather than passing unchecked.
//! Run with `--nocapture` for the timings.

use meridian_testkit::netns::{
    Namespaces, fetch_text, in_ns, ns_ok, pings, require, run, serve_text, veth,
};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use meridian_common::ids::{Generation, SiteId, TenantId};
use meridian_common::model::{Ipv4Net, SiteIntent, TenantNetworkIntent, TenantPeer};
use meridian_drivers::host::{SITE_TUNNEL_PORT, VXLAN_PORT, attach_ports};
use meridian_drivers::{
    ChangeReport, GatewaySpec, HostNetwork, HostNetworkError, HostNetworkSpec, HostPeer,
    HostTenant, NetlinkHost, NftGateway, RouterRole, WanGateway,
};

const PORT: u16 = 7000;

/// Runs one driver call to completion: this test drives the kernel from a plain thread.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

/// A tenant: its VNI and table, and per site (index 0, 1) its subnet and workload address.
struct Tenant {
    id: TenantId,
    vni: u32,
    table: u32,
    subnets: [Ipv4Net; 2],
    workloads: [Ipv4Addr; 2],
}

impl Tenant {
    fn new(id: &str, vni: u32, second: u8) -> Self {
        let net = |site: u8| Ipv4Net::new(Ipv4Addr::new(10, second, site, 0), 24).unwrap();
        Tenant {
            id: TenantId::parse(id).unwrap(),
            vni,
            table: 100 + u32::from(second),
            subnets: [net(1), net(2)],
            workloads: [
                Ipv4Addr::new(10, second, 1, 10),
                Ipv4Addr::new(10, second, 2, 10),
            ],
        }
    }

    fn gateway(&self, site: usize) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.subnets[site].addr()) + 1)
    }

    fn network(&self, site: usize) -> TenantNetworkIntent {
        TenantNetworkIntent {
            tenant: self.id.clone(),
            vni: self.vni,
            table: self.table,
            subnet: self.subnets[site],
            gateway: self.gateway(site),
        }
    }
}

/// One site: its gateway node, leaf and hosts (one per tenant, in tenant order).
struct Site {
    gw: String,
    leaf: String,
    hosts: Vec<String>,
    wan: Ipv4Addr,
    next_hop: Ipv4Addr,
    gw_underlay: Ipv4Addr,
    leaf_vtep: Ipv4Addr,
    gw_host: NetlinkHost,
    nft: NftGateway,
}

impl Site {
    fn host_driver(&self, h: usize) -> NetlinkHost {
        NetlinkHost::new(Some(self.hosts[h].clone()), format!("{}-", self.hosts[h]))
    }

    /// The workload namespace of tenant `t` on host `h`.
    fn workload_ns(&self, h: usize, t: &Tenant) -> String {
        self.host_driver(h).tenant_netns(&t.network(0))
    }
}

/// The gateway's tenants at site `s`, with their peers at the other site where `peered`.
fn gateway_tenants(
    sites: &[Site; 2],
    s: usize,
    tenants: &[(&Tenant, bool)],
) -> (HostNetworkSpec, SiteIntent) {
    let other = 1 - s;
    let site = &sites[s];
    let peers: Vec<TenantPeer> = tenants
        .iter()
        .filter(|(_, peered)| *peered)
        .map(|(t, _)| TenantPeer {
            tenant: t.id.clone(),
            site: SiteId::parse(&format!("site-{}", other + 1)).unwrap(),
            endpoint: sites[other].wan,
            subnet: t.subnets[other],
            gateway: t.gateway(other),
        })
        .collect();
    let host = HostNetworkSpec {
        vtep: site.gw_underlay,
        tenants: tenants
            .iter()
            .map(|(t, _)| HostTenant {
                network: t.network(s),
                remote_vteps: vec![site.leaf_vtep],
                workload: None,
                peers: peers
                    .iter()
                    .filter(|p| p.tenant == t.id)
                    .map(|p| HostPeer {
                        endpoint: p.endpoint,
                        subnet: p.subnet,
                        gateway: p.gateway,
                    })
                    .collect(),
            })
            .collect(),
        router: Some(RouterRole {
            uplink: "wan0".into(),
            next_hop: site.next_hop,
            tunnel_endpoint: Some(site.wan),
        }),
        access_port: None,
    };
    let intent = SiteIntent {
        networks: tenants.iter().map(|(t, _)| t.network(s)).collect(),
        tunnel_endpoint: (!peers.is_empty()).then_some(site.wan),
        peers,
        ..SiteIntent::empty(
            SiteId::parse(&format!("site-{}", s + 1)).unwrap(),
            Generation::new(1),
        )
    };
    (host, intent)
}

/// Applies site `s`'s gateway node (netlink and nftables); the two reports.
fn apply_gateway(
    sites: &[Site; 2],
    s: usize,
    tenants: &[(&Tenant, bool)],
) -> Vec<(String, ChangeReport)> {
    let (host, intent) = gateway_tenants(sites, s, tenants);
    let site = &sites[s];
    let r = block(site.gw_host.apply(&host)).unwrap_or_else(|e| panic!("gateway {s}: {e:?}"));
    let wan = GatewaySpec::for_site(&intent, "wan0", site.wan);
    let n = block(site.nft.apply(&wan)).unwrap_or_else(|e| panic!("nft {s}: {e:?}"));
    vec![
        (format!("{} (netlink)", site.gw), r),
        (format!("{} (nft)", site.gw), n),
    ]
}

/// Applies the leaf of site `s` (bridge and VXLAN per tenant, the hosts' ports in them) and its
/// hosts (access mode, one tenant each).
fn apply_leaf_and_hosts(
    sites: &[Site; 2],
    s: usize,
    tenants: &[&Tenant],
) -> Vec<(String, ChangeReport)> {
    let site = &sites[s];
    let mut out = Vec::new();
    let leaf = NetlinkHost::new(Some(site.leaf.clone()), "");
    let spec = HostNetworkSpec {
        vtep: site.leaf_vtep,
        tenants: tenants
            .iter()
            .map(|t| HostTenant {
                network: t.network(s),
                remote_vteps: vec![site.gw_underlay],
                workload: None,
                peers: vec![],
            })
            .collect(),
        router: None,
        access_port: None,
    };
    let mut r = block(leaf.apply(&spec)).unwrap_or_else(|e| panic!("leaf {s}: {e:?}"));
    for (h, t) in tenants.iter().enumerate() {
        let (bridge, ..) = NetlinkHost::device_names(t.vni);
        let a = block(attach_ports(Some(&site.leaf), &bridge, &[format!("p{h}")]))
            .unwrap_or_else(|e| panic!("leaf {s} ports: {e:?}"));
        r.changes.extend(a.changes);
    }
    out.push((site.leaf.clone(), r));
    for (h, t) in tenants.iter().enumerate() {
        let spec = HostNetworkSpec {
            vtep: Ipv4Addr::UNSPECIFIED,
            tenants: vec![HostTenant {
                network: t.network(s),
                remote_vteps: vec![],
                workload: Some(t.workloads[s]),
                peers: vec![],
            }],
            router: None,
            access_port: Some("eth0".into()),
        };
        let r = block(site.host_driver(h).apply(&spec))
            .unwrap_or_else(|e| panic!("host {}: {e:?}", site.hosts[h]));
        out.push((site.hosts[h].clone(), r));
    }
    out
}

fn serve(ns: &str, addr: SocketAddr, who: String) {
    serve_text(ns, addr, who);
}

fn fetch(ns: &str, addr: SocketAddr) -> Option<String> {
    fetch_text(ns, addr, Duration::from_secs(2))
}

/// Pings each (from namespace, to address) pair concurrently (two tries); true where a reply
/// came back.
fn ping_all(pairs: &[(String, Ipv4Addr)]) -> Vec<bool> {
    let children: Vec<_> = pairs
        .iter()
        .map(|(ns, ip)| {
            Command::new("ip")
                .args(["netns", "exec", ns, "ping", "-n", "-q"])
                .args(["-c", "2", "-i", "0.2", "-W", "1"])
                .arg(ip.to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn ping")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("ping").status.success())
        .collect()
}

/// Waits (at most `limit`) until `check` holds; how long it took.
fn eventually(what: &str, limit: Duration, check: impl Fn() -> bool) -> Duration {
    let t0 = Instant::now();
    while !check() {
        assert!(t0.elapsed() < limit, "timed out: {what}");
    }
    t0.elapsed()
}

/// A counter in `ns` of packets from any of `from`.
fn nft_probe(ns: &str, from: &[Ipv4Net]) {
    ns_ok(ns, "nft add table ip probe");
    ns_ok(
        ns,
        "nft add chain ip probe in { type filter hook prerouting priority -300 ; policy accept ; }",
    );
    for net in from {
        ns_ok(
            ns,
            &format!("nft add rule ip probe in ip saddr {net} counter comment \"foreign\""),
        );
    }
}

fn nft_probe_packets(ns: &str) -> u64 {
    let out = run(&[
        "ip", "netns", "exec", ns, "nft", "-j", "list", "table", "ip", "probe",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("nft json");
    v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i.get("rule"))
        .flat_map(|r| r["expr"].as_array().unwrap().iter())
        .filter_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
        .sum()
}

fn text(args: &[&str]) -> String {
    String::from_utf8_lossy(&run(args).stdout).into_owned()
}

fn counters(nft: &NftGateway) -> BTreeMap<String, u64> {
    block(nft.counters())
        .expect("counters")
        .expect("the gateway's table is installed")
        .packets
}

fn unchanged(reports: &[(String, ChangeReport)]) {
    for (who, r) in reports {
        assert!(!r.changed(), "second apply on {who}: {r}");
    }
}

#[test]
fn tenants_reach_their_other_sites_through_their_own_tunnels() {
    require(&["ip", "nft", "ping"]);
    let started = Instant::now();
    let prefix = format!("mtn{:x}-", std::process::id() % 0xffff);
    let spaces = Namespaces::new(prefix);
    let a = Tenant::new("tenant-a", 10001, 1);
    let b = Tenant::new("tenant-b", 10002, 2);

    // The internet: routes between the two sites' WAN /28s.
    let inet = spaces.add("inet");
    ns_ok(&inet, "sysctl -qw net.ipv4.ip_forward=1");
    let mut made = Vec::new();
    for (i, (wan, next_hop)) in [
        (
            Ipv4Addr::new(203, 0, 113, 1),
            Ipv4Addr::new(203, 0, 113, 14),
        ),
        (
            Ipv4Addr::new(203, 0, 113, 17),
            Ipv4Addr::new(203, 0, 113, 30),
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let n = i + 1;
        let gw = spaces.add(&format!("gw{n}"));
        let leaf = spaces.add(&format!("leaf{n}"));
        veth(&gw, "wan0", &inet, &format!("s{n}"));
        ns_ok(&gw, &format!("ip addr add {wan}/28 dev wan0"));
        ns_ok(&gw, &format!("ip route add default via {next_hop}"));
        ns_ok(&inet, &format!("ip addr add {next_hop}/28 dev s{n}"));
        let gw_underlay = Ipv4Addr::new(172, 31, n as u8, 3);
        let leaf_vtep = Ipv4Addr::new(172, 31, n as u8, 1);
        veth(&gw, "u0", &leaf, "u0");
        ns_ok(&gw, &format!("ip addr add {gw_underlay}/24 dev u0"));
        ns_ok(&leaf, &format!("ip addr add {leaf_vtep}/24 dev u0"));
        let mut hosts = Vec::new();
        for h in 0..2 {
            let host = spaces.add(&format!("h{n}{h}"));
            veth(&leaf, &format!("p{h}"), &host, "eth0");
            hosts.push(host);
        }
        made.push(Site {
            gw_host: NetlinkHost::new(Some(gw.clone()), format!("{gw}-")),
            nft: NftGateway::new("meridian_gw", Some(gw.clone())),
            gw,
            leaf,
            hosts,
            wan,
            next_hop,
            gw_underlay,
            leaf_vtep,
        });
    }
    let sites: [Site; 2] = made.try_into().ok().unwrap();
    let both = [(&a, true), (&b, true)];
    println!("topology: {:?}", started.elapsed());

    // Tunnels are refused while the node filters reverse paths, with a message saying so.
    ns_ok(&sites[0].gw, "sysctl -qw net.ipv4.conf.all.rp_filter=1");
    let (spec, _) = gateway_tenants(&sites, 0, &both);
    match block(sites[0].gw_host.apply(&spec)) {
        Err(e @ HostNetworkError::RpFilter { .. }) => {
            assert!(e.to_string().contains("rp_filter=0"), "{e}");
        }
        other => panic!("tunnels with rp_filter on: {other:?}"),
    }
    assert!(!text(&["ip", "-n", &sites[0].gw, "link"]).contains("mbr"));
    for s in &sites {
        ns_ok(&s.gw, "sysctl -qw net.ipv4.conf.all.rp_filter=0");
        // Every refused connection gets its ICMP error at once (not rate-limited after the
        // pings' ones), so the negative checks below finish without waiting for timeouts.
        ns_ok(&s.gw, "sysctl -qw net.ipv4.icmp_ratelimit=0");
    }

    // 1. The first apply: leaves, hosts, gateways.
    let t0 = Instant::now();
    let mut reports = Vec::new();
    for s in 0..2 {
        reports.extend(apply_leaf_and_hosts(&sites, s, &[&a, &b]));
        reports.extend(apply_gateway(&sites, s, &both));
    }
    let first_apply = t0.elapsed();
    for (who, r) in &reports {
        assert!(r.changed(), "{who}");
    }
    let tunnel = text(&["ip", "-n", &sites[0].gw, "-d", "link", "show", "msx10001"]);
    assert!(
        tunnel.contains("vxlan id 10001 local 203.0.113.1")
            && tunnel.contains(&format!("dstport {SITE_TUNNEL_PORT}"))
            && !tunnel.contains("master"),
        "{tunnel}"
    );
    let rules = text(&["ip", "-n", &sites[0].gw, "rule"]);
    assert!(rules.contains("iif msx10001 lookup 101"), "{rules}");
    assert!(rules.contains("iif msx10002 lookup 102"), "{rules}");
    let routes = text(&["ip", "-n", &sites[0].gw, "route", "show", "table", "101"]);
    assert!(
        routes.contains("10.1.2.0/24 via 10.1.2.1 dev msx10001 proto static onlink"),
        "{routes}"
    );
    assert!(routes.contains("prohibit 10.2.2.0/24"), "{routes}");
    // Hosts in access mode: the uplink in the tenant's bridge, no VXLAN device.
    let host_links = text(&["ip", "-n", &sites[0].hosts[0], "-d", "link"]);
    assert!(host_links.contains("master mbr10001"), "{host_links}");
    assert!(!host_links.contains("vxlan"), "{host_links}");

    let wl = |s: usize, t: &Tenant| sites[s].workload_ns(if t.vni == a.vni { 0 } else { 1 }, t);
    for (t, other) in [(&a, &b), (&b, &a)] {
        for s in 0..2 {
            nft_probe(&wl(s, t), &other.subnets);
            serve(
                &wl(s, t),
                SocketAddr::from((t.workloads[s], PORT)),
                format!("{}@site-{}", t.id, s + 1),
            );
        }
    }

    // 2. Each tenant across its sites, both ways: ping, then TCP.
    let mut first_reply = Duration::ZERO;
    for t in [&a, &b] {
        for s in 0..2 {
            let took = eventually(
                &format!("{} site {} -> site {}", t.id, s + 1, 2 - s),
                Duration::from_secs(10),
                || pings(&wl(s, t), t.workloads[1 - s]),
            );
            first_reply = first_reply.max(took);
            let got = fetch(&wl(s, t), SocketAddr::from((t.workloads[1 - s], PORT)));
            assert_eq!(
                got.as_deref(),
                Some(format!("{}@site-{}", t.id, 2 - s).as_str()),
                "{} TCP site {} -> site {}",
                t.id,
                s + 1,
                2 - s
            );
        }
    }
    println!(
        "A and B: ping and TCP across the sites, both ways (first replies within {first_reply:?})"
    );

    // 3. Never across tenants, at either site, in either direction.
    let mut pairs = Vec::new();
    for (t, other) in [(&a, &b), (&b, &a)] {
        for s in 0..2 {
            for o in 0..2 {
                pairs.push((wl(s, t), other.workloads[o]));
            }
            // Nor the other tenant's gateway address here.
            pairs.push((wl(s, t), other.gateway(s)));
        }
    }
    let t0 = Instant::now();
    let replies = ping_all(&pairs);
    for ((ns, ip), reply) in pairs.iter().zip(&replies) {
        assert!(!reply, "{ns} got a reply from {ip}");
    }
    for (t, other) in [(&a, &b), (&b, &a)] {
        for s in 0..2 {
            for o in 0..2 {
                let to = SocketAddr::from((other.workloads[o], PORT));
                assert_eq!(
                    fetch(&wl(s, t), to),
                    None,
                    "{} at site {} reached {to}",
                    t.id,
                    s + 1
                );
            }
        }
    }
    for t in [&a, &b] {
        for s in 0..2 {
            let p = nft_probe_packets(&wl(s, t));
            assert_eq!(
                p,
                0,
                "{} at site {} saw {p} packets of the other tenant",
                t.id,
                s + 1
            );
        }
    }
    println!(
        "A <-> B: {} pings and 8 TCP connections fail, 0 packets of the other tenant in the 4 workload namespaces ({:?})",
        pairs.len(),
        t0.elapsed()
    );

    // 4. Nobody but the peer gateways gets frames into a tenant: an ARP request for A's gateway
    // in VXLAN (VNI 10001) from the internet, to the tunnel port and to the segments' port, is
    // dropped by the rule for each, and the gateway learns nothing of the sender.
    let before = counters(&sites[0].nft);
    assert!(before["tunnel from 203.0.113.17"] > 0, "{before:?}");
    assert!(before["tenant-a to its other sites"] > 0, "{before:?}");
    let intruder_mac = [0x02, 0xaa, 0, 0, 0, 0x01];
    let mut frame = vec![0x08, 0, 0, 0, 0, 0x27, 0x11, 0]; // VXLAN: flag I, VNI 10001
    frame.extend([0xff; 6]);
    frame.extend(intruder_mac);
    frame.extend([0x08, 0x06]); // ARP
    frame.extend([0, 1, 0x08, 0, 6, 4, 0, 1]); // Ethernet/IPv4, request
    frame.extend(intruder_mac);
    frame.extend([10, 1, 1, 99]);
    frame.extend([0; 6]);
    frame.extend(a.gateway(0).octets());
    let source = SocketAddr::from((sites[0].next_hop, 0));
    for (port, rule) in [
        (SITE_TUNNEL_PORT, "tunnel from elsewhere"),
        (VXLAN_PORT, "segments from the wan"),
    ] {
        let target = SocketAddr::from((sites[0].wan, port));
        let datagram = frame.clone();
        in_ns(&inet, move || {
            let s = UdpSocket::bind(source).expect("bind in the internet");
            s.send_to(&datagram, target).expect("send");
        });
        eventually(
            &format!("the datagram to {target} is counted"),
            Duration::from_secs(5),
            || counters(&sites[0].nft)[rule] > before[rule],
        );
        println!("internet -> {target}: dropped by \"{rule}\"");
    }
    for dev in ["mvx10001", "msx10001"] {
        let fdb = text(&["bridge", "-n", &sites[0].gw, "fdb", "show", "dev", dev]);
        assert!(!fdb.contains("02:aa:00:00:00:01"), "{dev}: {fdb}");
    }
    let neigh = text(&["ip", "-n", &sites[0].gw, "neigh"]);
    assert!(!neigh.contains("10.1.1.99"), "{neigh}");

    // 5. The same again changes nothing anywhere.
    let t0 = Instant::now();
    let mut again = Vec::new();
    for s in 0..2 {
        again.extend(apply_leaf_and_hosts(&sites, s, &[&a, &b]));
        again.extend(apply_gateway(&sites, s, &both));
    }
    let second_apply = t0.elapsed();
    unchanged(&again);
    println!("second apply: no change on {} nodes/drivers", again.len());

    // 6. B leaves both gateways: nothing of it is left there; A still reaches its other site.
    let t0 = Instant::now();
    for s in 0..2 {
        apply_gateway(&sites, s, &[(&a, true)]);
    }
    let remove_b = t0.elapsed();
    for site in &sites {
        let links = text(&["ip", "-n", &site.gw, "-d", "link"]);
        assert!(!links.contains("10002"), "{links}");
        let rules = text(&["ip", "-n", &site.gw, "rule"]);
        assert!(
            !rules.contains("10002") && !rules.contains("lookup 102"),
            "{rules}"
        );
        let routes = text(&["ip", "-n", &site.gw, "route", "show", "table", "all"]);
        assert!(
            !routes.contains("table 102") && !routes.contains("10.2."),
            "{routes}"
        );
        let rs = text(&[
            "ip",
            "netns",
            "exec",
            &site.gw,
            "nft",
            "list",
            "table",
            "ip",
            "meridian_gw",
        ]);
        assert!(!rs.contains("tenant-b") && rs.contains("tenant-a"), "{rs}");
    }
    assert!(pings(&wl(0, &a), a.workloads[1]));
    unchanged(&apply_gateway(&sites, 0, &[(&a, true)]));

    // 7. Site 2 leaves A's peers at site 1: A's tunnel there goes, and with it A's way across.
    let t0 = Instant::now();
    let r = apply_gateway(&sites, 0, &[(&a, false)]);
    let unpeer = t0.elapsed();
    assert!(r[0].1.changed() && r[1].1.changed(), "{r:?}");
    let links = text(&["ip", "-n", &sites[0].gw, "link"]);
    assert!(!links.contains("msx"), "{links}");
    let rules = text(&["ip", "-n", &sites[0].gw, "rule"]);
    assert!(!rules.contains("msx"), "{rules}");
    let rs = text(&[
        "ip",
        "netns",
        "exec",
        &sites[0].gw,
        "nft",
        "list",
        "table",
        "ip",
        "meridian_gw",
    ]);
    assert!(!rs.contains("msx") && !rs.contains("8472"), "{rs}");
    assert_eq!(
        ping_all(&[(wl(0, &a), a.workloads[1]), (wl(1, &a), a.workloads[0])]),
        [false, false]
    );
    assert_eq!(
        fetch(&wl(0, &a), SocketAddr::from((a.workloads[1], PORT))),
        None
    );
    unchanged(&apply_gateway(&sites, 0, &[(&a, false)]));

    // 8. A's host at site 1 gives up the tenant: its uplink is released from the bridge (and
    // kept), the bridge, veth and workload namespace are gone.
    let host = &sites[0].hosts[0];
    let workload_ns = wl(0, &a);
    let r = block(sites[0].host_driver(0).apply(&HostNetworkSpec {
        vtep: Ipv4Addr::UNSPECIFIED,
        tenants: vec![],
        router: None,
        access_port: Some("eth0".into()),
    }))
    .expect("host without tenants");
    assert!(r.changed());
    let links = text(&["ip", "-n", host, "-o", "link"]);
    assert!(
        links.contains("eth0")
            && !links.contains("master")
            && !links.contains("mbr")
            && !links.contains("mvh"),
        "{links}"
    );
    assert!(!std::path::Path::new(&format!("/run/netns/{workload_ns}")).exists());

    println!("\ntimings (2 sites: 2 gateways, 2 leaves, 4 hosts in access mode):");
    println!("  first apply: {first_apply:?}");
    println!("  same again: {second_apply:?}, no changes");
    println!("  remove tenant B from both gateways: {remove_b:?}");
    println!("  drop A's peer at site 1: {unpeer:?}");
    println!("  whole test: {:?}", started.elapsed());
    drop(spaces);
}
