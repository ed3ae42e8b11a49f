//! GPU utilisation summaries from the site reconciler, on an injected [`ManualClock`]: four
//! emulated servers whose fake NVML answers utilisation rates and memory a test sets, and a
//! site without GPUs.
//!
//! - Each step of the clock by the report interval makes one compacted summary of that period
//!   (its start, its length, per server and GPU the mean busy and memory utilisation and the
//!   samples), stamped with the clock, with the values NVML gave; each period keeps its own
//!   report in the agent's buffer.
//! - A site without GPUs reports its periods too, with no GPUs.

mod site_reconcile_support;

use std::sync::Arc;
use std::time::Duration;

use meridian_agent::reconcile::{ManualClock, SiteReconciler, UtilisationConfig};
use meridian_agent::reconciler::{AgentLink, Convergence, Reconciler};
use meridian_agent::store::AgentStore;
use meridian_common::ids::Timestamp;
use meridian_common::model::{MetricsPeriod, ReportBody, ServerState, SiteReport};
use meridian_drivers::gpu::{GpuIndex, GpuInventory};
use serde_json::json;
use site_reconcile_support::*;
use tokio::sync::{Notify, watch};

const SITE: &str = "edge-util";
/// The injected clock's start.
const T0: i64 = 1_800_000_000_000;
const MIN: i64 = 60_000;
const LIMIT: Duration = Duration::from_secs(60);
const GIB: u64 = 1 << 30;

/// Only the period summaries (NVML is otherwise sampled hourly: one sample per period, at its
/// end, so each summary holds exactly the values set before the clock step).
fn config() -> UtilisationConfig {
    UtilisationConfig {
        report_interval: Duration::from_secs(60),
        sample_interval: Duration::from_secs(3_600),
    }
}

fn link(store: &AgentStore, stop: &watch::Sender<bool>) -> AgentLink {
    AgentLink {
        store: store.clone(),
        reports_ready: Arc::new(Notify::new()),
        report_buffer_max: 100_000,
        stop: stop.subscribe(),
    }
}

/// The buffered summaries, oldest first.
fn summaries(store: &AgentStore) -> Vec<(SiteReport, f64, MetricsPeriod)> {
    reports(store)
        .into_iter()
        .filter_map(|r| match &r.body {
            ReportBody::Metrics {
                gpu_utilisation_pct,
                period: Some(p),
                ..
            } => Some((r.clone(), *gpu_utilisation_pct, p.clone())),
            _ => None,
        })
        .collect()
}

