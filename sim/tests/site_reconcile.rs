//! The site reconciler against emulated hardware, over HTTP: four servers with the Redfish BMC
//! emulator's GPU-server profile and a fake NVML each (MIG on two of them), the agent's real
//! Redfish driver, and the agent's journal store as the report buffer.
//!
//! - The site is driven from an intent through allocation (whole GPUs, MIG slices, one
//!   allocation whose window is open and one whose window opens later) and cleaning (windows
//!   closing on the injected clock, an allocation removed from the intent, then all of them),
//!   reaching the intended state on the devices and reporting every step; once without and
//!   once with injected faults (a BMC that hangs, a media insert answered 500, an image the
//!   BMC cannot fetch once, a busy BMC, a DPU's BFB install task that ends in `Exception`
//!   once). Every server has a BlueField-3 DPU (its own BMC emulator) that the site wants in
//!   DPU mode running a given BFB bundle: bundles are installed through `SimpleUpdate` tasks
//!   and srv-3's DPU, left in NIC mode, is switched and reset before its server is allocated.
//!   The time to converge is printed for both.
//! - A server that keeps failing becomes `Failed` with the reason after bounded retries, the
//!   generation fails with it (and with an allocation the inventory cannot hold and one on an
//!   unmanaged server), and a newer generation retries the server.
//! - The real agent with the reconciler plugged in, against a real central: intents are
//!   acknowledged and the applied (or failed) generation reaches central, with the reports.
//! - `kill -9` of an agent process mid-apply (the reconciler in a child process, the
//!   emulators and GPUs in this one), restarted until it converges: no duplicate power-on,
//!   media insert or MIG device, the final state is right, and no step is reported twice.

mod site_reconcile_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::Method;
use meridian_agent::reconcile::site::ServerStatus;
use meridian_agent::reconcile::{ManualClock, SiteReconciler, SiteStatus};
use meridian_agent::reconciler::{AgentLink, Background, Convergence, Reconciler};
use meridian_agent::store::AgentStore;
use meridian_common::ids::{Generation, Timestamp};
use meridian_common::model::{
    AllocationStatus, ReportBody, ServerState, Severity, SiteIntent, SiteReport,
};
use meridian_drivers::gpu::GpuInventory;
use meridian_emulators::redfish::{DpuMode, Fault, PowerState};
use serde_json::json;
use site_reconcile_support::*;
use tokio::sync::{Notify, watch};

const SITE: &str = "edge-rec";
/// The injected clock's start (2027-01-15).
const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
const LIMIT: Duration = Duration::from_secs(90);

/// A running site reconciler over emulated servers, outside any agent (it needs none).
struct Harness {
    _dir: tempfile::TempDir,
    store: AgentStore,
    servers: Vec<Emulated>,
    images: Images,
    site: SiteReconciler,
    clock: Arc<ManualClock>,
    stop: watch::Sender<bool>,
    background: Option<Background>,
}

impl Harness {
    async fn start() -> Self {
        // The periodic resync is far beyond the test's limits: window boundaries and new
        // intents must wake the workers by themselves.
        Self::start_with(Duration::from_secs(600), false).await
    }

    /// With `dpus`, every server has a BlueField-3 DPU (srv-3's left in NIC mode) that the
    /// site wants in DPU mode running the test BFB bundle.
    async fn start_with(resync: Duration, dpus: bool) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let store = AgentStore::open(&dir.path().join("agent")).unwrap();
        let mut servers = start_servers().await;
        if dpus {
            add_dpus(&mut servers, &["srv-3"]).await;
        }
        let images = Images::start();
        let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
        let specs = servers
            .iter()
            .map(|s| {
                let gpus: Arc<dyn meridian_drivers::gpu::GpuInventory> = s.gpus.clone();
                let mut spec = spec(&s.id, &s.bmc, Some(gpus));
                spec.drivers.dpu = s.dpu.as_ref().map(|d| managed_dpu(d, &images));
                spec
            })
            .collect();
        let mut config = reconciler_config();
        config.resync = resync;
        let site = SiteReconciler::new(specs, config, clock.clone());
        let (stop, stop_rx) = watch::channel(false);
        let background = site.start(AgentLink {
            store: store.clone(),
            reports_ready: Arc::new(Notify::new()),
            report_buffer_max: 100_000,
            stop: stop_rx,
        });
        Harness {
            _dir: dir,
            store,
            servers,
            images,
            site,
            clock,
            stop,
            background,
        }
    }

    fn server(&self, name: &str) -> &Emulated {
        self.servers.iter().find(|s| s.id.as_str() == name).unwrap()
    }

    /// Persists the intent (as the channel does) and hands it over.
    fn push(&self, intent: &SiteIntent) {
        self.store.store_intent(intent).unwrap();
        self.site.apply(intent).unwrap();
    }

    async fn outcome(&self, g: u64) -> Convergence {
        wait_outcome(&self.site, g, LIMIT).await
    }

    async fn applied(&self, g: u64) {
        match self.outcome(g).await {
            Convergence::Applied(_) => {}
            other => panic!("generation {g}: {other:?}"),
        }
        assert_eq!(self.store.applied_generation().unwrap(), Generation::new(g));
    }

    fn status(&self) -> SiteStatus {
        self.site.status().borrow().clone()
    }

    /// Waits until `server` converged after the clock reached `at`, in `state`.
    async fn server_settles(&self, server: &str, at: i64, state: ServerState) -> ServerStatus {
        let id = server_id(server);
        let mut rx = self.site.status();
        let found = tokio::time::timeout(
            LIMIT,
            rx.wait_for(|s| {
                s.servers.get(&id).is_some_and(|v| {
                    v.at >= Timestamp::from_millis(at) && v.converged && v.state == state
                })
            }),
        )
        .await;
        match found {
            Ok(s) => s.unwrap().servers[&id].clone(),
            Err(_) => panic!("{server} did not settle in {state:?}: {:#?}", self.status()),
        }
    }

    async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(b) = self.background.take() {
            tokio::time::timeout(Duration::from_secs(10), b.task)
                .await
                .expect("the loop stops")
                .unwrap();
        }
        for s in self.servers {
            s.bmc.shutdown().await;
            if let Some(d) = s.dpu {
                d.shutdown().await;
            }
        }
    }
}

