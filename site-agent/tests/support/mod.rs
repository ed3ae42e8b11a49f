//! Shared test harness: a real central (QUIC on 127.0.0.1, sled in a temp dir) and real
//! agents. No mocks.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_agent::Agent;
use meridian_agent::config::AgentConfig;
use meridian_agent::reconciler::RecordingReconciler;
use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_common::ids::{Generation, SiteId};
use meridian_common::model::{Site, SiteIntent};

pub fn site_id(s: &str) -> SiteId {
    SiteId::parse(s).unwrap()
}

/// A valid, pending site record.
pub fn site_record(id: &str) -> Site {
    serde_json::from_value(serde_json::json!({
        "id": id,
        "name": id,
        "tier": "edge",
        "location": {"lat": 50.1, "lon": 8.7},
        "country": "DE",
        "gateway_range": "198.51.100.0/24",
        "price_per_gpu_hour": 1000,
        "state": "pending"
    }))
    .unwrap()
}

/// Central's configuration for tests: any free port on 127.0.0.1, quick liveness.
pub fn central_config(dir: &Path) -> CentralConfig {
    let mut c = CentralConfig {
        data_dir: dir.to_owned(),
        ..CentralConfig::default()
    };
    c.channel.listen = "127.0.0.1:0".parse().unwrap();
    c.api.listen = "127.0.0.1:0".parse().expect("valid address");
    c.channel.disconnect_after_ms = 1_500;
    c.channel.handshake_timeout_ms = 2_000;
    c
}

pub async fn start_central(dir: &Path) -> Central {
    Central::open(central_config(dir)).await.unwrap()
}

pub async fn add_site(central: &Central, id: &str) {
    central
        .tables()
        .sites()
        .create(&site_record(id))
        .await
        .unwrap();
}

/// Creates a token for `site` and writes its bootstrap file into `dir`.
pub async fn bootstrap(central: &Central, site: &str, dir: &Path) -> PathBuf {
    let token = central
        .channel()
        .tokens()
        .create(
            &site_id(site),
            Duration::from_secs(3600),
            meridian_central::clock::now(),
            "test",
        )
        .await
        .unwrap();
    let file = token.bootstrap_file(central.channel().advertised(), central.ca().fingerprint());
    let path = dir.join(format!("{site}-{}.toml", token.token.id));
    std::fs::write(&path, file.render()).unwrap();
    path
}

pub fn agent_config(data_dir: &Path, bootstrap: &Path) -> AgentConfig {
    AgentConfig {
        data_dir: data_dir.to_owned(),
        bootstrap_file: bootstrap.to_owned(),
        bind: "127.0.0.1:0".parse().unwrap(),
        heartbeat_interval_ms: 300,
        backoff_initial_ms: 50,
        backoff_max_ms: 300,
        ..AgentConfig::default()
    }
}

pub async fn start_agent(config: AgentConfig) -> (Agent, Arc<RecordingReconciler>) {
    let rec = Arc::new(RecordingReconciler::default());
    let agent = Agent::start(config, rec.clone()).await.unwrap();
    (agent, rec)
}

pub fn intent(site: &str, generation: u64) -> SiteIntent {
    SiteIntent {
        site: site_id(site),
        generation: Generation::new(generation),
        networks: vec![],
        allocations: vec![],
        exposures: vec![],
        volumes: vec![],
        server_actions: vec![],
        pools: vec![],
    }
}

/// Polls `check` until it is true or `limit` passes (then panics naming `what`).
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Generous limit for anything that should take well under a second.
pub const LIMIT: Duration = Duration::from_secs(30);