/// Waits until `n` summaries are buffered.
async fn wait_summaries(store: &AgentStore, n: usize) -> Vec<(SiteReport, f64, MetricsPeriod)> {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        let s = summaries(store);
        if s.len() >= n {
            return s;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} of {n} summaries after {LIMIT:?}",
            s.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_summary_per_clock_interval_with_the_rates_nvml_gave() {
    let dir = tempfile::tempdir().unwrap();
    let store = AgentStore::open(&dir.path().join("agent")).unwrap();
    let servers = start_servers().await;
    // Every GPU: busy 10 % x (its number on the site), memory 5 %, a quarter of memory in use.
    let mut n = 0;
    for s in &servers {
        let count = s.gpus.report().await.unwrap().devices().len() as u32;
        for i in 0..count {
            n += 1;
            s.gpus.set_utilisation(GpuIndex(i), (n * 10).min(100), 5);
            let total = s.gpus.report().await.unwrap().devices()[i as usize]
                .memory
                .total;
            s.gpus.set_memory_used(GpuIndex(i), total / 4);
        }
    }
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let specs = servers
        .iter()
        .map(|s| {
            let gpus: Arc<dyn GpuInventory> = s.gpus.clone();
            spec(&s.id, &s.bmc, Some(gpus))
        })
        .collect();
    let site =
        SiteReconciler::new(specs, reconciler_config(), clock.clone()).with_utilisation(config());
    let (stop, _) = watch::channel(false);
    let background = site.start(link(&store, &stop)).unwrap();

    // The servers are inspected and in service (available) under an intent with nothing on
    // them.
    let intent = intent(SITE, 1, json!([]));
    store.store_intent(&intent).unwrap();
    site.apply(&intent).unwrap();
    assert_eq!(
        wait_outcome(&site, 1, LIMIT).await,
        Convergence::Applied(meridian_common::ids::Generation::new(1))
    );
    let mut rx = site.status();
    tokio::time::timeout(
        LIMIT,
        rx.wait_for(|s| {
            s.servers.len() == 4
                && s.servers
                    .values()
                    .all(|v| v.state == ServerState::Available)
        }),
    )
    .await
    .expect("servers available")
    .unwrap();
    assert!(summaries(&store).is_empty(), "no period has ended yet");

    // First step: the period [T0, T0 + 1 min).
    clock.advance(Duration::from_secs(60));
    let got = wait_summaries(&store, 1).await;
    let (report, mean, p) = &got[0];
    assert_eq!(
        report.at,
        Timestamp::from_millis(T0 + MIN),
        "stamped by the clock"
    );
    assert_eq!(report.site.as_str(), SITE);
    assert_eq!(p.start, Timestamp::from_millis(T0));
    assert_eq!(p.length_ms, 60_000);
    assert_eq!(p.gpus.len(), 16, "4 + 2 + 2 + 8 GPUs: {p:#?}");
    let mut n = 0;
    let mut sum = 0.0;
    for g in &p.gpus {
        n += 1;
        assert_eq!(g.mig_slot, None);
        assert_eq!((g.samples, g.busy_samples), (1, 1), "{g:?}");
        let busy = f64::from((n * 10).min(100));
        sum += busy;
        assert_eq!(g.busy_pct, busy, "{g:?}");
        assert_eq!(g.memory_busy_pct, 5.0, "{g:?}");
        assert_eq!(g.memory_used_pct, 25.0, "{g:?}");
    }
    assert_eq!(p.gpus[0].server.as_str(), "srv-1");
    assert_eq!(p.gpus[15].server.as_str(), "srv-4");
    assert!((mean - sum / 16.0).abs() < 1e-9, "site mean {mean}");

    // Second step, with srv-1's GPU 0 now fully busy and its memory full: a second summary of
    // the next period; the first stays buffered (its own key).
    let srv1 = &servers[0];
    srv1.gpus.set_utilisation(GpuIndex(0), 100, 60);
    srv1.gpus.set_memory_used(GpuIndex(0), 80 * GIB);
    clock.advance(Duration::from_secs(60));
    let got = wait_summaries(&store, 2).await;
    let (report, _, p) = &got[1];
    assert_eq!(report.at, Timestamp::from_millis(T0 + 2 * MIN));
    assert_eq!(p.start, Timestamp::from_millis(T0 + MIN));
    let g0 = &p.gpus[0];
    assert_eq!((g0.server.as_str(), g0.gpu), ("srv-1", 0));
    assert_eq!(
        (g0.busy_pct, g0.memory_busy_pct, g0.memory_used_pct),
        (100.0, 60.0, 100.0)
    );
    assert_eq!(got[0].2.start, Timestamp::from_millis(T0));
    assert_eq!(
        store
            .buffered_by_resource()
            .keys()
            .filter(|k| k.starts_with("Metrics"))
            .count(),
        2
    );

    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), background.task)
        .await
        .expect("the loop stops")
        .unwrap();
    for s in servers {
        s.bmc.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_site_without_gpus_reports_its_periods_empty() {
    let dir = tempfile::tempdir().unwrap();
    let store = AgentStore::open(&dir.path().join("agent")).unwrap();
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(T0)));
    let site = SiteReconciler::new(Vec::new(), reconciler_config(), clock.clone())
        .with_utilisation(config());
    let (stop, _) = watch::channel(false);
    let background = site.start(link(&store, &stop)).unwrap();
    let intent = intent(SITE, 1, json!([]));
    store.store_intent(&intent).unwrap();
    site.apply(&intent).unwrap();
    wait_outcome(&site, 1, LIMIT).await;
    for step in 1..=3 {
        clock.advance(Duration::from_secs(60));
        let got = wait_summaries(&store, step).await;
        let (report, mean, p) = got.last().unwrap();
        assert_eq!(report.at, Timestamp::from_millis(T0 + step as i64 * MIN));
        assert_eq!(
            p.start,
            Timestamp::from_millis(T0 + (step as i64 - 1) * MIN)
        );
        assert!(p.gpus.is_empty());
        assert_eq!(*mean, 0.0);
    }
    let _ = stop.send(true);
    tokio::time::timeout(Duration::from_secs(10), background.task)
        .await
        .expect("the loop stops")
        .unwrap();
}
