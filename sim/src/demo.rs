//! The main job: generate a seeded fleet, start a real central on its embedded store, load
//! the fleet through central's typed tables (validated, durable, in concurrent transactions),
//! read it back, and summarise what central now holds.
//!
//! Later milestones grow this into the full simulated fleet (enrolling agents, workloads,
//! convergence); the shape stays: [`run`] does the work and returns a [`DemoReport`] that
//! tests check, the binary prints it.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_central::config::CentralConfig;
use meridian_central::server::{Central, CentralError};
use meridian_central::store::tables::{Record, Table, TableError, Tables};
use meridian_common::model::{MigConfig, SiteTier};

use crate::fleet::{self, Fleet, FleetSpec};

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Sites in the generated fleet.
    pub sites: usize,
    /// Seed of the fleet generator.
    pub seed: u64,
    /// Central's data directory; a fresh temporary one when `None`.
    pub data_dir: Option<PathBuf>,
    /// Records per store transaction while loading.
    pub batch: usize,
    /// Loading streams running at once (their commits share flushes).
    pub streams: usize,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            sites: 1_000,
            seed: 42,
            data_dir: None,
            batch: 256,
            streams: 8,
        }
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("--sites must be between 1 and 100000, got {0}")]
    BadSites(usize),
    #[error("cannot create a temporary data directory")]
    TempDir(#[source] std::io::Error),
    #[error("central did not start")]
    Central(#[from] CentralError),
    #[error(
        "the data directory already holds a fleet; point --data-dir at an empty directory or remove it"
    )]
    NotEmpty,
    #[error("loading the fleet into central failed")]
    Load(#[from] TableError),
    #[error("writing progress failed")]
    Output(#[from] std::io::Error),
}

/// What central holds after the demo, read back from its store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DemoReport {
    pub sites_by_tier: BTreeMap<String, usize>,
    pub countries: usize,
    pub servers: usize,
    pub gpus_by_model: BTreeMap<String, usize>,
    pub mig_enabled_gpus: usize,
    pub regions: usize,
    pub datasets: usize,
    pub dataset_bytes: u64,
    pub tenants: usize,
    pub store_revision: u64,
    pub records_loaded: usize,
    pub fleet_fingerprint: u64,
}

/// Runs the demo; writes progress to `out`; returns central (still running) and the report.
pub async fn run(
    options: &DemoOptions,
    out: &mut dyn Write,
) -> Result<(Central, DemoReport, Option<tempfile::TempDir>), DemoError> {
    if !(1..=100_000).contains(&options.sites) {
        return Err(DemoError::BadSites(options.sites));
    }
    let started = Instant::now();
    writeln!(
        out,
        "generating a {}-site fleet from seed {} ...",
        options.sites, options.seed
    )?;
    let fleet = fleet::generate(&FleetSpec::with_sites(options.seed, options.sites));
    writeln!(
        out,
        "  generated in {} ms: {}",
        started.elapsed().as_millis(),
        one_line(&fleet)
    )?;

    let (data_dir, temp) = match &options.data_dir {
        Some(dir) => (dir.clone(), None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("meridian-demo-")
                .tempdir()
                .map_err(DemoError::TempDir)?;
            (temp.path().to_owned(), Some(temp))
        }
    };
    let mut config = CentralConfig {
        data_dir: data_dir.clone(),
        ..CentralConfig::default()
    };
    // Any free port: demos and their tests run side by side.
    config.channel.listen = "127.0.0.1:0".parse().expect("valid address");
    config.api.listen = "127.0.0.1:0".parse().expect("valid address");
    let central = Central::open(config).await?;
    let tables = central.tables();
    if !tables.sites().list(None, None, 1).await?.items.is_empty() {
        return Err(DemoError::NotEmpty);
    }
    writeln!(out, "central is up; store in {}", data_dir.display())?;

    let load_started = Instant::now();
    let total = fleet.regions.len()
        + fleet.tenants.len()
        + fleet.sites.len()
        + fleet.servers.len()
        + fleet.datasets.len();
    let mut progress = Progress::new(total);
    load(
        &tables.regions(),
        &fleet.regions,
        options,
        &mut progress,
        out,
    )
    .await?;
    load(
        &tables.tenants(),
        &fleet.tenants,
        options,
        &mut progress,
        out,
    )
    .await?;
    load(&tables.sites(), &fleet.sites, options, &mut progress, out).await?;
    load(
        &tables.servers(),
        &fleet.servers,
        options,
        &mut progress,
        out,
    )
    .await?;
    load(
        &tables.datasets(),
        &fleet.datasets,
        options,
        &mut progress,
        out,
    )
    .await?;
    let load_time = load_started.elapsed();
    writeln!(
        out,
        "loaded {total} records in {:.2} s ({:.0} records/s, durable)",
        load_time.as_secs_f64(),
        total as f64 / load_time.as_secs_f64().max(1e-9)
    )?;

    let report = read_back(&tables, total, fleet.fingerprint()).await?;
    Ok((central, report, temp))
}

