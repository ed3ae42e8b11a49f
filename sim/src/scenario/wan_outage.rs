//! `wan-outage`: a regional WAN outage. About `fraction` of the fleet's sites, all in one
//! continent and each holding active workloads (picked from the seed), are cut off at the
//! fault proxy for `outage_s` simulated seconds (`outage_s / scale` real ones, at least long
//! enough for the checks made during the cut).
//!
//! Checks: central marks every cut site `disconnected`; their workloads stay `active` and
//! their agents keep the intent they applied; new workloads submitted during the cut are all
//! placed, none on a cut site; after the heal every site is online again, every workload
//! (old and new) active, and central stored every report the cut agents produced and knows
//! their applied generations.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use meridian_common::ids::{Generation, SiteId, TenantId};
use meridian_common::model::{ReportBody, ReservationState, Severity, SiteState};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use super::{Check, Overrides, ScenarioError, accelerated, check_scale, wait_for, with_fleet};
use crate::fleet::geography;
use crate::simfleet::workloads::{self, WorkloadMix};
use crate::simfleet::{Progress, SimFleet, SimFleetOptions};

/// Events each cut agent logs during the cut (central stores them after the heal).
pub const EVENTS_WHILE_CUT: usize = 3;

/// A `wan-outage` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spec {
    /// Sites in the fleet.
    pub sites: usize,
    /// Seed of the fleet and of the choice of cut sites.
    pub seed: u64,
    /// Sites with emulated hardware.
    pub hardware_sites: usize,
    /// Share of the fleet's sites to cut (all from one continent; fewer when it has fewer).
    pub fraction: f64,
    /// Simulated length of the outage, seconds.
    pub outage_s: f64,
    /// Time acceleration: the outage lasts `outage_s / scale` real seconds.
    pub scale: f64,
    /// Workloads submitted while the sites are cut off (one GPU each).
    pub new_workloads: usize,
    /// Agents' heartbeat period, ms.
    pub heartbeat_ms: u64,
    /// Central marks a site disconnected after this long without hearing from it, ms.
    pub disconnect_after_ms: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            sites: 50,
            seed: 42,
            hardware_sites: 0,
            fraction: 0.2,
            outage_s: 600.0,
            scale: 1.0,
            new_workloads: 8,
            heartbeat_ms: 1_000,
            disconnect_after_ms: 4_000,
        }
    }
}

/// What the outage did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub sites: usize,
    pub continent: String,
    pub cut: Vec<SiteId>,
    /// Workloads with a replica on a cut site when the cut began.
    pub workloads_on_cut: usize,
    /// Of those, still active at central during the cut.
    pub still_active: usize,
    /// Cut agents whose held and applied generations did not change during the cut.
    pub agents_kept_intent: usize,
    /// From the cut until central marked every cut site disconnected.
    pub detected_after: Duration,
    pub new_submitted: usize,
    /// New workloads placed (active) during the cut, and how many of those touch a cut site.
    pub new_placed: usize,
    pub new_on_cut_sites: usize,
    /// How long the sites were cut off (real time), and the simulated length asked.
    pub outage: Duration,
    pub outage_simulated: Duration,
    /// From the heal until every cut site was online again.
    pub rejoined_after: Duration,
    /// From the heal until central caught up with every cut agent.
    pub converged_after: Duration,
    /// Submitted workloads (old and new) active at the end, of all.
    pub active_at_end: usize,
    pub workloads: usize,
    /// Reports central stored from the cut agents, and that they produced.
    pub reports_stored: u64,
    pub reports_produced: u64,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cut {} of {} sites in {} for {:.1} s (simulated {:.0} s): {}",
            self.cut.len(),
            self.sites,
            self.continent,
            self.outage.as_secs_f64(),
            self.outage_simulated.as_secs_f64(),
            self.cut
                .iter()
                .map(SiteId::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(
            f,
            "disconnect noticed after {:.1} s; {}/{} workloads there still active; {}/{} agents kept their intent",
            self.detected_after.as_secs_f64(),
            self.still_active,
            self.workloads_on_cut,
            self.agents_kept_intent,
            self.cut.len()
        )?;
        writeln!(
            f,
            "new workloads during the cut: {}/{} placed, {} on a cut site",
            self.new_placed, self.new_submitted, self.new_on_cut_sites
        )?;
        writeln!(
            f,
            "after the heal: online in {:.1} s, caught up in {:.1} s ({}/{} reports stored); {}/{} workloads active",
            self.rejoined_after.as_secs_f64(),
            self.converged_after.as_secs_f64(),
            self.reports_stored,
            self.reports_produced,
            self.active_at_end,
            self.workloads
        )
    }
}

