//! Tenant isolation on the real kernel: two sites of two servers each, joined by a routed
//! underlay namespace, plus a gateway node on site 1 with a WAN link to an "internet"
//! namespace. The host and gateway drivers apply the intent; the test then measures who can
//! talk to whom. Needs root (it makes network namespaces) and `ip`, `nft`, `ping`, which
//! `scripts/test.sh` installs; without them it fails with a message saying so, rather than
//! passing without having checked anything.
//!
//! Run with `--nocapture` to see the isolation matrix and the intent-change timings.

use meridian_testkit::netns::{Namespaces, enter, in_ns, ns_ok, ok, require, run};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meridian_common::ids::{Generation, SiteId, TenantId, WorkloadId};
use meridian_common::model::{Exposure, Ipv4Net, Protocol, SiteIntent, TenantNetworkIntent};
use meridian_drivers::{
    ChangeReport, GatewaySpec, HostNetwork, HostNetworkSpec, HostTenant, NetlinkHost, NftGateway,
    RouterRole, WanGateway,
};

const WAN_GW: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const WAN_CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
const PUBLIC_PORT: u16 = 8080;
const BACKEND_PORT: u16 = 8000;

/// A TCP server in a namespace: answers any request with an HTTP 200 naming `who`, or, when
/// the request starts with `SINK`, counts the bytes it receives and sends the count back.
struct Server {
    stop: Arc<AtomicBool>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(ns: &str, addr: Ipv4Addr, port: u16, who: &str) -> Server {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let who = who.to_owned();
    let path = format!("/run/netns/{ns}");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        enter(&path);
        let listener = TcpListener::bind((addr, port)).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        tx.send(()).expect("ready");
        while !flag.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let who = who.clone();
                    std::thread::spawn(move || {
                        let _ = s.set_nonblocking(false);
                        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
                        let mut head = [0u8; 4];
                        if s.read_exact(&mut head).is_err() {
                            return;
                        }
                        if &head == b"SINK" {
                            let mut n = 0u64;
                            let mut buf = [0u8; 65536];
                            let mut sum = 0u64;
                            while let Ok(k) = s.read(&mut buf) {
                                if k == 0 {
                                    break;
                                }
                                n += k as u64;
                                sum = buf[..k].iter().fold(sum, |a, &b| a + u64::from(b));
                            }
                            let _ = s.write_all(format!("{n} {sum}").as_bytes());
                        } else {
                            // Read the whole request head, so closing does not reset.
                            let mut head = head.to_vec();
                            let mut byte = [0u8; 1];
                            while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                                if s.read_exact(&mut byte).is_err() {
                                    return;
                                }
                                head.push(byte[0]);
                            }
                            let body = format!("inference answer from {who}\n");
                            let _ = s.write_all(
                                format!(
                                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                                    body.len()
                                )
                                .as_bytes(),
                            );
                        }
                    });
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(10))
        .expect("server ready");
    Server { stop }
}

/// An HTTP GET from namespace `ns`; the body, or None when no connection could be made.
fn http_get(ns: &str, ip: Ipv4Addr, port: u16) -> Option<String> {
    in_ns(ns, move || {
        let addr = SocketAddr::from((ip, port));
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n").ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        Some(out)
    })
}

/// Whether a TCP connection from `ns` to `ip:port` is established within a short timeout.
fn tcp_connects(ns: &str, ip: Ipv4Addr, port: u16) -> bool {
    in_ns(ns, move || {
        TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_secs(2)).is_ok()
    })
}

