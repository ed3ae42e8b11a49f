//! `meridian-sim bench all`: every benchmark of TARGETS.md in one run, one table, one JSON
//! document and the plots.
//!
//! The benchmarks run one after another in this process, each as its own command runs it
//! (`bench channel`, `bench ingest`, `bench resync`, `bench placement`, `bench api`,
//! `bench console`, `bench fuzz`, and B6 through the same measurement as `cargo bench --bench store_commit`),
//! printing their own tables as they go. The channel benchmark runs first, so its memory
//! figure (B4, this process's RSS growth) is not disturbed by what the others allocated.
//! After each benchmark `results.json` is rewritten, so a run cut short keeps what it
//! measured. A benchmark that fails to run leaves its rows as "not measured" with the error,
//! and the command exits 1; figures that miss their targets do not change the exit code.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use meridian_store::commit_rate as commit;

use super::accounting::{self, AccountingReport};
use super::channel::{self, ChannelBenchOptions, ChannelBenchReport};
use super::console::{self, ConsoleBenchOptions, ConsoleBenchReport};
use super::etcd::{self, EtcdBenchOptions, EtcdBenchReport, EtcdMissing};
use super::fuzz::{self, FuzzOptions, FuzzReport};
use super::harness::BoxError;
use super::ingest::{self, IngestBenchOptions, IngestBenchReport};
use super::metrics::{self as metrics_bench, MetricsBenchOptions, MetricsBenchReport};
use super::placement::{self, PlacementBenchReport};
use super::results::{Bound, Machine, Mode, PlotData, Row, Series, SuiteResults};
use super::resync::{self, ResyncBenchOptions, ResyncBenchReport};
use super::svg::{self, Marker};
use super::{api, ms, percentile};
use crate::scenario::{self, calendar};
use crate::simfleet::Progress;

/// Every TARGETS.md id the suite reports a row for.
pub const ROW_IDS: &[&str] = &[
    "B1", "B1q", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B9", "B10", "B11", "B13", "B14", "R9",
    "R10", "CAL",
];

/// Plot files the suite writes when it has their data.
pub const PLOT_FILES: &[&str] = &[
    "b1-placement-growth.svg",
    "b2-fanout-latency.svg",
    "b3-reconnect.svg",
    "utilisation.svg",
];

/// Options of `meridian-sim bench all`.
#[derive(Debug, Clone)]
pub struct SuiteOptions {
    pub mode: Mode,
    /// The results folder (created if missing).
    pub out: PathBuf,
    /// Seed of fleets, workloads and the fuzzer.
    pub seed: u64,
    /// Only the benchmarks covering these ids (`B5`, `R10`); all when empty.
    pub only: Vec<String>,
}

/// The sizes each mode runs at.
#[derive(Debug, Clone)]
pub struct Plan {
    pub channel: ChannelBenchOptions,
    /// B2's baseline: etcd's watch fan-out to as many watchers as `channel` has agents.
    pub etcd: EtcdBenchOptions,
    pub ingest: IngestBenchOptions,
    /// B14: pairs of B5 runs with usage accounting off and on.
    pub accounting_rounds: usize,
    pub resync: ResyncBenchOptions,
    /// B6: runs, seconds per run, writers with group commit.
    pub store_runs: usize,
    pub store_seconds: f64,
    pub store_writers: usize,
    /// B1: fleet sizes, the spread-8 fleet, decisions per run.
    pub placement_sizes: Vec<usize>,
    pub placement_spread_sites: usize,
    pub placement_workloads: usize,
    pub api: api::ApiBenchOptions,
    /// B11: the console's fleet page and live-update fan-out.
    pub console: ConsoleBenchOptions,
    /// Central's `/metrics` at fleet scale.
    pub metrics: MetricsBenchOptions,
    pub fuzz: FuzzOptions,
    /// R10's required executions per target in this mode.
    pub fuzz_required: u64,
    /// Utilisation over time: the reservation-calendar scenario at this size.
    pub calendar: calendar::Spec,
    /// B13's apply-to-answer runs.
    pub endpoint_runs: usize,
}

impl Plan {
    /// The sizes of `mode`.
    pub fn of(mode: Mode, seed: u64) -> Plan {
        match mode {
            Mode::Tiny => Plan {
                endpoint_runs: 2,
                channel: ChannelBenchOptions {
                    agents: 8,
                    endpoints: 2,
                    settle: Duration::from_millis(200),
                    idle_window: Duration::from_millis(500),
                    b7_servers: 10,
                    b7_resync: Duration::from_millis(200),
                    ..ChannelBenchOptions::new(8)
                },
                etcd: EtcdBenchOptions::new(8),
                ingest: IngestBenchOptions {
                    agents: 4,
                    batch: 16,
                    seconds: 0.5,
                    endpoints: 2,
                    paced_rate: 1_000.0,
                    metering: true,
                },
                accounting_rounds: 1,
                resync: ResyncBenchOptions {
                    generations: 50,
                    networks: 20,
                    one_way_delay: Duration::from_millis(10),
                },
                store_runs: 1,
                store_seconds: 0.2,
                store_writers: 16,
                placement_sizes: vec![100, 200],
                placement_spread_sites: 200,
                placement_workloads: 400,
                api: api::ApiBenchOptions {
                    sites: 100,
                    seconds: 1,
                    connections: 2,
                    in_flight: 4,
                    tenants: 2,
                    workloads: 4,
                },
                metrics: MetricsBenchOptions {
                    sites: 50,
                    scrapes: 3,
                    seed,
                },
                console: ConsoleBenchOptions {
                    sites: 50,
                    renders: 5,
                    streams: 5,
                    changes: 20,
                    per_txn: 8,
                    seed,
                },
                fuzz: FuzzOptions {
                    seed,
                    ..FuzzOptions::new(300)
                },
                fuzz_required: 300,
                calendar: calendar::Spec {
                    sites: 12,
                    reservations: 20,
                    days: 2,
                    ..calendar::Spec::default()
                },
            },
            Mode::Quick => Plan {
                endpoint_runs: 20,
                channel: ChannelBenchOptions::new(1_000),
                etcd: EtcdBenchOptions::new(1_000),
                ingest: IngestBenchOptions::new(false),
                accounting_rounds: 3,
                resync: ResyncBenchOptions::default(),
                store_runs: 3,
                store_seconds: 1.0,
                store_writers: 64,
                placement_sizes: vec![1_000, 3_000, 10_000],
                placement_spread_sites: 10_000,
                placement_workloads: 20_000,
                api: api::ApiBenchOptions::new(false),
                console: ConsoleBenchOptions {
                    seed,
                    ..ConsoleBenchOptions::new(false)
                },
                metrics: MetricsBenchOptions {
                    seed,
                    ..MetricsBenchOptions::new(false)
                },
                // About half a minute in a release build: the quick run meets R10's count too.
                fuzz: FuzzOptions {
                    seed,
                    ..FuzzOptions::new(1_000_000)
                },
                fuzz_required: 1_000_000,
                calendar: calendar::Spec::default(),
            },
            Mode::Full => Plan {
                endpoint_runs: 20,
                channel: ChannelBenchOptions::new(10_000),
                etcd: EtcdBenchOptions::new(10_000),
                ingest: IngestBenchOptions::new(true),
                accounting_rounds: 3,
                resync: ResyncBenchOptions::default(),
                store_runs: 5,
                store_seconds: 2.0,
                store_writers: 64,
                placement_sizes: vec![1_000, 3_000, 10_000, 20_000, 50_000],
                placement_spread_sites: 10_000,
                placement_workloads: 20_000,
                api: api::ApiBenchOptions::new(true),
                console: ConsoleBenchOptions {
                    seed,
                    ..ConsoleBenchOptions::new(true)
                },
                metrics: MetricsBenchOptions {
                    seed,
                    ..MetricsBenchOptions::new(true)
                },
                fuzz: FuzzOptions {
                    seed,
                    ..FuzzOptions::new(10_000_000)
                },
                fuzz_required: 1_000_000,
                // Ten core sites (20,480 GPUs) and five times the reservations.
                calendar: calendar::Spec {
                    sites: 1_000,
                    reservations: 300,
                    ..calendar::Spec::default()
                },
            },
        }
    }
}

