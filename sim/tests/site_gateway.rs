//! The site reconciler keeping the gateway node from the intent, on the real kernel: the agent's
//! `[gateway]` configuration, wired to the netlink and nftables drivers inside a namespace the
//! test made, carries every tenant network of the intent (bridge, VXLAN to the leaf VTEP,
//! routing table and rules) and publishes every exposure (an "internet" namespace reaches a
//! tenant's server through the public address, nothing else); a tenant dropped from the intent
//! leaves nothing behind; a ruleset flushed by hand is restored at the next resync by the agent
//! alone; an exposure outside the configured public range fails the generation naming it; and
//! a `[gateway]` naming a missing interface is refused when the agent starts.

mod site_reconcile_support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use meridian_agent::config::{AgentConfig, GatewayConfig};
use meridian_agent::reconciler::{AgentLink, Convergence, Reconciler};
use meridian_agent::store::AgentStore;
use meridian_common::ids::{Generation, SiteId, TenantId, WorkloadId};
use meridian_common::model::{Exposure, Ipv4Net, Protocol, SiteIntent, TenantNetworkIntent};
use meridian_drivers::{HostNetwork, HostNetworkSpec, HostTenant, NetlinkHost};
use meridian_testkit::netns::{
    Namespaces, fetch_text, nft_table, ns_ok, require, run, serve_text, veth,
};
use site_reconcile_support::wait_outcome;
use tokio::sync::{Notify, watch};

const LIMIT: Duration = Duration::from_secs(60);
const PUBLIC: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 100);
const GW_UNDERLAY: Ipv4Addr = Ipv4Addr::new(172, 31, 9, 3);
const LEAF_VTEP: Ipv4Addr = Ipv4Addr::new(172, 31, 9, 1);
const BACKEND: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 2);

fn network(tenant: &str, vni: u32, third: u8) -> TenantNetworkIntent {
    TenantNetworkIntent {
        tenant: TenantId::parse(tenant).unwrap(),
        vni,
        table: 1_000 + u32::from(third),
        subnet: Ipv4Net::new(Ipv4Addr::new(10, 0, third, 0), 24).unwrap(),
        gateway: Ipv4Addr::new(10, 0, third, 1),
    }
}

fn exposure(public_ip: Ipv4Addr) -> Exposure {
    Exposure {
        tenant: TenantId::parse("acme").unwrap(),
        workload: WorkloadId::parse("llm").unwrap(),
        public_ip,
        public_port: 8080,
        protocol: Protocol::Tcp,
        backend_ip: BACKEND,
        backend_port: 8000,
    }
}

fn intent(g: u64, networks: Vec<TenantNetworkIntent>, exposures: Vec<Exposure>) -> SiteIntent {
    SiteIntent {
        networks,
        exposures,
        ..SiteIntent::empty(SiteId::parse("edge-gw").unwrap(), Generation::new(g))
    }
}

fn gateway_config(netns: &str, wan_interface: &str) -> AgentConfig {
    AgentConfig {
        gateway: Some(GatewayConfig {
            wan_interface: wan_interface.into(),
            wan_next_hop: CLIENT,
            egress_address: PUBLIC,
            public_range: Some(Ipv4Net::new(Ipv4Addr::new(203, 0, 113, 0), 24).unwrap()),
            underlay_address: GW_UNDERLAY,
            leaf_vteps: vec![LEAF_VTEP],
            netns: Some(netns.into()),
            nft_table: "meridian_gw".into(),
        }),
        ..AgentConfig::default()
    }
}

fn links(ns: &str) -> String {
    String::from_utf8_lossy(&run(&["ip", "-n", ns, "-o", "link", "show"]).stdout).into_owned()
}

fn ruleset(ns: &str) -> Option<String> {
    nft_table(ns, "meridian_gw")
}

fn rules(ns: &str) -> String {
    String::from_utf8_lossy(&run(&["ip", "-n", ns, "rule", "show"]).stdout).into_owned()
}

fn serve(ns: &str, addr: SocketAddr, who: &str) {
    serve_text(ns, addr, who);
}

