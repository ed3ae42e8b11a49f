//! `metering`: usage recorded from what actually ran, on a clock the scenario moves by hand
//! (four simulated hours in seconds), with a site cut off from central for an hour.
//!
//! One tenant reserves, on edge sites with emulated hardware: `gpu-a` (whole GPUs, 01:00 to
//! 03:00 after the start hour), `mig-b` (one MIG slice, 01:30 to 02:30) and `gpu-c` (two whole
//! GPUs, 01:00 to 04:00). The clock is set to each window edge in turn; after each step the
//! scenario waits until the step has happened (at central, or in the buffer of a cut-off
//! agent) before it moves on, so the sites apply and end each reservation exactly at its edge.
//! `mig-b`'s site is cut off from 02:00 to after 03:00: it ends `mig-b` alone at 02:30 and
//! reports it on reconnect.
//!
//! The scenario keeps its own log (each reservation's site, resources and edges) and
//! recomputes from it what each should be billed: GPUs x seconds by model, slices x seconds by
//! model and profile, cores x seconds. Checks: during the cut the hour 02:00-03:00 is not
//! final and names the cut site, the hour before is final; after the reconnect every hour is
//! final and central's export equals the recomputation for every (workload, resource,
//! detail), to the millisecond; the tenant's totals through the API equal the export's sums.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use meridian_agent::reconcile::ManualClock;
use meridian_central::metering::{self, PERIOD_MS, PeriodStatus};
use meridian_common::ids::{Sequence, SiteId, TenantId, TimeWindow, Timestamp, WorkloadId};
use meridian_common::model::{
    Accelerator, AllocationStatus, GpuSlot, MigConfig, ReportBody, SiteReport, SiteTier,
};
use meridian_proto::v1 as proto;
use serde::Deserialize;

use super::{Check, Overrides, ScenarioError, wait_for, with_fleet};
use crate::simfleet::workloads::{self, PlannedWorkload, WorkloadMix};
use crate::simfleet::{Progress, SimFleet, SimFleetError, SimFleetOptions};

const MIN: i64 = 60_000;
const HOUR: i64 = PERIOD_MS;

/// A `metering` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spec {
    /// Sites in the fleet: one core site (no hardware) and edge sites, two of them with
    /// emulated hardware.
    pub sites: usize,
    /// Seed of the fleet.
    pub seed: u64,
}

impl Default for Spec {
    fn default() -> Self {
        Spec { sites: 3, seed: 42 }
    }
}

/// (workload name, resource, detail) -> amount in the resource's unit.
pub type Amounts = BTreeMap<(String, String, String), f64>;