/// Keeps at most `n` points of a long series (evenly, always the last).
fn thin(points: Vec<(f64, f64)>, n: usize) -> Vec<(f64, f64)> {
    if points.len() <= n || n < 2 {
        return points;
    }
    let step = points.len() as f64 / (n - 1) as f64;
    let mut out: Vec<(f64, f64)> = (0..n - 1)
        .map(|i| points[(i as f64 * step) as usize])
        .collect();
    out.push(*points.last().expect("not empty"));
    out
}

struct Run<'a> {
    opts: &'a SuiteOptions,
    results: SuiteResults,
    started: Instant,
    failed: bool,
}

impl Run<'_> {
    fn wants(&self, ids: &[&str]) -> bool {
        self.opts.only.is_empty()
            || self
                .opts
                .only
                .iter()
                .any(|o| ids.iter().any(|id| id.eq_ignore_ascii_case(o)))
    }

    fn skipped(&mut self, ids: &[&str], why: &str) {
        for id in ids {
            self.results
                .rows
                .push(Row::not_measured(id, "(not run)", "see TARGETS.md", why));
        }
    }

    fn failed(&mut self, name: &str, ids: &[&str], e: &(dyn std::error::Error + 'static)) {
        let chain = meridian_common::telemetry::error_chain(e);
        eprintln!("bench all: {name} failed: {chain}");
        self.failed = true;
        self.results.errors.push((name.into(), chain.clone()));
        for id in ids {
            self.results.rows.push(Row::not_measured(
                id,
                format!("{name} (failed to run)"),
                "see TARGETS.md",
                chain.clone(),
            ));
        }
    }

    fn plot(&mut self, plot: PlotData, markers: &[Marker]) {
        let svg = svg::line_chart(&plot, markers);
        let path = self.opts.out.join(&plot.file);
        if let Err(e) = std::fs::write(&path, svg) {
            eprintln!("bench all: cannot write {}: {e}", path.display());
            self.failed = true;
        }
        self.results.plots.push(plot);
    }

    /// Rewrites results.json with what is known so far.
    fn save(&mut self) {
        self.results.seconds = self.started.elapsed().as_secs_f64();
        let path = self.opts.out.join("results.json");
        if let Err(e) = std::fs::write(&path, self.results.to_json()) {
            eprintln!("bench all: cannot write {}: {e}", path.display());
            self.failed = true;
        }
    }
}

