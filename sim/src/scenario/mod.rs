//! Scenarios: data files (`sim/scenarios/*.toml`) that the simulator runs on a
//! [`SimFleet`], each with checks that pass or fail.
//!
//! A file names its `kind` and that kind's parameters (unknown keys are refused, naming the
//! key):
//!
//! | kind | module | what it does |
//! |---|---|---|
//! | `wan-outage` | [`wan_outage`] | cuts ~20 % of one continent's sites off, places new work elsewhere, heals |
//! | `reconnect-storm` | [`reconnect_storm`] | restarts central under every connected site |
//! | `reservation-calendar` | [`calendar`] | a week of overlapping reservations on core sites; utilisation |
//! | `lose-half-servers` | [`lose_half`] | a cut-off site loses half its BMCs and reports it on reconnect |
//! | `metering` | [`metering`] | reservations on a hand-moved clock, a site cut off for an hour; usage against a recomputation |
//!
//! [`load`] parses a file, [`run`] runs it with [`Overrides`] (a smaller fleet, accelerated
//! time) and returns a [`ScenarioResult`]: the kind's typed outcome and its [`Check`]s.
//! `meridian-sim scenario run FILE` prints both and exits 1 when a check failed.

pub mod calendar;
pub mod lose_half;
pub mod metering;
pub mod reconnect_storm;
pub mod wan_outage;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meridian_common::ids::{Generation, Sequence, SiteId, WorkloadId};
use meridian_common::model::{Placement, ReservationState, SiteState};
use serde::Deserialize;

use crate::simfleet::{Progress, SimFleet, SimFleetError, SimFleetOptions};

/// One scenario file.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Scenario {
    WanOutage(wan_outage::Spec),
    ReconnectStorm(reconnect_storm::Spec),
    ReservationCalendar(calendar::Spec),
    LoseHalfServers(lose_half::Spec),
    Metering(metering::Spec),
}

impl Scenario {
    /// The kind's name, as files spell it.
    pub fn kind(&self) -> &'static str {
        match self {
            Scenario::WanOutage(_) => "wan-outage",
            Scenario::ReconnectStorm(_) => "reconnect-storm",
            Scenario::ReservationCalendar(_) => "reservation-calendar",
            Scenario::LoseHalfServers(_) => "lose-half-servers",
            Scenario::Metering(_) => "metering",
        }
    }
}

/// Why a scenario could not run (a failed check is not an error: see [`ScenarioResult`]).
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Fleet(#[from] SimFleetError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Parses a scenario from TOML text (`path` names it in errors).
pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
    toml::from_str(text).map_err(|e| ScenarioError::Parse {
        path: path.to_owned(),
        message: e.to_string().trim_end().to_owned(),
    })
}

/// Reads and parses a scenario file.
pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
    let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// What a run may change from the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// Sites in the fleet instead of the file's.
    pub sites: Option<usize>,
    /// Time acceleration instead of the file's `scale`: simulated durations (an outage's
    /// length) pass this many times faster.
    pub scale: Option<f64>,
    /// Where output files go (the calendar's SVG and JSON) instead of the file's.
    pub out_dir: Option<PathBuf>,
    /// How long any one wait may take (sites online, workloads settled...).
    pub limit: Option<Duration>,
}

impl Overrides {
    fn limit(&self) -> Duration {
        self.limit.unwrap_or(Duration::from_secs(600))
    }
}

/// One check of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub passed: bool,
    /// What was measured.
    pub detail: String,
}

impl Check {
    pub fn new(name: &str, passed: bool, detail: impl Into<String>) -> Check {
        Check {
            name: name.to_owned(),
            passed,
            detail: detail.into(),
        }
    }
}

/// A kind's typed outcome.
#[derive(Debug, Clone)]
pub enum Outcome {
    WanOutage(wan_outage::Outcome),
    ReconnectStorm(reconnect_storm::Outcome),
    ReservationCalendar(calendar::Outcome),
    LoseHalfServers(lose_half::Outcome),
    Metering(Box<metering::Outcome>),
}

