//! `lose-half-servers`: a site with emulated hardware and allocated servers is cut off from
//! central; while it is cut off, half its servers (picked from the seed) lose their BMC (the
//! emulator stops: connections are refused, as after a power or network loss). The site's
//! reconciler notices at its next resync (`resync_s`), retries a bounded number of times and
//! marks them `Failed`; the agent buffers those reports and ships them when the cut heals.
//!
//! Checks: the agent marks every lost server failed while cut off and central does not know
//! yet; after the heal central's records of the lost servers are `Failed` with a reason, the
//! other half are not failed (and unchanged), and central stored every report the agent
//! produced, none dropped.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use meridian_common::ids::{ServerId, SiteId};
use meridian_common::model::{ServerState, SiteState};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::{Check, Overrides, ScenarioError, accelerated, check_scale, wait_for, with_fleet};
use crate::simfleet::{Progress, SimFleet, SimFleetError, SimFleetOptions, workloads};

/// A `lose-half-servers` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spec {
    /// Sites in the fleet.
    pub sites: usize,
    /// Seed of the fleet and of the choice of lost servers.
    pub seed: u64,
    /// Sites with emulated hardware (edge sites first); the one with the most allocated
    /// servers loses half of them.
    pub hardware_sites: usize,
    /// Simulated length of the cut, seconds (`outage_s / scale` real ones, at least until
    /// the agent has failed the lost servers).
    pub outage_s: f64,
    /// Time acceleration.
    pub scale: f64,
    /// The reconciler looks at converged servers again after this long, seconds.
    pub resync_s: f64,
    /// Agents' heartbeat period, ms.
    pub heartbeat_ms: u64,
    /// Central marks a site disconnected after this long without hearing from it, ms.
    pub disconnect_after_ms: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            sites: 12,
            seed: 42,
            hardware_sites: 4,
            outage_s: 120.0,
            scale: 1.0,
            resync_s: 2.0,
            heartbeat_ms: 1_000,
            disconnect_after_ms: 4_000,
        }
    }
}

/// What the site lost and what central learnt.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub site: SiteId,
    pub servers: usize,
    /// Servers allocated at central before the cut.
    pub allocated: usize,
    pub lost: Vec<ServerId>,
    /// From stopping the BMCs until the agent had failed every lost server.
    pub agent_failed_after: Duration,
    /// Lost servers central held as failed before the heal (should be none: it cannot know).
    pub central_failed_before_heal: usize,
    pub outage: Duration,
    /// From the heal until central held every lost server failed.
    pub reported_after: Duration,
    /// Lost servers central holds failed with a reason, after the heal.
    pub central_failed: usize,
    /// Reasons central holds for them.
    pub reasons: Vec<String>,
    /// Servers of the other half central holds failed, and holds in the state they had.
    pub others_failed: usize,
    pub others_unchanged: usize,
    pub reports_stored: u64,
    pub reports_produced: u64,
    pub reports_dropped: u64,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "site {} ({} servers, {} allocated) cut off for {:.1} s; lost {} BMCs",
            self.site,
            self.servers,
            self.allocated,
            self.outage.as_secs_f64(),
            self.lost.len()
        )?;
        writeln!(
            f,
            "the agent failed them {:.1} s after the loss; central knew of {} before the heal, of {}/{} failed {:.1} s after it",
            self.agent_failed_after.as_secs_f64(),
            self.central_failed_before_heal,
            self.central_failed,
            self.lost.len(),
            self.reported_after.as_secs_f64()
        )?;
        if let Some(r) = self.reasons.first() {
            writeln!(f, "reason: {r}")?;
        }
        writeln!(
            f,
            "other half: {} failed, {}/{} unchanged; reports {}/{} stored, {} dropped",
            self.others_failed,
            self.others_unchanged,
            self.servers - self.lost.len(),
            self.reports_stored,
            self.reports_produced,
            self.reports_dropped
        )
    }
}