/// Runs the suite; returns its results and whether every benchmark ran. Writes
/// `results.json`, `results.md` (the table) and the plots into `opts.out`.
pub async fn run(opts: &SuiteOptions) -> Result<(SuiteResults, bool), BoxError> {
    std::fs::create_dir_all(&opts.out)?;
    let plan = Plan::of(opts.mode, opts.seed);
    let mut run = Run {
        opts,
        results: SuiteResults {
            version: env!("CARGO_PKG_VERSION").into(),
            mode: opts.mode,
            seed: opts.seed,
            started_unix_ms: meridian_agent::now_ms(),
            seconds: 0.0,
            machine: Machine::this(),
            rows: Vec::new(),
            plots: Vec::new(),
            plots_missing: Vec::new(),
            errors: Vec::new(),
        },
        started: Instant::now(),
        failed: false,
    };
    if !run.results.machine.optimised {
        eprintln!("bench all: this is a debug build; its figures mean little (use --release)");
    }

    let ids = ["B2", "B3", "B4", "B7"];
    if run.wants(&ids) {
        eprintln!("\n== B2 B3 B4 B7: agent channel ==");
        match channel::run(&plan.channel).await {
            Ok(r) => {
                println!("{r}");
                let baseline = if run.wants(&["B2"]) {
                    eprintln!("\n== B2 baseline: etcd watch fan-out ==");
                    let opts = EtcdBenchOptions {
                        watchers: r.agents,
                        ..plan.etcd.clone()
                    };
                    let b = etcd::run(&opts).await;
                    if let Ok(b) = &b {
                        println!("{b}");
                    }
                    Some(b)
                } else {
                    None
                };
                channel_rows(&mut run, &r, baseline);
            }
            Err(e) => run.failed("bench channel", &ids, e.as_ref()),
        }
        run.save();
    } else {
        run.skipped(&ids, "not selected (--only)");
    }

    if run.wants(&["B5"]) {
        eprintln!("\n== B5: report ingest ==");
        match ingest::run(&plan.ingest).await {
            Ok(r) => {
                println!("{r}");
                ingest_rows(&mut run, &r);
            }
            Err(e) => run.failed("bench ingest", &["B5"], e.as_ref()),
        }
        run.save();
    } else {
        run.skipped(&["B5"], "not selected (--only)");
    }

    if run.wants(&["B8"]) {
        eprintln!("\n== B8: offline resync ==");
        match resync::run(&plan.resync).await {
            Ok(r) => {
                println!("{r}");
                resync_rows(&mut run, &r);
            }
            Err(e) => run.failed("bench resync", &["B8"], e.as_ref()),
        }
        run.save();
    } else {
        run.skipped(&["B8"], "not selected (--only)");
    }

    if run.wants(&["B6"]) {
        eprintln!("\n== B6: store durability ==");
        match store_commits(&plan).await {
            Ok(r) => store_rows(&mut run, &plan, &r),
            Err(e) => run.failed("B6 store commits", &["B6"], e.as_ref()),
        }
        run.save();
    } else {
        run.skipped(&["B6"], "not selected (--only)");
    }

    if run.wants(&["B1", "B1q"]) {
        eprintln!("\n== B1: placement ==");
        let (sizes, spread, workloads, seed) = (
            plan.placement_sizes.clone(),
            plan.placement_spread_sites,
            plan.placement_workloads,
            opts.seed,
        );
        // The planner is synchronous: keep it off the runtime's workers.
        let r =
            tokio::task::spawn_blocking(move || placement::bench(&sizes, spread, workloads, seed))
                .await?;
        placement_rows(&mut run, &r);
        run.save();
    } else {
        run.skipped(&["B1", "B1q"], "not selected (--only)");
    }

    if run.wants(&["B9"]) {
        eprintln!("\n== B9: tenant API ==");
        match api::run(&plan.api).await {
            Ok(r) => api_rows(&mut run, &plan, &r),
            Err(e) => run.failed("bench api", &["B9"], e.as_ref()),
        }
        run.save();
    } else {
        run.skipped(&["B9"], "not selected (--only)");
    }

    if run.wants(&["B13"]) {
        eprintln!("\n== B13: workload to endpoint answering through the gateway ==");
        match super::endpoint::unavailable() {
            Some(why) => {
                for (figure, target) in B13_FIGURES {
                    run.results
                        .rows
                        .push(Row::not_measured("B13", figure, target, &why));
                }
            }
            None => match super::endpoint::run(plan.endpoint_runs).await {
                Ok(r) => endpoint_rows(&mut run, &r),
                Err(e) => run.failed("bench endpoint", &["B13"], e.as_ref()),
            },
        }
        run.save();
    } else {
        run.skipped(&["B13"], "not selected (--only)");
    }

    if run.wants(&["R9"]) {
        eprintln!("\n== R9: noisy tenant ==");
        match super::noisy::run(plan.api.seconds.clamp(2, 10)).await {
            Ok(r) => noisy_rows(&mut run, &r),
            Err(e) => run.failed("bench noisy", &["R9"], e.as_ref()),
        }
        run.save();
    } else {
        run.skipped(&["R9"], "not selected (--only)");
    }

    if run.wants(&["B11"]) {
        eprintln!("\n== B11: operator console ==");
        match console::run(&plan.console).await {
            Ok(r) => {
                println!("{r}");
                console_rows(&mut run, &r);
            }
            Err(e) => run.failed("bench console", &["B11"], e.as_ref()),
        }
        run.save();
    } else {
        run.skipped(&["B11"], "not selected (--only)");
    }

    if run.wants(&["B14"]) {
        eprintln!("\n== B14: usage accounting's cost at ingest ==");
        match accounting::run(&plan.ingest, plan.accounting_rounds).await {
            Ok(r) => {
                println!("{r}");
                accounting_rows(&mut run, &r);
            }
            Err(e) => run.failed("bench accounting", &["B14"], e.as_ref()),
        }
        run.save();
        eprintln!("\n== B14: central's /metrics ==");
        match metrics_bench::run(&plan.metrics).await {
            Ok(r) => {
                println!("{r}");
                metrics_rows(&mut run, &r);
            }
            Err(e) => run.failed("bench metrics", &["B14"], e.as_ref()),
        }
        run.save();
    } else {
        run.skipped(&["B14"], "not selected (--only)");
    }

    run.results.rows.push(Row::not_built(
        "B10",
        "zero-touch: ISO boots (qemu) to enrolled to first intent applied",
        "<= 60 s under emulation; ISO <= 64 MB; ISO build <= 20 s",
        "the zero-touch ISO is not built yet",
    ));

    if run.wants(&["R10"]) {
        eprintln!("\n== R10: fuzzing ==");
        let mut fuzz_opts = plan.fuzz.clone();
        fuzz_opts.crash_dir = Some(opts.out.join("fuzz"));
        let r = tokio::task::spawn_blocking(move || fuzz::run(&fuzz_opts)).await?;
        println!("{r}");
        fuzz_rows(&mut run, &plan, &r);
        run.save();
    } else {
        run.skipped(&["R10"], "not selected (--only)");
    }

    if run.wants(&["CAL"]) {
        eprintln!("\n== utilisation over time: reservation calendar ==");
        let overrides = scenario::Overrides {
            out_dir: Some(opts.out.clone()),
            ..scenario::Overrides::default()
        };
        match calendar::run(&plan.calendar, &overrides, &Progress::stderr()).await {
            Ok((outcome, _checks)) => {
                println!("{outcome}");
                // The scenario wrote utilisation.svg and utilisation.json into the folder.
                run.results.plots.push(calendar::plot(&outcome));
                calendar_rows(&mut run, &outcome);
            }
            Err(e) => run.failed("reservation calendar", &["CAL"], &e),
        }
    } else {
        run.results.plots_missing.push((
            "utilisation.svg".into(),
            "the reservation calendar was not selected (--only)".into(),
        ));
    }
    run.save();
    let table = run.results.table();
    let md = opts.out.join("results.md");
    std::fs::write(&md, &table)?;
    println!("\nMeridian benchmark suite ({:?} mode)", opts.mode);
    println!("{}", run.results.terminal_table());
    println!(
        "{} pass, {} miss, {} not measured, {} not built; results in {}",
        run.results.count(super::results::Verdict::Pass),
        run.results.count(super::results::Verdict::Miss),
        run.results.count(super::results::Verdict::NotMeasured),
        run.results.count(super::results::Verdict::NotBuilt),
        opts.out.display()
    );
    let ok = !run.failed;
    Ok((run.results, ok))
}

/// The calendar's rows: every reservation placed with no GPU held twice in any hour (its
/// checks, as figures), and the utilisation it reached.
fn calendar_rows(run: &mut Run<'_>, o: &calendar::Outcome) {
    let scale = format!(
        "{} reservations, {} core sites, {} GPUs",
        o.submitted, o.core_sites, o.core_gpus
    );
    run.results.rows.push(Row::check(
        "CAL",
        format!("reservation calendar: reservations not placed ({scale})"),
        (o.submitted - o.placed.min(o.submitted)) as f64,
        "reservations",
        format!("{}/{} placed", o.placed, o.submitted),
        "every reservation placed",
        Bound::AtMost(0.0),
    ));
    run.results.rows.push(
        Row::check(
            "CAL",
            "reservation calendar: GPU-hours held by two reservations",
            o.overcommitted as f64,
            "GPU-hours",
            format!("{}", o.overcommitted),
            "0 (no GPU over-committed)",
            Bound::AtMost(0.0),
        )
        .note(format!(
            "{} of {} hours with overlapping windows",
            o.overlapping_hours,
            o.utilisation_per_hour.len()
        )),
    );
    run.results.rows.push(Row::info(
        "CAL",
        "reservation calendar: core GPU utilisation over time (utilisation.svg)",
        Some(o.peak_utilisation),
        "%",
        format!(
            "peak {:.1} %, mean {:.1} %",
            o.peak_utilisation, o.mean_utilisation
        ),
    ));
}

fn scale(n: usize, of: usize) -> String {
    if n >= of {
        String::new()
    } else {
        format!("measured at {n}; the target is for {of}")
    }
}

fn with_scale(row: Row, n: usize, of: usize) -> Row {
    let s = scale(n, of);
    if s.is_empty() { row } else { row.note(s) }
}

