//! The site reconciler driving a leaf switch: the real NVUE driver against the NVUE emulator,
//! beside four emulated servers. The switch carries every tenant network of the intent; a
//! server's bond joins its tenant's VLAN while its allocation's window is open and leaves it
//! after; drift made behind the agent's back is put back at the next resync; a switch that
//! refuses the revision fails the generation with the switch's reason, and the next intent
//! converges again.

mod site_reconcile_support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use meridian_agent::reconcile::fabric::{DEFAULT_L3_VNI_BASE, fabric_want};
use meridian_agent::reconcile::{ManagedSwitch, ManualClock, SiteReconciler, SwitchLayout};
use meridian_agent::reconciler::{AgentLink, Convergence, Reconciler};
use meridian_agent::store::AgentStore;
use meridian_common::ids::{Generation, Timestamp};
use meridian_common::model::{Ipv4Net, SiteIntent};
use meridian_drivers::SwitchFabric;
use meridian_drivers::nvue::{NvueClient, NvueConfig};
use meridian_emulators::nvue::{NvueEmulator, NvueEmulatorConfig};
use meridian_sim::simfleet::hardware::SwitchView;
use serde_json::json;
use site_reconcile_support::*;
use tokio::sync::{Notify, watch};

const SITE: &str = "edge-fab";
const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
const LIMIT: Duration = Duration::from_secs(90);

fn nvue_config(emu: &NvueEmulator) -> NvueConfig {
    let d = NvueEmulatorConfig::default();
    let mut cfg = NvueConfig::new(emu.url(), d.username, d.password);
    cfg.attempts = 2;
    cfg.retry_backoff = Duration::from_millis(10);
    cfg.poll_interval = Duration::from_millis(10);
    cfg.apply_timeout = Duration::from_secs(20);
    cfg
}

fn layout() -> SwitchLayout {
    SwitchLayout {
        vtep: Ipv4Addr::new(10, 255, 0, 7),
        asn: 65107,
        uplinks: vec!["swp31".into()],
        private_range: Ipv4Net::parse("10.0.0.0/8").unwrap(),
        l3_vni_base: DEFAULT_L3_VNI_BASE,
        svi_offset: 1,
        ports: (1..=4)
            .map(|i| {
                (
                    server_id(&format!("srv-{i}")),
                    (format!("bond{i}"), vec![format!("swp{i}")]),
                )
            })
            .collect(),
    }
}

fn intent(generation: u64, allocations: serde_json::Value) -> SiteIntent {
    let net = |tenant: &str, n: u32| {
        json!({"tenant": tenant, "vni": 10_000 + n, "table": 1_000 + n,
            "subnet": format!("10.1.{n}.0/24"), "gateway": format!("10.1.{n}.1")})
    };
    serde_json::from_value(json!({
        "site": SITE,
        "generation": generation,
        "networks": [net("acme", 1), net("globex", 2)],
        "allocations": allocations,
    }))
    .unwrap()
}

fn alloc(w: &str, tenant: &str, server: &str, window: Option<(i64, i64)>) -> serde_json::Value {
    let mut v = json!({"workload": w, "tenant": tenant, "server": server,
        "slot": {"whole_gpus": {"indices": [0]}}, "mode": "container"});
    if let Some((s, e)) = window {
        v["window"] = json!({"start": s, "end": e});
    }
    v
}

struct Harness {
    _dir: tempfile::TempDir,
    store: AgentStore,
    _servers: Vec<Emulated>,
    switch: NvueEmulator,
    site: SiteReconciler,
    clock: Arc<ManualClock>,
    _stop: watch::Sender<bool>,
}

