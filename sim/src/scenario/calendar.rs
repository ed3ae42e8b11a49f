//! `reservation-calendar`: a week of time-window reservations with overlapping windows on
//! core sites, submitted through the API (windows all in the future: placed, `approved`,
//! not active). From central's placements it computes the GPUs reserved in each hour as a
//! share of the core sites' GPUs, checks that no GPU is held by two reservations in the same
//! hour, and writes the series as `utilisation.svg` and `utilisation.json` in `out_dir`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;

use meridian_common::ids::{TenantId, TimeWindow, WorkloadId};
use meridian_common::model::{ReservationState, SiteTier};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Check, Overrides, ScenarioError, with_fleet};
use crate::bench::results::{PlotData, Series};
use crate::simfleet::workloads::{self, WorkloadMix};
use crate::simfleet::{Progress, SimFleetOptions};

const HOUR_MS: i64 = 3_600_000;

/// How long placements of approved reservations may take to show.
const PLACEMENT_WAIT: std::time::Duration = std::time::Duration::from_secs(30);

/// A `reservation-calendar` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spec {
    /// Sites in the fleet (one core site per 100).
    pub sites: usize,
    /// Seed of the fleet and of the calendar.
    pub seed: u64,
    /// Reservations in the calendar.
    pub reservations: usize,
    /// Days the calendar covers, from an hour from now.
    pub days: u32,
    /// Shortest and longest window, hours.
    pub min_hours: u32,
    pub max_hours: u32,
    /// Most servers (eight GPUs each) a reservation asks for.
    pub max_servers: u32,
    /// Where `utilisation.svg` and `utilisation.json` go.
    pub out_dir: PathBuf,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            sites: 200,
            seed: 42,
            reservations: 60,
            days: 7,
            min_hours: 4,
            max_hours: 48,
            max_servers: 16,
            out_dir: PathBuf::from("scenario-results"),
        }
    }
}

/// The calendar's utilisation.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    pub core_sites: usize,
    pub core_gpus: usize,
    pub submitted: usize,
    /// Reservations central placed (approved with a placement).
    pub placed: usize,
    /// Hours in which some reservation overlaps another (the calendar really overlaps).
    pub overlapping_hours: usize,
    /// GPUs reserved per hour from the calendar's start, and as a share of the core GPUs.
    pub reserved_per_hour: Vec<usize>,
    pub utilisation_per_hour: Vec<f64>,
    pub peak_utilisation: f64,
    pub mean_utilisation: f64,
    /// (hour, GPUs) held by more than one reservation in one hour.
    pub overcommitted: usize,
    /// Reservations central refused, with its reason.
    pub refused: Vec<String>,
    pub svg: PathBuf,
    pub json: PathBuf,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}/{} reservations placed on {} core sites ({} GPUs); {} hours with overlapping windows",
            self.placed, self.submitted, self.core_sites, self.core_gpus, self.overlapping_hours
        )?;
        writeln!(
            f,
            "utilisation over {} hours: peak {:.1} %, mean {:.1} %; {} over-committed GPU-hours",
            self.utilisation_per_hour.len(),
            self.peak_utilisation,
            self.mean_utilisation,
            self.overcommitted
        )?;
        if let Some(r) = self.refused.first() {
            writeln!(f, "{} refused, e.g. {r}", self.refused.len())?;
        }
        writeln!(
            f,
            "wrote {} and {}",
            self.svg.display(),
            self.json.display()
        )
    }
}

/// The utilisation series of `outcome` as a plot (`utilisation.svg`): percent of the core
/// sites' GPUs reserved in each hour of the calendar.
pub fn plot(outcome: &Outcome) -> PlotData {
    PlotData {
        file: "utilisation.svg".into(),
        title: "Core GPUs reserved by the calendar".into(),
        x_label: "time from the calendar's start (h)".into(),
        y_label: "GPU utilisation (%)".into(),
        series: vec![Series {
            name: "core sites".into(),
            points: outcome
                .utilisation_per_hour
                .iter()
                .enumerate()
                .map(|(h, u)| (h as f64, *u))
                .collect(),
        }],
    }
}

