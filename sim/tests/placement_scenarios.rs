//! Placement scenarios written as data: every `scenarios/placement/*.toml` file holds a small
//! hand-written fleet (sites with real coordinates, servers, user regions, datasets, tenants),
//! the workloads in order, and the decision expected for each. One test runs them all; every
//! placement is also checked by the independent oracle of `placement_support` (hard
//! constraints, GPU calendars, quotas, score).
//!
//! # File format
//!
//! - `description`, `now` (ms; default 1,000,000).
//! - `drained`: server IDs an operator drained (they keep their placements, take no new one).
//! - `[[sites]]`, `[[regions]]`, `[[datasets]]`, `[[tenants]]`: the model types
//!   (`meridian_common::model`; a site's `storage_mib` is its storage array, absent = none).
//!   A tenant without `quotas` gets quotas that never bind.
//! - `[[servers]]`: a compact group: `site`, `count` (servers `<site>-s<n>`), `gpu` (model, or
//!   absent for CPU-only), `gpus` (default 8), `mig` (MIG on, no instances), `failed_gpus`,
//!   `cpu_cores`, `memory_mib`.
//! - `[[rtts]]`: measured RTTs (`site`, `region`, `rtt_ms`).
//! - `[[steps]]`: `action` = `place` (default), `dry_run`, `release` or `rebuild` (a new
//!   planner from the snapshot plus every placement committed so far, as central rebuilds it:
//!   `Planner::new`, then `Planner::rebook_storage` with each workload's storage; `drained`
//!   there replaces the drained servers from then on); `workload`, `tenant`, `spec` (a
//!   `WorkloadSpec`), and `[steps.expect]`:
//!   - `placed` (bool), `released` (bool, for `release`);
//!   - `sites` (the exact set of sites used), `sites_in` (every replica on one of these),
//!     `not_sites`, `servers` (the exact set of servers), `same_servers_as` (an earlier
//!     step's workload), `tier`, `countries_in` (residency terms every site satisfies),
//!     `distinct_sites`, `max_per_site`;
//!   - `rejected` (reason = exact count, for the reasons listed), `rejected_total`,
//!     `rejected_include` (reasons with a count), `dominant` (the largest count);
//!   - `explanation_contains`, `explanation_lacks`; `near_miss_sites`, `near_miss_reasons` (each among the near
//!     misses), `near_miss_reasons_of` (site = the reason it is named with), `near_misses_min`.

mod placement_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use meridian_common::ids::{RegionId, ServerId, SiteId, TenantId, Timestamp, WorkloadId};
use meridian_common::model::{
    BmcEndpoint, BmcVendor, Dataset, Gpu, GpuHealth, GpuModel, MigConfig, Quotas, Region,
    RejectReason, ResidencyRule, Server, ServerState, Site, SiteTier, Tenant, WorkloadSpec,
};
use meridian_plan::placement::{
    Decision, FleetSnapshot, MeasuredRtt, PlacementRequest, Planner, PlannerConfig,
};
use placement_support::{Oracle, big_quotas, check_counts, id};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Scenario {
    description: String,
    #[serde(default = "default_now")]
    now: i64,
    #[serde(default)]
    drained: BTreeSet<ServerId>,
    sites: Vec<Site>,
    servers: Vec<ServerGroup>,
    #[serde(default)]
    regions: Vec<Region>,
    #[serde(default)]
    rtts: Vec<Rtt>,
    #[serde(default)]
    datasets: Vec<Dataset>,
    tenants: Vec<Tenant>,
    steps: Vec<Step>,
}

fn default_now() -> i64 {
    1_000_000
}

fn default_gpus() -> u32 {
    8
}

fn default_cores() -> u32 {
    64
}