impl Harness {
    async fn start(resync: Duration) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::open(&dir.path().join("agent")).unwrap();
        let servers = start_servers().await;
        let switch = NvueEmulator::start(NvueEmulatorConfig {
            step_delay: Duration::from_millis(5),
            ..NvueEmulatorConfig::default()
        })
        .unwrap();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
        let specs = servers.iter().map(|s| spec(&s.id, &s.bmc, None)).collect();
        let managed = ManagedSwitch {
            name: "leaf-1".into(),
            driver: Arc::new(NvueClient::new(nvue_config(&switch)).unwrap()),
            layout: layout(),
        };
        let mut config = reconciler_config();
        config.resync = resync;
        let site = SiteReconciler::with_switches(specs, vec![managed], config, clock.clone());
        let (stop, stop_rx) = watch::channel(false);
        site.start(AgentLink {
            store: store.clone(),
            reports_ready: Arc::new(Notify::new()),
            report_buffer_max: 100_000,
            stop: stop_rx,
        })
        .expect("a background reconciler");
        Harness {
            _dir: dir,
            store,
            _servers: servers,
            switch,
            site,
            clock,
            _stop: stop,
        }
    }

    fn push(&self, intent: &SiteIntent) {
        self.store.store_intent(intent).unwrap();
        self.site.apply(intent).unwrap();
    }

    async fn outcome(&self, g: u64) -> Convergence {
        wait_outcome(&self.site, g, LIMIT).await
    }

    /// Bonds in a VLAN, by bond.
    fn bonds(&self) -> BTreeMap<String, u64> {
        SwitchView::of(&self.switch.applied())
            .bonds_in_vlans
            .into_iter()
            .collect()
    }

    async fn wait_bonds(&self, want: &[&str]) {
        let deadline = tokio::time::Instant::now() + LIMIT;
        loop {
            let have: Vec<String> = self.bonds().into_keys().collect();
            if have == want {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "bonds {have:?}, want {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_follows_the_intent_and_its_windows() {
    // The periodic resync is beyond the test: window boundaries must wake the switch worker.
    let h = Harness::start(Duration::from_secs(600)).await;
    let i1 = intent(
        1,
        json!([
            alloc("serve", "acme", "srv-1", None),
            alloc(
                "train",
                "globex",
                "srv-2",
                Some((T0 + 10 * MIN, T0 + 20 * MIN))
            ),
        ]),
    );
    h.push(&i1);
    assert_eq!(h.outcome(1).await, Convergence::Applied(Generation::new(1)));

    // Both tenants' VRFs, VLANs and SVIs; only srv-1's bond (its allocation is active).
    let view = SwitchView::of(&h.switch.applied());
    assert_eq!(view.vrfs, vec!["acme".to_owned(), "globex".to_owned()]);
    let want = fabric_want(&i1, &layout(), Timestamp::from_millis(T0)).unwrap();
    let acme_vlan = u64::from(want.spec.tenants[0].vlan);
    assert_eq!(h.bonds(), BTreeMap::from([("bond1".to_owned(), acme_vlan)]));
    let applied = h.switch.applied();
    assert_eq!(
        applied["vrf"]["acme"]["evpn"]["vni"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        vec![&(DEFAULT_L3_VNI_BASE + 1_001).to_string()]
    );
    assert!(
        applied["interface"][format!("vlan{acme_vlan}")]["ip"]["address"]
            .get("10.1.1.254/24")
            .is_some(),
        "{applied:#}"
    );
    let revisions = h.switch.revisions_created();
    assert_eq!(revisions, 1);
    let events = events(&reports(&h.store), "switch/leaf-1");
    assert!(
        events.len() == 1 && events[0].starts_with("generation 1:"),
        "{events:?}"
    );

    // The training window opens: srv-2's bond joins globex's VLAN; closes: it leaves.
    h.clock.set(Timestamp::from_millis(T0 + 10 * MIN));
    h.wait_bonds(&["bond1", "bond2"]).await;
    h.clock.set(Timestamp::from_millis(T0 + 20 * MIN));
    h.wait_bonds(&["bond1"]).await;

    // The same intent again changes nothing on the switch.
    let before = h.switch.revisions_created();
    h.push(&intent(
        2,
        i1.allocations
            .iter()
            .map(|a| serde_json::to_value(a).unwrap())
            .collect(),
    ));
    assert_eq!(h.outcome(2).await, Convergence::Applied(Generation::new(2)));
    assert_eq!(h.switch.revisions_created(), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_is_put_back_and_a_refusing_switch_fails_the_generation() {
    let h = Harness::start(Duration::from_millis(500)).await;
    h.push(&intent(1, json!([alloc("serve", "acme", "srv-1", None)])));
    assert_eq!(h.outcome(1).await, Convergence::Applied(Generation::new(1)));
    h.wait_bonds(&["bond1"]).await;

    // Someone removes the tenants behind the agent's back: the next resync puts them back.
    let other = NvueClient::new(nvue_config(&h.switch)).unwrap();
    let mut bare = fabric_want(&intent(1, json!([])), &layout(), Timestamp::from_millis(T0))
        .unwrap()
        .spec;
    bare.tenants.clear();
    other.apply(&bare).await.unwrap();
    assert!(h.bonds().is_empty());
    h.wait_bonds(&["bond1"]).await;
    assert_eq!(SwitchView::of(&h.switch.applied()).vrfs.len(), 2);

    // The switch refuses the next two revisions (the policy's two attempts for a refusal):
    // generation 2 fails naming the switch and its reason.
    h.switch
        .fail_next_apply("bridge domain br_default: vlan conflict");
    h.switch
        .fail_next_apply("bridge domain br_default: vlan conflict");
    h.push(&intent(
        2,
        json!([
            alloc("serve", "acme", "srv-1", None),
            alloc("train", "globex", "srv-2", None),
        ]),
    ));
    match h.outcome(2).await {
        Convergence::Failed { reason, .. } => {
            assert!(reason.contains("switch leaf-1 failed"), "{reason}");
            assert!(reason.contains("vlan conflict"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let warnings = events(&reports(&h.store), "switch/leaf-1");
    assert!(
        warnings.iter().any(|e| e.contains("vlan conflict")),
        "{warnings:?}"
    );

    // The switch takes revisions again: the next resync (or intent) brings srv-2 in, and
    // generation 3 is applied.
    h.push(&intent(
        3,
        json!([
            alloc("serve", "acme", "srv-1", None),
            alloc("train", "globex", "srv-2", None),
        ]),
    ));
    assert_eq!(h.outcome(3).await, Convergence::Applied(Generation::new(3)));
    h.wait_bonds(&["bond1", "bond2"]).await;
}