/// Picks the sites to cut: among the proxied sites holding active workloads, those of the
/// continent with the most of them, in an order drawn from `seed`, `count` at most.
fn pick_cut(
    fleet: &SimFleet,
    holding: &BTreeMap<SiteId, BTreeSet<meridian_common::ids::WorkloadId>>,
    count: usize,
    seed: u64,
) -> (String, Vec<usize>) {
    let mut by_continent: BTreeMap<geography::Continent, Vec<usize>> = BTreeMap::new();
    for (i, site) in fleet
        .fleet()
        .sites
        .iter()
        .enumerate()
        .take(fleet.proxied_sites())
    {
        if !holding.contains_key(&site.id) {
            continue;
        }
        if let Some(country) = geography::country_of(site.country) {
            by_continent.entry(country.continent).or_default().push(i);
        }
    }
    let Some((continent, mut sites)) = by_continent
        .into_iter()
        .max_by_key(|(c, s)| (s.len(), std::cmp::Reverse(*c)))
    else {
        return ("none".into(), Vec::new());
    };
    sites.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    sites.truncate(count);
    sites.sort_unstable();
    (continent.as_str().to_owned(), sites)
}

/// Runs the scenario.
pub async fn run(
    spec: &Spec,
    overrides: &Overrides,
    progress: &Progress,
) -> Result<(Outcome, Vec<Check>), ScenarioError> {
    let scale = check_scale(overrides.scale.unwrap_or(spec.scale))?;
    if !(spec.fraction > 0.0 && spec.fraction < 1.0) {
        return Err(ScenarioError::Invalid(format!(
            "fraction must be between 0 and 1, got {}",
            spec.fraction
        )));
    }
    let sites = overrides.sites.unwrap_or(spec.sites);
    let options = SimFleetOptions {
        hardware_sites: spec.hardware_sites.min(sites),
        heartbeat_ms: spec.heartbeat_ms,
        disconnect_after_ms: spec.disconnect_after_ms,
        ..SimFleetOptions::new(sites, spec.seed)
    };
    let limit = overrides.limit();
    let outage_simulated = Duration::from_secs_f64(spec.outage_s.max(0.0));
    let outage_real = accelerated(outage_simulated, scale, Duration::ZERO);
    with_fleet(&options, progress, async |fleet| {
        fleet.wait_online(limit, progress).await?;
        let mix = workloads::mix(fleet.fleet(), meridian_central::clock::now());
        fleet.submit(&mix, progress).await?;
        fleet.wait_settled(limit, progress).await?;

        let holding = super::active_by_site(fleet).await?;
        let count = ((sites as f64 * spec.fraction).round() as usize).max(1);
        let (continent, cut) = pick_cut(fleet, &holding, count, spec.seed);
        let cut_ids: Vec<SiteId> = cut
            .iter()
            .map(|i| fleet.fleet().sites[*i].id.clone())
            .collect();
        let on_cut: BTreeSet<_> = cut_ids
            .iter()
            .filter_map(|s| holding.get(s))
            .flatten()
            .cloned()
            .collect();
        let intents_before = agent_generations(fleet, &cut);
        progress.line(&format!(
            "cutting {} sites in {continent} off for {:.1} s ({} workloads there)",
            cut.len(),
            outage_real.as_secs_f64(),
            on_cut.len()
        ));

        // Held until healed below: the checks made during the cut must see it whole.
        let cut_at = Instant::now();
        for s in &cut_ids {
            fleet.proxy().cut_site(s.as_str(), outage_real + 2 * limit);
        }
        wait_for(
            limit,
            "central marks every cut site disconnected",
            async || {
                let states = super::site_states(fleet, &cut_ids).await?;
                Ok(states
                    .iter()
                    .all(|s| *s == SiteState::Disconnected)
                    .then_some(()))
            },
        )
        .await?;
        let detected_after = cut_at.elapsed();

        // The cut agents go on working: each logs events central can only hear of later.
        for i in &cut {
            if let Some(agent) = fleet.agent(*i) {
                for n in 0..EVENTS_WHILE_CUT {
                    agent
                        .report(ReportBody::Event {
                            severity: Severity::Info,
                            resource: "site".into(),
                            message: format!("logged while cut off from central ({n})"),
                        })
                        .map_err(|e| {
                            ScenarioError::Invalid(format!("an agent refused a report: {e}"))
                        })?;
                }
            }
        }
        let still_active = fleet
            .workloads()
            .await?
            .iter()
            .filter(|w| on_cut.contains(&w.id) && w.state == ReservationState::Active)
            .count();
        let agents_kept_intent = agent_generations(fleet, &cut)
            .iter()
            .zip(&intents_before)
            .filter(|(now, before)| now == before && now.0 > Generation::default())
            .count();

        let tenant = mix
            .tenants
            .first()
            .map(|t| t.id.clone())
            .ok_or_else(|| ScenarioError::Invalid("the workload mix has no tenant".into()))?;
        let new = new_workloads(fleet, &mix, tenant, &cut_ids, spec.new_workloads);
        let already = fleet.submitted().len();
        fleet.submit(&new, progress).await?;
        fleet.wait_settled(limit, progress).await?;
        let new_ids: BTreeSet<_> = fleet.submitted()[already..]
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let new_placed = fleet
            .workloads()
            .await?
            .iter()
            .filter(|w| new_ids.contains(&w.id) && w.state == ReservationState::Active)
            .count();
        let cut_set: BTreeSet<&SiteId> = cut_ids.iter().collect();
        let new_on_cut_sites = super::placements(fleet)
            .await?
            .iter()
            .filter(|p| new_ids.contains(&p.workload))
            .filter(|p| p.assignments.iter().any(|a| cut_set.contains(&a.site)))
            .count();
        let sites_still_cut = super::site_states(fleet, &cut_ids)
            .await?
            .iter()
            .filter(|s| **s == SiteState::Disconnected)
            .count();

        if let Some(rest) = outage_real.checked_sub(cut_at.elapsed()) {
            progress.line(&format!(
                "checks done; the outage goes on for {:.1} s",
                rest.as_secs_f64()
            ));
            tokio::time::sleep(rest).await;
        }
        let outage = cut_at.elapsed();
        for s in &cut_ids {
            fleet.proxy().heal_site(s.as_str());
        }
        let healed = Instant::now();
        progress.line("healed; waiting for the sites to rejoin");
        wait_for(limit, "every site online after the heal", async || {
            let all: Vec<SiteId> = fleet.fleet().sites.iter().map(|s| s.id.clone()).collect();
            let states = super::site_states(fleet, &all).await?;
            Ok(states.iter().all(|s| *s == SiteState::Online).then_some(()))
        })
        .await?;
        let rejoined_after = healed.elapsed();
        let synced = wait_for(limit, "central caught up with the cut agents", async || {
            let mut syncs = Vec::new();
            for i in &cut {
                syncs.push(super::sync_of(fleet, *i).await?);
            }
            Ok(syncs.iter().all(super::Sync::caught_up).then_some(syncs))
        })
        .await?;
        let converged_after = healed.elapsed();
        let final_workloads = fleet.workloads().await?;
        let now = meridian_central::clock::now();
        let active_at_end = final_workloads
            .iter()
            .filter(|w| {
                w.state == ReservationState::Active
                    || (w.state == ReservationState::Approved
                        && w.spec.window.is_some_and(|win| win.start() > now))
            })
            .count();

        let outcome = Outcome {
            sites,
            continent,
            cut: cut_ids.clone(),
            workloads_on_cut: on_cut.len(),
            still_active,
            agents_kept_intent,
            detected_after,
            new_submitted: new_ids.len(),
            new_placed,
            new_on_cut_sites,
            outage,
            outage_simulated,
            rejoined_after,
            converged_after,
            active_at_end,
            workloads: final_workloads.len(),
            reports_stored: synced.iter().map(|s| s.stored.get()).sum(),
            reports_produced: synced.iter().map(|s| s.produced.get()).sum(),
        };
        let checks = checks(&outcome, count, sites_still_cut);
        Ok((outcome, checks))
    })
    .await
}

