//! The push window (`channel.max_pushes_in_flight`): real central, real agents, QUIC on
//! 127.0.0.1 through `meridian_emulators::proxy::FaultProxy`.
//!
//! - A window of one still delivers a change to every site, one acknowledgement at a time, and
//!   is empty again afterwards.
//! - A push that is never acknowledged (its site cut off with the connection still open at
//!   central) holds its slot only until `push_ack_timeout_ms`, not until the QUIC idle timeout.

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_agent::Agent;
use meridian_agent::reconciler::RecordingReconciler;
use meridian_central::server::Central;
use meridian_common::ids::Generation;
use meridian_emulators::proxy::FaultProxy;
use meridian_testkit::agents;
use meridian_testkit::central::{self as test_central, Liveness};
use meridian_testkit::enrol;
use meridian_testkit::fixtures::*;
use meridian_testkit::observe::*;
use meridian_testkit::wait::{LIMIT, wait_for};

async fn start(
    dir: &std::path::Path,
    window: usize,
    ack_timeout_ms: u64,
    heartbeat_ms: u64,
    sites: &[&str],
) -> (Central, FaultProxy, Vec<Agent>) {
    let mut cfg = test_central::config(
        &dir.join("central"),
        "127.0.0.1:0".parse().unwrap(),
        Liveness::Quick,
    );
    cfg.channel.max_pushes_in_flight = window;
    cfg.channel.push_ack_timeout_ms = ack_timeout_ms;
    cfg.channel.idle_timeout_ms = 60_000;
    let central = Central::open(cfg).await.unwrap();
    let proxy = FaultProxy::new(central.channel().local_addr(), 7);
    let mut agents = Vec::new();
    for site in sites {
        enrol::add_site(&central, site).await.unwrap();
        let port = proxy.add_site(site).await.unwrap();
        let boot = enrol::write_bootstrap(&central, site, vec![port.to_string()], dir)
            .await
            .unwrap();
        let agent = Agent::start(
            agents::config(&dir.join(format!("agent-{site}")), &boot, heartbeat_ms),
            Arc::new(RecordingReconciler::default()),
        )
        .await
        .unwrap();
        agents.push(agent);
    }
    wait_for("every site connected", LIMIT, || async {
        central.channel().connected_sites() == sites.len()
    })
    .await;
    (central, proxy, agents)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_window_of_one_delivers_a_change_to_every_site() {
    let dir = tempfile::tempdir().unwrap();
    let sites = ["edge-1", "edge-2", "edge-3", "edge-4", "edge-5"];
    let (central, _proxy, agents) = start(dir.path(), 1, 60_000, 300, &sites).await;
    let intents = central.tables().intents();
    for g in 1..=2 {
        for site in sites {
            intents
                .upsert(&intent_with_networks(&site_id(site), g, 8))
                .await
                .unwrap();
        }
        for site in sites {
            wait_for(&format!("{site} applied generation {g}"), LIMIT, || async {
                applied_at_central(&central, site).await == Generation::new(g)
            })
            .await;
        }
    }
    // The slot comes back with each RECEIVED, before APPLIED: nothing is left in flight.
    wait_for("the window is empty", LIMIT, || async {
        central.channel().pushes_in_flight() == 0
    })
    .await;
    for agent in agents {
        assert_eq!(agent.status().unwrap().held, Generation::new(2));
        agent.shutdown().await;
    }
    central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unacknowledged_push_gives_its_slot_back_after_the_timeout() {
    const ACK_TIMEOUT_MS: u64 = 500;
    let dir = tempfile::tempdir().unwrap();
    // QUIC's idle timeout is the smaller of the two ends' (the agent's: three heartbeats, 30 s
    // here), so the cut-off site's connection outlives the test's 20 s wait.
    let (central, proxy, agents) = start(
        dir.path(),
        1,
        ACK_TIMEOUT_MS,
        10_000,
        &["edge-mute", "edge-ok"],
    )
    .await;
    let intents = central.tables().intents();
    intents
        .upsert(&intent_with_networks(&site_id("edge-mute"), 1, 8))
        .await
        .unwrap();
    wait_for("edge-mute applied generation 1", LIMIT, || async {
        applied_at_central(&central, "edge-mute").await == Generation::new(1)
    })
    .await;

    // Cut edge-mute off: central's connection stays open (idle timeout 30 s) but no
    // acknowledgement can come back. Its next push takes the only slot.
    proxy.cut_site("edge-mute", Duration::from_secs(3600));
    intents
        .upsert(&intent_with_networks(&site_id("edge-mute"), 2, 8))
        .await
        .unwrap();
    wait_for("edge-mute's push holds the window", LIMIT, || async {
        central.channel().pushes_in_flight() == 1
    })
    .await;
    let held_since = Instant::now();
    intents
        .upsert(&intent_with_networks(&site_id("edge-ok"), 1, 8))
        .await
        .unwrap();
    wait_for(
        "edge-ok applied generation 1",
        Duration::from_secs(20),
        || async { applied_at_central(&central, "edge-ok").await == Generation::new(1) },
    )
    .await;
    // edge-ok waited for the timeout (less the polling that saw the slot taken), well short
    // of the connection's idle timeout.
    assert!(
        held_since.elapsed() >= Duration::from_millis(ACK_TIMEOUT_MS - 200),
        "edge-ok was pushed after {:?}, inside edge-mute's slot",
        held_since.elapsed()
    );
    assert_eq!(
        applied_at_central(&central, "edge-mute").await,
        Generation::new(1)
    );
    for agent in agents {
        agent.shutdown().await;
    }
    central.shutdown().await;
}