/// What a scenario run found.
#[derive(Debug, Clone)]
pub struct ScenarioResult {
    pub kind: &'static str,
    pub outcome: Outcome,
    pub checks: Vec<Check>,
    pub wall: Duration,
}

impl ScenarioResult {
    /// Whether every check passed.
    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.passed)
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }
}

impl fmt::Display for ScenarioResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scenario {} ({:.1} s)",
            self.kind,
            self.wall.as_secs_f64()
        )?;
        match &self.outcome {
            Outcome::WanOutage(o) => write!(f, "{o}")?,
            Outcome::ReconnectStorm(o) => write!(f, "{o}")?,
            Outcome::ReservationCalendar(o) => write!(f, "{o}")?,
            Outcome::LoseHalfServers(o) => write!(f, "{o}")?,
            Outcome::Metering(o) => write!(f, "{o}")?,
        }
        writeln!(f, "checks:")?;
        for c in &self.checks {
            let mark = if c.passed { "PASS" } else { "FAIL" };
            writeln!(f, "  {mark}  {:<28} {}", c.name, c.detail)?;
        }
        let passed = self.checks.iter().filter(|c| c.passed).count();
        write!(
            f,
            "{passed}/{} checks passed: {}",
            self.checks.len(),
            if self.passed() { "PASS" } else { "FAIL" }
        )
    }
}

/// Runs `scenario` with `overrides`, progress to `progress`.
pub async fn run(
    scenario: &Scenario,
    overrides: &Overrides,
    progress: &Progress,
) -> Result<ScenarioResult, ScenarioError> {
    let started = Instant::now();
    let (outcome, checks) = match scenario {
        Scenario::WanOutage(s) => {
            let (o, c) = wan_outage::run(s, overrides, progress).await?;
            (Outcome::WanOutage(o), c)
        }
        Scenario::ReconnectStorm(s) => {
            let (o, c) = reconnect_storm::run(s, overrides, progress).await?;
            (Outcome::ReconnectStorm(o), c)
        }
        Scenario::ReservationCalendar(s) => {
            let (o, c) = calendar::run(s, overrides, progress).await?;
            (Outcome::ReservationCalendar(o), c)
        }
        Scenario::LoseHalfServers(s) => {
            let (o, c) = lose_half::run(s, overrides, progress).await?;
            (Outcome::LoseHalfServers(o), c)
        }
        Scenario::Metering(s) => {
            let (o, c) = metering::run(s, overrides, progress).await?;
            (Outcome::Metering(Box::new(o)), c)
        }
    };
    Ok(ScenarioResult {
        kind: scenario.kind(),
        outcome,
        checks,
        wall: started.elapsed(),
    })
}

/// Starts a fleet, runs `body` on it and shuts it down whatever `body` returned.
async fn with_fleet<T>(
    options: &SimFleetOptions,
    progress: &Progress,
    body: impl AsyncFnOnce(&mut SimFleet) -> Result<T, ScenarioError>,
) -> Result<T, ScenarioError> {
    let mut fleet = SimFleet::start(options, progress).await?;
    let result = body(&mut fleet).await;
    progress.line("shutting the fleet down");
    fleet.shutdown().await;
    result
}

