//! A connection storm against central's admission limits, in miniature: two handshakes at a
//! time, address validation (Retry) from the first pending one, 24 agents starting together,
//! then central restarting under them. Every agent must get its session both times, through
//! the refusal and the Retry paths of the accept loop, each taken at least once.

use std::sync::atomic::Ordering;
use std::time::Duration;

use meridian_central::server::Central;
use meridian_testkit::agents;
use meridian_testkit::central::{self as test_central, Liveness};
use meridian_testkit::enrol;
use meridian_testkit::wait::wait_for;

const AGENTS: usize = 24;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_get_through_refusals_and_retries_and_come_back_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_central::config(
        &dir.path().join("central"),
        test_central::any_port(),
        Liveness::Quick,
    );
    config.channel.max_concurrent_handshakes = 2;
    config.channel.retry_above_pending = 1;
    config.channel.handshakes_per_second = 200;
    config.channel.handshake_timeout_ms = 10_000;
    let central = Central::open(config.clone()).await.unwrap();
    let mut configs = Vec::new();
    for i in 0..AGENTS {
        let site = format!("storm-{i:02}");
        enrol::add_site(&central, &site).await.unwrap();
        let boot = enrol::write_bootstrap(&central, &site, vec![], dir.path())
            .await
            .unwrap();
        let mut c = agents::config(&dir.path().join(format!("agent-{i}")), &boot, 300);
        c.heartbeat_interval_ms = 1_000;
        configs.push(c);
    }
    let mut agents = Vec::new();
    for c in configs {
        agents.push(agents::start_recording(c).await.unwrap().0);
    }
    let limit = Duration::from_secs(120);
    wait_for("every agent's first session", limit, || async {
        central.channel().connected_sites() == AGENTS
    })
    .await;
    let counters = &central.channel().counters();
    let shed = counters.shed.load(Ordering::Relaxed);
    let retries = counters.retries.load(Ordering::Relaxed);
    assert!(
        shed > 0,
        "{AGENTS} agents against 2 slots: some were refused"
    );
    assert!(retries > 0, "with 1 pending handshake, Retry was asked");
    // Enrolments and sessions both passed the limits.
    assert!(counters.handshakes.load(Ordering::Relaxed) >= 2 * AGENTS as u64);

    // Central restarts on the same port: everyone comes back to the same tight limits.
    let listen = central.channel().local_addr();
    central.shutdown().await;
    config.channel.listen = listen;
    let central = loop {
        match Central::open(config.clone()).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    wait_for("every agent back after the restart", limit, || async {
        central.channel().connected_sites() == AGENTS
    })
    .await;
    for a in &agents {
        let status = a.status().unwrap();
        assert!(status.sessions >= 2, "a second session: {status:?}");
    }
    for a in agents {
        a.shutdown().await;
    }
    central.shutdown().await;
}
