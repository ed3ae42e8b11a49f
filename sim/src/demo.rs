//! The main job, `meridian-sim demo`: a real central and a simulated fleet of real site agents
//! ([`crate::simfleet`]), enrolled with bootstrap tokens over the fault proxy, some sites on
//! emulated hardware; tenants, datasets and a realistic workload mix
//! ([`crate::simfleet::workloads`]) through the API; progress while sites enrol and workloads
//! converge; a [`SimSummary`] at the end. The binary then serves until interrupted.
//!
//! [`run`] does the work and returns the running fleet with its summary (tests check it); the
//! binary prints it and owns the shutdown.

use std::path::PathBuf;
use std::time::Duration;

use crate::simfleet::{
    DEFAULT_HARDWARE_SITES, Progress, SimFleet, SimFleetError, SimFleetOptions, SimSummary,
    workloads,
};

/// Sites of the default fleet: it starts and converges in well under a minute on a laptop.
pub const DEFAULT_SITES: usize = 50;

/// What the demo is asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Sites in the generated fleet.
    pub sites: usize,
    /// Seed of the fleet generator.
    pub seed: u64,
    /// Sites with emulated hardware; `None`: up to [`DEFAULT_HARDWARE_SITES`].
    pub hardware_sites: Option<usize>,
    /// Central's data directory; a fresh temporary one when `None`.
    pub data_dir: Option<PathBuf>,
    /// How long sites may take to come online, and workloads to settle.
    pub limit: Duration,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            sites: DEFAULT_SITES,
            seed: 42,
            hardware_sites: None,
            data_dir: None,
            limit: Duration::from_secs(600),
        }
    }
}

/// Why the demo failed.
pub type DemoError = SimFleetError;

/// Starts the fleet, enrols every site, submits the workload mix and waits for it to settle.
/// Returns the running fleet (the caller shuts it down) and its summary. Progress goes to
/// `progress`. On an error the fleet is shut down before returning.
pub async fn run(
    options: &DemoOptions,
    progress: &Progress,
) -> Result<(SimFleet, SimSummary), DemoError> {
    let mut fleet = start(options, progress).await?;
    match drive(&mut fleet, options.limit, progress).await {
        Ok(summary) => Ok((fleet, summary)),
        Err(e) => {
            fleet.shutdown().await;
            Err(e)
        }
    }
}

/// Starts central, the emulated hardware and the agents ([`SimFleet::start`]).
pub async fn start(options: &DemoOptions, progress: &Progress) -> Result<SimFleet, DemoError> {
    let fleet_options = SimFleetOptions {
        hardware_sites: options
            .hardware_sites
            .unwrap_or(options.sites.min(DEFAULT_HARDWARE_SITES)),
        data_dir: options.data_dir.clone(),
        gateways: true,
        ..SimFleetOptions::new(options.sites, options.seed)
    };
    SimFleet::start(&fleet_options, progress).await
}

/// Waits for every site to come online, submits the workload mix, waits for it to settle
/// and summarises.
pub async fn drive(
    fleet: &mut SimFleet,
    limit: Duration,
    progress: &Progress,
) -> Result<SimSummary, DemoError> {
    fleet.wait_online(limit, progress).await?;
    let mix = workloads::mix(fleet.fleet(), meridian_central::clock::now());
    progress.line(&format!(
        "submitting {} workloads for {} tenants ({} datasets) through the API",
        mix.workloads.len(),
        mix.tenants.len(),
        mix.datasets.len()
    ));
    fleet.submit(&mix, progress).await?;
    fleet.wait_settled(limit, progress).await?;
    progress.line("rebooting one server per emulated site through the API (once per request)");
    let actions = fleet.reboot_servers(DEMO_REBOOTS, limit, progress).await?;
    let mut summary = fleet.summary().await?;
    summary.server_actions = Some(actions);
    Ok(summary)
}

/// Emulated sites whose first server the demo reboots.
pub const DEMO_REBOOTS: usize = 4;

/// How long shutting down may take before the binary gives up.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(20);
