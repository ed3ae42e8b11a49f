//! `reconnect-storm`: central restarts while every site is connected (10,000 in the file).
//! Every agent reconnects at once; the scenario measures how long until central holds a
//! live session with every site again (each agent on a new session) and central knows every
//! agent's applied generation and stored every report it produced.
//!
//! The workload mix is submitted first (`workloads = true`), so the sites hold intents of
//! real generations to resync.

use std::fmt;
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{Check, Overrides, ScenarioError, wait_for, with_fleet};
use crate::simfleet::{Progress, SimFleetOptions, workloads};

/// A `reconnect-storm` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spec {
    /// Sites in the fleet.
    pub sites: usize,
    /// Seed of the fleet.
    pub seed: u64,
    /// Submit the workload mix before the restart.
    pub workloads: bool,
    /// Agents' heartbeat period, ms.
    pub heartbeat_ms: u64,
    /// The storm must be over within this long, seconds.
    pub max_recovery_s: f64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            sites: 10_000,
            seed: 42,
            workloads: true,
            heartbeat_ms: 5_000,
            max_recovery_s: 120.0,
        }
    }
}

/// What the storm took.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sites: usize,
    pub workloads: usize,
    /// How long central took to stop and open again.
    pub restart: Duration,
    /// From central's restart until it held a session with every site.
    pub reconnected_after: Duration,
    /// From central's restart until it caught up with every agent.
    pub resynced_after: Duration,
    /// Sites that caught up, of all.
    pub resynced: usize,
    /// Highest generation an agent applied (0 without workloads).
    pub max_generation: u64,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} sites, {} workloads; central restarted in {:.1} s",
            self.sites,
            self.workloads,
            self.restart.as_secs_f64()
        )?;
        writeln!(
            f,
            "every site reconnected {:.1} s after the restart, resynced ({}/{}, generations up to {}) after {:.1} s",
            self.reconnected_after.as_secs_f64(),
            self.resynced,
            self.sites,
            self.max_generation,
            self.resynced_after.as_secs_f64()
        )
    }
}

/// Runs the scenario.
pub async fn run(
    spec: &Spec,
    overrides: &Overrides,
    progress: &Progress,
) -> Result<(Outcome, Vec<Check>), ScenarioError> {
    let sites = overrides.sites.unwrap_or(spec.sites);
    let options = SimFleetOptions {
        hardware_sites: 0,
        heartbeat_ms: spec.heartbeat_ms,
        ..SimFleetOptions::new(sites, spec.seed)
    };
    let limit = overrides.limit();
    with_fleet(&options, progress, async |fleet| {
        fleet.wait_online(limit, progress).await?;
        if spec.workloads {
            let mix = workloads::mix(fleet.fleet(), meridian_central::clock::now());
            fleet.submit(&mix, progress).await?;
            fleet.wait_settled(limit, progress).await?;
        }
        let sessions_before: Vec<u64> = (0..sites)
            .map(|i| {
                fleet
                    .agent(i)
                    .and_then(|a| a.status().ok())
                    .map_or(0, |s| s.sessions)
            })
            .collect();
        progress.line(&format!("restarting central under {sites} connected sites"));
        let started = Instant::now();
        fleet.restart_central().await?;
        let restart = started.elapsed();
        wait_for(
            limit,
            "every site reconnected after the restart",
            async || {
                let fresh = (0..sites)
                    .filter(|i| {
                        fleet
                            .agent(*i)
                            .and_then(|a| a.status().ok())
                            .is_some_and(|s| s.connected && s.sessions > sessions_before[*i])
                    })
                    .count();
                let live = fleet.central().channel().connected_sites();
                progress.bar("reconnecting", fresh.min(live), sites, "sites");
                Ok((fresh == sites && live == sites).then_some(()))
            },
        )
        .await?;
        progress.end_bar();
        let reconnected_after = started.elapsed();
        let syncs = wait_for(limit, "central caught up with every agent", async || {
            let mut syncs = Vec::with_capacity(sites);
            for i in 0..sites {
                let s = super::sync_of(fleet, i).await?;
                if !s.caught_up() {
                    return Ok(None);
                }
                syncs.push(s);
            }
            Ok(Some(syncs))
        })
        .await?;
        let resynced_after = started.elapsed();
        let outcome = Outcome {
            sites,
            workloads: fleet.submitted().len(),
            restart,
            reconnected_after,
            resynced_after,
            resynced: syncs.len(),
            max_generation: syncs
                .iter()
                .map(|s| s.agent_applied.get())
                .max()
                .unwrap_or(0),
        };
        let max = Duration::from_secs_f64(spec.max_recovery_s.max(0.0));
        let checks = vec![
            Check::new(
                "every site reconnected",
                true,
                format!(
                    "{sites} sites in {:.1} s",
                    outcome.reconnected_after.as_secs_f64()
                ),
            ),
            Check::new(
                "generations resynced",
                outcome.resynced == sites && (!spec.workloads || outcome.max_generation > 0),
                format!(
                    "{}/{sites} caught up in {:.1} s (generations up to {})",
                    outcome.resynced,
                    outcome.resynced_after.as_secs_f64(),
                    outcome.max_generation
                ),
            ),
            Check::new(
                "within the bound",
                outcome.resynced_after <= max,
                format!(
                    "{:.1} s, bound {:.0} s",
                    outcome.resynced_after.as_secs_f64(),
                    max.as_secs_f64()
                ),
            ),
        ];
        Ok((outcome, checks))
    })
    .await
}
