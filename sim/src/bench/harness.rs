//! Pieces the channel benchmarks share: central's configuration for a benchmark, site records,
//! bootstrap files, polling, and `/proc` readings.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::ids::{Generation, SiteId};
use meridian_common::model::{Site, SiteIntent};

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Name of simulated site `i`.
pub(crate) fn site_name(i: usize) -> String {
    format!("sim-{i:05}")
}

/// A valid, pending edge site record.
pub(crate) fn site_record(id: &str) -> Result<Site, BoxError> {
    Ok(serde_json::from_value(serde_json::json!({
        "id": id,
        "name": id,
        "tier": "edge",
        "location": {"lat": 50.1, "lon": 8.7},
        "country": "DE",
        "gateway_range": "198.51.100.0/24",
        "price_per_gpu_hour": 1000,
        "state": "pending"
    }))?)
}

/// An empty intent of `site` at `generation`.
pub(crate) fn empty_intent(site: &SiteId, generation: u64) -> SiteIntent {
    SiteIntent {
        site: site.clone(),
        generation: Generation::new(generation),
        networks: vec![],
        allocations: vec![],
        exposures: vec![],
        volumes: vec![],
        server_actions: vec![],
        pools: vec![],
    }
}

/// An intent with `networks` tenant networks, to give a snapshot some size.
pub(crate) fn intent_with_networks(
    site: &SiteId,
    generation: u64,
    networks: usize,
) -> Result<SiteIntent, BoxError> {
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
    Ok(serde_json::from_value(serde_json::json!({
        "site": site.as_str(),
        "generation": generation,
        "networks": networks,
    }))?)
}

/// Polls `check` every 5 ms until it holds (returns how long that took) or `limit` passes.
pub(crate) async fn wait_until(
    limit: Duration,
    mut check: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Creates the site record of `site` and a bootstrap token for it; returns its bootstrap file,
/// naming `central_addresses` (central itself, or a fault proxy in front of it).
pub(crate) async fn enrol_site(
    central: &Central,
    site: &str,
    central_addresses: Vec<String>,
) -> Result<BootstrapFile, BoxError> {
    central.tables().sites().create(&site_record(site)?).await?;
    Ok(crate::simfleet::bootstrap_file(central, &SiteId::parse(site)?, central_addresses).await?)
}

/// [`enrol_site`] with central's own address, written to `path`.
pub(crate) async fn write_bootstrap(
    central: &Central,
    site: &str,
    path: &Path,
) -> Result<(), BoxError> {
    let file = enrol_site(central, site, central.channel().advertised()).await?;
    std::fs::write(path, file.render())?;
    Ok(())
}

/// Intents per transaction when B2 writes its change, on both sides: as central's compiler
/// publishes a change (transactions of at most `MAX_TXN_OPS`, a compare and a put per intent),
/// one transaction after another.
pub const CHANGE_TXN_INTENTS: usize = meridian_store::MAX_TXN_OPS / 2;

/// Central's configuration for a benchmark: data in `dir`, the channel on `listen`, the API on
/// any free port, liveness relaxed so a loaded machine does not drop sessions.
pub(crate) fn central_config(dir: &Path, listen: SocketAddr) -> CentralConfig {
    let mut c = CentralConfig {
        data_dir: dir.to_owned(),
        ..CentralConfig::default()
    };
    c.channel.listen = listen;
    c.api.listen = "127.0.0.1:0".parse().expect("valid address");
    c.channel.disconnect_after_ms = 60_000;
    c.channel.idle_timeout_ms = 60_000;
    c
}

/// Resident set size of a process (`self` or a pid), bytes.
pub fn rss_bytes(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}
