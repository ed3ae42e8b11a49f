//! Operator server actions carried out by the site reconciler at most once per request,
//! against the Redfish BMC emulator (power phases of 600 ms) with the agent's journal store in
//! a temporary directory:
//!
//! - an intent carrying a reboot request makes exactly one `ComputerSystem.Reset` POST
//!   (`ForceRestart`), and the request is reported `Done`;
//! - re-applying the same intent, and a newer generation still carrying the request, asks
//!   nothing more of the BMC and reports nothing more about the request;
//! - a reconciler aborted while a reboot's power transition is under way (its record says the
//!   BMC was being asked, not that it took the call), its store reopened from the same
//!   directory and a new reconciler started: the transition found under way proves the call
//!   was taken, so the new reconciler waits it out and reports the request `Done` without a
//!   second reset.
//!
//! The end-to-end `kill -9` of the agent binary is a separate test; this is the
//! reconciler-level proof.

mod site_reconcile_support;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_agent::reconcile::record::{self, ActionStage};
use meridian_agent::reconcile::{ManualClock, SiteReconciler};
use meridian_agent::reconciler::{AgentLink, Background, Convergence, Reconciler};
use meridian_agent::store::AgentStore;
use meridian_common::ids::{RequestId, Sequence, Timestamp};
use meridian_common::model::{ActionPhase, ReportBody, ServerState, SiteIntent};
use meridian_emulators::redfish::{BmcEmulator, BmcProfile, PowerState, RunningBmc};
use serde_json::json;
use site_reconcile_support::*;
use tokio::sync::{Notify, watch};

const SITE: &str = "edge-act";
const T0: i64 = 1_800_000_000_000;
const LIMIT: Duration = Duration::from_secs(60);

/// One site reconciler over the emulated server, on `store`.
struct Running {
    site: SiteReconciler,
    stop: watch::Sender<bool>,
    background: Background,
}

fn start(store: &AgentStore, bmc: &RunningBmc) -> Running {
    let id = server_id("srv-1");
    let site = SiteReconciler::new(
        vec![spec(&id, bmc, None)],
        reconciler_config(),
        Arc::new(ManualClock::new(Timestamp::from_millis(T0))),
    );
    let (stop, stop_rx) = watch::channel(false);
    let background = site
        .start(AgentLink {
            store: store.clone(),
            reports_ready: Arc::new(Notify::new()),
            report_buffer_max: 100_000,
            stop: stop_rx,
        })
        .expect("started");
    Running {
        site,
        stop,
        background,
    }
}

/// The intent: one allocation booting srv-1 from its disk, and these requests.
fn intent(generation: u64, actions: serde_json::Value) -> SiteIntent {
    serde_json::from_value(json!({
        "site": SITE,
        "generation": generation,
        "allocations": [{"workload": "job", "tenant": "acme", "server": "srv-1",
                         "slot": "none", "mode": "bare_metal"}],
        "server_actions": actions,
    }))
    .unwrap()
}

fn reboot(request: u64) -> serde_json::Value {
    json!({"server": "srv-1", "action": {"power": "reboot"}, "request": request})
}

fn push(store: &AgentStore, run: &Running, intent: &SiteIntent) {
    store.store_intent(intent).unwrap();
    run.site.apply(intent).unwrap();
}

async fn applied(run: &Running, g: u64) {
    match wait_outcome(&run.site, g, LIMIT).await {
        Convergence::Applied(_) => {}
        other => panic!("generation {g}: {other:?}"),
    }
}

/// Successful `ComputerSystem.Reset` POSTs with this `ResetType`.
fn resets(bmc: &RunningBmc, reset_type: &str) -> usize {
    bmc.requests()
        .iter()
        .filter(|r| {
            r.method.as_str() == "POST"
                && r.path.ends_with("ComputerSystem.Reset")
                && (200..300).contains(&r.status)
                && r.body.as_ref().and_then(|b| b["ResetType"].as_str()) == Some(reset_type)
        })
        .count()
}