fn default_memory() -> u64 {
    1024 * 1024
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerGroup {
    site: SiteId,
    #[serde(default = "one")]
    count: u32,
    #[serde(default)]
    gpu: Option<GpuModel>,
    #[serde(default = "default_gpus")]
    gpus: u32,
    #[serde(default)]
    mig: bool,
    #[serde(default)]
    failed_gpus: u32,
    #[serde(default = "default_cores")]
    cpu_cores: u32,
    #[serde(default = "default_memory")]
    memory_mib: u64,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rtt {
    site: SiteId,
    region: RegionId,
    rtt_ms: f64,
}

#[derive(Debug, Deserialize, Default, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Action {
    #[default]
    Place,
    DryRun,
    Release,
    Rebuild,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Step {
    #[serde(default)]
    action: Action,
    workload: WorkloadId,
    #[serde(default)]
    tenant: Option<TenantId>,
    #[serde(default)]
    spec: Option<WorkloadSpec>,
    #[serde(default)]
    expect: Expect,
    /// For `rebuild`: the drained servers from then on.
    #[serde(default)]
    drained: Option<BTreeSet<ServerId>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    placed: Option<bool>,
    released: Option<bool>,
    sites: Option<Vec<SiteId>>,
    sites_in: Option<Vec<SiteId>>,
    #[serde(default)]
    not_sites: Vec<SiteId>,
    servers: Option<Vec<ServerId>>,
    same_servers_as: Option<WorkloadId>,
    tier: Option<SiteTier>,
    countries_in: Option<ResidencyRule>,
    distinct_sites: Option<usize>,
    max_per_site: Option<usize>,
    #[serde(default)]
    rejected: BTreeMap<String, u32>,
    rejected_total: Option<u32>,
    #[serde(default)]
    rejected_include: Vec<String>,
    dominant: Option<String>,
    #[serde(default)]
    explanation_contains: Vec<String>,
    #[serde(default)]
    explanation_lacks: Vec<String>,
    #[serde(default)]
    near_miss_sites: Vec<SiteId>,
    #[serde(default)]
    near_miss_reasons: Vec<String>,
    #[serde(default)]
    near_miss_reasons_of: BTreeMap<SiteId, String>,
    near_misses_min: Option<usize>,
}

fn reason_name(r: RejectReason) -> String {
    serde_json::to_value(r)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .expect("a reject reason serialises as its name")
}

fn snapshot(s: &Scenario) -> FleetSnapshot {
    let mut servers = Vec::new();
    let mut per_site: BTreeMap<SiteId, u32> = BTreeMap::new();
    for g in &s.servers {
        for _ in 0..g.count {
            let n = per_site.entry(g.site.clone()).or_default();
            let server_id = format!("{}-s{n}", g.site);
            *n += 1;
            let gpus = match g.gpu {
                None => Vec::new(),
                Some(model) => (0..g.gpus)
                    .map(|index| Gpu {
                        index,
                        model,
                        memory_mib: model.nominal_memory_mib(),
                        mig: if g.mig {
                            MigConfig::Enabled {
                                instances: Vec::new(),
                            }
                        } else {
                            MigConfig::Disabled
                        },
                        health: if index < g.failed_gpus {
                            GpuHealth::Failed
                        } else {
                            GpuHealth::Healthy
                        },
                    })
                    .collect(),
            };
            servers.push(Server {
                id: id(&server_id),
                site: g.site.clone(),
                bmc: BmcEndpoint {
                    url: format!("https://bmc-{server_id}.meridian.invalid"),
                    vendor: BmcVendor::Generic,
                },
                serial: format!("SN-{server_id}"),
                cpu_cores: g.cpu_cores,
                memory_mib: g.memory_mib,
                gpus,
                dpu: None,
                pool: None,
                state: ServerState::Available,
            });
        }
    }
    FleetSnapshot {
        sites: s.sites.clone(),
        servers,
        regions: s.regions.clone(),
        rtts: s
            .rtts
            .iter()
            .map(|r| MeasuredRtt {
                site: r.site.clone(),
                region: r.region.clone(),
                rtt_ms: r.rtt_ms,
            })
            .collect(),
        datasets: s.datasets.clone(),
        tenants: s
            .tenants
            .iter()
            .map(|t| Tenant {
                quotas: if t.quotas == Quotas::default() {
                    big_quotas()
                } else {
                    t.quotas.clone()
                },
                ..t.clone()
            })
            .collect(),
        placements: Vec::new(),
        drained: s.drained.clone(),
    }
}

/// Runs one scenario; returns every unmet expectation.
fn run(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let scenario: Scenario =
        toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut snap = snapshot(&scenario);
    let now = Timestamp(scenario.now);
    let mut planner =
        Planner::new(&snap, PlannerConfig::default()).expect("a valid scenario fleet");
    let mut oracle = Oracle::new(&snap);
    let mut servers_of: BTreeMap<WorkloadId, BTreeSet<ServerId>> = BTreeMap::new();
    let mut failures = Vec::new();
    for (n, step) in scenario.steps.iter().enumerate() {
        let at = format!(
            "{} step {n} ({})",
            path.file_name().and_then(|f| f.to_str()).unwrap_or("?"),
            step.workload
        );
        let mut fail = |what: String| failures.push(format!("{at}: {what}"));
        let e = &step.expect;
        if step.action == Action::Rebuild {
            if let Some(drained) = &step.drained {
                snap.drained = drained.clone();
                oracle.snap.drained = drained.clone();
            }
            let mut again = snap.clone();
            again.placements = oracle.committed.values().map(|(_, p)| p.clone()).collect();
            planner = Planner::new(&again, PlannerConfig::default())
                .unwrap_or_else(|err| panic!("{at}: the committed placements re-book: {err}"));
            for (w, (req, _)) in &oracle.committed {
                assert!(planner.rebook_storage(w, req.spec.resources.storage_mib));
            }
            continue;
        }
        if step.action == Action::Release {
            let released = planner.release(&step.workload);
            oracle.release(&step.workload);
            if e.released.is_some_and(|want| want != released) {
                fail(format!("release returned {released}"));
            }
            continue;
        }
        let (Some(tenant), Some(spec)) = (&step.tenant, &step.spec) else {
            panic!("{at}: a place or dry_run step needs a tenant and a spec");
        };
        let req = PlacementRequest {
            workload: step.workload.clone(),
            tenant: tenant.clone(),
            spec: spec.clone(),
        };
        let commit = step.action == Action::Place;
        let d = if commit {
            planner.place(&req, now)
        } else {
            planner.dry_run(&req, now)
        }
        .unwrap_or_else(|err| panic!("{at}: {err}"));
        if let Err(err) = check_counts(&d, snap.sites.len(), &oracle) {
            fail(err);
        }
        if let Err(err) = oracle.check_reasons(&req, &d) {
            fail(format!("oracle: {err}"));
        }
        if let Some(want) = e.placed
            && want != d.placement().is_some()
        {
            fail(format!(
                "placed is {}, expected {want}: {}",
                !want,
                d.explanation()
            ));
            continue;
        }
        if let Decision::Placed(p) = &d {
            if let Err(err) = oracle.check_placed(&req, p, now) {
                fail(format!("oracle: {err}"));
            }
            if commit {
                oracle.commit(&req, p);
                if let Err(err) = oracle.check_global() {
                    fail(format!("oracle: {err}"));
                }
            }
            let sites: Vec<&SiteId> = p.assignments.iter().map(|a| &a.site).collect();
            let distinct: BTreeSet<&SiteId> = sites.iter().copied().collect();
            let servers: BTreeSet<ServerId> =
                p.assignments.iter().map(|a| a.server.clone()).collect();
            if let Some(want) = &e.sites {
                let want: BTreeSet<&SiteId> = want.iter().collect();
                if want != distinct {
                    fail(format!(
                        "sites {distinct:?}, expected {want:?}: {}",
                        p.explanation
                    ));
                }
            }
            if let Some(allowed) = &e.sites_in
                && let Some(s) = sites.iter().find(|s| !allowed.contains(s))
            {
                fail(format!(
                    "site {s} is not one of {allowed:?}: {}",
                    p.explanation
                ));
            }
            if let Some(s) = sites.iter().find(|s| e.not_sites.contains(s)) {
                fail(format!("site {s} must not be used: {}", p.explanation));
            }
            if let Some(want) = &e.servers {
                let want: BTreeSet<ServerId> = want.iter().cloned().collect();
                if want != servers {
                    fail(format!("servers {servers:?}, expected {want:?}"));
                }
            }
            if let Some(other) = &e.same_servers_as
                && servers_of.get(other) != Some(&servers)
            {
                fail(format!(
                    "servers {servers:?}, expected those of {other}: {:?}",
                    servers_of.get(other)
                ));
            }
            if let Some(t) = e.tier
                && let Some(s) = sites.iter().find(|s| oracle.site(s).tier != t)
            {
                fail(format!("site {s} is not {t:?}"));
            }
            if let Some(rule) = &e.countries_in
                && let Some(s) = sites.iter().find(|s| !rule.allows(oracle.site(s).country))
            {
                fail(format!(
                    "site {s} ({}) is outside {rule:?}",
                    oracle.site(s).country
                ));
            }
            if e.distinct_sites.is_some_and(|want| want != distinct.len()) {
                fail(format!(
                    "{} distinct sites, expected {:?}",
                    distinct.len(),
                    e.distinct_sites
                ));
            }
            if let Some(max) = e.max_per_site {
                for s in &distinct {
                    let k = sites.iter().filter(|x| *x == s).count();
                    if k > max {
                        fail(format!("{k} replicas on {s}, at most {max} expected"));
                    }
                }
            }
            if commit {
                servers_of.insert(req.workload.clone(), servers);
            }
        }
        let rejections: BTreeMap<String, u32> = d
            .rejections()
            .iter()
            .map(|(r, n)| (reason_name(*r), *n))
            .collect();
        for (reason, want) in &e.rejected {
            let got = rejections.get(reason).copied().unwrap_or(0);
            if got != *want {
                fail(format!(
                    "{got} sites rejected for {reason}, expected {want}: {rejections:?}"
                ));
            }
        }
        if let Some(want) = e.rejected_total {
            let got: u32 = rejections.values().sum();
            if got != want {
                fail(format!(
                    "{got} sites rejected in all, expected {want}: {rejections:?}"
                ));
            }
        }
        for reason in &e.rejected_include {
            if !rejections.contains_key(reason) {
                fail(format!("no site rejected for {reason}: {rejections:?}"));
            }
        }
        if let Some(want) = &e.dominant {
            let top = rejections.values().max().copied().unwrap_or(0);
            let leaders: Vec<&String> = rejections
                .iter()
                .filter(|(_, n)| **n == top)
                .map(|(r, _)| r)
                .collect();
            if leaders != [want] {
                fail(format!(
                    "dominant reasons {leaders:?}, expected {want}: {rejections:?}"
                ));
            }
        }
        for words in &e.explanation_contains {
            if !d.explanation().contains(words.as_str()) {
                fail(format!("explanation lacks {words:?}: {}", d.explanation()));
            }
        }
        for words in &e.explanation_lacks {
            if d.explanation().contains(words.as_str()) {
                fail(format!("explanation has {words:?}: {}", d.explanation()));
            }
        }
        let near = match &d {
            Decision::Unplaceable(u) => u.near_misses.clone(),
            Decision::Placed(_) => Vec::new(),
        };
        if e.near_misses_min.is_some_and(|min| near.len() < min) {
            fail(format!(
                "{} near misses, expected at least {:?}: {near:?}",
                near.len(),
                e.near_misses_min
            ));
        }
        for s in &e.near_miss_sites {
            if !near.iter().any(|m| m.site == *s) {
                fail(format!("{s} is not among the near misses {near:?}"));
            }
        }
        for r in &e.near_miss_reasons {
            if !near.iter().any(|m| reason_name(m.reason) == *r) {
                fail(format!("no near miss for {r}: {near:?}"));
            }
        }
        for (s, r) in &e.near_miss_reasons_of {
            if !near
                .iter()
                .any(|m| m.site == *s && reason_name(m.reason) == *r)
            {
                fail(format!("{s} is not a near miss for {r}: {near:?}"));
            }
        }
    }
    let _ = &scenario.description;
    failures
}

fn scenario_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/scenarios/placement");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_placement_scenario_decides_as_written() {
    let files = scenario_files();
    assert!(
        files.len() >= 6,
        "expected the six required scenarios, found {files:?}"
    );
    let mut failures = Vec::new();
    for f in &files {
        let found = run(f);
        println!(
            "{}: {}",
            f.display(),
            if found.is_empty() { "ok" } else { "FAILED" }
        );
        failures.extend(found);
    }
    assert!(
        failures.is_empty(),
        "{} unmet expectations:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
