//! `bench metrics`: central's `/metrics` at fleet scale, scraped from a client on the same
//! machine.
//!
//! A real central over a generated fleet (sites, servers) with one placement per site that
//! has GPUs (its first GPU held), so every fleet gauge has work to do. It measures:
//! - the store read behind the fleet gauges (sites by state, intents pending, GPUs held and
//!   free: [`meridian_central::metrics::fleet::compute`]), `scrapes` times: what a scrape
//!   costs when the cache (`metrics.fleet_cache_ms`) has expired;
//! - `GET /metrics` over plain HTTP/1.1 on a fresh connection: the first scrape (it computes
//!   the gauges), then `scrapes` more within the cache's life, each from the request sent to
//!   the last byte read;
//! - the answer's size and series count.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use meridian_central::server::Central;
use meridian_common::ids::{Timestamp, WorkloadId};
use meridian_common::model::{Assignment, GpuSlot, Placement};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::harness::BoxError;
use super::{ms, spread_ms};
use crate::fleet::{self, FleetSpec};
use meridian_testkit::central::{Liveness, any_port, config as test_central_config};

/// Options of `meridian-sim bench metrics`.
#[derive(Debug, Clone)]
pub struct MetricsBenchOptions {
    /// Sites in the generated fleet.
    pub sites: usize,
    /// Measured store reads and cached scrapes.
    pub scrapes: usize,
    /// Seed of the fleet.
    pub seed: u64,
}

impl MetricsBenchOptions {
    /// 1,000 sites (10,000 with `full`), 20 scrapes.
    pub fn new(full: bool) -> Self {
        MetricsBenchOptions {
            sites: if full { 10_000 } else { 1_000 },
            scrapes: 20,
            seed: 42,
        }
    }
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct MetricsBenchReport {
    pub sites: usize,
    pub servers: usize,
    pub gpus: usize,
    pub placements: usize,
    /// The fleet gauges computed from the store, sorted.
    pub computed: Vec<Duration>,
    /// The first scrape (computes the gauges).
    pub first: Duration,
    /// Scrapes within the cache's life, sorted.
    pub cached: Vec<Duration>,
    /// The answer's body, bytes.
    pub bytes: usize,
    /// Its samples (lines not starting with `#`).
    pub series: usize,
}

impl std::fmt::Display for MetricsBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "central /metrics, {} sites ({} servers, {} GPUs, {} placements)",
            self.sites, self.servers, self.gpus, self.placements
        )?;
        writeln!(
            f,
            "  fleet gauges from the store ({} reads): {}",
            self.computed.len(),
            spread_ms(&self.computed)
        )?;
        writeln!(
            f,
            "  first GET /metrics (computes them): {:.1} ms",
            ms(self.first)
        )?;
        writeln!(
            f,
            "  GET /metrics within the cache's life ({} scrapes): {}",
            self.cached.len(),
            spread_ms(&self.cached)
        )?;
        write!(
            f,
            "  answer: {} B ({:.1} KiB), {} samples",
            self.bytes,
            self.bytes as f64 / 1024.0,
            self.series
        )
    }
}

/// `GET /metrics` on a fresh connection: the body.
pub async fn scrape(addr: SocketAddr) -> Result<String, BoxError> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.write_all(
        format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    tcp.read_to_end(&mut raw).await?;
    let text = String::from_utf8(raw)?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no end of the headers")?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("GET /metrics: {}", head.lines().next().unwrap_or("")).into());
    }
    Ok(body.to_owned())
}

/// Runs the benchmark.
pub async fn run(options: &MetricsBenchOptions) -> Result<MetricsBenchReport, BoxError> {
    let dir = tempfile::tempdir()?;
    let mut config = test_central_config(dir.path(), any_port(), Liveness::Relaxed);
    config.console.enabled = false;
    // Long enough that the measured scrapes all fall within one computation.
    config.metrics.fleet_cache_ms = 600_000;
    let central = Central::open(config).await?;
    eprintln!("metrics: loading a {}-site fleet ...", options.sites);
    let fleet = fleet::generate(&FleetSpec::with_sites(options.seed, options.sites.max(1)));
    fleet::load_with_admin(&central, &fleet).await?;
    let tenant = fleet
        .tenants
        .first()
        .ok_or("the fleet has no tenant")?
        .id
        .clone();
    let mut placements = Vec::new();
    for site in &fleet.sites {
        let Some(server) = fleet
            .servers
            .iter()
            .find(|s| s.site == site.id && !s.gpus.is_empty())
        else {
            continue;
        };
        placements.push(Placement {
            workload: WorkloadId::parse(&format!("bench-{}", placements.len()))?,
            tenant: tenant.clone(),
            assignments: vec![Assignment {
                replica: 0,
                site: site.id.clone(),
                server: server.id.clone(),
                slot: GpuSlot::WholeGpus {
                    indices: vec![server.gpus[0].index],
                },
            }],
            window: None,
            score: Default::default(),
            rejections: Default::default(),
            explanation: String::new(),
            decided_at: Timestamp::from_millis(0),
        });
    }
    central
        .tables()
        .placements()
        .create_many(&placements, 256)
        .await?;
    let addr = central
        .metrics_addr()
        .ok_or("central does not serve /metrics")?;
    let scrapes = options.scrapes.max(1);

    let tables = central.tables();
    let mut computed = Vec::with_capacity(scrapes);
    for _ in 0..scrapes {
        let t = Instant::now();
        meridian_central::metrics::fleet::compute(&tables, meridian_central::clock::now()).await?;
        computed.push(t.elapsed());
    }
    computed.sort();

    let t = Instant::now();
    let body = scrape(addr).await?;
    let first = t.elapsed();
    let mut cached = Vec::with_capacity(scrapes);
    for _ in 0..scrapes {
        let t = Instant::now();
        scrape(addr).await?;
        cached.push(t.elapsed());
    }
    cached.sort();
    central.shutdown().await;
    Ok(MetricsBenchReport {
        sites: fleet.sites.len(),
        servers: fleet.servers.len(),
        gpus: fleet.servers.iter().map(|s| s.gpus.len()).sum(),
        placements: placements.len(),
        computed,
        first,
        cached,
        bytes: body.len(),
        series: body
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count(),
    })
}