fn fetch(ns: &str, addr: SocketAddr) -> Option<String> {
    fetch_text(ns, addr, Duration::from_secs(2))
}

async fn eventually(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + LIMIT;
    while !check() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_follows_the_intent_on_the_kernel() {
    require(&["ip", "nft"]);
    let spaces = Namespaces::new(format!("mg{}", std::process::id() % 100_000));
    let gw = spaces.add("gw");
    let leaf = spaces.add("leaf");
    let inet = spaces.add("inet");
    // Underlay between the gateway and the leaf (the VTEP its servers sit behind); the WAN
    // between the gateway and the internet.
    veth(&gw, "u0", &leaf, "u0");
    ns_ok(&gw, &format!("ip addr add {GW_UNDERLAY}/24 dev u0"));
    ns_ok(&leaf, &format!("ip addr add {LEAF_VTEP}/24 dev u0"));
    veth(&gw, "wan0", &inet, "eth0");
    ns_ok(&gw, &format!("ip addr add {PUBLIC}/24 dev wan0"));
    ns_ok(&inet, &format!("ip addr add {CLIENT}/24 dev eth0"));
    // The leaf and acme's server behind it, made with the host driver directly: the site's
    // side of the VXLAN the gateway joins.
    let leaf_host = NetlinkHost::new(Some(leaf.clone()), format!("{leaf}-"));
    let acme = network("acme", 10_101, 1);
    let globex = network("globex", 10_202, 2);
    leaf_host
        .apply(&HostNetworkSpec {
            vtep: LEAF_VTEP,
            tenants: vec![HostTenant {
                network: acme.clone(),
                remote_vteps: vec![GW_UNDERLAY],
                workload: Some(BACKEND),
                peers: vec![],
            }],
            router: None,
            access_port: None,
        })
        .await
        .expect("the leaf's side");
    let server_ns = leaf_host.tenant_netns(&acme);
    serve(
        &server_ns,
        SocketAddr::from((BACKEND, 8000)),
        "acme's model",
    );

    // A gateway section naming an interface that is not there is refused with its key.
    let e = meridian_agent::wiring::site_reconciler(&gateway_config(&gw, "nope0")).unwrap_err();
    assert!(e.to_string().contains("gateway.wan_interface"), "{e}");

    let mut config = gateway_config(&gw, "wan0");
    config.reconciler.resync_ms = 300;
    config.reconciler.retry_initial_ms = 50;
    config.reconciler.retry_max_ms = 400;
    meridian_common::config::Validate::validate(&config).unwrap();
    let site = meridian_agent::wiring::site_reconciler(&config)
        .unwrap()
        .expect("a gateway is configured");
    assert!(site.gateway().is_some());
    let dir = tempfile::tempdir().unwrap();
    let store = AgentStore::open(&dir.path().join("agent")).unwrap();
    let (_stop, stop_rx) = watch::channel(false);
    site.start(AgentLink {
        store: store.clone(),
        reports_ready: Arc::new(Notify::new()),
        report_buffer_max: 100_000,
        stop: stop_rx,
    })
    .expect("a background reconciler");
    let push = |i: &SiteIntent| {
        store.store_intent(i).unwrap();
        site.apply(i).unwrap();
    };

    // 1. Two tenants, one endpoint: both networks on the gateway, the endpoint reachable from
    // the internet at the public address, the backend address itself not.
    push(&intent(
        1,
        vec![acme.clone(), globex.clone()],
        vec![exposure(PUBLIC)],
    ));
    assert_eq!(
        wait_outcome(&site, 1, LIMIT).await,
        Convergence::Applied(Generation::new(1))
    );
    let l = links(&gw);
    for dev in ["mbr10101", "mvx10101", "mbr10202", "mvx10202"] {
        assert!(l.contains(dev), "{dev} missing: {l}");
    }
    let rs = ruleset(&gw).expect("the gateway's table");
    assert!(rs.contains("acme/llm dnat"), "{rs}");
    assert!(rs.contains("globex snat"), "{rs}");
    assert!(rules(&gw).contains("lookup 1002"), "{}", rules(&gw));
    let public = SocketAddr::from((PUBLIC, 8080));
    eventually("the endpoint answers from the internet", || {
        fetch(&inet, public).is_some()
    })
    .await;
    assert_eq!(fetch(&inet, public).as_deref(), Some("acme's model"));
    ns_ok(&inet, &format!("ip route add 10.0.0.0/8 via {PUBLIC}"));
    assert_eq!(
        fetch(&inet, SocketAddr::from((BACKEND, 8000))),
        None,
        "the backend address is reachable from the internet"
    );

    // Metering's egress: the answers acme's endpoint sent out of the WAN are counted from the
    // gateway's per-tenant accounting rule and reported per hour, at a resync (300 ms here).
    let egress = || -> u64 {
        store
            .pending(meridian_common::ids::Sequence::new(0), 100_000)
            .unwrap()
            .into_iter()
            .filter_map(|r| meridian_common::model::SiteReport::try_from(r).ok())
            .filter_map(|r| match r.body {
                meridian_common::model::ReportBody::Egress { tenants, .. } => Some(tenants),
                _ => None,
            })
            .flatten()
            .filter(|(t, _)| t == &acme.tenant)
            .map(|(_, bytes)| bytes)
            .max()
            .unwrap_or(0)
    };
    eventually("acme's egress is reported", || {
        egress() >= "acme's model".len() as u64
    })
    .await;
    assert!(
        store
            .pending(meridian_common::ids::Sequence::new(0), 100_000)
            .unwrap()
            .into_iter()
            .filter_map(|r| meridian_common::model::SiteReport::try_from(r).ok())
            .all(
                |r| !matches!(&r.body, meridian_common::model::ReportBody::Egress { tenants, .. }
                if tenants.iter().any(|(t, _)| t == &globex.tenant))
            ),
        "globex sent nothing out"
    );

    // 2. globex leaves the intent: nothing of it is left on the gateway; acme is untouched.
    push(&intent(2, vec![acme.clone()], vec![exposure(PUBLIC)]));
    assert_eq!(
        wait_outcome(&site, 2, LIMIT).await,
        Convergence::Applied(Generation::new(2))
    );
    let l = links(&gw);
    assert!(!l.contains("mbr10202") && !l.contains("mvx10202"), "{l}");
    assert!(!rules(&gw).contains("lookup 1002"), "{}", rules(&gw));
    let rs = ruleset(&gw).expect("the gateway's table");
    assert!(!rs.contains("globex"), "{rs}");
    assert_eq!(fetch(&inet, public).as_deref(), Some("acme's model"));

    // 3. Someone flushes the gateway by hand: the agent alone (there is no central here)
    // restores it at the next resync.
    ns_ok(&gw, "nft delete table ip meridian_gw");
    assert!(ruleset(&gw).is_none());
    eventually("the ruleset is restored", || {
        ruleset(&gw).is_some_and(|r| r.contains("acme/llm dnat"))
    })
    .await;
    eventually("the endpoint answers again", || {
        fetch(&inet, public).as_deref() == Some("acme's model")
    })
    .await;

    // 4. An exposure outside the public range fails the generation, naming the range.
    push(&intent(
        3,
        vec![acme.clone()],
        vec![exposure(Ipv4Addr::new(198, 51, 100, 7))],
    ));
    match wait_outcome(&site, 3, LIMIT).await {
        Convergence::Failed { reason, .. } => {
            assert!(reason.contains("the gateway failed"), "{reason}");
            assert!(reason.contains("203.0.113.0/24"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // 5. The last tenant leaves: the gateway keeps only its base chains.
    push(&intent(4, Vec::new(), Vec::new()));
    assert_eq!(
        wait_outcome(&site, 4, LIMIT).await,
        Convergence::Applied(Generation::new(4))
    );
    let l = links(&gw);
    assert!(!l.contains("mbr10101") && !l.contains("mvx10101"), "{l}");
    let rs = ruleset(&gw).expect("the gateway's table");
    assert!(!rs.contains("acme"), "{rs}");
    assert_eq!(fetch(&inet, public), None);
}