fn window(start: i64, end: i64) -> serde_json::Value {
    json!({"start": start, "end": end})
}

fn mig(gpu: u32, profile: &str, placement: u8) -> serde_json::Value {
    json!({"mig": {"gpu_index": gpu, "profile": profile, "placement": placement}})
}

fn whole(indices: &[u32]) -> serde_json::Value {
    json!({"whole_gpus": {"indices": indices}})
}

/// The allocations of the main scenario, by name.
fn allocations(images: &Images) -> BTreeMap<&'static str, serde_json::Value> {
    let a = |w: &str, server: &str, slot, mode: &str, image: Option<String>, win| {
        let mut v =
            json!({"workload": w, "tenant": "acme", "server": server, "slot": slot, "mode": mode});
        if let Some(i) = image {
            v["image"] = json!(i);
        }
        if let Some(win) = win {
            v["window"] = win;
        }
        v
    };
    BTreeMap::from([
        (
            "train",
            a(
                "train",
                "srv-1",
                whole(&[0, 1]),
                "bare_metal",
                Some(images.url("train.iso")),
                None,
            ),
        ),
        (
            "infer-a",
            a(
                "infer-a",
                "srv-2",
                mig(0, "1g.10gb", 0),
                "container",
                Some(images.url("host.iso")),
                None,
            ),
        ),
        (
            "infer-b",
            a(
                "infer-b",
                "srv-2",
                mig(0, "3g.40gb", 4),
                "container",
                Some(images.url("host.iso")),
                None,
            ),
        ),
        (
            "burst",
            a(
                "burst",
                "srv-2",
                mig(1, "2g.20gb", 0),
                "container",
                None,
                Some(window(T0 - MIN, T0 + 30 * MIN)),
            ),
        ),
        (
            "render",
            a(
                "render",
                "srv-3",
                whole(&[1]),
                "virtual_machine",
                Some(images.url("vm.iso")),
                None,
            ),
        ),
        (
            "batch",
            a(
                "batch",
                "srv-4",
                whole(&[0, 1, 2, 3]),
                "bare_metal",
                Some(images.url("batch.iso")),
                Some(window(T0 + 10 * MIN, T0 + 20 * MIN)),
            ),
        ),
    ])
}

fn intent_of(
    generation: u64,
    all: &BTreeMap<&str, serde_json::Value>,
    names: &[&str],
) -> SiteIntent {
    let list: Vec<serde_json::Value> = names.iter().map(|n| all[n].clone()).collect();
    intent(SITE, generation, json!(list))
}

fn mig_devices(e: &Emulated, gpu: u32) -> Vec<String> {
    let report = futures_report(e);
    match &report.devices()[gpu as usize].mig {
        meridian_drivers::gpu::MigState::Supported { devices, .. } => devices
            .iter()
            .map(|d| d.name.rsplit(' ').next().unwrap().to_owned())
            .collect(),
        _ => Vec::new(),
    }
}

fn mig_mode(e: &Emulated, gpu: u32) -> Option<(bool, bool)> {
    match &futures_report(e).devices()[gpu as usize].mig {
        meridian_drivers::gpu::MigState::Supported {
            current, pending, ..
        } => Some((*current, *pending)),
        _ => None,
    }
}

fn futures_report(e: &Emulated) -> meridian_drivers::gpu::GpuReport {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(e.gpus.report()))
        .unwrap()
}

fn latest_state(reports: &[SiteReport], server: &str) -> Option<ServerState> {
    reports.iter().rev().find_map(|r| match &r.body {
        ReportBody::ServerState { server: s, state } if s.as_str() == server => Some(state.clone()),
        _ => None,
    })
}

fn latest_alloc(reports: &[SiteReport], workload: &str) -> Option<AllocationStatus> {
    reports.iter().rev().find_map(|r| match &r.body {
        ReportBody::AllocationState {
            workload: w, state, ..
        } if w.as_str() == workload => Some(state.clone()),
        _ => None,
    })
}

fn count(events: &[String], needle: &str) -> usize {
    events.iter().filter(|e| e.contains(needle)).count()
}

/// Asserts that `needles` appear in `events` in this order.
fn in_order(events: &[String], needles: &[&str]) {
    let mut at = 0;
    for n in needles {
        match events[at..].iter().position(|e| e.contains(n)) {
            Some(i) => at += i + 1,
            None => panic!("{n:?} missing (in order) from {events:#?}"),
        }
    }
}

/// Which faults the scenario injects.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Faults {
    None,
    Injected,
}