/// The buffered (latest, as reports about a request are compacted) report about `request`:
/// its sequence, phase and detail.
fn action_report(store: &AgentStore, request: u64) -> Option<(Sequence, ActionPhase, String)> {
    reports(store).into_iter().find_map(|r| match r.body {
        ReportBody::ServerAction {
            request: q,
            phase,
            detail,
            ..
        } if q == RequestId::new(request) => Some((r.sequence, phase, detail)),
        _ => None,
    })
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Opens the store in `dir`, waiting for the aborted reconciler's tasks to let go of it.
async fn reopen(dir: &Path) -> AgentStore {
    let start = Instant::now();
    loop {
        match AgentStore::open(dir) {
            Ok(s) => return s,
            Err(e) if start.elapsed() < Duration::from_secs(10) => {
                tracing::debug!(error = %e, "store still locked");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => panic!("cannot reopen the store: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reboot_request_is_carried_out_once_across_reapplies_and_a_crash() {
    let bmc = BmcEmulator::new(BmcProfile::gpu_server(["NVIDIA H100 80GB HBM3"]))
        .power_delay(Duration::from_millis(600))
        .media_delay(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("agent");
    let store = AgentStore::open(&dir).unwrap();
    let id = server_id("srv-1");

    // Generation 1: the server is allocated (booted from its disk, on).
    let run = start(&store, &bmc);
    push(&store, &run, &intent(1, json!([])));
    applied(&run, 1).await;
    assert_eq!(bmc.power_state(), PowerState::On);
    assert_eq!(resets(&bmc, "ForceRestart"), 0);

    // Generation 2 carries reboot request 7: one reset, reported done.
    let started = Instant::now();
    push(&store, &run, &intent(2, json!([reboot(7)])));
    applied(&run, 2).await;
    println!("reboot request done in {:?}", started.elapsed());
    assert_eq!(resets(&bmc, "ForceRestart"), 1);
    let (seq, phase, detail) = action_report(&store, 7).expect("request 7 reported");
    assert_eq!((phase, detail.as_str()), (ActionPhase::Done, "restarted"));
    assert_eq!(
        record::load(&store, &id).unwrap().actions[&RequestId::new(7)].phase,
        ActionStage::Done
    );

    // The same intent again, then a newer generation still carrying the request: nothing.
    run.site.apply(&intent(2, json!([reboot(7)]))).unwrap();
    push(&store, &run, &intent(3, json!([reboot(7)])));
    applied(&run, 3).await;
    assert_eq!(resets(&bmc, "ForceRestart"), 1);
    assert_eq!(
        action_report(&store, 7).unwrap().0,
        seq,
        "request 7 reported again"
    );

    // Generation 4 adds reboot request 8; the reconciler is aborted while its power transition
    // runs (the BMC took the reset, the record still says it was being asked).
    push(&store, &run, &intent(4, json!([reboot(7), reboot(8)])));
    wait_for("the second reset", || resets(&bmc, "ForceRestart") == 2).await;
    assert!(
        matches!(
            bmc.power_state(),
            PowerState::PoweringOff | PowerState::PoweringOn
        ),
        "{:?}",
        bmc.power_state()
    );
    run.background.task.abort();
    let _ = run.background.task.await;
    drop(run.stop);
    drop(run.site);
    let rec = record::load(&store, &id).unwrap();
    assert_eq!(
        rec.actions[&RequestId::new(8)].phase,
        ActionStage::Issuing,
        "{rec:?}"
    );
    drop(store);
    assert!(matches!(
        bmc.power_state(),
        PowerState::PoweringOff | PowerState::PoweringOn
    ));

    // A new reconciler on the reopened store finishes request 8 without asking again.
    let store = reopen(&dir).await;
    let run = start(&store, &bmc);
    applied(&run, 4).await;
    assert_eq!(resets(&bmc, "ForceRestart"), 1 + 1);
    let (_, phase, detail) = action_report(&store, 8).expect("request 8 reported");
    assert_eq!((phase, detail.as_str()), (ActionPhase::Done, "restarted"));
    assert_eq!(action_report(&store, 7).unwrap().0, seq);
    let events = events(&reports(&store), "server/srv-1");
    assert!(
        events
            .iter()
            .any(|e| e.contains("request 8") && e.contains("found under way")),
        "{events:#?}"
    );
    let rec = record::load(&store, &id).unwrap();
    assert_eq!(rec.state, ServerState::Allocated);
    assert_eq!(rec.actions[&RequestId::new(8)].phase, ActionStage::Done);
    assert_eq!(bmc.power_state(), PowerState::On);
    // Nothing else reset the server: the boot from disk was kept throughout.
    assert_eq!(resets(&bmc, "PowerCycle"), 0);
    run.stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reprovision_request_cleans_the_server_and_puts_its_allocation_back() {
    let bmc = BmcEmulator::new(BmcProfile::gpu_server(["NVIDIA H100 80GB HBM3"]))
        .power_delay(Duration::from_millis(100))
        .media_delay(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = AgentStore::open(&tmp.path().join("agent")).unwrap();
    let run = start(&store, &bmc);
    push(&store, &run, &intent(1, json!([])));
    applied(&run, 1).await;
    let (offs, ons) = (resets(&bmc, "ForceOff"), resets(&bmc, "On"));

    let clean = json!({"server": "srv-1", "action": "clean", "request": 11});
    let provision = json!({"server": "srv-1", "action": {"provision": {"image": "http://img/x.iso"}},
                           "request": 12});
    push(
        &store,
        &run,
        &intent(2, json!([clean.clone(), provision.clone()])),
    );
    applied(&run, 2).await;
    // Cleaned (powered off once) and booted again for the allocation (powered on once).
    assert_eq!(resets(&bmc, "ForceOff"), offs + 1);
    assert_eq!(resets(&bmc, "On"), ons + 1);
    let (seq, phase, detail) = action_report(&store, 11).expect("request 11 reported");
    assert_eq!(phase, ActionPhase::Done, "{detail}");
    assert!(detail.contains("allocated"), "{detail}");
    let (_, phase, detail) = action_report(&store, 12).expect("request 12 reported");
    assert_eq!(phase, ActionPhase::Failed);
    assert!(detail.contains("not supported"), "{detail}");
    let events = events(&reports(&store), "server/srv-1");
    assert!(
        events
            .iter()
            .any(|e| e == "cleaning: request 11: reprovision"),
        "{events:#?}"
    );

    // Re-applied in a newer generation: not cleaned again.
    push(&store, &run, &intent(3, json!([clean, provision])));
    applied(&run, 3).await;
    assert_eq!(resets(&bmc, "ForceOff"), offs + 1);
    assert_eq!(action_report(&store, 11).unwrap().0, seq);
    assert_eq!(
        record::load(&store, &server_id("srv-1")).unwrap().state,
        ServerState::Allocated
    );
    run.stop.send(true).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_reset_is_asked_again_and_one_whose_answer_is_lost_is_not() {
    use hyper::Method;
    use meridian_emulators::redfish::Fault;
    const RESET: &str = "/redfish/v1/Systems/*/Actions/ComputerSystem.Reset";
    let bmc = BmcEmulator::new(BmcProfile::gpu_server(["NVIDIA H100 80GB HBM3"]))
        .power_delay(Duration::from_millis(100))
        .media_delay(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let store = AgentStore::open(&tmp.path().join("agent")).unwrap();
    let run = start(&store, &bmc);
    push(&store, &run, &intent(1, json!([])));
    applied(&run, 1).await;

    // The BMC refuses the first reset (400): nothing happened, so it is asked again.
    bmc.faults()
        .inject(Fault::status(RESET, 400).method(Method::POST).times(1));
    push(&store, &run, &intent(2, json!([reboot(21)])));
    applied(&run, 2).await;
    assert_eq!(resets(&bmc, "ForceRestart"), 1);
    let (_, phase, detail) = action_report(&store, 21).unwrap();
    assert_eq!((phase, detail.as_str()), (ActionPhase::Done, "restarted"));
    let events = events(&reports(&store), "server/srv-1");
    assert!(events.iter().any(|e| e.contains("HTTP 400")), "{events:#?}");

    // The next reset's answer is lost (the request hangs past the driver's timeout; the
    // emulator never applies it): whether it happened is unknown, so it is not asked again.
    bmc.faults()
        .inject(Fault::hang(RESET).method(Method::POST).times(1));
    push(&store, &run, &intent(3, json!([reboot(21), reboot(22)])));
    applied(&run, 3).await;
    assert_eq!(resets(&bmc, "ForceRestart"), 1);
    let (_, phase, detail) = action_report(&store, 22).unwrap();
    assert_eq!(phase, ActionPhase::Failed);
    assert!(detail.contains("not repeated"), "{detail}");
    let posts = bmc
        .requests()
        .iter()
        .filter(|r| r.method.as_str() == "POST" && r.path.ends_with("ComputerSystem.Reset"))
        .count();
    assert!(posts <= 3, "{posts} reset POSTs");
    run.stop.send(true).unwrap();
}
