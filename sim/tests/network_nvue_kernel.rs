//! The NVUE emulator realising its applied configuration on the real kernel: two emulated
//! switches, each in a network namespace of its own, joined by a routed underlay namespace,
//! each with a "host" namespace on a veth access port. The NVUE driver applies tenants to
//! both switches; the hosts of one tenant then talk across the VXLAN through the switches,
//! the hosts of another tenant cannot reach them, and removing a tenant through the driver
//! removes its devices from the switch namespaces.
//!
//! Needs root (it makes network namespaces) and `ip`, `ping`, which `scripts/test.sh`
//! installs; without them it fails with a message saying so rather than passing unchecked.

use meridian_testkit::netns::{Namespaces, ns_ok, ok, pings, require, run, veth};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use meridian_common::ids::TenantId;
use meridian_common::model::{Ipv4Net, TenantNetworkIntent};
use meridian_drivers::nvue::{NvueClient, NvueConfig};
use meridian_drivers::{FabricSpec, FabricTenant, SwitchFabric};
use meridian_emulators::nvue::{NvueEmulator, NvueEmulatorConfig};

/// The names of the links of `ns` with their `ip -d link` detail.
fn links(ns: &str) -> String {
    String::from_utf8_lossy(&run(&["ip", "-n", ns, "-d", "link", "show"]).stdout).into_owned()
}

fn tenant(name: &str, n: u8, port: &str) -> FabricTenant {
    FabricTenant {
        network: TenantNetworkIntent {
            tenant: TenantId::parse(name).unwrap(),
            vni: 10100 + u32::from(n),
            table: 100 + u32::from(n),
            subnet: Ipv4Net::parse(&format!("10.{}.0.0/24", 100 + n)).unwrap(),
            gateway: Ipv4Addr::new(10, 100 + n, 0, 1),
        },
        l3_vni: 104000 + u32::from(n),
        vlan: 100 + u16::from(n),
        svi_address: Ipv4Addr::new(10, 100 + n, 0, 2),
        bonds: vec![(format!("bond{n}"), vec![port.into()])],
    }
}

struct Switch {
    ns: String,
    vtep: Ipv4Addr,
    emu: NvueEmulator,
    driver: NvueClient,
}

impl Switch {
    fn spec(&self, tenants: &[FabricTenant]) -> FabricSpec {
        FabricSpec {
            vtep: self.vtep,
            asn: 65000 + u32::from(self.vtep.octets()[3]),
            uplinks: vec!["swp51".into()],
            private_range: Ipv4Net::parse("10.0.0.0/8").unwrap(),
            tenants: tenants.to_vec(),
        }
    }
}

fn switch(ns: String, vtep: Ipv4Addr, peer: Ipv4Addr) -> Switch {
    let emu = NvueEmulator::start(NvueEmulatorConfig {
        step_delay: Duration::from_millis(5),
        ..NvueEmulatorConfig::default()
    })
    .unwrap()
    .with_namespace(ns.clone(), vtep, &[peer]);
    let d = NvueEmulatorConfig::default();
    let mut cfg = NvueConfig::new(emu.url(), d.username, d.password);
    cfg.request_timeout = Duration::from_secs(5);
    cfg.poll_interval = Duration::from_millis(10);
    cfg.apply_timeout = Duration::from_secs(10);
    let driver = NvueClient::new(cfg).unwrap();
    Switch {
        ns,
        vtep,
        emu,
        driver,
    }
}