/// What the scenario saw.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The first hour's start (the clock's start), unix ms.
    pub start_ms: i64,
    /// Each reservation's name and site.
    pub sites: BTreeMap<String, SiteId>,
    /// The site cut off from 02:00 to after 03:00.
    pub cut: Option<SiteId>,
    /// Each hour's status while the site was cut off, and after it reconnected.
    pub during_cut: Vec<PeriodStatus>,
    pub after: Vec<PeriodStatus>,
    /// The scenario's recomputation and central's export.
    pub expected: Amounts,
    pub metered: Amounts,
    /// The tenant's totals through the API (resource, detail) and the export's sums.
    pub api_totals: BTreeMap<(String, String), f64>,
    pub export_totals: BTreeMap<(String, String), f64>,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cut = self
            .cut
            .as_ref()
            .map_or("-".to_owned(), ToString::to_string);
        writeln!(f, "reservations {:?}, cut site {cut}", self.sites)?;
        let status = |p: &[PeriodStatus]| {
            p.iter()
                .map(|s| {
                    let hour = (s.start_ms - self.start_ms) / HOUR;
                    if s.is_final() {
                        format!("{hour:02}h final")
                    } else {
                        format!("{hour:02}h open ({:?})", s.sites_behind)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        writeln!(f, "during the cut: {}", status(&self.during_cut))?;
        writeln!(f, "after it:       {}", status(&self.after))?;
        for (key, want) in &self.expected {
            let got = self.metered.get(key).copied().unwrap_or(0.0);
            writeln!(
                f,
                "  {:<8} {:<10} {:<22} expected {want:>12.3} metered {got:>12.3}",
                key.0, key.1, key.2
            )?;
        }
        Ok(())
    }
}

/// One reservation of the scenario's log.
#[derive(Debug, Clone)]
struct Reservation {
    name: String,
    planned: PlannedWorkload,
    start: i64,
    end: i64,
    id: Option<WorkloadId>,
    site: Option<SiteId>,
}

/// Runs the scenario.
pub async fn run(
    spec: &Spec,
    overrides: &Overrides,
    progress: &Progress,
) -> Result<(Outcome, Vec<Check>), ScenarioError> {
    if spec.sites < 3 {
        return Err(ScenarioError::Invalid(format!(
            "sites must be at least 3 (one core and two edge sites), got {}",
            spec.sites
        )));
    }
    let start = metering::periods::period_of(meridian_central::clock::now().as_millis());
    let clock = Arc::new(ManualClock::new(Timestamp::from_millis(start)));
    let mut options = SimFleetOptions::new(overrides.sites.unwrap_or(spec.sites), spec.seed);
    options.hardware_sites = 2;
    options.clock = Some(Arc::clone(&clock));
    let limit = overrides.limit();
    with_fleet(&options, progress, async |fleet| {
        run_on(fleet, &clock, start, limit, progress).await
    })
    .await
}

async fn run_on(
    fleet: &mut SimFleet,
    clock: &ManualClock,
    t0: i64,
    limit: Duration,
    progress: &Progress,
) -> Result<(Outcome, Vec<Check>), ScenarioError> {
    fleet.wait_online(limit, progress).await?;
    let tables = fleet.central().tables();
    let servers = tables
        .servers()
        .list_all(None, 1000)
        .await
        .map_err(SimFleetError::from)?;
    let hardware: Vec<SiteId> = fleet
        .hardware_sites()
        .map(|i| fleet.fleet().sites[i].id.clone())
        .collect();
    let on_hardware = || servers.iter().filter(|s| hardware.contains(&s.site));
    let model = workloads::main_model(on_hardware())
        .ok_or_else(|| ScenarioError::Invalid("no whole GPU on the emulated sites".into()))?;
    let (mig_model, profile) = on_hardware()
        .flat_map(|s| &s.gpus)
        .find_map(|g| match &g.mig {
            MigConfig::Enabled { instances } => instances.first().map(|i| (g.model, i.profile)),
            MigConfig::Disabled => None,
        })
        .ok_or_else(|| ScenarioError::Invalid("no MIG instance on the emulated sites".into()))?;
    let tenant = TenantId::parse("metered").expect("valid id");
    let window = |from: i64, to: i64| {
        TimeWindow::new(Timestamp::from_millis(from), Timestamp::from_millis(to))
            .expect("valid window")
    };
    let edge = Some(SiteTier::Edge);
    let plan = [
        ("gpu-a", 1, 60, 180),
        ("mig-b", 0, 90, 150),
        ("gpu-c", 2, 60, 240),
    ];
    let mut log: Vec<Reservation> = plan
        .iter()
        .map(|&(name, gpus, from, to)| {
            let (start, end) = (t0 + from * MIN, t0 + to * MIN);
            let planned = if gpus == 0 {
                workloads::mig_workload(
                    tenant.clone(),
                    name.into(),
                    mig_model,
                    profile,
                    edge,
                    window(start, end),
                )
            } else {
                workloads::gpu_workload(
                    tenant.clone(),
                    name.into(),
                    model,
                    gpus,
                    1,
                    edge,
                    Some(window(start, end)),
                )
            };
            Reservation {
                name: name.into(),
                planned,
                start,
                end,
                id: None,
                site: None,
            }
        })
        .collect();
    fleet
        .submit(
            &WorkloadMix {
                tenants: vec![workloads::open_tenant(tenant.clone())],
                datasets: Vec::new(),
                workloads: log.iter().map(|r| r.planned.clone()).collect(),
            },
            progress,
        )
        .await?;
    let placements = wait_for(limit, "every reservation placed", async || {
        let all = super::placements(fleet).await?;
        let mine: Vec<_> = all.into_iter().filter(|p| p.tenant == tenant).collect();
        Ok((mine.len() == log.len()).then_some(mine))
    })
    .await?;
    let names: BTreeMap<WorkloadId, String> = fleet
        .submitted()
        .iter()
        .map(|s| (s.id.clone(), s.name.clone()))
        .collect();
    for p in &placements {
        let name = names.get(&p.workload).cloned().unwrap_or_default();
        if let Some(r) = log.iter_mut().find(|r| r.name == name) {
            r.id = Some(p.workload.clone());
            r.site = p.assignments.first().map(|a| a.site.clone());
            // The slot central chose, for the log's whole-GPU count.
            if let (Some(a), Accelerator::WholeGpus { count, .. }) =
                (p.assignments.first(), &r.planned.spec.resources.accelerator)
                && let GpuSlot::WholeGpus { indices } = &a.slot
                && indices.len() != *count as usize
            {
                return Err(ScenarioError::Invalid(format!(
                    "{name}: placed on {} GPUs, asked for {count}",
                    indices.len()
                )));
            }
        }
    }
    let mut outcome = Outcome {
        start_ms: t0,
        sites: log
            .iter()
            .filter_map(|r| Some((r.name.clone(), r.site.clone()?)))
            .collect(),
        ..Outcome::default()
    };
    let site_index = |site: &SiteId| {
        fleet
            .fleet()
            .sites
            .iter()
            .position(|s| &s.id == site)
            .expect("a fleet site")
    };
    let cut = log[1]
        .site
        .clone()
        .ok_or_else(|| ScenarioError::Invalid("mig-b has no site".into()))?;
    outcome.cut = Some(cut.clone());
    let used: Vec<SiteId> = {
        let mut v: Vec<SiteId> = log.iter().filter_map(|r| r.site.clone()).collect();
        v.sort();
        v.dedup();
        v
    };

    // Each step: the clock moves to `at`; every site in use reports it got there.
    let mut cut_now = false;
    for at_min in [60, 90, 120, 150, 180] {
        let at = t0 + at_min * MIN;
        if at_min == 150 {
            fleet
                .proxy()
                .cut_site(cut.as_str(), Duration::from_secs(3_600));
            cut_now = true;
        }
        progress.line(&format!("clock at +{at_min} min"));
        clock.set(Timestamp::from_millis(at));
        for site in &used {
            if cut_now && site == &cut {
                wait_buffered(fleet, site_index(site), at, limit).await?;
            } else {
                wait_mark(fleet, site, at, limit).await?;
            }
        }
        // Every start and end due by now is recorded where it can be.
        for r in &log {
            let (Some(id), Some(site)) = (&r.id, &r.site) else {
                continue;
            };
            let due_end = r.end <= at;
            if r.start > at {
                continue;
            }
            if cut_now && site == &cut {
                if due_end {
                    wait_ended_in_buffer(fleet, site_index(site), id, limit).await?;
                }
            } else {
                wait_span(fleet, site, id, due_end, limit).await?;
            }
        }
    }
    let (_, during) = metering::usage(&tables, Some(&tenant), t0, t0 + 4 * HOUR)
        .await
        .map_err(SimFleetError::from)?;
    outcome.during_cut = during;

    progress.line("reconnecting the cut site");
    fleet.proxy().heal_site(cut.as_str());
    wait_mark(fleet, &cut, t0 + 180 * MIN, limit).await?;
    clock.set(Timestamp::from_millis(t0 + 240 * MIN));
    for site in &used {
        wait_mark(fleet, site, t0 + 240 * MIN, limit).await?;
    }
    for r in &log {
        if let (Some(id), Some(site)) = (&r.id, &r.site) {
            wait_span(fleet, site, id, true, limit).await?;
        }
    }
    let (rows, after) = metering::usage(&tables, Some(&tenant), t0, t0 + 4 * HOUR)
        .await
        .map_err(SimFleetError::from)?;
    outcome.after = after;
    let name_of: BTreeMap<String, String> = log
        .iter()
        .filter_map(|r| Some((r.id.as_ref()?.to_string(), r.name.clone())))
        .collect();
    for row in &rows {
        let name = name_of.get(&row.workload).cloned().unwrap_or_default();
        *outcome
            .metered
            .entry((name, row.resource.name().into(), row.detail.clone()))
            .or_default() += row.amount;
        *outcome
            .export_totals
            .entry((row.resource.name().into(), row.detail.clone()))
            .or_default() += row.amount;
    }
    outcome.expected = recompute(&log);

    // The same figures through the API, as the tenant sees them.
    let token = fleet.tenant_token(tenant.as_str()).unwrap_or_default();
    let mut api = fleet.clients(&token).await?;
    let totals = api
        .usage
        .get_usage_totals(proto::GetUsageTotalsRequest {
            tenant: String::new(),
            from_ms: t0,
            to_ms: t0 + 4 * HOUR,
        })
        .await
        .map_err(|status| SimFleetError::Api {
            what: "usage totals".into(),
            status,
        })?
        .into_inner();
    for t in totals.totals {
        let name = metering::Resource::from_proto(t.resource).map_or("unknown", |r| r.name());
        outcome.api_totals.insert((name.into(), t.detail), t.amount);
    }
    let checks = checks(&outcome, t0);
    Ok((outcome, checks))
}

/// What the scenario's own log says each reservation used.
fn recompute(log: &[Reservation]) -> Amounts {
    let mut out = Amounts::new();
    for r in log {
        let seconds = (r.end - r.start) as f64 / 1000.0;
        let res = &r.planned.spec.resources;
        let mut add = |resource: &str, detail: String, per: f64| {
            *out.entry((r.name.clone(), resource.into(), detail))
                .or_default() += per * seconds * f64::from(r.planned.spec.replicas);
        };
        match &res.accelerator {
            Accelerator::WholeGpus { model, count } => {
                add("gpu", model.to_string(), f64::from(*count));
            }
            Accelerator::Mig { model, profile } => {
                add("mig_slice", format!("{model} {profile}"), 1.0)
            }
            Accelerator::None => {}
        }
        if res.cpu_cores > 0 {
            add("cpu_core", String::new(), f64::from(res.cpu_cores));
        }
    }
    out
}

fn checks(o: &Outcome, t0: i64) -> Vec<Check> {
    let hour = |p: &[PeriodStatus], h: i64| p.iter().find(|s| s.start_ms == t0 + h * HOUR).cloned();
    let cut = o.cut.as_ref().map(ToString::to_string).unwrap_or_default();
    let h1 = hour(&o.during_cut, 1);
    let h2 = hour(&o.during_cut, 2);
    let mut mismatched = Vec::new();
    for (key, want) in &o.expected {
        let got = o.metered.get(key).copied().unwrap_or(0.0);
        if (got - want).abs() > 1e-6 {
            mismatched.push(format!("{key:?}: expected {want}, metered {got}"));
        }
    }
    for key in o.metered.keys() {
        if !o.expected.contains_key(key) {
            mismatched.push(format!("{key:?}: metered, not in the log"));
        }
    }
    let totals_agree = o.api_totals.len() == o.export_totals.len()
        && o.api_totals
            .iter()
            .all(|(k, v)| o.export_totals.get(k).is_some_and(|e| (e - v).abs() < 1e-6));
    vec![
        Check::new(
            "reservations placed",
            o.sites.len() == 3,
            format!("{:?}", o.sites),
        ),
        Check::new(
            "cut hour not final",
            h2.as_ref()
                .is_some_and(|s| !s.is_final() && s.sites_behind.contains(&cut)),
            format!("02:00-03:00 during the cut: {h2:?}"),
        ),
        Check::new(
            "hour before the cut final",
            h1.as_ref().is_some_and(PeriodStatus::is_final),
            format!("01:00-02:00 during the cut: {h1:?}"),
        ),
        Check::new(
            "final after reconnect",
            o.after.len() == 4 && o.after.iter().all(PeriodStatus::is_final),
            format!("{} hours", o.after.len()),
        ),
        Check::new(
            "usage equals recomputation",
            mismatched.is_empty() && !o.expected.is_empty(),
            if mismatched.is_empty() {
                format!("{} (workload, resource) amounts equal", o.expected.len())
            } else {
                mismatched.join("; ")
            },
        ),
        Check::new(
            "tenant totals equal export",
            totals_agree,
            format!("{} totals", o.api_totals.len()),
        ),
    ]
}

/// Waits until central's mark of `site` reached `at`.
async fn wait_mark(
    fleet: &SimFleet,
    site: &SiteId,
    at: i64,
    limit: Duration,
) -> Result<(), ScenarioError> {
    wait_for(limit, &format!("{site} reports reach {at}"), async || {
        let c = fleet
            .central()
            .channel()
            .site_channel(site)
            .await
            .map_err(|e| SimFleetError::Table(e.into()))?;
        Ok((c.reports_through_ms >= at).then_some(()))
    })
    .await
}

/// The reports in the buffer of agent `index`.
fn buffered(fleet: &SimFleet, index: usize) -> Result<Vec<SiteReport>, ScenarioError> {
    let Some(agent) = fleet.agent(index) else {
        return Ok(Vec::new());
    };
    let raw = agent
        .store()
        .pending(Sequence::new(0), 100_000)
        .map_err(|e| ScenarioError::Invalid(format!("agent store: {e}")))?;
    Ok(raw
        .into_iter()
        .filter_map(|r| SiteReport::try_from(r).ok())
        .collect())
}

/// Waits until agent `index` has a report made at `at` or later in its buffer.
async fn wait_buffered(
    fleet: &SimFleet,
    index: usize,
    at: i64,
    limit: Duration,
) -> Result<(), ScenarioError> {
    wait_for(limit, &format!("agent {index} reports {at}"), async || {
        Ok(buffered(fleet, index)?
            .iter()
            .any(|r| r.at.as_millis() >= at)
            .then_some(()))
    })
    .await
}

/// Waits until the buffer of agent `index` holds the end of `workload` (its site is cut off).
async fn wait_ended_in_buffer(
    fleet: &SimFleet,
    index: usize,
    workload: &WorkloadId,
    limit: Duration,
) -> Result<(), ScenarioError> {
    wait_for(
        limit,
        &format!("the cut site ends {workload}"),
        async || {
            Ok(buffered(fleet, index)?
                .iter()
                .any(|r| {
                    matches!(&r.body, ReportBody::AllocationState { workload: w, state, .. }
                    if w == workload && matches!(state, AllocationStatus::Ended))
                })
                .then_some(()))
        },
    )
    .await
}

/// Waits until central holds a span of `workload` at `site`, closed when `closed`.
async fn wait_span(
    fleet: &SimFleet,
    site: &SiteId,
    workload: &WorkloadId,
    closed: bool,
    limit: Duration,
) -> Result<(), ScenarioError> {
    let what = format!(
        "{workload} at {site} metered as {}",
        if closed { "ended" } else { "running" }
    );
    wait_for(limit, &what, async || {
        let spans = fleet
            .central()
            .tables()
            .usage_intervals()
            .list_all(Some(site), 1000)
            .await
            .map_err(SimFleetError::from)?;
        Ok(spans
            .iter()
            .any(|s| s.workload == workload.as_str() && (s.end_ms != 0) == closed)
            .then_some(()))
    })
    .await
}
