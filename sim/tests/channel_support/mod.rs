//! Shared harness of the channel tests in `sim/tests/channel_*.rs`: a real central (QUIC on
//! 127.0.0.1, sled in a temp dir), real agents, and the fault proxy between them. No mocks.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meridian_agent::config::AgentConfig;
use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_common::ids::{Generation, SiteId};
use meridian_common::model::{Site, SiteIntent, SiteReport, SiteState};
use meridian_proto::v1 as proto;
use prost::Message;

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

/// Central's configuration for tests: 127.0.0.1 on `listen` (port 0: any), quick liveness.
pub fn central_config(dir: &Path, listen: SocketAddr) -> CentralConfig {
    let mut c = CentralConfig {
        data_dir: dir.to_owned(),
        ..CentralConfig::default()
    };
    c.channel.listen = listen;
    c.api.listen = "127.0.0.1:0".parse().expect("valid address");
    c.channel.disconnect_after_ms = 1_500;
    c.channel.handshake_timeout_ms = 2_000;
    c
}

pub async fn add_site(central: &Central, id: &str) {
    central
        .tables()
        .sites()
        .create(&site_record(id))
        .await
        .unwrap();
}

/// Creates a token for `site` and writes a bootstrap file naming `central_addr` (central
/// itself, or the site's fault proxy port) into `dir`.
pub async fn bootstrap(
    central: &Central,
    site: &str,
    central_addr: SocketAddr,
    dir: &Path,
) -> PathBuf {
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
    let file = token.bootstrap_file(vec![central_addr.to_string()], central.ca().fingerprint());
    let path = dir.join(format!("{site}-{}.toml", token.token.id));
    std::fs::write(&path, file.render()).unwrap();
    path
}

pub fn agent_config(data_dir: &Path, bootstrap: &Path, heartbeat_ms: u64) -> AgentConfig {
    AgentConfig {
        data_dir: data_dir.to_owned(),
        bootstrap_file: bootstrap.to_owned(),
        bind: "127.0.0.1:0".parse().unwrap(),
        heartbeat_interval_ms: heartbeat_ms,
        backoff_initial_ms: 50,
        backoff_max_ms: (heartbeat_ms / 2).max(50),
        ..AgentConfig::default()
    }
}

/// An intent with `networks` tenant networks (to give the snapshot some size).
pub fn intent(site: &str, generation: u64, networks: usize) -> SiteIntent {
    let networks: Vec<serde_json::Value> = (0..networks)
        .map(|i| {
            serde_json::json!({
                "tenant": format!("tenant-{i}"),
                "vni": 10_000 + i,
                "table": 1_000 + i,
                "subnet": format!("10.{}.{}.0/24", i / 256, i % 256),
                "gateway": format!("10.{}.{}.1", i / 256, i % 256),
            })
        })
        .collect();
    serde_json::from_value(serde_json::json!({
        "site": site,
        "generation": generation,
        "networks": networks,
    }))
    .unwrap()
}

/// The intent's snapshot size on the wire (the protobuf `SiteIntent`).
pub fn snapshot_bytes(intent: &SiteIntent) -> usize {
    proto::SiteIntent::from(intent.clone()).encoded_len()
}

pub async fn site_state(central: &Central, site: &str) -> SiteState {
    central
        .tables()
        .sites()
        .get(&site_id(site))
        .await
        .unwrap()
        .unwrap()
        .record
        .state
}

pub async fn applied_at_central(central: &Central, site: &str) -> Generation {
    central
        .channel()
        .site_channel(&site_id(site))
        .await
        .unwrap()
        .applied_generation
}

/// Every report central stored for `site`, in key order.
pub async fn stored_reports(central: &Central, site: &str) -> Vec<SiteReport> {
    central
        .store()
        .range(meridian_store::RangeRequest::prefix(format!(
            "reports/{site}/"
        )))
        .await
        .unwrap()
        .kvs
        .iter()
        .map(|kv| {
            SiteReport::try_from(proto::SiteReport::decode(kv.value.as_slice()).unwrap()).unwrap()
        })
        .collect()
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
pub const LIMIT: Duration = Duration::from_secs(60);