fn channel_rows(
    run: &mut Run<'_>,
    r: &ChannelBenchReport,
    baseline: Option<Result<EtcdBenchReport, BoxError>>,
) {
    let n = r.agents;
    // etcd's run: measured, not measured (not installed, not selected), or failed to run.
    let (etcd, etcd_why) = match baseline {
        Some(Ok(b)) => (Some(b), None),
        Some(Err(e)) => {
            let chain = meridian_common::telemetry::error_chain(e.as_ref());
            if e.downcast_ref::<EtcdMissing>().is_none() {
                eprintln!("bench all: bench etcd failed: {chain}");
                run.failed = true;
                run.results
                    .errors
                    .push(("bench etcd".into(), chain.clone()));
            }
            (None, Some(chain))
        }
        None => (None, Some("not selected (--only)".to_owned())),
    };
    let rows = &mut run.results.rows;
    let measured = format!(
        "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({}/{n} acked; change committed in {:.0} ms; \
         UDP drops {})",
        ms(r.b2_p50),
        ms(r.b2_p99),
        ms(r.b2_max),
        r.b2_acked,
        ms(r.b2_committed),
        channel::drops_text(r.b2_udp_drops)
    );
    let figure = format!("intent fan-out to {n} sites, persisted + acked by all: p99");
    let karmada = "Karmada p99 1.0-1.3 s at 100 clusters (published)";
    let mut b2 = match &etcd {
        Some(e) => {
            let (ours, theirs) = (ms(r.b2_p99), ms(e.p99));
            let ratio = ours / theirs.max(1e-9);
            let mut row = Row::check(
                "B2",
                figure,
                ours,
                "ms",
                measured,
                "p99 <= 2 s (10,000 sites) and faster than etcd's watch fan-out",
                Bound::AtMost(theirs.min(2_000.0)),
            )
            .baseline(format!(
                "{} watch fan-out to {} watchers, same run: p99 {theirs:.0} ms; \
                 ours/etcd {ratio:.2}x ({karmada})",
                e.version, e.watchers
            ));
            // Faster means strictly below etcd's p99.
            if ours >= theirs {
                row.verdict = super::results::Verdict::Miss;
                row.note = Some(format!(
                    "p99 {ours:.0} ms is not below etcd's {theirs:.0} ms ({ratio:.2}x)"
                ));
            }
            row
        }
        None => Row::check(
            "B2",
            figure,
            ms(r.b2_p99),
            "ms",
            measured,
            "p99 <= 2 s (10,000 sites)",
            Bound::AtMost(2_000.0),
        )
        .baseline(karmada),
    };
    if r.b2_acked < n {
        b2.verdict = super::results::Verdict::Miss;
        b2.note = Some(format!("only {}/{n} agents acknowledged", r.b2_acked));
    }
    if b2.note.is_none() {
        b2 = with_scale(b2, n, 10_000);
    }
    rows.push(b2);
    match &etcd {
        Some(e) => rows.push(
            Row::info(
                "B2",
                format!(
                    "baseline: {} watch fan-out to {} watchers, one put each in transactions of {}: p99",
                    e.version,
                    e.watchers,
                    super::CHANGE_TXN_INTENTS
                ),
                Some(ms(e.p99)),
                "ms",
                format!(
                    "p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms ({}/{} received; last put acked at {:.0} ms)",
                    ms(e.p50),
                    ms(e.p99),
                    ms(e.max),
                    e.received,
                    e.watchers,
                    ms(e.puts_done)
                ),
            )
            .note(format!(
                "{} watch streams over {} connections; fsync on (etcd's defaults)",
                e.streams, e.connections
            )),
        ),
        None => rows.push(Row::not_measured(
            "B2",
            format!("fan-out against the etcd watch fan-out to {n} watchers"),
            "faster than etcd's watch fan-out",
            etcd_why.unwrap_or_default(),
        )),
    }
    let floor = n as f64 / r.b3_raw_rate.max(1e-9);
    match r.b3_all_back {
        Some(back) => {
            rows.push(with_scale(
                Row::check(
                    "B3",
                    format!("reconnect storm: all {n} agents back after central restarts"),
                    back.as_secs_f64(),
                    "s",
                    format!(
                        "{:.2} s ({:.0} agents/s)",
                        back.as_secs_f64(),
                        n as f64 / back.as_secs_f64()
                    ),
                    "<= 10 s (10,000 agents)",
                    Bound::AtMost(10.0),
                )
                .note(format!(
                    "central refused {} handshakes at once, sent {} Retry packets, timed out {} half-open handshakes",
                    r.b3_admission.0, r.b3_admission.1, r.b3_admission.2
                )),
                n,
                10_000,
            ));
            rows.push(
                Row::check(
                    "B3",
                    "reconnect storm against the raw quinn handshake floor",
                    back.as_secs_f64() / floor,
                    "x",
                    format!("{:.2}x", back.as_secs_f64() / floor),
                    "<= 1.5x",
                    Bound::AtMost(1.5),
                )
                .baseline(format!(
                    "raw quinn: {:.0} handshakes/s, floor {:.2} s for {n}",
                    r.b3_raw_rate, floor
                )),
            );
        }
        None => {
            let mut row = Row::check(
                "B3",
                format!("reconnect storm: all {n} agents back after central restarts"),
                f64::INFINITY,
                "s",
                "not all back within 120 s",
                "<= 10 s (10,000 agents)",
                Bound::AtMost(10.0),
            );
            row.value = None;
            rows.push(row);
        }
    }
    match r.b3_udp_drops {
        Some(d) => rows.push(Row::check(
            "B3",
            "UDP receive-buffer drops during the storm",
            d as f64,
            "datagrams",
            d.to_string(),
            "0",
            Bound::AtMost(0.0),
        )),
        None => rows.push(Row::not_measured(
            "B3",
            "UDP receive-buffer drops during the storm",
            "0",
            "/proc/net/snmp is not readable",
        )),
    }
    rows.push(with_scale(
        Row::check(
            "B4",
            format!("central memory per connected idle site ({n} sites)"),
            r.b4_bytes_per_site / 1024.0,
            "KiB",
            format!("{:.1} KiB", r.b4_bytes_per_site / 1024.0),
            "<= 64 KiB",
            Bound::AtMost(64.0),
        )
        .baseline(format!(
            "{:.2}x quinn's ~37 KiB per idle connection (published)",
            r.b4_bytes_per_site / (37.0 * 1024.0)
        )),
        n,
        10_000,
    ));
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    let why = "the meridian-agent binary was not found next to this executable \
               (cargo build --release -p meridian-agent)";
    match r.b7_rss {
        Some(rss) => rows.push(
            Row::check(
                "B7",
                "agent RSS, real binary, connected, idle",
                mib(rss),
                "MiB",
                format!("{:.1} MiB", mib(rss)),
                "<= 20 MiB",
                Bound::AtMost(20.0),
            )
            .baseline("OpenYurt YurtHub 30-40 MB (published)"),
        ),
        None => rows.push(Row::not_measured(
            "B7",
            "agent RSS, real binary, connected, idle",
            "<= 20 MiB",
            why,
        )),
    }
    match &r.b7_servers {
        Some(Ok(b)) => {
            let mut row = Row::check(
                "B7",
                format!(
                    "agent RSS, real binary, with {} servers reporting (peak in the window)",
                    b.servers
                ),
                mib(b.rss),
                "MiB",
                format!(
                    "{:.1} MiB, CPU {:.1} % of a core over {:.1} s ({} Redfish requests, \
                     resync every {} ms; inventory of all {} Available at central in {:.1} s)",
                    mib(b.rss),
                    b.cpu_pct,
                    b.window.as_secs_f64(),
                    b.bmc_requests,
                    b.resync.as_millis(),
                    b.servers,
                    b.inventoried.as_secs_f64()
                ),
                "<= 32 MiB at 100 servers",
                Bound::AtMost(32.0),
            )
            .baseline(r.b7_rss.map_or("idle: not measured".into(), |idle| {
                format!("idle, same binary, same run: {:.1} MiB", mib(idle))
            }));
            if b.servers < 100 {
                row.note = Some(format!(
                    "measured at {} servers; the target is for 100",
                    b.servers
                ));
            }
            rows.push(row);
        }
        Some(Err(e)) => {
            run.failed = true;
            run.results
                .errors
                .push(("B7 with 100 servers".into(), e.clone()));
            rows.push(Row::not_measured(
                "B7",
                "agent RSS with 100 servers reporting",
                "<= 32 MiB",
                format!("failed to run: {e}"),
            ));
        }
        None => rows.push(Row::not_measured(
            "B7",
            "agent RSS with 100 servers reporting",
            "<= 32 MiB",
            why,
        )),
    }
    match r.b7_cpu_pct {
        Some(c) => rows.push(Row::check(
            "B7",
            "agent idle CPU",
            c,
            "% of a core",
            format!("{c:.2} % of a core"),
            "<= 0.5 %",
            Bound::AtMost(0.5),
        )),
        None => rows.push(Row::not_measured("B7", "agent idle CPU", "<= 0.5 %", why)),
    }
    match r.b7_binary_stripped.or(r.b7_binary) {
        Some(b) => rows.push(Row::check(
            "B7",
            if r.b7_binary_stripped.is_some() {
                "agent binary size (stripped)"
            } else {
                "agent binary size (not stripped)"
            },
            b as f64 / 1e6,
            "MB",
            format!("{:.1} MB", b as f64 / 1e6),
            "<= 25 MB",
            Bound::AtMost(25.0),
        )),
        None => rows.push(Row::not_measured(
            "B7",
            "agent binary size",
            "<= 25 MB",
            why,
        )),
    }

    // Plots: the fan-out distribution and the reconnect curve.
    let total = r.b2_samples.len().max(1) as f64;
    let cdf: Vec<(f64, f64)> = r
        .b2_samples
        .iter()
        .enumerate()
        .map(|(i, d)| (ms(*d), (i + 1) as f64 / total * 100.0))
        .collect();
    let p99 = if r.b2_samples.is_empty() {
        f64::NAN
    } else {
        ms(percentile(&r.b2_samples, 0.99))
    };
    let mut series = vec![Series {
        name: format!("Meridian over QUIC, persisted + acked (p99 {p99:.0} ms)"),
        points: thin(cdf, 600),
    }];
    if let Some(e) = etcd.as_ref().filter(|e| !e.samples.is_empty()) {
        let total = e.samples.len() as f64;
        let cdf: Vec<(f64, f64)> = e
            .samples
            .iter()
            .enumerate()
            .map(|(i, d)| (ms(*d), (i + 1) as f64 / total * 100.0))
            .collect();
        series.push(Series {
            name: format!(
                "{} watch event received (baseline, same run; p99 {:.0} ms)",
                e.version,
                ms(e.p99)
            ),
            points: thin(cdf, 600),
        });
    }
    run.plot(
        PlotData {
            file: "b2-fanout-latency.svg".into(),
            title: format!(
                "B2 intent fan-out to {n} sites: time until each site's agent persisted and acked"
            ),
            x_label: "time since the change (ms)".into(),
            y_label: "sites acknowledged / etcd watchers notified (%)".into(),
            series,
        },
        &[Marker {
            y: 99.0,
            label: "99 %".into(),
        }],
    );
    let mut curve: Vec<(f64, f64)> = r
        .b3_curve
        .iter()
        .map(|(t, c)| (t.as_secs_f64(), *c as f64))
        .collect();
    if let Some(back) = r.b3_all_back {
        curve.push((back.as_secs_f64(), n as f64));
    }
    let raw: Vec<(f64, f64)> = std::iter::once((0.0, 0.0))
        .chain(
            r.b3_raw_curve
                .iter()
                .enumerate()
                .map(|(i, t)| (t.as_secs_f64(), (i + 1) as f64)),
        )
        .collect();
    run.plot(
        PlotData {
            file: "b3-reconnect.svg".into(),
            title: format!("B3 reconnect storm: {n} agents back after central restarts"),
            x_label: "time since central restarted (s)".into(),
            y_label: "agents with a session".into(),
            series: vec![
                Series {
                    name: "Meridian agents back (session + resync)".into(),
                    points: thin(curve, 600),
                },
                Series {
                    name: "raw quinn handshakes completed (baseline, same run)".into(),
                    points: thin(raw, 600),
                },
            ],
        },
        &[Marker {
            y: n as f64,
            label: format!("all {n}"),
        }],
    );
}

