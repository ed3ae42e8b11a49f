//! Intent push and partitions through the fault proxy: real central, real agent, QUIC on
//! 127.0.0.1, every packet through `meridian_emulators::proxy::FaultProxy`.
//!
//! - R4/B8: 3 generations pushed while connected, 50 while the site is cut off; after the heal
//!   the agent receives one snapshot of the newest (bytes measured), and older generations
//!   replayed on the live session are all refused.
//! - R3: a WAN cut (`MERIDIAN_PARTITION_SECS`, default 60 s): the intent stays in force,
//!   reports are buffered, and after the heal every report is stored exactly once and the
//!   site is `Online` again within two heartbeat intervals.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use meridian_agent::Agent;
use meridian_agent::reconciler::RecordingReconciler;
use meridian_central::server::Central;
use meridian_common::ids::Generation;
use meridian_common::model::{ReportBody, Severity, SiteState};
use meridian_emulators::proxy::FaultProxy;
use meridian_proto::v1 as proto;
use meridian_testkit::agents;
use meridian_testkit::central::{self as test_central, Liveness};
use meridian_testkit::enrol;
use meridian_testkit::fixtures::*;
use meridian_testkit::observe::*;
use meridian_testkit::wait::{LIMIT, wait_for};
use std::sync::Arc;

const NETWORKS: usize = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_generations_collapse_into_one_snapshot_and_old_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_central::config(
        &dir.path().join("central"),
        "127.0.0.1:0".parse().unwrap(),
        Liveness::Quick,
    );
    // The old connection is gone before the heal, so every byte after it is the resync.
    cfg.channel.idle_timeout_ms = 1_500;
    let central = Central::open(cfg).await.unwrap();
    let proxy = FaultProxy::new(central.channel().local_addr(), 1);
    let site = "edge-1";
    enrol::add_site(&central, site).await.unwrap();
    let port = proxy.add_site(site).await.unwrap();
    let boot = enrol::write_bootstrap(&central, site, vec![port.to_string()], dir.path())
        .await
        .unwrap();
    let rec = Arc::new(RecordingReconciler::default());
    let agent = Agent::start(
        agents::config(&dir.path().join("agent"), &boot, 300),
        rec.clone(),
    )
    .await
    .unwrap();
    let intents = central.tables().intents();

    // Three generations while connected: each one arrives.
    for g in 1..=3 {
        intents
            .upsert(&intent_with_networks(&site_id(site), g, 4))
            .await
            .unwrap();
        wait_for(&format!("generation {g} applied"), LIMIT, || async {
            applied_at_central(&central, site).await == Generation::new(g)
        })
        .await;
    }
    assert_eq!(agent.status().unwrap().pushes_received, 3);

    // Cut off; wait until both ends gave the link up.
    proxy.cut_site(site, Duration::from_secs(3600));
    wait_for("both ends see the link down", LIMIT, || async {
        !agent.status().unwrap().connected && central.channel().connected_sites() == 0
    })
    .await;
    for g in 4..=53 {
        intents
            .upsert(&intent_with_networks(&site_id(site), g, NETWORKS))
            .await
            .unwrap();
    }
    let newest = intent_with_networks(&site_id(site), 53, NETWORKS);
    let snapshot = snapshot_bytes(&newest);
    assert_eq!(agent.status().unwrap().held, Generation::new(3));

    // Heal: one snapshot of the newest generation, nothing else.
    let before = agent.status().unwrap();
    proxy.reset_stats(site);
    proxy.heal_site(site);
    wait_for("generation 53 applied after the heal", LIMIT, || async {
        applied_at_central(&central, site).await == Generation::new(53)
    })
    .await;
    // Let anything else that might come arrive.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let after = agent.status().unwrap();
    let pushes = after.pushes_received - before.pushes_received;
    let push_bytes = after.push_bytes_received - before.push_bytes_received;
    let wire = proxy.stats(site);
    eprintln!(
        "B8: 50 missed generations; snapshot {snapshot} B; {pushes} push of {push_bytes} B on the session; \
         {} B central->agent on the wire since the heal (handshake, acks, heartbeats included)",
        wire.to_agent_bytes
    );
    assert_eq!(pushes, 1, "one snapshot after the heal");
    assert!(
        push_bytes as usize <= snapshot + 1024,
        "B8: {push_bytes} B pushed for a {snapshot} B snapshot"
    );
    // On the wire: the snapshot plus one reconnect, nowhere near 50 snapshots.
    assert!(
        (wire.to_agent_bytes as usize) < snapshot + 32 * 1024,
        "{} B on the wire for a {snapshot} B snapshot",
        wire.to_agent_bytes
    );
    assert_eq!(after.held, Generation::new(53));
    assert_eq!(*rec.applied().last().unwrap(), Generation::new(53));

    // R4: every older generation replayed on the live session is refused.
    let site_id = site_id(site);
    for g in 1..=52 {
        let push = proto::IntentPush {
            generation: g,
            intent: Some(intent_with_networks(&site_id, g, 1).into()),
        };
        assert!(central.channel().inject_push(&site_id, push));
    }
    wait_for("52 replayed generations refused", LIMIT, || async {
        agent.status().unwrap().refused == 52
    })
    .await;
    wait_for("central recorded the refusals", LIMIT, || async {
        central
            .channel()
            .site_channel(&site_id)
            .await
            .unwrap()
            .failed_generation
            == Generation::new(52)
    })
    .await;
    let ch = central.channel().site_channel(&site_id).await.unwrap();
    assert!(ch.failed_reason.contains("older"), "{}", ch.failed_reason);
    assert_eq!(ch.applied_generation, Generation::new(53));
    let status = agent.status().unwrap();
    assert_eq!(status.held, Generation::new(53));
    assert_eq!(status.applied, Generation::new(53));
    assert_eq!(*rec.applied().last().unwrap(), Generation::new(53));
    assert!(rec.applied().windows(2).all(|w| w[0] < w[1]));

    agent.shutdown().await;
    proxy.shutdown().await;
    central.shutdown().await;
}