/// (held, applied) generations of the agents of `sites`.
fn agent_generations(fleet: &SimFleet, sites: &[usize]) -> Vec<(Generation, Generation)> {
    sites
        .iter()
        .map(|i| {
            fleet
                .agent(*i)
                .and_then(|a| a.status().ok())
                .map_or((Generation::default(), Generation::default()), |s| {
                    (s.held, s.applied)
                })
        })
        .collect()
}

/// `n` one-GPU batch jobs as `tenant`, of the GPU model the sites still reachable have most
/// of (the mix's tenants already exist: only the workloads are new).
fn new_workloads(
    fleet: &SimFleet,
    mix: &WorkloadMix,
    tenant: TenantId,
    cut: &[SiteId],
    n: usize,
) -> WorkloadMix {
    let reachable = fleet
        .fleet()
        .servers
        .iter()
        .filter(|s| !cut.contains(&s.site));
    let model =
        workloads::main_model(reachable).unwrap_or(meridian_common::model::GpuModel::H100_80GB);
    WorkloadMix {
        tenants: mix.tenants.clone(),
        datasets: Vec::new(),
        workloads: (0..n)
            .map(|i| {
                workloads::gpu_workload(
                    tenant.clone(),
                    format!("during-outage-{i:04}"),
                    model,
                    1,
                    1,
                    None,
                    None,
                )
            })
            .collect(),
    }
}