/// The main scenario; returns the time until generation 1 was applied and the whole run.
async fn scenario(faults: Faults) -> (Duration, Duration) {
    let h = Harness::start_with(Duration::from_secs(600), true).await;
    let all = allocations(&h.images);
    let mut fault_ids = Vec::new();
    if faults == Faults::Injected {
        // srv-1's BMC stops answering reads of its system for a while (3 requests time out).
        fault_ids.push(
            h.server("srv-1").bmc.faults().inject(
                Fault::hang("/redfish/v1/Systems/*")
                    .method(Method::GET)
                    .times(3),
            ),
        );
        // srv-2's virtual media insert fails once with 500.
        fault_ids.push(
            h.server("srv-2").bmc.faults().inject(
                Fault::status("/redfish/v1/**/Actions/VirtualMedia.InsertMedia", 500)
                    .method(Method::POST)
                    .times(1),
            ),
        );
        // srv-3's image cannot be fetched once: the BMC refuses the insert (400).
        h.images.fail("vm.iso", 1);
        // srv-4's DPU: the BFB install task ends in `Exception` once.
        h.server("srv-4")
            .dpu
            .as_ref()
            .unwrap()
            .fail_next_update("BFB image signature verification failed");
        // srv-4's BMC is busy for one reset (503 with Retry-After).
        fault_ids.push(
            h.server("srv-4").bmc.faults().inject(
                Fault::status("/redfish/v1/Systems/*/Actions/ComputerSystem.Reset", 503)
                    .method(Method::POST)
                    .retry_after(1)
                    .times(1),
            ),
        );
    }
    let start = Instant::now();

    // Generation 1: everything; burst's window is open, batch's opens at T0+10min.
    h.push(&intent_of(
        1,
        &all,
        &["train", "infer-a", "infer-b", "burst", "render", "batch"],
    ));
    h.applied(1).await;
    let first = start.elapsed();
    let st = h.status();
    let state = |s: &str| st.servers[&server_id(s)].state.clone();
    assert_eq!(state("srv-1"), ServerState::Allocated);
    assert_eq!(state("srv-2"), ServerState::Allocated);
    assert_eq!(state("srv-3"), ServerState::Allocated);
    assert_eq!(state("srv-4"), ServerState::Available);
    for (s, image) in [
        ("srv-1", "train.iso"),
        ("srv-2", "host.iso"),
        ("srv-3", "vm.iso"),
    ] {
        let e = h.server(s);
        assert_eq!(e.bmc.power_state(), PowerState::On, "{s}");
        assert_eq!(e.bmc.media_image(), Some(h.images.url(image)), "{s}");
        let boots = e.bmc.boots();
        assert_eq!(boots.len(), 1, "{s}: exactly one boot: {boots:?}");
        assert_eq!(
            boots[0].image,
            Some(h.images.url(image)),
            "{s} booted its image"
        );
        assert!(boots[0].overridden, "{s}: by the one-time override");
    }
    // Every DPU runs the site's bundle in DPU mode (srv-3's was in NIC mode), srv-4's too
    // although it is not allocated yet.
    for e in &h.servers {
        let dpu = e.dpu.as_ref().unwrap();
        assert_eq!(
            dpu.firmware_version("DPU_OS").as_deref(),
            Some(BFB_VERSION),
            "{}",
            e.id
        );
        assert_eq!(dpu.dpu_mode(), Some(DpuMode::DpuMode), "{}", e.id);
        assert_eq!(dpu.pending_dpu_mode(), None, "{}", e.id);
    }
    let srv2 = h.server("srv-2");
    let mut gpu0 = mig_devices(srv2, 0);
    gpu0.sort();
    assert_eq!(gpu0, ["1g.10gb", "3g.40gb"]);
    assert_eq!(mig_devices(srv2, 1), ["2g.20gb"]);
    assert_eq!(mig_mode(srv2, 0), Some((true, true)));
    assert_eq!(mig_mode(h.server("srv-1"), 0), Some((false, false)));
    assert_eq!(h.server("srv-4").bmc.power_state(), PowerState::Off);
    let r = reports(&h.store);
    assert_eq!(latest_alloc(&r, "batch"), Some(AllocationStatus::Pending));
    for w in ["train", "infer-a", "infer-b", "burst", "render"] {
        assert_eq!(latest_alloc(&r, w), Some(AllocationStatus::Applied), "{w}");
    }

    // T0+10min: batch's window opens; srv-4 is allocated without a new intent.
    h.clock.set(Timestamp::from_millis(T0 + 10 * MIN));
    h.server_settles("srv-4", T0 + 10 * MIN, ServerState::Allocated)
        .await;
    assert_eq!(
        h.server("srv-4").bmc.media_image(),
        Some(h.images.url("batch.iso"))
    );
    assert_eq!(
        latest_alloc(&reports(&h.store), "batch"),
        Some(AllocationStatus::Applied)
    );

    // T0+20min: batch's window closes: srv-4 is cleaned, on time.
    h.clock.set(Timestamp::from_millis(T0 + 20 * MIN));
    h.server_settles("srv-4", T0 + 20 * MIN, ServerState::Available)
        .await;
    let srv4 = h.server("srv-4");
    assert_eq!(srv4.bmc.power_state(), PowerState::Off);
    assert!(!srv4.bmc.media_inserted());
    let r = reports(&h.store);
    assert_eq!(latest_alloc(&r, "batch"), Some(AllocationStatus::Ended));
    let ended = r
        .iter()
        .find(|r| matches!(&r.body, ReportBody::Event { message, .. } if message.contains("cleaning")) && matches!(&r.body, ReportBody::Event { resource, .. } if resource == "server/srv-4"))
        .expect("srv-4's cleaning is reported");
    assert_eq!(
        ended.at,
        Timestamp::from_millis(T0 + 20 * MIN),
        "cleaning starts at the window's end"
    );

    // T0+30min: burst's window closes: its MIG device goes, srv-2 stays allocated.
    h.clock.set(Timestamp::from_millis(T0 + 30 * MIN));
    h.server_settles("srv-2", T0 + 30 * MIN, ServerState::Allocated)
        .await;
    assert!(mig_devices(h.server("srv-2"), 1).is_empty());
    assert_eq!(mig_devices(h.server("srv-2"), 0).len(), 2);
    let r = reports(&h.store);
    assert_eq!(latest_alloc(&r, "burst"), Some(AllocationStatus::Ended));
    assert!(
        events(&r, "server/srv-2")
            .iter()
            .any(|e| e.contains("allocation burst ended: its window closed at")),
        "{:#?}",
        events(&r, "server/srv-2")
    );

    // Generation 2: render leaves the intent; srv-3 is cleaned.
    h.push(&intent_of(
        2,
        &all,
        &["train", "infer-a", "infer-b", "burst", "batch"],
    ));
    h.applied(2).await;
    let srv3 = h.server("srv-3");
    assert_eq!(srv3.bmc.power_state(), PowerState::Off);
    assert!(!srv3.bmc.media_inserted());

    // Generation 3: nothing; every server is cleaned.
    h.push(&intent(SITE, 3, json!([])));
    h.applied(3).await;
    let total = start.elapsed();
    for e in &h.servers {
        assert_eq!(e.bmc.power_state(), PowerState::Off, "{}", e.id);
        assert!(!e.bmc.media_inserted(), "{}", e.id);
        for g in 0..futures_report(e).devices().len() as u32 {
            assert!(mig_devices(e, g).is_empty(), "{} GPU {g}", e.id);
            assert!(
                matches!(mig_mode(e, g), None | Some((false, false))),
                "{} GPU {g}",
                e.id
            );
        }
    }

    // Every step is reported: the events of each server, in order, once each.
    let r = reports(&h.store);
    for s in ["srv-1", "srv-2", "srv-3", "srv-4"] {
        assert_eq!(latest_state(&r, s), Some(ServerState::Available), "{s}");
    }
    for w in ["train", "infer-a", "infer-b", "burst", "render", "batch"] {
        assert_eq!(latest_alloc(&r, w), Some(AllocationStatus::Ended), "{w}");
    }
    let e1 = events(&r, "server/srv-1");
    in_order(
        &e1,
        &[
            "discovered",
            "inspected",
            "allocation train of tenant acme pending",
            "virtual media http",
            "armed",
            "booted",
            "allocation train of tenant acme in place",
            "cleaning:",
            "powered off",
            "ejected",
            "allocation train ended: it left the intent",
            "clean and available",
        ],
    );
    let e2 = events(&r, "server/srv-2");
    in_order(
        &e2,
        &[
            "inspected",
            "booted",
            "GPU 0: MIG mode on asked for",
            "GPU 0 reset: MIG mode on",
            "GPU 0: MIG device",
            "GPU 0: MIG device",
            "GPU 1: MIG mode on asked for",
            "GPU 1 reset: MIG mode on",
            "GPU 1: MIG device",
            "in place",
            "of burst destroyed",
            "allocation burst ended",
            "cleaning:",
            "destroyed",
            "GPU 0 reset: MIG mode off",
            "powered off",
            "clean and available",
        ],
    );
    let e4 = events(&r, "server/srv-4");
    in_order(
        &e4,
        &[
            "allocation batch of tenant acme pending",
            "booted",
            "allocation batch of tenant acme in place",
            "cleaning:",
            "powered off",
            "allocation batch ended: its window closed at",
            "clean and available",
        ],
    );
    let e3 = events(&r, "server/srv-3");
    in_order(
        &e3,
        &[
            "inspected",
            "DPU: NicMode running DPU_OS DOCA_2.9.1",
            "installed on the DPU: DPU_OS DOCA_2.9.1",
            "DPU mode DpuMode requested (running NicMode)",
            "DPU reset; running DpuMode",
            "virtual media http",
            "booted",
        ],
    );
    for (s, e) in [
        ("srv-1", &e1),
        ("srv-2", &e2),
        ("srv-3", &e3),
        ("srv-4", &e4),
    ] {
        for once in [
            "discovered",
            "inspected",
            "inserted",
            "armed",
            "booted",
            "cleaning:",
            "powered off",
            "ejected",
            "clean and available",
        ] {
            assert_eq!(count(e, once), 1, "{s}: {once:?} in {e:#?}");
        }
    }
    assert_eq!(count(&e2, "created for"), 3, "{e2:#?}");
    for (s, e) in [("srv-1", &e1), ("srv-2", &e2), ("srv-4", &e4)] {
        // Already in DPU mode: the bundle only, once.
        assert_eq!(count(e, "installed on the DPU"), 1, "{s}: {e:#?}");
        assert_eq!(count(e, "DPU reset"), 0, "{s}: {e:#?}");
    }
    assert_eq!(count(&e3, "installed on the DPU"), 1, "{e3:#?}");
    assert_eq!(count(&e3, "DPU reset"), 1, "{e3:#?}");
    for e in &h.servers {
        let updates = succeeded(
            e.dpu.as_ref().unwrap(),
            "POST",
            "UpdateService.SimpleUpdate",
        );
        let expected = if faults == Faults::Injected && e.id.as_str() == "srv-4" {
            2
        } else {
            1
        };
        assert_eq!(updates, expected, "{}: BFB installs asked for", e.id);
    }
    for e in &h.servers {
        // One power-on and one power-off: no repeated power actions.
        let resets = succeeded(&e.bmc, "POST", "ComputerSystem.Reset");
        let inserts = succeeded(&e.bmc, "POST", "VirtualMedia.InsertMedia");
        assert_eq!((resets, inserts), (2, 1), "{}", e.id);
    }

    if faults == Faults::Injected {
        let warn = |s: &str| -> Vec<String> {
            r.iter()
                .filter_map(|x| match &x.body {
                    ReportBody::Event {
                        severity: Severity::Warning,
                        resource,
                        message,
                    } if resource == &format!("server/{s}") => Some(message.clone()),
                    _ => None,
                })
                .collect()
        };
        let w1 = warn("srv-1");
        assert!(w1.iter().any(|m| m.contains("no answer")), "{w1:#?}");
        let w2 = warn("srv-2");
        assert!(
            w2.iter()
                .any(|m| m.contains("insert virtual media") && m.contains("HTTP 500")),
            "{w2:#?}"
        );
        let w3 = warn("srv-3");
        assert!(
            w3.iter()
                .any(|m| m.contains("insert virtual media") && m.contains("HTTP 400")),
            "{w3:#?}"
        );
        let w4 = warn("srv-4");
        assert!(
            w4.iter().any(|m| m.contains("install the BFB bundle")
                && m.contains("Exception")
                && m.contains("signature verification failed")),
            "{w4:#?}"
        );
        assert_eq!(h.images.served("vm.iso").first(), Some(&404));
        assert_eq!(h.server("srv-1").bmc.faults().hits(fault_ids[0]), 3);
        assert_eq!(h.server("srv-2").bmc.faults().hits(fault_ids[1]), 1);
        assert_eq!(h.server("srv-4").bmc.faults().hits(fault_ids[2]), 1);
        for s in ["srv-1", "srv-2", "srv-3"] {
            assert_eq!(latest_state(&r, s), Some(ServerState::Available), "{s}");
        }
    }
    h.shutdown().await;
    (first, total)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_servers_converge_through_allocation_and_cleaning() {
    let (first, total) = scenario(Faults::None).await;
    println!(
        "CONVERGENCE without faults: generation 1 (discover, inspect, allocate 3 of 4 servers) in {} ms; whole scenario in {} ms",
        first.as_millis(),
        total.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_servers_converge_despite_injected_faults() {
    let (first, total) = scenario(Faults::Injected).await;
    println!(
        "CONVERGENCE with faults: generation 1 (discover, inspect, allocate 3 of 4 servers) in {} ms; whole scenario in {} ms",
        first.as_millis(),
        total.as_millis()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_server_is_failed_with_the_reason_and_retried_on_a_newer_generation() {
    let h = Harness::start().await;
    h.images.fail("missing.iso", u32::MAX);
    let alloc = |w: &str, server: &str, slot: serde_json::Value, image: &str| json!({"workload": w, "tenant": "acme", "server": server, "slot": slot, "mode": "bare_metal", "image": h.images.url(image)});
    // train's image cannot be fetched; big wants a GPU srv-2 lacks; far is on a server this
    // agent does not manage; ok is fine.
    h.push(&intent(
        SITE,
        1,
        json!([
            alloc("train", "srv-1", whole(&[0]), "missing.iso"),
            alloc("big", "srv-2", whole(&[9]), "a.iso"),
            alloc("far", "srv-9", whole(&[0]), "a.iso"),
            alloc("ok", "srv-3", whole(&[0]), "a.iso"),
        ]),
    ));
    let reason = match h.outcome(1).await {
        Convergence::Failed { reason, .. } => reason,
        other => panic!("{other:?}"),
    };
    assert!(
        reason.contains("server srv-1 failed") && reason.contains("HTTP 400"),
        "{reason}"
    );
    assert!(reason.contains("has no GPU 9"), "{reason}");
    assert!(
        reason.contains("srv-9, which this agent does not manage"),
        "{reason}"
    );
    assert_eq!(h.store.applied_generation().unwrap(), Generation::new(0));
    let st = h.status();
    assert!(
        matches!(&st.servers[&server_id("srv-1")].state, ServerState::Failed { reason } if reason.contains("after 2 attempt"))
    );
    assert_eq!(
        st.servers[&server_id("srv-3")].state,
        ServerState::Allocated
    );
    // The image was asked for twice (one retry of a permanent error), not more.
    assert_eq!(h.images.served("missing.iso").len(), 2);
    let r = reports(&h.store);
    assert!(matches!(
        latest_state(&r, "srv-1"),
        Some(ServerState::Failed { .. })
    ));
    assert!(
        matches!(latest_alloc(&r, "train"), Some(AllocationStatus::Failed { reason }) if reason.contains("server srv-1 failed"))
    );
    assert!(
        matches!(latest_alloc(&r, "big"), Some(AllocationStatus::Failed { reason }) if reason.contains("has no GPU 9"))
    );
    assert!(
        matches!(latest_alloc(&r, "far"), Some(AllocationStatus::Failed { reason }) if reason.contains("not managed"))
    );
    assert_eq!(latest_alloc(&r, "ok"), Some(AllocationStatus::Applied));
    assert_eq!(count(&events(&r, "server/srv-1"), "server failed:"), 1);

    // A newer generation with a good image retries srv-1 (through cleaning) and applies.
    h.push(&intent(
        SITE,
        2,
        json!([
            alloc("train", "srv-1", whole(&[0]), "train.iso"),
            alloc("ok", "srv-3", whole(&[0]), "a.iso")
        ]),
    ));
    h.applied(2).await;
    let r = reports(&h.store);
    in_order(
        &events(&r, "server/srv-1"),
        &[
            "server failed:",
            "retrying the failed server",
            "clean and available",
            "in place",
        ],
    );
    assert_eq!(latest_alloc(&r, "train"), Some(AllocationStatus::Applied));
    assert_eq!(latest_state(&r, "srv-1"), Some(ServerState::Allocated));
    assert_eq!(
        h.server("srv-1").bmc.media_image(),
        Some(h.images.url("train.iso"))
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_behind_the_agents_back_are_repaired_at_the_periodic_resync() {
    use meridian_drivers::bmc::{Bmc, PowerAction, RedfishBmc};

    let h = Harness::start_with(Duration::from_millis(300), false).await;
    let all = allocations(&h.images);
    h.push(&intent_of(1, &all, &["train"]));
    h.applied(1).await;
    let srv1 = h.server("srv-1");
    assert_eq!(srv1.bmc.boots().len(), 1);
    // Someone powers srv-1 off and ejects its media; someone powers srv-4 (available) on.
    // The hand does not wait for its changes to settle: the agent may undo them meanwhile.
    let by_hand = |e: &Emulated| {
        let (u, p) = e.bmc.credentials();
        let mut cfg = redfish_config(&e.bmc.url(), &u, &p);
        cfg.power_timeout = Duration::from_millis(50);
        cfg.media_timeout = Duration::from_millis(50);
        RedfishBmc::new(cfg).unwrap()
    };
    let hand1 = by_hand(srv1);
    let _ = hand1.eject_media().await;
    let _ = hand1.power(PowerAction::ForceOff).await;
    let _ = by_hand(h.server("srv-4")).power(PowerAction::On).await;
    let start = Instant::now();
    // Repaired, and the repair reported (the report buffer is read, nothing is slept on).
    loop {
        let r = reports(&h.store);
        let srv1_again = count(&events(&r, "server/srv-1"), "booted") == 2;
        let srv4_clean = count(&events(&r, "server/srv-4"), "clean and available") == 1;
        if srv1_again && srv4_clean {
            break;
        }
        assert!(start.elapsed() < LIMIT, "not repaired: {:#?}", h.status());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(h.server("srv-4").bmc.power_state(), PowerState::Off);
    assert_eq!(srv1.bmc.power_state(), PowerState::On);
    assert_eq!(srv1.bmc.media_image(), Some(h.images.url("train.iso")));
    assert_eq!(srv1.bmc.boots()[1].image, Some(h.images.url("train.iso")));
    let r = reports(&h.store);
    in_order(
        &events(&r, "server/srv-1"),
        &[
            "in place",
            "virtual media http",
            "no longer up with what its allocations need",
            "armed",
            "booted",
        ],
    );
    in_order(
        &events(&r, "server/srv-4"),
        &["while available", "powered off", "clean and available"],
    );
    h.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// The real agent with the reconciler, against a real central.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_reports_the_generation_applied_by_the_reconciler_to_central() {
    use meridian_agent::Agent;
    use meridian_agent::config::{GpuInventoryKind, ServerConfig};
    use meridian_central::server::Central;
    use meridian_testkit::central::{Liveness, any_port, config as central_config};
    use meridian_testkit::enrol::{add_site, write_bootstrap};
    use meridian_testkit::fixtures::site_id;
    use meridian_testkit::observe::{applied_at_central, stored_reports};
    use meridian_testkit::wait::wait_for;

    let dir = tempfile::tempdir().unwrap();
    let central = Central::open(central_config(
        &dir.path().join("central"),
        any_port(),
        Liveness::Quick,
    ))
    .await
    .unwrap();
    add_site(&central, SITE).await.unwrap();
    let boot = write_bootstrap(&central, SITE, vec![], dir.path())
        .await
        .unwrap();
    let servers = start_servers().await;
    let images = Images::start();
    let emu = &servers[0];
    let (user, password) = emu.bmc.credentials();
    // The agent's own configuration builds the drivers (credentials from a file).
    let creds = dir.path().join("srv-1.toml");
    std::fs::write(
        &creds,
        format!("username = {user:?}\npassword = {password:?}\n"),
    )
    .unwrap();
    let mut config = meridian_testkit::agents::config(&dir.path().join("agent"), &boot, 300);
    config.servers = vec![
        toml::from_str::<ServerConfig>(&format!(
            "id = \"srv-1\"\nbmc_url = \"{}\"\ncredentials_file = {:?}\n",
            emu.bmc.url(),
            creds
        ))
        .unwrap(),
    ];
    assert_eq!(config.servers[0].gpu_inventory, GpuInventoryKind::None);
    config.reconciler.power_poll_ms = 30;
    config.reconciler.retry_initial_ms = 50;
    config.reconciler.retry_max_ms = 400;
    config.reconciler.bmc_request_timeout_ms = 2_000;
    meridian_common::config::Validate::validate(&config).unwrap();
    let reconciler = meridian_agent::wiring::site_reconciler(&config)
        .unwrap()
        .expect("servers are configured");
    let agent = Agent::start(config, Arc::new(reconciler)).await.unwrap();

    let intents = central.tables().intents();
    let train = |g: u64, gpu: u32| {
        intent(
            SITE,
            g,
            json!([{"workload": "train", "tenant": "acme", "server": "srv-1", "slot": whole(&[gpu]), "mode": "bare_metal", "image": images.url("train.iso")}]),
        )
    };
    intents.upsert(&train(1, 0)).await.unwrap();
    wait_for("generation 1 applied at central", LIMIT, || async {
        applied_at_central(&central, SITE).await == Generation::new(1)
    })
    .await;
    assert_eq!(emu.bmc.power_state(), PowerState::On);
    assert_eq!(emu.bmc.media_image(), Some(images.url("train.iso")));
    wait_for("the reports reach central", LIMIT, || async {
        let r = stored_reports(&central, SITE).await;
        latest_alloc(&r, "train") == Some(AllocationStatus::Applied)
            && latest_state(&r, "srv-1") == Some(ServerState::Allocated)
            && r.iter().any(|r| matches!(&r.body, ReportBody::Inventory { servers, pending } if servers.len() == 1 && pending.is_empty() && servers[0].gpus.len() == 4))
    })
    .await;

    // A generation the server cannot hold (no GPU 7 on srv-1) fails, with the reason.
    intents.upsert(&train(2, 7)).await.unwrap();
    wait_for("generation 2 failed at central", LIMIT, || async {
        let c = central
            .channel()
            .site_channel(&site_id(SITE))
            .await
            .unwrap();
        c.failed_generation == Generation::new(2) && c.failed_reason.contains("has no GPU 7")
    })
    .await;
    assert_eq!(applied_at_central(&central, SITE).await, Generation::new(1));
    agent.shutdown().await;
    central.shutdown().await;
    for s in servers {
        s.bmc.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// kill -9 mid-apply: the reconciler in a child process (this test binary re-run), the BMC
// emulators, the image server and the GPUs (served to the child over TCP) in this one.

const CHILD: &str = "MERIDIAN_SITE_RECONCILE_CHILD";
const CHILD_SERVERS: &str = "MERIDIAN_SITE_RECONCILE_SERVERS";
const CHILD_GPUS: &str = "MERIDIAN_SITE_RECONCILE_GPUS";

/// The child: a site reconciler on the agent store in `$CHILD`, printing each conclusion.
#[test]
fn child_reconciler() {
    use meridian_agent::reconcile::{ServerDrivers, ServerSpec, SystemClock};
    use meridian_drivers::bmc::RedfishBmc;
    use site_reconcile_support::gpu_remote::RemoteGpu;
    use std::io::Write;

    let Some(dir) = std::env::var_os(CHILD) else {
        return; // Only does something when the crash test starts it.
    };
    let servers: Vec<(String, String, String, String)> =
        serde_json::from_str(&std::env::var(CHILD_SERVERS).unwrap()).unwrap();
    let gpus: std::net::SocketAddr = std::env::var(CHILD_GPUS).unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        // The parent closed the journal (and its lock) before starting this child.
        let path = std::path::Path::new(&dir).join("agent");
        let store = AgentStore::open(&path).expect("the agent store opens");
        let specs = servers
            .into_iter()
            .map(|(id, url, user, password)| ServerSpec {
                id: server_id(&id),
                bmc_url: url.clone(),
                drivers: ServerDrivers {
                    bmc: Arc::new(RedfishBmc::new(redfish_config(&url, &user, &password)).unwrap()),
                    gpus: Some(Arc::new(RemoteGpu {
                        addr: gpus,
                        server: id,
                    })),
                    dpu: None,
                },
            })
            .collect();
        let site = SiteReconciler::new(specs, reconciler_config(), Arc::new(SystemClock));
        let (_stop, stop_rx) = watch::channel(false);
        let background = site
            .start(AgentLink {
                store,
                reports_ready: Arc::new(Notify::new()),
                report_buffer_max: 100_000,
                stop: stop_rx,
            })
            .unwrap();
        println!("READY");
        let mut outcomes = background.outcomes;
        let mut out = std::io::stdout();
        loop {
            if outcomes.changed().await.is_err() {
                break;
            }
            let c = outcomes.borrow_and_update().clone();
            match c {
                Some(Convergence::Applied(g)) => writeln!(out, "OUTCOME applied {g}").unwrap(),
                Some(Convergence::Failed { generation, reason }) => {
                    writeln!(out, "OUTCOME failed {generation} {reason}").unwrap()
                }
                None => {}
            }
            out.flush().unwrap();
        }
        std::future::pending::<()>().await;
    });
}

struct Child {
    process: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
}

impl Child {
    fn spawn(dir: &std::path::Path, servers: &str, gpus: std::net::SocketAddr) -> Child {
        use std::io::BufRead;
        let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
        cmd.args([
            "child_reconciler",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir)
        .env(CHILD_SERVERS, servers)
        .env(CHILD_GPUS, gpus.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
        let mut process = cmd.spawn().unwrap();
        let stdout = process.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let child = Child { process, lines };
        child.wait_line("READY");
        child
    }

    /// Waits for a line ending in `what` (libtest may print before it on the same line).
    fn wait_line(&self, what: &str) {
        let start = Instant::now();
        loop {
            match self.lines.recv_timeout(Duration::from_secs(1)) {
                Ok(l) if l.ends_with(what) => return,
                Ok(l) if l.contains("OUTCOME failed") => panic!("child: {l}"),
                _ if start.elapsed() > LIMIT => panic!("child never printed {what:?}"),
                _ => {}
            }
        }
    }

    /// SIGKILL, and wait for it to be gone.
    fn kill(mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }
}

/// Polls (every 2 ms) until `check` holds; panics after the limit.
fn poll_until(what: &str, check: impl Fn() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn kill_9_mid_apply_resumes_idempotently() {
    use site_reconcile_support::gpu_remote::GpuShim;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Power phases of 400 ms and media reads held 250 ms: the kills below land while a power
    // transition or a media insertion is under way, before the agent recorded it.
    let servers = rt.block_on(start_servers_with(Duration::from_millis(400)));
    for s in &servers {
        s.bmc.faults().inject(
            Fault::latency(
                "/redfish/v1/Systems/*/VirtualMedia/*",
                Duration::from_millis(250),
            )
            .method(Method::GET),
        );
    }
    let images = Images::start();
    let shim = GpuShim::start(
        servers
            .iter()
            .map(|s| (s.id.to_string(), s.gpus.clone()))
            .collect(),
        rt.handle().clone(),
    );
    let spec: Vec<(String, String, String, String)> = servers
        .iter()
        .map(|s| {
            let (u, p) = s.bmc.credentials();
            (s.id.to_string(), s.bmc.url(), u, p)
        })
        .collect();
    let spec = serde_json::to_string(&spec).unwrap();
    let now = meridian_agent::now_ms();
    let all = allocations(&images);
    let mut burst = all["burst"].clone();
    burst["window"] = window(now - 60 * MIN, now + 600 * MIN);
    let mut gen1 = intent_of(1, &all, &["train", "infer-a", "infer-b", "render"]);
    gen1.allocations
        .push(serde_json::from_value(burst).unwrap());
    let write_intent = |i: &SiteIntent| {
        let store = AgentStore::open(&dir.path().join("agent")).unwrap();
        store.store_intent(i).unwrap();
    };
    write_intent(&gen1);
    let total = |method: &str, suffix: &str| -> usize {
        servers
            .iter()
            .map(|s| succeeded(&s.bmc, method, suffix))
            .sum()
    };
    let mut kills = Vec::new();

    // Kill 1: just after the first virtual media insert was accepted.
    let child = Child::spawn(dir.path(), &spec, shim.addr());
    poll_until("a media insert", || {
        total("POST", "VirtualMedia.InsertMedia") > 0
    });
    child.kill();
    kills.push("after a media insert");
    // Kill 2: just after the first power-on was accepted (mid `PoweringOn`).
    let child = Child::spawn(dir.path(), &spec, shim.addr());
    poll_until("a power-on", || total("POST", "ComputerSystem.Reset") > 0);
    child.kill();
    kills.push("during a power-on");
    // Kill 3: a MIG device created, the answer never delivered.
    let held = shim.hold_next_create();
    let child = Child::spawn(dir.path(), &spec, shim.addr());
    let on = held.recv_timeout(LIMIT).expect("a MIG device creation");
    child.kill();
    kills.push("after a MIG device creation");
    assert_eq!(on, "srv-2");
    // Then to convergence.
    let child = Child::spawn(dir.path(), &spec, shim.addr());
    child.wait_line("OUTCOME applied 1");
    child.kill();

    let srv = |n: &str| servers.iter().find(|s| s.id.as_str() == n).unwrap();
    for (s, image) in [
        ("srv-1", "train.iso"),
        ("srv-2", "host.iso"),
        ("srv-3", "vm.iso"),
    ] {
        let e = srv(s);
        assert_eq!(e.bmc.power_state(), PowerState::On, "{s}");
        assert_eq!(e.bmc.media_image(), Some(images.url(image)), "{s}");
        let boots = e.bmc.boots();
        assert_eq!(
            boots.len(),
            1,
            "{s}: one boot, not a second power cycle: {boots:?}"
        );
        assert_eq!(boots[0].image, Some(images.url(image)), "{s}");
        assert_eq!(
            succeeded(&e.bmc, "POST", "ComputerSystem.Reset"),
            1,
            "{s}: one power-on"
        );
        assert_eq!(
            succeeded(&e.bmc, "POST", "VirtualMedia.InsertMedia"),
            1,
            "{s}: one insert"
        );
    }
    assert_eq!(srv("srv-4").bmc.power_state(), PowerState::Off);
    let (mut gpu0, gpu1) = rt.block_on(async {
        let r = srv("srv-2").gpus.report().await.unwrap();
        let names = |i: usize| match &r.devices()[i].mig {
            meridian_drivers::gpu::MigState::Supported { devices, .. } => devices
                .iter()
                .map(|d| d.name.rsplit(' ').next().unwrap().to_owned())
                .collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        (names(0), names(1))
    });
    gpu0.sort();
    assert_eq!(gpu0, ["1g.10gb", "3g.40gb"], "one MIG device per slice");
    assert_eq!(gpu1, ["2g.20gb"]);
    assert_eq!(shim.creates(), 3, "no MIG device created twice");

    // Generation 2 takes everything away; kill 4 lands during a power-off.
    write_intent(&intent(SITE, 2, json!([])));
    let resets = total("POST", "ComputerSystem.Reset");
    let child = Child::spawn(dir.path(), &spec, shim.addr());
    poll_until("a power-off", || {
        total("POST", "ComputerSystem.Reset") > resets
    });
    child.kill();
    kills.push("during a power-off");
    let child = Child::spawn(dir.path(), &spec, shim.addr());
    child.wait_line("OUTCOME applied 2");
    child.kill();
    for s in ["srv-1", "srv-2", "srv-3"] {
        let e = srv(s);
        assert_eq!(e.bmc.power_state(), PowerState::Off, "{s}");
        assert!(!e.bmc.media_inserted(), "{s}");
        assert_eq!(
            succeeded(&e.bmc, "POST", "ComputerSystem.Reset"),
            2,
            "{s}: on, then off"
        );
        assert_eq!(
            succeeded(&e.bmc, "POST", "VirtualMedia.EjectMedia"),
            1,
            "{s}: one eject"
        );
        assert_eq!(e.bmc.boots().len(), 1, "{s}");
    }
    let report = rt.block_on(srv("srv-2").gpus.report()).unwrap();
    for g in report.devices() {
        assert!(
            matches!(&g.mig, meridian_drivers::gpu::MigState::Supported { current: false, pending: false, devices, .. } if devices.is_empty()),
            "{:?}",
            g.mig
        );
    }

    // Every step reported once: no Info event repeats on any server, and each milestone is
    // there exactly once (as done, or as found done after a restart).
    let store = AgentStore::open(&dir.path().join("agent")).unwrap();
    let r = reports(&store);
    let seqs: Vec<u64> = r.iter().map(|x| x.sequence.get()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]));
    for s in ["srv-1", "srv-2", "srv-3", "srv-4"] {
        let infos: Vec<String> = r
            .iter()
            .filter_map(|x| match &x.body {
                ReportBody::Event {
                    severity: Severity::Info,
                    resource,
                    message,
                } if resource == &format!("server/{s}") => Some(message.clone()),
                _ => None,
            })
            .collect();
        let mut seen = std::collections::BTreeSet::new();
        for m in &infos {
            assert!(seen.insert(m), "{s}: {m:?} reported twice: {infos:#?}");
        }
        if s == "srv-4" {
            continue;
        }
        for milestone in [
            "inserted",
            "armed",
            "booted",
            "in place",
            "cleaning:",
            "powered off",
            "ejected",
            "clean and available",
        ] {
            assert_eq!(
                count(&infos, milestone),
                if milestone == "in place" && s == "srv-2" {
                    3
                } else {
                    1
                },
                "{s}: {milestone:?} in {infos:#?}"
            );
        }
    }
    let e2 = events(&r, "server/srv-2");
    assert_eq!(
        count(&e2, "created for") + count(&e2, "adopted for"),
        3,
        "{e2:#?}"
    );
    assert_eq!(
        count(&e2, "adopted for infer-a"),
        1,
        "the device created before kill 3 is adopted: {e2:#?}"
    );
    for w in ["train", "infer-a", "infer-b", "burst", "render"] {
        assert_eq!(latest_alloc(&r, w), Some(AllocationStatus::Ended), "{w}");
    }
    println!(
        "kill -9 landed {}; each resumed without repeating a step",
        kills.join(", ")
    );
    drop(shim);
    rt.block_on(async {
        for s in servers {
            s.bmc.shutdown().await;
        }
    });
}