/// Sends `len` bytes from `ns` to the sink at `ip:port`; returns what the sink counted.
fn tcp_transfer(ns: &str, ip: Ipv4Addr, port: u16, len: usize) -> (u64, u64, u64) {
    in_ns(ns, move || {
        let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
        let sum = data.iter().map(|&b| u64::from(b)).sum::<u64>();
        let mut s =
            TcpStream::connect_timeout(&SocketAddr::from((ip, port)), Duration::from_secs(5))
                .expect("connect for transfer");
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        s.write_all(b"SINK").unwrap();
        s.write_all(&data).unwrap();
        s.shutdown(std::net::Shutdown::Write).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        let mut it = reply.split_whitespace().map(|x| x.parse::<u64>().unwrap());
        (it.next().unwrap(), it.next().unwrap(), sum)
    })
}

/// Pings each (from namespace, to address) pair concurrently; true where a reply came back.
fn ping_all(pairs: &[(String, Ipv4Addr)], count: u32) -> Vec<bool> {
    let children: Vec<_> = pairs
        .iter()
        .map(|(ns, ip)| {
            Command::new("ip")
                .args(["netns", "exec", ns, "ping", "-n", "-q"])
                .args(["-c", &count.to_string(), "-i", "0.2", "-W", "1"])
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

fn nft_probe(ns: &str, from: Ipv4Net) {
    ns_ok(ns, "nft add table ip probe");
    ns_ok(
        ns,
        "nft add chain ip probe in { type filter hook prerouting priority -300 ; policy accept ; }",
    );
    ns_ok(
        ns,
        &format!("nft add rule ip probe in ip saddr {from} counter comment \"foreign\""),
    );
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

struct Node {
    name: &'static str,
    ns: String,
    vtep: Ipv4Addr,
    driver: NetlinkHost,
}

struct Tenant {
    net: TenantNetworkIntent,
    /// (node name, workload address)
    workloads: Vec<(&'static str, Ipv4Addr)>,
}

fn tenant(id: &str, vni: u32, third: u8, on: &[(&'static str, u8)]) -> Tenant {
    Tenant {
        net: TenantNetworkIntent {
            tenant: TenantId::parse(id).unwrap(),
            vni,
            table: 100 + u32::from(third),
            subnet: Ipv4Net::new(Ipv4Addr::new(10, third, 0, 0), 24).unwrap(),
            gateway: Ipv4Addr::new(10, third, 0, 1),
        },
        workloads: on
            .iter()
            .map(|&(n, host)| (n, Ipv4Addr::new(10, third, 0, host)))
            .collect(),
    }
}

fn host_spec(node: &Node, nodes: &[Node], tenants: &[&Tenant]) -> HostNetworkSpec {
    let router = (node.name == "gw").then(|| RouterRole {
        uplink: "wan0".into(),
        next_hop: WAN_CLIENT,
        tunnel_endpoint: None,
    });
    let carries = |t: &Tenant, n: &str| n == "gw" || t.workloads.iter().any(|w| w.0 == n);
    HostNetworkSpec {
        vtep: node.vtep,
        router,
        tenants: tenants
            .iter()
            .filter(|t| carries(t, node.name))
            .map(|t| HostTenant {
                network: t.net.clone(),
                remote_vteps: nodes
                    .iter()
                    .filter(|o| o.name != node.name && carries(t, o.name))
                    .map(|o| o.vtep)
                    .collect(),
                workload: t.workloads.iter().find(|w| w.0 == node.name).map(|w| w.1),
                peers: vec![],
            })
            .collect(),
        access_port: None,
    }
}

fn site_intent(
    site: &str,
    generation: u64,
    tenants: &[&Tenant],
    exposures: &[Exposure],
) -> SiteIntent {
    SiteIntent {
        networks: tenants.iter().map(|t| t.net.clone()).collect(),
        exposures: exposures.to_vec(),
        ..SiteIntent::empty(SiteId::parse(site).unwrap(), Generation(generation))
    }
}

/// Applies the intent on every node and on the gateway; returns the reports.
fn apply_all(
    nodes: &[Node],
    gw: &NftGateway,
    tenants: &[&Tenant],
    exposures: &[Exposure],
    generation: u64,
) -> Vec<(String, ChangeReport)> {
    let mut reports = Vec::new();
    for node in nodes {
        let spec = host_spec(node, nodes, tenants);
        let r =
            block(node.driver.apply(&spec)).unwrap_or_else(|e| panic!("host {}: {e:?}", node.name));
        reports.push((node.name.to_owned(), r));
    }
    let intent = site_intent("site-1", generation, tenants, exposures);
    let spec = GatewaySpec::for_site(&intent, "wan0", WAN_GW);
    reports.push(("nft".into(), block(gw.apply(&spec)).expect("gateway")));
    reports
}

/// Runs one driver call to completion: these tests drive the kernel from plain threads.
fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(f)
}

fn total_changes(reports: &[(String, ChangeReport)]) -> usize {
    reports.iter().map(|(_, r)| r.changes.len()).sum()
}

#[test]
fn tenants_are_isolated_on_the_real_kernel() {
    require(&["ip", "nft", "ping"]);
    let prefix = format!("mt{:x}-", std::process::id() % 0xffff);
    let spaces = Namespaces::new(prefix.clone());

    // Underlay: one routed namespace with a bridge per site.
    let u = spaces.add("u");
    ns_ok(&u, "sysctl -qw net.ipv4.ip_forward=1");
    for (br, addr) in [("site1", "172.31.1.254/24"), ("site2", "172.31.2.254/24")] {
        ns_ok(&u, &format!("ip link add {br} type bridge"));
        ns_ok(&u, &format!("ip addr add {addr} dev {br}"));
        ns_ok(&u, &format!("ip link set {br} up"));
    }
    let layout: [(&'static str, &str, Ipv4Addr); 5] = [
        ("s1a", "site1", Ipv4Addr::new(172, 31, 1, 1)),
        ("s1b", "site1", Ipv4Addr::new(172, 31, 1, 2)),
        ("gw", "site1", Ipv4Addr::new(172, 31, 1, 3)),
        ("s2a", "site2", Ipv4Addr::new(172, 31, 2, 1)),
        ("s2b", "site2", Ipv4Addr::new(172, 31, 2, 2)),
    ];
    let mut nodes = Vec::new();
    for (i, (name, site, vtep)) in layout.iter().enumerate() {
        let ns = spaces.add(name);
        let outer = format!("{prefix}{i}");
        ok(&[
            "ip", "link", "add", &outer, "type", "veth", "peer", "name", "u0", "netns", &ns,
        ]);
        ok(&["ip", "link", "set", &outer, "netns", &u]);
        ns_ok(&u, &format!("ip link set {outer} master {site} up"));
        ns_ok(&ns, &format!("ip addr add {vtep}/24 dev u0"));
        ns_ok(&ns, "ip link set u0 up");
        let via = if *site == "site1" {
            "172.31.1.254"
        } else {
            "172.31.2.254"
        };
        ns_ok(&ns, &format!("ip route add default via {via}"));
        nodes.push(Node {
            name,
            driver: NetlinkHost::new(Some(ns.clone()), format!("{ns}-")),
            ns,
            vtep: *vtep,
        });
    }
    // WAN: the gateway node's wan0 to an "internet" namespace. The client also routes the
    // tenant ranges at the gateway, so only the gateway's rules stand in its way.
    let inet = spaces.add("inet");
    let gw_ns = nodes[2].ns.clone();
    ok(&[
        "ip", "link", "add", "wan0", "netns", &gw_ns, "type", "veth", "peer", "name", "eth0",
        "netns", &inet,
    ]);
    ns_ok(&gw_ns, &format!("ip addr add {WAN_GW}/24 dev wan0"));
    ns_ok(&gw_ns, "ip link set wan0 up");
    ns_ok(&inet, &format!("ip addr add {WAN_CLIENT}/24 dev eth0"));
    ns_ok(&inet, "ip link set eth0 up");
    ns_ok(&inet, &format!("ip route add 10.0.0.0/8 via {WAN_GW}"));
    let gateway = NftGateway::new("meridian_gw", Some(gw_ns.clone()));

    let a = tenant(
        "tenant-a",
        10101,
        10,
        &[("s1a", 11), ("s1b", 12), ("s2a", 21), ("s2b", 22)],
    );
    let b = tenant(
        "tenant-b",
        10202,
        20,
        &[("s1a", 11), ("s1b", 12), ("s2a", 21), ("s2b", 22)],
    );
    let c = tenant("tenant-c", 10303, 30, &[("s1a", 11), ("s2b", 22)]);
    let exposure = Exposure {
        tenant: a.net.tenant.clone(),
        workload: WorkloadId::parse("llm-serve").unwrap(),
        public_ip: WAN_GW,
        public_port: PUBLIC_PORT,
        protocol: Protocol::Tcp,
        backend_ip: Ipv4Addr::new(10, 10, 0, 21),
        backend_port: BACKEND_PORT,
    };

    // 1. The first intent.
    let t0 = Instant::now();
    let reports = apply_all(
        &nodes,
        &gateway,
        &[&a, &b],
        std::slice::from_ref(&exposure),
        1,
    );
    let first_apply = t0.elapsed();
    assert!(total_changes(&reports) > 0);
    for (who, r) in &reports {
        println!("apply gen 1 on {who}: {} change(s)", r.changes.len());
    }

    let wl_ns = |node: &Node, t: &Tenant| format!("{}-{}", node.ns, t.net.tenant);
    let node = |n: &str| nodes.iter().find(|x| x.name == n).unwrap();

    // Counters in every workload namespace for packets from the other tenant.
    for (t, other) in [(&a, &b), (&b, &a)] {
        for (n, _) in &t.workloads {
            nft_probe(&wl_ns(node(n), t), other.net.subnet);
        }
    }

    // 2. The isolation matrix: every workload pings every other workload.
    let endpoints: Vec<(String, String, Ipv4Addr)> = [&a, &b]
        .iter()
        .flat_map(|t| {
            t.workloads.iter().map(|(n, ip)| {
                (
                    format!("{}@{}", &t.net.tenant.as_str()[7..], n),
                    wl_ns(node(n), t),
                    *ip,
                )
            })
        })
        .collect();
    let mut pairs = Vec::new();
    for (i, (_, from_ns, _)) in endpoints.iter().enumerate() {
        for (j, (_, _, to_ip)) in endpoints.iter().enumerate() {
            if i != j {
                pairs.push(((i, j), (from_ns.clone(), *to_ip)));
            }
        }
    }
    let probes: Vec<_> = pairs.iter().map(|p| p.1.clone()).collect();
    let mut result = ping_all(&probes, 3);
    // A reachable pair that lost its first packets to ARP on a loaded machine gets one retry.
    let same = |(i, j): (usize, usize)| endpoints[i].0[..1] == endpoints[j].0[..1];
    let retry: Vec<usize> = (0..pairs.len())
        .filter(|&k| !result[k] && same(pairs[k].0))
        .collect();
    if !retry.is_empty() {
        let again = ping_all(
            &retry.iter().map(|&k| probes[k].clone()).collect::<Vec<_>>(),
            5,
        );
        for (k, ok) in retry.iter().zip(again) {
            result[*k] = ok;
        }
    }
    let mut matrix: BTreeMap<(usize, usize), bool> = BTreeMap::new();
    for (k, ((i, j), _)) in pairs.iter().enumerate() {
        matrix.insert((*i, *j), result[k]);
    }
    println!("\nisolation matrix (ping, row -> column; Y = replies, . = none):");
    print!("{:>8}", "");
    for (name, _, _) in &endpoints {
        print!("{name:>8}");
    }
    println!();
    for (i, (name, _, _)) in endpoints.iter().enumerate() {
        print!("{name:>8}");
        for j in 0..endpoints.len() {
            let cell = if i == j {
                "-"
            } else if matrix[&(i, j)] {
                "Y"
            } else {
                "."
            };
            print!("{cell:>8}");
        }
        println!();
    }
    for ((i, j), reach) in &matrix {
        assert_eq!(
            *reach,
            same((*i, *j)),
            "{} -> {}: reachable = {reach}",
            endpoints[*i].0,
            endpoints[*j].0
        );
    }

    // TCP: a transfer across sites inside each tenant, and no connection across tenants.
    let sinks: Vec<Server> = endpoints
        .iter()
        .map(|(name, ns, ip)| serve(ns, *ip, BACKEND_PORT, name))
        .collect();
    for t in [&a, &b] {
        let from = wl_ns(node("s1a"), t);
        let to = t.workloads.iter().find(|w| w.0 == "s2b").unwrap().1;
        let (n, sum, want) = tcp_transfer(&from, to, BACKEND_PORT, 4 << 20);
        assert_eq!(
            (n, sum),
            ((4 << 20) as u64, want),
            "{} transfer",
            t.net.tenant
        );
        println!(
            "{}: 4 MiB TCP transfer s1a -> s2b over VXLAN ok",
            t.net.tenant
        );
    }
    for (t, other) in [(&a, &b), (&b, &a)] {
        for (n, _) in &t.workloads {
            for (_, ip) in &other.workloads {
                assert!(
                    !tcp_connects(&wl_ns(node(n), t), *ip, BACKEND_PORT),
                    "{} on {n} connected to {ip}",
                    t.net.tenant
                );
            }
        }
        // Nor the other tenant's gateway address on the gateway node (dropped by its input
        // chain, so this one waits for the connect timeout: once per tenant).
        assert!(!tcp_connects(&wl_ns(node("s1a"), t), other.net.gateway, 22));
    }
    for (t, _) in [(&a, &b), (&b, &a)] {
        for (n, _) in &t.workloads {
            let p = nft_probe_packets(&wl_ns(node(n), t));
            assert_eq!(
                p, 0,
                "{} on {n} saw {p} packets of the other tenant",
                t.net.tenant
            );
        }
    }
    println!("nftables probes: 0 packets from the other tenant in all 8 workload namespaces");

    // 3. The published endpoint.
    let body = http_get(&inet, WAN_GW, PUBLIC_PORT).expect("published endpoint reachable");
    assert!(body.contains("inference answer from a@s2a"), "{body}");
    assert!(
        http_get(&inet, exposure.backend_ip, BACKEND_PORT).is_none(),
        "backend directly"
    );
    assert!(
        !tcp_connects(&inet, Ipv4Addr::new(10, 20, 0, 21), BACKEND_PORT),
        "tenant B"
    );
    assert!(!tcp_connects(&inet, WAN_GW, 9090), "unpublished port");
    let counters = block(gateway.counters())
        .expect("counters")
        .expect("the gateway's table is installed");
    println!("gateway counters: {counters:?}");
    assert!(counters.packets["tenant-a/llm-serve dnat tcp/8080"] >= 1);
    assert!(counters.packets["default drop"] >= 1);
    // Metering's egress: tenant A's answers to the internet left through the WAN, counted in
    // bytes (at least the answer's body); tenant B sent nothing out.
    let egress = |t: &str| {
        counters
            .egress_bytes
            .get(&meridian_common::ids::TenantId::parse(t).unwrap())
            .copied()
            .unwrap_or(0)
    };
    assert!(
        egress("tenant-a") >= body.len() as u64,
        "tenant-a egress {} bytes, answer {} bytes",
        egress("tenant-a"),
        body.len()
    );
    assert_eq!(egress("tenant-b"), 0, "{counters:?}");
    println!(
        "internet -> {WAN_GW}:{PUBLIC_PORT}: published (DNAT to a@s2a); backend direct, tenant B, port 9090: closed"
    );

    // 4. Re-applying the same intent changes nothing.
    let t0 = Instant::now();
    let again = apply_all(
        &nodes,
        &gateway,
        &[&a, &b],
        std::slice::from_ref(&exposure),
        1,
    );
    let reapply = t0.elapsed();
    for (who, r) in &again {
        assert!(!r.changed(), "re-apply on {who}: {r}");
    }
    println!("re-apply of the same intent: no changes on any node or the gateway");

    // 5. Adding tenant C: time until C's workloads reach each other across sites.
    let t0 = Instant::now();
    let reports = apply_all(
        &nodes,
        &gateway,
        &[&a, &b, &c],
        std::slice::from_ref(&exposure),
        2,
    );
    let add_apply = t0.elapsed();
    assert!(total_changes(&reports) > 0);
    let c_from = wl_ns(node("s1a"), &c);
    let c_to = Ipv4Addr::new(10, 30, 0, 22);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ping_all(&[(c_from.clone(), c_to)], 1)[0] {
        assert!(Instant::now() < deadline, "tenant C never came up");
    }
    let add_effect = t0.elapsed();
    assert!(!ping_all(&[(c_from.clone(), Ipv4Addr::new(10, 10, 0, 11))], 2)[0]);

    // 6. Removing tenant B: everything of it is gone.
    let t0 = Instant::now();
    let reports = apply_all(
        &nodes,
        &gateway,
        &[&a, &c],
        std::slice::from_ref(&exposure),
        3,
    );
    let remove_apply = t0.elapsed();
    assert!(total_changes(&reports) > 0);
    for n in &nodes {
        let links = String::from_utf8(run(&["ip", "-n", &n.ns, "-o", "link"]).stdout).unwrap();
        assert!(!links.contains("10202"), "{}: {links}", n.name);
        let rules = String::from_utf8(run(&["ip", "-n", &n.ns, "rule"]).stdout).unwrap();
        assert!(
            !rules.contains("mbr10202") && !rules.contains("lookup 120"),
            "{rules}"
        );
        let routes =
            String::from_utf8(run(&["ip", "-n", &n.ns, "route", "show", "table", "all"]).stdout)
                .unwrap();
        assert!(
            !routes.contains("table 120") && !routes.contains("10.20.0."),
            "{}: {routes}",
            n.name
        );
        assert!(!std::path::Path::new(&format!("/run/netns/{}-tenant-b", n.ns)).exists());
    }
    let nft = String::from_utf8(
        run(&[
            "ip",
            "netns",
            "exec",
            &gw_ns,
            "nft",
            "list",
            "table",
            "ip",
            "meridian_gw",
        ])
        .stdout,
    )
    .unwrap();
    assert!(
        !nft.contains("tenant-b") && !nft.contains("10.20.0."),
        "{nft}"
    );
    assert!(nft.contains("tenant-c"));
    // Tenant A still works, and its endpoint is still published.
    assert!(ping_all(&[(wl_ns(node("s1b"), &a), Ipv4Addr::new(10, 10, 0, 22))], 3)[0]);
    assert!(http_get(&inet, WAN_GW, PUBLIC_PORT).is_some());
    let again = apply_all(
        &nodes,
        &gateway,
        &[&a, &c],
        std::slice::from_ref(&exposure),
        3,
    );
    assert_eq!(total_changes(&again), 0, "{again:?}");

    println!("\nintent changes on the kernel (5 nodes + nftables):");
    println!("  first intent (2 tenants, 8 workloads): {first_apply:?} to apply");
    println!("  same intent again: {reapply:?}, 0 changes");
    println!(
        "  add tenant C: {add_apply:?} to apply, {add_effect:?} until C's first cross-site ping reply"
    );
    println!(
        "  remove tenant B: {remove_apply:?} to apply (devices, routes, rules, namespaces, nft rules gone)"
    );
    drop(sinks);
    drop(spaces);
}