fn ingest_rows(run: &mut Run<'_>, r: &IngestBenchReport) {
    let agents = format!("{} agents x {} reports a batch", r.agents, r.batch);
    let (sat, paced) = (&r.saturated, &r.paced);
    let offered = paced.offered.unwrap_or(0.0);
    let mut rate = Row::check(
        "B5",
        format!("report ingest at central, saturated ({agents})"),
        sat.per_second,
        "reports/s",
        format!(
            "{:.0} reports/s ({} in {:.1} s; ack p99 {:.0} ms queued)",
            sat.per_second,
            sat.reports,
            sat.elapsed.as_secs_f64(),
            ms(sat.ack_p99)
        ),
        ">= 50,000 reports/s",
        Bound::AtLeast(50_000.0),
    )
    .baseline("etcd 44-50k writes/s on 3x8 vCPU (published)")
    .note(ingest::METHOD);
    let mut p99 = Row::check(
        "B5",
        format!("report ingest: durable ack p99 at {offered:.0} reports/s offered"),
        ms(paced.ack_p99),
        "ms",
        format!(
            "p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({:.0}/s kept)",
            ms(paced.ack_p50),
            ms(paced.ack_p99),
            ms(paced.ack_max),
            paced.per_second
        ),
        "<= 20 ms",
        Bound::AtMost(20.0),
    );
    if offered < 50_000.0 {
        p99.note = Some(format!(
            "offered {offered:.0}/s in this mode; the target is at 50,000/s"
        ));
    }
    if !paced.kept_up() {
        p99.verdict = super::results::Verdict::Miss;
        p99.note = Some(format!(
            "central kept up with {:.0} of {offered:.0} reports/s offered",
            paced.per_second
        ));
    }
    if r.failed_agents > 0 || r.verified_agents < r.agents {
        let why = format!(
            "{} sessions failed; central's stored marks match {}/{} agents{}",
            r.failed_agents,
            r.verified_agents,
            r.agents,
            r.first_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        );
        for row in [&mut rate, &mut p99] {
            row.verdict = super::results::Verdict::Miss;
            row.note = Some(why.clone());
        }
    }
    run.results.rows.push(rate);
    run.results.rows.push(p99);
}

