//! In-process channel tests: real central, real agents, QUIC on 127.0.0.1, sled in temp dirs.

use std::time::Duration;

use meridian_common::ids::{Generation, Sequence};
use meridian_common::model::{ReportBody, Severity, SiteState};
use meridian_testkit::agents;
use meridian_testkit::central::{self as test_central, Liveness};
use meridian_testkit::enrol;
use meridian_testkit::fixtures::*;
use meridian_testkit::wait::{LIMIT, wait_for};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrol_session_push_ack_and_reports() {
    let dir = tempfile::tempdir().unwrap();
    let central = test_central::start(&dir.path().join("central"))
        .await
        .unwrap();
    enrol::add_site(&central, "edge-1").await.unwrap();
    let boot = enrol::write_bootstrap(&central, "edge-1", vec![], dir.path())
        .await
        .unwrap();
    central
        .tables()
        .intents()
        .upsert(&empty_intent(&site_id("edge-1"), 1))
        .await
        .unwrap();
    let (agent, rec) =
        agents::start_recording(agents::config(&dir.path().join("agent"), &boot, 300))
            .await
            .unwrap();

    let tables = central.tables();
    wait_for("site online", LIMIT, || async {
        tables
            .sites()
            .get(&site_id("edge-1"))
            .await
            .unwrap()
            .unwrap()
            .record
            .state
            == SiteState::Online
    })
    .await;
    // The intent written before the agent connected arrives on connect.
    wait_for("generation 1 applied", LIMIT, || async {
        central
            .channel()
            .site_channel(&site_id("edge-1"))
            .await
            .unwrap()
            .applied_generation
            == Generation::new(1)
    })
    .await;
    for g in 2..=3 {
        tables
            .intents()
            .upsert(&empty_intent(&site_id("edge-1"), g))
            .await
            .unwrap();
    }
    wait_for("generation 3 applied", LIMIT, || async {
        central
            .channel()
            .site_channel(&site_id("edge-1"))
            .await
            .unwrap()
            .applied_generation
            == Generation::new(3)
    })
    .await;
    assert_eq!(agent.status().unwrap().held, Generation::new(3));
    assert!(rec.applied().windows(2).all(|w| w[0] < w[1]));

    for n in 0..20 {
        agent
            .report(ReportBody::Event {
                severity: Severity::Info,
                resource: "site".into(),
                message: format!("event {n}"),
            })
            .unwrap();
    }
    wait_for("20 reports acknowledged", LIMIT, || async {
        agent.status().unwrap().acked == Sequence::new(20)
    })
    .await;
    let stored = central
        .store()
        .range(meridian_store::RangeRequest::prefix("reports/edge-1/"))
        .await
        .unwrap();
    assert_eq!(stored.kvs.len(), 20);
    assert_eq!(agent.status().unwrap().buffered, 0);
    // The audit chain holds the token creation and the enrolment, unbroken.
    let auditor = meridian_central::audit::Auditor::new(central.tables());
    match auditor.verify().await.unwrap() {
        meridian_central::audit::Verdict::Intact { records, .. } => assert!(records >= 2),
        broken => panic!("audit chain broken: {broken:?}"),
    }

    agent.shutdown().await;
    wait_for("site disconnected after silence", LIMIT, || async {
        tables
            .sites()
            .get(&site_id("edge-1"))
            .await
            .unwrap()
            .unwrap()
            .record
            .state
            == SiteState::Disconnected
    })
    .await;
    // Silence tears nothing down: the intent is still there.
    assert!(
        tables
            .intents()
            .get(&site_id("edge-1"))
            .await
            .unwrap()
            .is_some()
    );
    central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_restart_keeps_intent_and_reports_and_replaces_session() {
    let dir = tempfile::tempdir().unwrap();
    let central = test_central::start(&dir.path().join("central"))
        .await
        .unwrap();
    enrol::add_site(&central, "edge-2").await.unwrap();
    let boot = enrol::write_bootstrap(&central, "edge-2", vec![], dir.path())
        .await
        .unwrap();
    let config = agents::config(&dir.path().join("agent"), &boot, 300);
    let (agent, _) = agents::start_recording(config.clone()).await.unwrap();
    central
        .tables()
        .intents()
        .upsert(&empty_intent(&site_id("edge-2"), 5))
        .await
        .unwrap();
    wait_for("generation 5 held", LIMIT, || async {
        agent.status().unwrap().held == Generation::new(5)
    })
    .await;
    agent.shutdown().await;
    // Reports appended while central is unreachable for this agent stay buffered.
    let store = meridian_agent::store::AgentStore::open(&dir.path().join("agent")).unwrap();
    let site = site_id("edge-2");
    for n in 0..5 {
        store
            .append_report(
                &site,
                Generation::new(5),
                meridian_common::ids::Timestamp::from_millis(n),
                ReportBody::Metrics {
                    gpu_utilisation_pct: n as f64,
                    power_watts: 1.0,
                    period: None,
                },
                1000,
            )
            .unwrap();
    }
    // Compacted to the latest metrics report.
    assert_eq!(store.buffered(), 1);
    drop(store);
    let (agent, rec) = agents::start_recording(config).await.unwrap();
    // The held intent is in force again at start, before any session.
    assert_eq!(rec.applied(), vec![Generation::new(5)]);
    wait_for("buffered report delivered", LIMIT, || async {
        agent.status().unwrap().buffered == 0
    })
    .await;
    let ch = central.channel().site_channel(&site).await.unwrap();
    assert_eq!(ch.report_high_water, Sequence::new(5));
    agent.shutdown().await;
    central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_renews_over_the_session_and_expired_agent_recovers_with_new_token() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_central::config(
        &dir.path().join("central"),
        test_central::any_port(),
        Liveness::Quick,
    );
    cfg.channel.site_cert_lifetime_s = 6;
    let central = meridian_central::server::Central::open(cfg).await.unwrap();
    enrol::add_site(&central, "edge-3").await.unwrap();
    let boot = enrol::write_bootstrap(&central, "edge-3", vec![], dir.path())
        .await
        .unwrap();
    let config = agents::config(&dir.path().join("agent"), &boot, 300);
    let (agent, _) = agents::start_recording(config.clone()).await.unwrap();
    wait_for("certificate renewed at 2/3 of its life", LIMIT, || async {
        agent.status().unwrap().renewals >= 1
    })
    .await;
    agent.shutdown().await;
    // Offline past expiry: the old token cannot help; the agent says what to do.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let (agent, _) = agents::start_recording(config.clone()).await.unwrap();
    wait_for("agent reports it needs a new token", LIMIT, || async {
        agent
            .status()
            .unwrap()
            .last_error
            .is_some_and(|e| e.contains("new token"))
    })
    .await;
    // The operator issues a new token; the file is replaced; the agent re-enrols by itself.
    let fresh = enrol::write_bootstrap(&central, "edge-3", vec![], dir.path())
        .await
        .unwrap();
    std::fs::copy(&fresh, &boot).unwrap();
    let sessions_before = agent.status().unwrap().sessions;
    wait_for("re-enrolled and connected", LIMIT, || async {
        let s = agent.status().unwrap();
        s.connected && s.sessions > sessions_before
    })
    .await;
    agent.shutdown().await;
    central.shutdown().await;
}