/// Central's server records of `site`, by id.
async fn servers_of(
    fleet: &SimFleet,
    site: &SiteId,
) -> Result<BTreeMap<ServerId, ServerState>, ScenarioError> {
    Ok(fleet
        .central()
        .tables()
        .servers()
        .list_all(Some(site), 1_000)
        .await
        .map_err(SimFleetError::from)?
        .into_iter()
        .map(|s| (s.id, s.state))
        .collect())
}

/// Runs the scenario.
pub async fn run(
    spec: &Spec,
    overrides: &Overrides,
    progress: &Progress,
) -> Result<(Outcome, Vec<Check>), ScenarioError> {
    let scale = check_scale(overrides.scale.unwrap_or(spec.scale))?;
    let sites = overrides.sites.unwrap_or(spec.sites);
    if spec.hardware_sites == 0 || spec.resync_s.is_nan() || spec.resync_s <= 0.0 {
        return Err(ScenarioError::Invalid(
            "hardware_sites and resync_s must be positive".into(),
        ));
    }
    let options = SimFleetOptions {
        hardware_sites: spec.hardware_sites.min(sites),
        heartbeat_ms: spec.heartbeat_ms,
        disconnect_after_ms: spec.disconnect_after_ms,
        resync: Duration::from_secs_f64(spec.resync_s),
        ..SimFleetOptions::new(sites, spec.seed)
    };
    let limit = overrides.limit();
    let outage_real = accelerated(
        Duration::from_secs_f64(spec.outage_s.max(0.0)),
        scale,
        Duration::ZERO,
    );
    with_fleet(&options, progress, async |fleet| {
        fleet.wait_online(limit, progress).await?;
        let mix = workloads::mix(fleet.fleet(), meridian_central::clock::now());
        fleet.submit(&mix, progress).await?;
        fleet.wait_settled(limit, progress).await?;

        // The proxied hardware site with the most allocated servers.
        let mut best: Option<(usize, usize)> = None;
        let candidates: Vec<usize> = fleet
            .hardware_sites()
            .filter(|i| *i < fleet.proxied_sites())
            .collect();
        for i in candidates {
            let site = fleet.fleet().sites[i].id.clone();
            let allocated = servers_of(fleet, &site)
                .await?
                .values()
                .filter(|s| **s == ServerState::Allocated)
                .count();
            if best.is_none_or(|(_, n)| allocated > n) {
                best = Some((i, allocated));
            }
        }
        let (index, allocated) =
            best.ok_or_else(|| ScenarioError::Invalid("no site has emulated hardware".into()))?;
        let site = fleet.fleet().sites[index].id.clone();
        let before = servers_of(fleet, &site).await?;

        let cut_at = Instant::now();
        fleet
            .proxy()
            .cut_site(site.as_str(), outage_real + 2 * limit);
        progress.line(&format!("cut {site} off ({allocated} allocated servers)"));
        wait_for(
            limit,
            "central marks the cut site disconnected",
            async || {
                let state = super::site_states(fleet, std::slice::from_ref(&site)).await?;
                Ok((state[0] == SiteState::Disconnected).then_some(()))
            },
        )
        .await?;

        let hardware = fleet
            .hardware_mut(index)
            .ok_or_else(|| ScenarioError::Invalid("the site lost its hardware".into()))?;
        let mut order: Vec<usize> = (0..hardware.servers.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(spec.seed));
        order.truncate(hardware.servers.len() / 2);
        order.sort_unstable();
        let mut lost = Vec::with_capacity(order.len());
        for n in &order {
            hardware.stop_bmc(*n).await;
            lost.push(hardware.servers[*n].server.id.clone());
        }
        let servers = hardware.servers.len();
        let stopped_at = Instant::now();
        progress.line(&format!(
            "stopped {} of {servers} BMCs; waiting for the agent to fail them",
            lost.len()
        ));
        let agent = fleet
            .agent(index)
            .ok_or_else(|| ScenarioError::Invalid("the site has no agent".into()))?;
        wait_for(limit, "the agent fails every lost server", async || {
            let mut failed = 0;
            for id in &lost {
                let rec = meridian_agent::reconcile::record::load(agent.store(), id)
                    .map_err(|e| ScenarioError::Invalid(format!("agent store: {e}")))?;
                failed += usize::from(matches!(rec.state, ServerState::Failed { .. }));
            }
            Ok((failed == lost.len()).then_some(()))
        })
        .await?;
        let agent_failed_after = stopped_at.elapsed();
        let central_failed_before_heal = servers_of(fleet, &site)
            .await?
            .iter()
            .filter(|(id, s)| lost.contains(id) && matches!(s, ServerState::Failed { .. }))
            .count();

        if let Some(rest) = outage_real.checked_sub(cut_at.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let outage = cut_at.elapsed();
        fleet.proxy().heal_site(site.as_str());
        let healed = Instant::now();
        progress.line("healed; waiting for central to learn of the loss");
        let after = wait_for(
            limit,
            "central holds every lost server failed",
            async || {
                let now = servers_of(fleet, &site).await?;
                let failed = lost
                    .iter()
                    .filter(|id| matches!(now.get(*id), Some(ServerState::Failed { .. })))
                    .count();
                Ok((failed == lost.len()).then_some(now))
            },
        )
        .await?;
        let reported_after = healed.elapsed();
        let sync = wait_for(
            limit,
            "central stored every report of the site",
            async || {
                let s = super::sync_of(fleet, index).await?;
                Ok(s.caught_up().then_some(s))
            },
        )
        .await?;
        let reasons: Vec<String> = lost
            .iter()
            .filter_map(|id| match after.get(id) {
                Some(ServerState::Failed { reason }) if !reason.is_empty() => Some(reason.clone()),
                _ => None,
            })
            .collect();
        let others: Vec<&ServerId> = before.keys().filter(|id| !lost.contains(id)).collect();
        let outcome = Outcome {
            site,
            servers,
            allocated,
            agent_failed_after,
            central_failed_before_heal,
            outage,
            reported_after,
            central_failed: reasons.len(),
            reasons,
            others_failed: others
                .iter()
                .filter(|id| matches!(after.get(**id), Some(ServerState::Failed { .. }) | None))
                .count(),
            others_unchanged: others
                .iter()
                .filter(|id| after.get(**id) == before.get(**id))
                .count(),
            lost,
            reports_stored: sync.stored.get(),
            reports_produced: sync.produced.get(),
            reports_dropped: sync.dropped,
        };
        let checks = checks(&outcome, before.len());
        Ok((outcome, checks))
    })
    .await
}

fn checks(o: &Outcome, known: usize) -> Vec<Check> {
    let others = o.servers - o.lost.len();
    vec![
        Check::new(
            "site with allocated servers",
            o.allocated > 0 && known == o.servers,
            format!(
                "{}: {} servers, {} allocated",
                o.site, o.servers, o.allocated
            ),
        ),
        Check::new(
            "failed while cut off",
            !o.lost.is_empty() && o.central_failed_before_heal == 0,
            format!(
                "the agent failed {} servers in {:.1} s; central knew of {} before the heal",
                o.lost.len(),
                o.agent_failed_after.as_secs_f64(),
                o.central_failed_before_heal
            ),
        ),
        Check::new(
            "reported on reconnect",
            o.central_failed == o.lost.len(),
            format!(
                "{}/{} failed at central with a reason, {:.1} s after the heal",
                o.central_failed,
                o.lost.len(),
                o.reported_after.as_secs_f64()
            ),
        ),
        Check::new(
            "other half unchanged",
            o.others_failed == 0 && o.others_unchanged == others,
            format!(
                "{}/{others} unchanged, {} failed",
                o.others_unchanged, o.others_failed
            ),
        ),
        Check::new(
            "nothing lost",
            o.reports_dropped == 0 && o.reports_stored >= o.reports_produced,
            format!(
                "{}/{} reports stored, {} dropped",
                o.reports_stored, o.reports_produced, o.reports_dropped
            ),
        ),
    ]
}