fn resync_rows(run: &mut Run<'_>, r: &ResyncBenchReport) {
    let g = r.generations;
    let mut trips = Row::check(
        "B8",
        format!("offline resync after {g} missed generations: round trips"),
        r.round_trips() as f64,
        "round trips",
        format!(
            "{} ({} session, {} push){}",
            r.round_trips(),
            r.sessions,
            r.pushes,
            r.timed_round_trips().map_or(String::new(), |t| format!(
                "; Hello to persisted {t:.2} RTT of {:.0} ms",
                ms(r.rtt)
            ))
        ),
        "one round trip",
        Bound::AtMost(1.0),
    )
    .baseline("KubeEdge resends every delta since the last ack (published)");
    let mut snapshots = Row::check(
        "B8",
        "offline resync: snapshots received",
        r.pushes as f64,
        "snapshots",
        format!("{} (held {} of newest {})", r.pushes, r.held, r.newest),
        "one snapshot",
        Bound::AtMost(1.0),
    );
    let bytes = Row::check(
        "B8",
        "offline resync: bytes received on the session",
        r.push_bytes as f64,
        "B",
        format!(
            "{} B for a {} B snapshot (+{} B); {} B on the wire incl. QUIC handshake",
            r.push_bytes,
            r.snapshot_bytes,
            r.push_bytes as i64 - r.snapshot_bytes as i64,
            r.wire_to_agent_bytes
        ),
        "<= snapshot + 1 KiB",
        Bound::AtMost((r.snapshot_bytes + 1024) as f64),
    );
    if r.held != r.newest || r.pushes == 0 {
        for row in [&mut trips, &mut snapshots] {
            row.verdict = super::results::Verdict::Miss;
            row.note = Some(format!(
                "the agent holds generation {}, not the newest {}",
                r.held, r.newest
            ));
        }
    }
    run.results.rows.extend([trips, snapshots, bytes]);
}