/// Runs the scenario.
pub async fn run(
    spec: &Spec,
    overrides: &Overrides,
    progress: &Progress,
) -> Result<(Outcome, Vec<Check>), ScenarioError> {
    if spec.days == 0
        || spec.min_hours == 0
        || spec.min_hours > spec.max_hours
        || spec.max_servers == 0
    {
        return Err(ScenarioError::Invalid(
            "days, min_hours and max_servers must be positive, min_hours at most max_hours".into(),
        ));
    }
    let sites = overrides.sites.unwrap_or(spec.sites);
    let out_dir = overrides.out_dir.clone().unwrap_or(spec.out_dir.clone());
    let options = SimFleetOptions {
        hardware_sites: 0,
        ..SimFleetOptions::new(sites, spec.seed)
    };
    let limit = overrides.limit();
    with_fleet(&options, progress, async |fleet| {
        fleet.wait_online(limit, progress).await?;
        let core: BTreeSet<_> = fleet
            .fleet()
            .sites
            .iter()
            .filter(|s| s.tier == SiteTier::Core)
            .map(|s| s.id.clone())
            .collect();
        let core_servers: Vec<_> = fleet
            .fleet()
            .servers
            .iter()
            .filter(|s| core.contains(&s.site))
            .collect();
        let core_gpus: usize = core_servers.iter().map(|s| s.gpus.len()).sum();
        let model = workloads::main_model(core_servers.iter().copied())
            .ok_or_else(|| ScenarioError::Invalid("the fleet has no core site with GPUs".into()))?;

        // The calendar starts on the hour after the next.
        let now = meridian_central::clock::now();
        let base =
            meridian_common::ids::Timestamp::from_millis((now.as_millis() / HOUR_MS + 2) * HOUR_MS);
        let hours = i64::from(spec.days) * 24;
        // A tenant's network has one /24 of replica addresses per site: a tenant per
        // `250 / max_servers` reservations keeps each within it.
        let per_tenant = (250 / spec.max_servers as usize).max(1);
        let tenant_of = |i: usize| {
            TenantId::parse(&format!("calendar-{:02}", i / per_tenant)).expect("valid id")
        };
        let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
        let mut planned = Vec::with_capacity(spec.reservations);
        for i in 0..spec.reservations {
            let length = i64::from(rng.random_range(spec.min_hours..=spec.max_hours)).min(hours);
            let start = rng.random_range(0..=hours - length);
            let window = TimeWindow::new(
                base.saturating_add_millis(start * HOUR_MS),
                base.saturating_add_millis((start + length) * HOUR_MS),
            )
            .expect("a later end");
            planned.push(workloads::gpu_workload(
                tenant_of(i),
                format!("calendar-{i:04}"),
                model,
                8,
                rng.random_range(1..=spec.max_servers),
                Some(SiteTier::Core),
                Some(window),
            ));
        }
        let mix = WorkloadMix {
            tenants: (0..spec.reservations.div_ceil(per_tenant))
                .map(|t| workloads::open_tenant(tenant_of(t * per_tenant)))
                .collect(),
            datasets: Vec::new(),
            workloads: planned,
        };
        progress.line(&format!(
            "submitting {} reservations over {} days on {} core sites ({core_gpus} GPUs)",
            mix.workloads.len(),
            spec.days,
            core.len()
        ));
        fleet.submit(&mix, progress).await?;
        fleet.wait_settled(limit, progress).await?;

        let all = fleet.workloads().await?;
        let refused: Vec<String> = all
            .iter()
            .filter_map(|w| match &w.state {
                ReservationState::Failed { reason } => Some(format!("{}: {reason}", w.spec.name)),
                _ => None,
            })
            .collect();
        let approved: BTreeMap<WorkloadId, TimeWindow> = all
            .into_iter()
            .filter(|w| w.state == ReservationState::Approved)
            .filter_map(|w| w.spec.window.map(|win| (w.id, win)))
            .collect();
        // A workload turns approved as its placement is recorded; give the store a moment
        // to show every one (a missing placement then fails the check, not the run).
        let deadline = std::time::Instant::now() + PLACEMENT_WAIT;
        let placements = loop {
            let placements: Vec<_> = super::placements(fleet)
                .await?
                .into_iter()
                .filter(|p| approved.contains_key(&p.workload))
                .collect();
            if placements.len() == approved.len() || std::time::Instant::now() >= deadline {
                break placements;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        };
        let mut reserved = vec![0usize; hours as usize];
        let mut windows_per_hour = vec![0usize; hours as usize];
        let mut held: Vec<BTreeMap<(String, String, u32), usize>> =
            vec![BTreeMap::new(); hours as usize];
        for p in &placements {
            let win = approved[&p.workload];
            for (h, (r, w)) in reserved.iter_mut().zip(&mut windows_per_hour).enumerate() {
                let from = base.saturating_add_millis(h as i64 * HOUR_MS);
                let to = from.saturating_add_millis(HOUR_MS);
                if win.start() >= to || win.end() <= from {
                    continue;
                }
                *w += 1;
                for a in &p.assignments {
                    for g in a.slot.gpu_indices() {
                        *r += 1;
                        *held[h]
                            .entry((a.site.to_string(), a.server.to_string(), g))
                            .or_default() += 1;
                    }
                }
            }
        }
        let overcommitted = held
            .iter()
            .map(|m| m.values().filter(|n| **n > 1).count())
            .sum();
        let utilisation: Vec<f64> = reserved
            .iter()
            .map(|r| 100.0 * *r as f64 / core_gpus.max(1) as f64)
            .collect();
        std::fs::create_dir_all(&out_dir).map_err(|source| ScenarioError::Write {
            path: out_dir.clone(),
            source,
        })?;
        let svg = out_dir.join("utilisation.svg");
        let json = out_dir.join("utilisation.json");
        let outcome = Outcome {
            core_sites: core.len(),
            core_gpus,
            submitted: mix.workloads.len(),
            placed: placements.len(),
            overlapping_hours: windows_per_hour.iter().filter(|n| **n > 1).count(),
            peak_utilisation: utilisation.iter().copied().fold(0.0, f64::max),
            mean_utilisation: utilisation.iter().sum::<f64>() / utilisation.len().max(1) as f64,
            reserved_per_hour: reserved,
            utilisation_per_hour: utilisation,
            overcommitted,
            refused,
            svg: svg.clone(),
            json: json.clone(),
        };
        let write = |path: &PathBuf, text: String| {
            std::fs::write(path, text).map_err(|source| ScenarioError::Write {
                path: path.clone(),
                source,
            })
        };
        let plot = plot(&outcome);
        write(&svg, crate::bench::svg::line_chart(&plot, &[]))?;
        write(
            &json,
            serde_json::to_string_pretty(&serde_json::json!({ "plot": plot, "outcome": outcome }))
                .map_err(|e| ScenarioError::Invalid(format!("cannot encode the series: {e}")))?,
        )?;
        let checks = vec![
            Check::new(
                "every reservation placed",
                outcome.placed == outcome.submitted,
                format!(
                    "{}/{} approved with a placement",
                    outcome.placed, outcome.submitted
                ),
            ),
            Check::new(
                "windows overlap",
                outcome.overlapping_hours > 0,
                format!(
                    "{} hours with two or more reservations",
                    outcome.overlapping_hours
                ),
            ),
            Check::new(
                "no GPU over-committed",
                outcome.overcommitted == 0,
                format!("{} GPU-hours held twice", outcome.overcommitted),
            ),
            Check::new(
                "utilisation within capacity",
                outcome.peak_utilisation > 0.0 && outcome.peak_utilisation <= 100.0,
                format!(
                    "peak {:.1} %, mean {:.1} %",
                    outcome.peak_utilisation, outcome.mean_utilisation
                ),
            ),
        ];
        Ok((outcome, checks))
    })
    .await
}