async fn load<R: Record>(
    table: &Table<R>,
    records: &[R],
    options: &DemoOptions,
    progress: &mut Progress,
    out: &mut dyn Write,
) -> Result<(), DemoError> {
    let records = Arc::new(records.to_vec());
    let batch = options.batch.max(1);
    let streams = options.streams.max(1);
    let chunks = records.len().div_ceil(batch);
    let mut next = 0usize;
    while next < chunks {
        let mut running = Vec::new();
        for chunk in next..(next + streams).min(chunks) {
            let records = Arc::clone(&records);
            let table = table.clone();
            running.push(tokio::spawn(async move {
                let lo = chunk * batch;
                let hi = (lo + batch).min(records.len());
                table.create_many(&records[lo..hi], batch).await
            }));
        }
        next = (next + streams).min(chunks);
        for task in running {
            let loaded = task.await.expect("loading task panicked")?;
            progress.advance(loaded, R::TABLE, out)?;
        }
    }
    Ok(())
}

async fn read_back(
    tables: &Tables,
    records_loaded: usize,
    fleet_fingerprint: u64,
) -> Result<DemoReport, DemoError> {
    const PAGE: usize = 1_000;
    let sites = tables.sites().list_all(None, PAGE).await?;
    let servers = tables.servers().list_all(None, PAGE).await?;
    let datasets = tables.datasets().list_all(None, PAGE).await?;
    let mut sites_by_tier = BTreeMap::new();
    let mut countries = std::collections::BTreeSet::new();
    for site in &sites {
        let tier = match site.tier {
            SiteTier::Edge => "edge",
            SiteTier::Core => "core",
        };
        *sites_by_tier.entry(tier.to_owned()).or_insert(0) += 1;
        countries.insert(site.country);
    }
    let mut gpus_by_model = BTreeMap::new();
    let mut mig_enabled_gpus = 0;
    for gpu in servers.iter().flat_map(|s| &s.gpus) {
        *gpus_by_model
            .entry(gpu.model.as_str().to_owned())
            .or_insert(0) += 1;
        if matches!(gpu.mig, MigConfig::Enabled { .. }) {
            mig_enabled_gpus += 1;
        }
    }
    Ok(DemoReport {
        sites_by_tier,
        countries: countries.len(),
        servers: servers.len(),
        gpus_by_model,
        mig_enabled_gpus,
        regions: tables.regions().list_all(None, PAGE).await?.len(),
        datasets: datasets.len(),
        dataset_bytes: datasets.iter().map(|d| d.size_bytes).sum(),
        tenants: tables.tenants().list_all(None, PAGE).await?.len(),
        store_revision: tables.store().revision().0,
        records_loaded,
        fleet_fingerprint,
    })
}

fn one_line(fleet: &Fleet) -> String {
    format!(
        "{} sites, {} servers, {} GPUs, {} regions, {} datasets, {} tenants",
        fleet.sites.len(),
        fleet.servers.len(),
        fleet.servers.iter().map(|s| s.gpus.len()).sum::<usize>(),
        fleet.regions.len(),
        fleet.datasets.len(),
        fleet.tenants.len()
    )
}

/// Progress lines at every 10 % (and at the end of each table).
struct Progress {
    total: usize,
    done: usize,
    last_decile: usize,
    started: Instant,
}

impl Progress {
    fn new(total: usize) -> Self {
        Progress {
            total,
            done: 0,
            last_decile: 0,
            started: Instant::now(),
        }
    }

    fn advance(&mut self, n: usize, table: &str, out: &mut dyn Write) -> std::io::Result<()> {
        self.done += n;
        let decile = self.done * 10 / self.total.max(1);
        if decile > self.last_decile {
            self.last_decile = decile;
            let width = 30;
            let filled = self.done * width / self.total.max(1);
            writeln!(
                out,
                "  [{}{}] {:>3}% {}/{} records ({table}) {:.1} s",
                "#".repeat(filled),
                ".".repeat(width - filled),
                self.done * 100 / self.total.max(1),
                self.done,
                self.total,
                self.started.elapsed().as_secs_f64()
            )?;
        }
        Ok(())
    }
}

impl std::fmt::Display for DemoReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "central now holds (read back from its store):")?;
        let tiers: Vec<String> = self
            .sites_by_tier
            .iter()
            .map(|(tier, n)| format!("{n} {tier}"))
            .collect();
        writeln!(
            f,
            "  sites      {} ({}) in {} countries",
            self.sites_by_tier.values().sum::<usize>(),
            tiers.join(", "),
            self.countries
        )?;
        writeln!(f, "  servers    {}", self.servers)?;
        let gpus: usize = self.gpus_by_model.values().sum();
        writeln!(
            f,
            "  GPUs       {gpus} ({} with MIG enabled)",
            self.mig_enabled_gpus
        )?;
        for (model, n) in &self.gpus_by_model {
            writeln!(f, "    {model:<12} {n}")?;
        }
        writeln!(f, "  regions    {}", self.regions)?;
        writeln!(
            f,
            "  datasets   {} ({:.1} TB)",
            self.datasets,
            self.dataset_bytes as f64 / 1e12
        )?;
        writeln!(f, "  tenants    {}", self.tenants)?;
        writeln!(f, "  store      revision {}", self.store_revision)?;
        write!(f, "  fleet fingerprint {:016x}", self.fleet_fingerprint)
    }
}

/// How long `--serve` waits for central to drain on shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