/// B6: median of `store_runs` runs each of single commit and group commit.
async fn store_commits(
    plan: &Plan,
) -> Result<(Vec<commit::CommitRate>, Vec<commit::CommitRate>), BoxError> {
    let mut single = Vec::new();
    let mut group = Vec::new();
    for i in 0..plan.store_runs.max(1) {
        let dir = tempfile::tempdir()?;
        let s = commit::measure(&dir.path().join("single"), false, 1, plan.store_seconds).await?;
        let g = commit::measure(
            &dir.path().join("group"),
            true,
            plan.store_writers,
            plan.store_seconds,
        )
        .await?;
        println!(
            "B6 run {i}: single {:.0} commits/s (p99 {:.2} ms), group x{} {:.0} commits/s (p99 {:.2} ms)",
            s.per_second,
            ms(s.p99),
            plan.store_writers,
            g.per_second,
            ms(g.p99)
        );
        single.push(s);
        group.push(g);
    }
    Ok((single, group))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn store_rows(
    run: &mut Run<'_>,
    plan: &Plan,
    (single, group): &(Vec<commit::CommitRate>, Vec<commit::CommitRate>),
) {
    let s = median(single.iter().map(|r| r.per_second).collect());
    let g = median(group.iter().map(|r| r.per_second).collect());
    let gp99 = median(group.iter().map(|r| ms(r.p99)).collect());
    run.results.rows.push(
        Row::check(
            "B6",
            format!(
                "durable commits/s with group commit ({} writers, median of {} runs)",
                plan.store_writers,
                group.len()
            ),
            g,
            "commits/s",
            format!("{g:.0}/s (p99 {gp99:.2} ms)"),
            ">= 2,000 durable commits/s",
            Bound::AtLeast(2_000.0),
        )
        .baseline(format!(
            "single commit (1 writer, 1 flush each): {s:.0}/s; group/single {:.1}x",
            g / s.max(1e-9)
        )),
    );
    run.results.rows.push(Row::not_measured(
        "B6",
        "0 lost acknowledged writes over 1,000 kill -9",
        "0 lost",
        "a crash test, not a timing: MERIDIAN_CRASH_KILLS=1000 cargo test -p meridian-central --test store_crash",
    ));
}

fn placement_rows(run: &mut Run<'_>, r: &PlacementBenchReport) {
    let h = r.headline();
    let rows = &mut run.results.rows;
    rows.push(with_scale(
        Row::check(
            "B1",
            format!(
                "placement throughput, single replica, latency + residency + data, commit included, one core ({} sites)",
                h.sites
            ),
            h.per_second,
            "placements/s",
            format!("{:.0}/s ({}/{} placed)", h.per_second, h.placed, h.decisions),
            ">= 20,000 placements/s",
            Bound::AtLeast(20_000.0),
        )
        .baseline("Nomad C1M 3,750/s; kube-scheduler 100-400 pods/s (published)"),
        h.sites,
        10_000,
    ));
    rows.push(with_scale(
        Row::check(
            "B1",
            format!("placement decision p99 ({} sites)", h.sites),
            h.p99.as_secs_f64() * 1e6,
            "us",
            format!(
                "p50 {:.1} us, p99 {:.1} us",
                h.p50.as_secs_f64() * 1e6,
                h.p99.as_secs_f64() * 1e6
            ),
            "<= 1 ms",
            Bound::AtMost(1_000.0),
        ),
        h.sites,
        10_000,
    ));
    rows.push(Row::info(
        "B1",
        format!(
            "placement, 8-replica spread workloads ({} sites)",
            r.spread.sites
        ),
        Some(r.spread.per_second),
        "placements/s",
        format!(
            "{:.0}/s, p99 {:.1} us",
            r.spread.per_second,
            r.spread.p99.as_secs_f64() * 1e6
        ),
    ));
    rows.push(Row::not_measured(
        "B1q",
        "placement quality against the exhaustive optimum, 1,000 instances",
        "within 2 % of optimum; 0 hard-constraint violations",
        "a property test, not a timing: cargo test --release -p meridian-sim --test placement_optimality --test placement_properties",
    ));
    let mean: Vec<(f64, f64)> = r
        .growth
        .iter()
        .map(|x| (x.sites as f64, 1e6 / x.per_second))
        .collect();
    let p99: Vec<(f64, f64)> = r
        .growth
        .iter()
        .map(|x| (x.sites as f64, x.p99.as_secs_f64() * 1e6))
        .collect();
    run.plot(
        PlotData {
            file: "b1-placement-growth.svg".into(),
            title: "B1 placement cost against fleet size (one core, commit included)".into(),
            x_label: "sites in the fleet".into(),
            y_label: "time per decision (us)".into(),
            series: vec![
                Series {
                    name: "mean (1 / throughput)".into(),
                    points: mean,
                },
                Series {
                    name: "p99".into(),
                    points: p99,
                },
            ],
        },
        &[Marker {
            y: 50.0,
            label: "50 us mean = 20,000 placements/s".into(),
        }],
    );
}

fn api_rows(run: &mut Run<'_>, plan: &Plan, r: &api::ApiBenchReport) {
    let Some(health) = r.phases.first() else {
        return;
    };
    let sites = plan.api.sites;
    for phase in r.phases.iter().skip(1) {
        let ratio = phase.per_second / health.per_second.max(1e-9);
        let mut rate = Row::check(
            "B9",
            format!("tenant API {} ({sites} sites)", phase.name),
            phase.per_second,
            "req/s",
            format!("{:.0} req/s ({} errors)", phase.per_second, phase.errors),
            ">= 20,000 req/s",
            Bound::AtLeast(20_000.0),
        )
        .baseline(format!(
            "health check through the same server: {:.0} req/s; {ratio:.2}x of it",
            health.per_second
        ));
        let mut p99 = Row::check(
            "B9",
            format!("tenant API {}: p99", phase.name),
            ms(phase.p99),
            "ms",
            format!("p50 {:.2} ms, p99 {:.2} ms", ms(phase.p50), ms(phase.p99)),
            "<= 5 ms",
            Bound::AtMost(5.0),
        );
        if phase.errors > 0 {
            for row in [&mut rate, &mut p99] {
                row.verdict = super::results::Verdict::Miss;
                row.note = Some(format!("{} requests failed", phase.errors));
            }
        }
        run.results.rows.push(rate);
        run.results.rows.push(p99);
    }
}

/// B14: ingest capacity with usage accounting over without it, and the paced p99 of each.
fn accounting_rows(run: &mut Run<'_>, r: &AccountingReport) {
    let (on, off) = r.p99_on_off();
    let agents = r.on.first().map_or(0, |x| x.agents);
    run.results.rows.push(
        Row::check(
            "B14",
            format!("usage accounting at ingest: capacity on / off ({agents} agents, saturated)"),
            r.capacity_ratio(),
            "x",
            format!(
                "{:.3}; paced ack p99 median {on:.2} ms on, {off:.2} ms off",
                r.capacity_ratio()
            ),
            ">= 0.90 (at most 10 % cost)",
            Bound::AtLeast(0.90),
        )
        .baseline(format!(
            "B5 with channel.metering = false, alternated in the same run ({} runs each)",
            r.off.len()
        ))
        .note(
            "1 allocation start and 1 end in every 16 reports; median of the runs, min/max printed \
             by bench all",
        ),
    );
}

/// B14, central's `/metrics`: a scrape that computes the fleet gauges from the store (the
/// worst case, once per cache period), a cached scrape, and the answer's size.
fn metrics_rows(run: &mut Run<'_>, r: &MetricsBenchReport) {
    let fleet = format!(
        "{} sites, {} servers, {} GPUs, {} placements",
        r.sites, r.servers, r.gpus, r.placements
    );
    let at_scale = |note: String| {
        let s = scale(r.sites, 10_000);
        if s.is_empty() {
            note
        } else {
            format!("{s}; {note}")
        }
    };
    let worst = r.computed.last().copied().unwrap_or_default().max(r.first);
    let rows = &mut run.results.rows;
    rows.push(
        Row::check(
            "B14",
            format!(
                "GET /metrics computing the fleet gauges from the store ({} sites): worst",
                r.sites
            ),
            ms(worst),
            "ms",
            format!(
                "computing {}; first scrape {:.1} ms",
                super::spread_ms(&r.computed),
                ms(r.first)
            ),
            "<= 1 s",
            Bound::AtMost(1_000.0),
        )
        .note(at_scale(format!(
            "{fleet}; at most once per metrics.fleet_cache_ms (5 s), whatever the scrape rate"
        ))),
    );
    rows.push(Row::info(
        "B14",
        format!(
            "GET /metrics, gauges cached ({} sites, {} scrapes): median",
            r.sites,
            r.cached.len()
        ),
        Some(ms(percentile(&r.cached, 0.5))),
        "ms",
        super::spread_ms(&r.cached),
    ));
    rows.push(
        Row::check(
            "B14",
            format!("GET /metrics answer size ({} sites)", r.sites),
            r.bytes as f64,
            "B",
            format!("{} B, {} samples", r.bytes, r.series),
            "<= 10 MB",
            Bound::AtMost(10_000_000.0),
        )
        .note(at_scale(
            "label cardinality does not grow with sites".into(),
        )),
    );
}

/// B11: the fleet page's render time and weight, and the live-update fan-out.
fn console_rows(run: &mut Run<'_>, r: &ConsoleBenchReport) {
    let sites = r.sites;
    let at_scale = |note: String| {
        let s = scale(sites, 10_000);
        if s.is_empty() {
            note
        } else {
            format!("{s}; {note}")
        }
    };
    let rows = &mut run.results.rows;
    let p99 = percentile(&r.renders, 0.99);
    rows.push(
        Row::check(
            "B11",
            format!(
                "console fleet page, GET /fleet to the full answer ({sites} sites, {} renders): p99",
                r.renders.len()
            ),
            ms(p99),
            "ms",
            super::spread_ms(&r.renders),
            "p99 <= 1 s",
            Bound::AtMost(1_000.0),
        )
        .baseline(format!(
            "fresh TCP + TLS handshake per request: {}",
            super::spread_ms(&r.fresh_renders)
        ))
        .note(at_scale(
            "HTTPS on loopback over one kept-alive HTTP/1.1 connection (hyper's http1 client over \
             tokio-rustls), logged in with an API token; the client runs on its own runtime"
                .into(),
        )),
    );
    rows.push(
        Row::check(
            "B11",
            format!("console fleet page weight ({sites} sites)"),
            r.page_bytes as f64,
            "B",
            format!(
                "{} B ({:.1} KiB)",
                r.page_bytes,
                r.page_bytes as f64 / 1024.0
            ),
            "<= 1 MB",
            Bound::AtMost(1_000_000.0),
        )
        .note(at_scale(
            "uncompressed HTML as sent: every site on the inline SVG map, the first 50 rows of the list"
                .into(),
        )),
    );
    let done = |q: f64| {
        if r.stream_done.is_empty() {
            0.0
        } else {
            ms(percentile(&r.stream_done, q))
        }
    };
    let expected = (r.streams * r.changes) as u64;
    let mut fanout = Row::check(
        "B11",
        format!(
            "live updates: {} site state changes to {} SSE streams, until every stream has all: max",
            r.changes, r.streams
        ),
        ms(r.total),
        "ms",
        format!(
            "per stream min {:.1} ms, median {:.1} ms, max {:.1} ms; {} of {expected} events, {:.0} events/s",
            done(0.0),
            done(0.5),
            done(1.0),
            r.delivered,
            r.events_per_second()
        ),
        "a site state change on screen <= 2 s over SSE",
        Bound::AtMost(2_000.0),
    )
    .note(format!(
        "from the first write: the changes in transactions of {}, one after another, all committed in {:.1} ms; \
         each stream its own HTTPS connection, all connected and past a probe event before the writes",
        r.per_txn,
        ms(r.written)
    ));
    let mut latency = Row::check(
        "B11",
        "live updates: one site's state change, write to event received on a stream: p99",
        if r.delivery.is_empty() {
            ms(r.total)
        } else {
            ms(percentile(&r.delivery, 0.99))
        },
        "ms",
        super::spread_ms(&r.delivery),
        "a site state change on screen <= 2 s over SSE",
        Bound::AtMost(2_000.0),
    )
    .note(
        "from the start of the change's transaction to the event read by the client, over every \
         change and stream; the browser's script applying it is not included",
    );
    if !r.all_delivered() {
        for row in [&mut fanout, &mut latency] {
            row.verdict = super::results::Verdict::Miss;
            row.note = Some(format!(
                "{}/{} streams received every change; {} reload events",
                r.complete, r.streams, r.reloads
            ));
        }
    }
    rows.push(fanout);
    rows.push(latency);
}

/// B13's figures and targets, also for the rows of a run that cannot measure them.
const B13_FIGURES: [(&str, &str); 2] = [
    (
        "CreateWorkload to the endpoint answering through the gateway (two-site kernel lab): p99",
        "<= 5 s",
    ),
    (
        "agent RSS, real binary, gateway serving 50 tenants",
        "<= 32 MiB (B7's bound)",
    ),
];

fn endpoint_rows(run: &mut Run<'_>, r: &super::endpoint::EndpointReport) {
    let (figure, target) = B13_FIGURES[0];
    if r.samples.is_empty() {
        run.results
            .rows
            .push(Row::not_measured("B13", figure, target, "no run finished"));
    } else {
        let p50 = percentile(&r.samples, 0.5);
        let p99 = percentile(&r.samples, 0.99);
        let (min, max) = (r.samples[0], r.samples[r.samples.len() - 1]);
        let applied = if r.applied.is_empty() {
            "applied: not measured".to_owned()
        } else {
            format!(
                "the site reported the intent applied (servers' BMC power-on included) after p50 {:.2} s, p99 {:.2} s",
                percentile(&r.applied, 0.5).as_secs_f64(),
                percentile(&r.applied, 0.99).as_secs_f64()
            )
        };
        run.results.rows.push(Row::check(
            "B13",
            format!("{figure} ({} runs)", r.samples.len()),
            p99.as_secs_f64(),
            "s",
            format!(
                "p50 {:.2} s, p99 {:.2} s (min {:.2} s, max {:.2} s)",
                p50.as_secs_f64(),
                p99.as_secs_f64(),
                min.as_secs_f64(),
                max.as_secs_f64()
            ),
            target,
            Bound::AtMost(5.0),
        ).note(format!("the tenant's server starts in the replica's namespace as soon as the agent made it (no container runtime); {applied}")));
    }
    let (figure, target) = B13_FIGURES[1];
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    match r.rss {
        Some(rss) => run.results.rows.push(Row::check(
            "B13",
            figure,
            mib(rss),
            "MiB",
            format!(
                "{:.1} MiB ({} tenant networks and exposures applied; peak {:.1} MiB)",
                mib(rss),
                r.tenants,
                r.rss_peak.map_or(0.0, mib)
            ),
            target,
            Bound::AtMost(32.0),
        )),
        None => run.results.rows.push(Row::not_measured(
            "B13",
            figure,
            target,
            "the agent's memory could not be read",
        )),
    }
}

fn noisy_rows(run: &mut Run<'_>, r: &super::noisy::NoisyReport) {
    let floods = [
        (
            format!(
                "another tenant sends {:.0}x its limit",
                r.flood_rate / r.limit
            ),
            r.flooded,
        ),
        (
            format!("another address sends {:.0} bad tokens/s", r.bad_token_rate),
            r.bad_token_flooded,
        ),
    ];
    let (alone_ok, alone_n, alone_p99) = r.alone;
    for (what, (ok, n, p99)) in floods {
        let share = 100.0 * ok as f64 / n.max(1) as f64;
        run.results.rows.push(
            Row::check(
                "R9",
                format!("quiet tenant's success while {what}"),
                share,
                "%",
                format!("{ok}/{n} ok"),
                ">= 99.9 %",
                Bound::AtLeast(99.9),
            )
            .baseline(format!("alone: {alone_ok}/{alone_n} ok")),
        );
        let ratio = p99.as_secs_f64() / alone_p99.as_secs_f64().max(1e-9);
        run.results.rows.push(
            Row::check(
                "R9",
                format!("quiet tenant's p99 while {what}, vs alone"),
                ratio,
                "x",
                format!("{:.2} ms vs {:.2} ms ({ratio:.2}x)", ms(p99), ms(alone_p99)),
                "<= 1.5x",
                Bound::AtMost(1.5),
            )
            .baseline(format!("alone, same run: p99 {:.2} ms", ms(alone_p99))),
        );
    }
}

fn fuzz_rows(run: &mut Run<'_>, plan: &Plan, r: &FuzzReport) {
    for t in &r.targets {
        let mut row = Row::check(
            "R10",
            format!("fuzz {}: {}", t.name, t.decoder),
            (t.crashes + t.hangs) as f64,
            "crashes + hangs",
            format!(
                "{} execs ({:.0}/s), {} crashes, {} hangs",
                t.executions,
                t.rate(),
                t.crashes,
                t.hangs
            ),
            ">= 1e6 executions; 0 crashes, hangs or OOM",
            Bound::AtMost(0.0),
        );
        if t.executions < plan.fuzz_required {
            row.verdict = super::results::Verdict::Miss;
            row.note = Some(format!(
                "{} of {} executions",
                t.executions, plan.fuzz_required
            ));
        } else if plan.fuzz_required < 1_000_000 {
            row.note = Some(format!(
                "{} executions in this mode; the target asks 1e6",
                plan.fuzz_required
            ));
        }
        if !t.findings.is_empty() {
            row.note = Some(t.findings.join("; "));
        }
        run.results.rows.push(row);
    }
}

/// Where results go by default.
pub fn default_out() -> PathBuf {
    Path::new("results").to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_the_bound() {
        let pts: Vec<(f64, f64)> = (0..1000).map(|i| (i as f64, i as f64)).collect();
        let t = thin(pts.clone(), 100);
        assert_eq!(t.len(), 100);
        assert_eq!(t.first(), Some(&(0.0, 0.0)));
        assert_eq!(t.last(), Some(&(999.0, 999.0)));
        assert_eq!(thin(pts[..10].to_vec(), 100).len(), 10);
    }

    #[test]
    fn tiny_fleets_can_draw_placement_requests() {
        // `placement::requests` draws until a tenant is allowed in the drawn region.
        use crate::fleet::{self, FleetSpec};
        for &sites in &Plan::of(Mode::Tiny, 42).placement_sizes {
            let f = fleet::generate(&FleetSpec::with_sites(42, sites));
            assert!(
                f.tenants
                    .iter()
                    .any(|t| f.regions.iter().any(|r| t.residency.allows(r.country))),
                "{sites} sites"
            );
        }
    }

    #[test]
    fn every_mode_has_a_plan_and_full_is_the_benchmark_fleet() {
        let full = Plan::of(Mode::Full, 1);
        assert_eq!(full.channel.agents, 10_000);
        assert!(full.placement_sizes.contains(&10_000));
        assert!(full.fuzz.executions >= 1_000_000);
        assert_eq!(full.resync.generations, 1_000);
        assert_eq!(full.console.sites, 10_000);
        let quick = Plan::of(Mode::Quick, 1);
        assert_eq!(quick.console.sites, 1_000);
        assert_eq!((quick.console.streams, quick.console.changes), (100, 1_000));
        assert_eq!(quick.resync.generations, 1_000);
        assert!(Plan::of(Mode::Tiny, 1).channel.agents < 100);
    }
}