fn event(n: usize) -> ReportBody {
    ReportBody::Event {
        severity: Severity::Info,
        resource: "site".into(),
        message: format!("report {n}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn partition_keeps_intent_buffers_reports_and_reconverges() {
    let cut: u64 = std::env::var("MERIDIAN_PARTITION_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let cut = Duration::from_secs(cut);
    let heartbeat_ms = 1_000;
    let heartbeat = Duration::from_millis(heartbeat_ms);
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_central::config(
        &dir.path().join("central"),
        "127.0.0.1:0".parse().unwrap(),
        Liveness::Quick,
    );
    cfg.channel.disconnect_after_ms = 2 * heartbeat_ms;
    let central = Central::open(cfg).await.unwrap();
    let proxy = FaultProxy::new(central.channel().local_addr(), 2);
    let site = "edge-2";
    enrol::add_site(&central, site).await.unwrap();
    let port = proxy.add_site(site).await.unwrap();
    let boot = enrol::write_bootstrap(&central, site, vec![port.to_string()], dir.path())
        .await
        .unwrap();
    let rec = Arc::new(RecordingReconciler::default());
    let mut config = agents::config(&dir.path().join("agent"), &boot, heartbeat_ms);
    // The metrics counted below are the test's own: no utilisation period of the agent ends
    // within the cut.
    config.utilisation_report_interval_ms = 3_600_000;
    let agent = Agent::start(config, rec.clone()).await.unwrap();
    central
        .tables()
        .intents()
        .upsert(&intent_with_networks(&site_id(site), 1, 8))
        .await
        .unwrap();
    wait_for("generation 1 applied", LIMIT, || async {
        applied_at_central(&central, site).await == Generation::new(1)
    })
    .await;
    let mut n = 0;
    let mut appended = Vec::new();
    for _ in 0..10 {
        appended.push((agent.report(event(n)).unwrap(), n));
        n += 1;
    }
    wait_for("first reports delivered", LIMIT, || async {
        agent.status().unwrap().buffered == 0
    })
    .await;

    // The cut: keep reporting, the intent stays in force, central marks the site
    // Disconnected and tears nothing down.
    let started = Instant::now();
    proxy.cut_site(site, cut + Duration::from_secs(3600));
    let mut saw_disconnected = false;
    while started.elapsed() < cut {
        appended.push((agent.report(event(n)).unwrap(), n));
        n += 1;
        agent
            .report(ReportBody::Metrics {
                gpu_utilisation_pct: (n % 101) as f64,
                power_watts: 100.0,
                period: None,
            })
            .unwrap();
        if !saw_disconnected {
            saw_disconnected = site_state(&central, site).await == SiteState::Disconnected;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let during = agent.status().unwrap();
    assert!(saw_disconnected, "central never noticed the cut");
    assert!(!during.connected);
    assert_eq!(during.held, Generation::new(1));
    assert_eq!(during.applied, Generation::new(1));
    assert_eq!(
        rec.applied(),
        vec![Generation::new(1)],
        "nothing torn down or re-applied"
    );
    assert!(
        central
            .tables()
            .intents()
            .get(&site_id(site))
            .await
            .unwrap()
            .is_some()
    );
    // Events are all buffered; the metrics compacted to the latest one.
    assert_eq!(during.buffered, appended.len() - 10 + 1);
    assert_eq!(during.dropped, 0);

    // Heal, and time the way back.
    proxy.heal_site(site);
    let healed = Instant::now();
    wait_for("site Online again", LIMIT, || async {
        site_state(&central, site).await == SiteState::Online
    })
    .await;
    let back = healed.elapsed();
    let last = agent.status().unwrap().last_sequence;
    wait_for("every buffered report acknowledged", LIMIT, || async {
        agent.status().unwrap().acked == last
    })
    .await;
    let stored = stored_reports(&central, site).await;
    let mut events: BTreeMap<String, usize> = BTreeMap::new();
    for r in &stored {
        if let ReportBody::Event { message, .. } = &r.body {
            *events.entry(message.clone()).or_default() += 1;
        }
    }
    for (seq, n) in &appended {
        let msg = format!("report {n}");
        assert_eq!(
            events.get(&msg),
            Some(&1),
            "{msg} (sequence {seq}) stored once"
        );
        assert!(stored.iter().any(|r| r.sequence == *seq));
    }
    assert_eq!(events.len(), appended.len());
    assert!(stored.windows(2).all(|w| w[0].sequence < w[1].sequence));
    let metrics = stored
        .iter()
        .filter(|r| matches!(r.body, ReportBody::Metrics { .. }))
        .count();
    assert_eq!(metrics, 1, "state reports compact to the latest");
    eprintln!(
        "R3: {:?} cut; {} reports delivered exactly once ({} events, {metrics} compacted metrics); \
         Online again {:.0} ms after the heal = {:.2} heartbeat intervals",
        cut,
        stored.len(),
        appended.len(),
        back.as_secs_f64() * 1000.0,
        back.as_secs_f64() / heartbeat.as_secs_f64()
    );
    assert!(
        back <= heartbeat * 2,
        "R3: Online {back:?} after the heal, more than 2 heartbeat intervals"
    );
    assert_eq!(rec.applied(), vec![Generation::new(1)]);

    agent.shutdown().await;
    proxy.shutdown().await;
    central.shutdown().await;
}