#[tokio::test]
async fn tenant_traffic_runs_through_emulated_switches() {
    require(&["ip", "ping"]);
    let started = Instant::now();
    let nss = Namespaces::new(format!("mnk{}-", std::process::id()));
    let underlay = nss.add("ul");
    ok(&[
        "ip",
        "netns",
        "exec",
        &underlay,
        "sysctl",
        "-qw",
        "net.ipv4.ip_forward=1",
    ]);

    // Underlay: each switch's uplink swp51 on a routed /30 to the underlay namespace; the
    // VTEP is the uplink address.
    let mut switches = Vec::new();
    let vteps = [Ipv4Addr::new(10, 0, 1, 2), Ipv4Addr::new(10, 0, 2, 2)];
    for (i, vtep) in vteps.iter().enumerate() {
        let n = i + 1;
        let ns = nss.add(&format!("sw{n}"));
        veth(&underlay, &format!("ul{n}"), &ns, "swp51");
        ns_ok(&underlay, &format!("ip addr add 10.0.{n}.1/30 dev ul{n}"));
        ns_ok(&ns, &format!("ip addr add {vtep}/30 dev swp51"));
        ns_ok(&ns, &format!("ip route add default via 10.0.{n}.1"));
        switches.push(switch(ns, *vtep, vteps[1 - i]));
    }

    // Hosts: per switch one host of tenant A (on swp3) and one of tenant B (on swp4).
    let mut hosts_a = Vec::new();
    let mut hosts_b = Vec::new();
    for (i, sw) in switches.iter().enumerate() {
        let n = i + 1;
        for (t, port, list) in [(1u8, "swp3", &mut hosts_a), (2u8, "swp4", &mut hosts_b)] {
            let h = nss.add(&format!("h{n}t{t}"));
            veth(&sw.ns, port, &h, "eth0");
            let ip = Ipv4Addr::new(10, 100 + t, 0, 10 + n as u8);
            ns_ok(&h, &format!("ip addr add {ip}/24 dev eth0"));
            ns_ok(&h, "ip link set eth0 mtu 1450");
            list.push((h, ip));
        }
    }
    // To show isolation by VNI rather than by subnet, B's host on switch 2 also gets an
    // address in A's subnet.
    let b2_in_a = Ipv4Addr::new(10, 101, 0, 99);
    ns_ok(&hosts_b[1].0, &format!("ip addr add {b2_in_a}/24 dev eth0"));

    let a = tenant("tenant-a", 1, "swp3");
    let b = tenant("tenant-b", 2, "swp4");

    // Tenant A only: A's hosts talk across the VXLAN.
    let t0 = Instant::now();
    for sw in &switches {
        let report = sw
            .driver
            .apply(&sw.spec(std::slice::from_ref(&a)))
            .await
            .unwrap();
        assert!(report.changed());
        let links = links(&sw.ns);
        assert!(links.contains("mbr10101"), "{links}");
        assert!(
            links.contains("vxlan id 10101") && links.contains(&format!("local {}", sw.vtep)),
            "{links}"
        );
        assert!(links.contains("dstport 4789"), "{links}");
        let realised = sw.emu.realisations();
        assert_eq!(realised.len(), 1);
        assert!(
            realised[0]
                .changes
                .iter()
                .any(|c| c == "set link swp3 controller"),
            "{realised:?}"
        );
    }
    println!(
        "tenant A applied and realised on both switches in {:?}",
        t0.elapsed()
    );
    assert!(pings(&hosts_a[0].0, hosts_a[1].1), "A1 cannot reach A2");
    assert!(pings(&hosts_a[1].0, hosts_a[0].1), "A2 cannot reach A1");
    // B's host is not attached to any segment yet.
    assert!(
        !pings(&hosts_b[1].0, hosts_a[0].1),
        "B2 reached A1 unattached"
    );

    // Re-applying the same intent changes nothing, on the switch or the kernel.
    for sw in &switches {
        let report = sw
            .driver
            .apply(&sw.spec(std::slice::from_ref(&a)))
            .await
            .unwrap();
        assert!(!report.changed(), "{report}");
        assert_eq!(sw.emu.realisations().len(), 1);
    }

    // Tenant B added on its own VNI: B's hosts talk, and nothing crosses between A and B,
    // not even from B's host holding an address in A's subnet.
    for sw in &switches {
        sw.driver
            .apply(&sw.spec(&[a.clone(), b.clone()]))
            .await
            .unwrap();
        let links = links(&sw.ns);
        assert!(links.contains("vxlan id 10102"), "{links}");
    }
    assert!(pings(&hosts_b[0].0, hosts_b[1].1), "B1 cannot reach B2");
    assert!(pings(&hosts_a[0].0, hosts_a[1].1), "A1 lost A2");
    assert!(!pings(&hosts_b[1].0, hosts_a[0].1), "B2 reached A1");
    assert!(!pings(&hosts_a[0].0, b2_in_a), "A1 reached B2");

    // Tenant A removed through the driver: its devices leave both switches, A's ping stops,
    // B keeps working.
    let t0 = Instant::now();
    for sw in &switches {
        sw.driver
            .apply(&sw.spec(std::slice::from_ref(&b)))
            .await
            .unwrap();
        let links = links(&sw.ns);
        assert!(!links.contains("mbr10101"), "{links}");
        assert!(!links.contains("mvx10101"), "{links}");
        assert!(!links.contains("vxlan id 10101"), "{links}");
        assert!(links.contains("vxlan id 10102"), "{links}");
        let last = sw.emu.realisations().pop().unwrap();
        assert!(
            last.changes.iter().any(|c| c == "delete link mvx10101"),
            "{last}"
        );
    }
    println!("tenant A removed from both switches in {:?}", t0.elapsed());
    assert!(!pings(&hosts_a[0].0, hosts_a[1].1), "A1 still reaches A2");
    assert!(pings(&hosts_b[0].0, hosts_b[1].1), "B1 lost B2");
    println!("whole test took {:?}", started.elapsed());
}