/// Polls `probe` every 100 ms until it answers `Some`, or `limit` passes (`what` then names
/// what did not happen in the error).
async fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<Option<T>, ScenarioError>,
) -> Result<T, ScenarioError> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = probe().await? {
            return Ok(v);
        }
        if Instant::now() >= deadline {
            return Err(SimFleetError::Timeout(format!("after {limit:?}: {what}")).into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The state central holds for each of `sites`.
async fn site_states(fleet: &SimFleet, sites: &[SiteId]) -> Result<Vec<SiteState>, ScenarioError> {
    let table = fleet.central().tables().sites();
    let mut out = Vec::with_capacity(sites.len());
    for s in sites {
        let state = table
            .get(s)
            .await
            .map_err(SimFleetError::from)?
            .map_or(SiteState::Pending, |r| r.record.state);
        out.push(state);
    }
    Ok(out)
}

/// For each site, the submitted workloads central holds active with a replica there.
async fn active_by_site(
    fleet: &SimFleet,
) -> Result<BTreeMap<SiteId, BTreeSet<WorkloadId>>, ScenarioError> {
    let active: BTreeSet<WorkloadId> = fleet
        .workloads()
        .await?
        .into_iter()
        .filter(|w| w.state == ReservationState::Active)
        .map(|w| w.id)
        .collect();
    let mut out: BTreeMap<SiteId, BTreeSet<WorkloadId>> = BTreeMap::new();
    for p in placements(fleet).await? {
        if active.contains(&p.workload) {
            for a in &p.assignments {
                out.entry(a.site.clone())
                    .or_default()
                    .insert(p.workload.clone());
            }
        }
    }
    Ok(out)
}

/// Every placement central holds.
async fn placements(fleet: &SimFleet) -> Result<Vec<Placement>, ScenarioError> {
    Ok(fleet
        .central()
        .tables()
        .placements()
        .list_all(None, 1_000)
        .await
        .map_err(SimFleetError::from)?)
}

/// How far central's channel has caught up with one agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sync {
    /// Every report up to this is stored at central (its high-water).
    pub stored: Sequence,
    /// The last report the agent produced.
    pub produced: Sequence,
    /// The generation central knows applied.
    pub central_applied: Generation,
    /// The generation the agent applied.
    pub agent_applied: Generation,
    /// Reports the agent's buffer dropped, as central heard.
    pub dropped: u64,
}

impl Sync {
    /// Central stored every report and knows the agent's applied generation.
    pub fn caught_up(&self) -> bool {
        self.stored >= self.produced && self.central_applied == self.agent_applied
    }
}

/// Where central's channel stands with the agent of site `index`.
async fn sync_of(fleet: &SimFleet, index: usize) -> Result<Sync, ScenarioError> {
    let site = &fleet.fleet().sites[index].id;
    let channel = fleet
        .central()
        .channel()
        .site_channel(site)
        .await
        .map_err(|e| SimFleetError::Table(e.into()))?;
    let mut sync = Sync {
        stored: channel.report_high_water,
        central_applied: channel.applied_generation,
        dropped: channel.reports_dropped,
        ..Sync::default()
    };
    if let Some(status) = fleet.agent(index).and_then(|a| a.status().ok()) {
        sync.produced = status.last_sequence;
        sync.agent_applied = status.applied;
    }
    Ok(sync)
}

/// A real duration from a simulated one: `simulated / scale`, at least `floor`.
fn accelerated(simulated: Duration, scale: f64, floor: Duration) -> Duration {
    let scale = if scale.is_finite() && scale > 0.0 {
        scale
    } else {
        1.0
    };
    simulated.div_f64(scale).max(floor)
}

/// Refuses a non-positive or non-finite scale.
fn check_scale(scale: f64) -> Result<f64, ScenarioError> {
    if scale.is_finite() && scale > 0.0 {
        Ok(scale)
    } else {
        Err(ScenarioError::Invalid(format!(
            "scale must be a positive number, got {scale}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_and_kinds_are_named() {
        let path = Path::new("x.toml");
        let e = parse("kind = \"wan-outage\"\nsitez = 3\n", path)
            .unwrap_err()
            .to_string();
        assert!(e.contains("sitez"), "{e}");
        let e = parse("kind = \"meteor\"\n", path).unwrap_err().to_string();
        assert!(e.contains("meteor"), "{e}");
        assert!(matches!(
            parse("kind = \"reconnect-storm\"\nsites = 3\n", path).unwrap(),
            Scenario::ReconnectStorm(_)
        ));
    }
}