fn checks(o: &Outcome, asked: usize, sites_still_cut: usize) -> Vec<Check> {
    vec![
        Check::new(
            "sites cut",
            !o.cut.is_empty(),
            format!(
                "{} sites in {} (asked {asked}; only sites holding workloads in one continent)",
                o.cut.len(),
                o.continent
            ),
        ),
        Check::new(
            "cut sites disconnected",
            sites_still_cut == o.cut.len(),
            format!(
                "{}/{} disconnected at central after {:.1} s and through the checks",
                sites_still_cut,
                o.cut.len(),
                o.detected_after.as_secs_f64()
            ),
        ),
        Check::new(
            "workloads kept running",
            o.workloads_on_cut > 0 && o.still_active == o.workloads_on_cut,
            format!("{}/{} still active", o.still_active, o.workloads_on_cut),
        ),
        Check::new(
            "agents kept their intent",
            o.agents_kept_intent == o.cut.len(),
            format!("{}/{} unchanged", o.agents_kept_intent, o.cut.len()),
        ),
        Check::new(
            "new work placed elsewhere",
            o.new_placed == o.new_submitted && o.new_on_cut_sites == 0,
            format!(
                "{}/{} placed, {} on a cut site",
                o.new_placed, o.new_submitted, o.new_on_cut_sites
            ),
        ),
        Check::new(
            "sites rejoined",
            true,
            format!(
                "all online {:.1} s after the heal",
                o.rejoined_after.as_secs_f64()
            ),
        ),
        Check::new(
            "converged",
            o.active_at_end == o.workloads
                && o.reports_produced >= (o.cut.len() * EVENTS_WHILE_CUT) as u64
                && o.reports_stored >= o.reports_produced,
            format!(
                "{}/{} workloads active, {}/{} reports stored, {:.1} s after the heal",
                o.active_at_end,
                o.workloads,
                o.reports_stored,
                o.reports_produced,
                o.converged_after.as_secs_f64()
            ),
        ),
    ]
}
