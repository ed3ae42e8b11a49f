//! The benchmark suite's results as data: one [`Row`] per figure of TARGETS.md, with its target,
//! the baseline measured in the same run where the target is a ratio, and a verdict; plus the
//! series the plots are drawn from. Written as `results.json` and printed as one table.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// How a measured figure compares with its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Measured and within the target.
    Pass,
    /// Measured and outside the target.
    Miss,
    /// Has a target, but this run did not measure it (the reason is in the row's note).
    NotMeasured,
    /// The feature the figure needs is not built yet.
    NotBuilt,
    /// A figure shown for context, with no target of its own.
    Info,
}

impl Verdict {
    /// How the table shows it.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Miss => "MISS",
            Verdict::NotMeasured => "not measured",
            Verdict::NotBuilt => "not built",
            Verdict::Info => "-",
        }
    }
}

/// A numeric target: the measured value must be at most or at least `limit`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Bound {
    /// `value <= limit`.
    AtMost(f64),
    /// `value >= limit`.
    AtLeast(f64),
}

impl Bound {
    /// Whether `value` meets the bound.
    pub fn met(self, value: f64) -> bool {
        match self {
            Bound::AtMost(limit) => value <= limit,
            Bound::AtLeast(limit) => value >= limit,
        }
    }
}

/// One figure.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// The TARGETS.md id (`B2`, `R10`).
    pub id: String,
    /// What was measured, with the scale it was measured at.
    pub figure: String,
    /// The measured number, in `unit` (absent when not measured).
    pub value: Option<f64>,
    /// Unit of `value` (`ms`, `placements/s`, `KiB`).
    pub unit: String,
    /// The measurement as shown in the table.
    pub measured: String,
    /// The target as written in TARGETS.md.
    pub target: String,
    /// The numeric form of the target, where it has one.
    pub bound: Option<Bound>,
    /// The baseline measured in the same run, and the ratio against it.
    pub baseline: Option<String>,
    /// The verdict.
    pub verdict: Verdict,
    /// Anything a reader must know to trust the figure (scale, method, why not measured).
    pub note: Option<String>,
}

impl Row {
    /// A measured figure checked against `bound`.
    pub fn check(
        id: &str,
        figure: impl Into<String>,
        value: f64,
        unit: &str,
        measured: impl Into<String>,
        target: &str,
        bound: Bound,
    ) -> Row {
        Row {
            id: id.into(),
            figure: figure.into(),
            value: Some(value),
            unit: unit.into(),
            measured: measured.into(),
            target: target.into(),
            bound: Some(bound),
            baseline: None,
            verdict: if bound.met(value) {
                Verdict::Pass
            } else {
                Verdict::Miss
            },
            note: None,
        }
    }

    /// A figure shown for context.
    pub fn info(
        id: &str,
        figure: impl Into<String>,
        value: Option<f64>,
        unit: &str,
        measured: impl Into<String>,
    ) -> Row {
        Row {
            id: id.into(),
            figure: figure.into(),
            value,
            unit: unit.into(),
            measured: measured.into(),
            target: "-".into(),
            bound: None,
            baseline: None,
            verdict: Verdict::Info,
            note: None,
        }
    }

    /// A figure with a target that this run did not measure, and why.
    pub fn not_measured(
        id: &str,
        figure: impl Into<String>,
        target: &str,
        why: impl Into<String>,
    ) -> Row {
        Row {
            id: id.into(),
            figure: figure.into(),
            value: None,
            unit: String::new(),
            measured: "not measured".into(),
            target: target.into(),
            bound: None,
            baseline: None,
            verdict: Verdict::NotMeasured,
            note: Some(why.into()),
        }
    }

    /// A figure whose feature is not built yet.
    pub fn not_built(id: &str, figure: impl Into<String>, target: &str, what: &str) -> Row {
        Row {
            id: id.into(),
            figure: figure.into(),
            value: None,
            unit: String::new(),
            measured: "not built".into(),
            target: target.into(),
            bound: None,
            baseline: None,
            verdict: Verdict::NotBuilt,
            note: Some(what.into()),
        }
    }

    /// Adds the baseline measured in the same run.
    pub fn baseline(mut self, baseline: impl Into<String>) -> Row {
        self.baseline = Some(baseline.into());
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Row {
        self.note = Some(note.into());
        self
    }
}

/// Points of one line of a plot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Series {
    /// Legend text.
    pub name: String,
    /// `(x, y)` points, in x order.
    pub points: Vec<(f64, f64)>,
}

/// The data of one plot, kept in the JSON beside the SVG drawn from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlotData {
    /// File name of the SVG in the results folder.
    pub file: String,
    /// Title.
    pub title: String,
    /// X axis label, with unit.
    pub x_label: String,
    /// Y axis label, with unit.
    pub y_label: String,
    /// The lines.
    pub series: Vec<Series>,
}

/// How big a run was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Smoke-test sizes (seconds): checks that every benchmark runs; figures mean nothing.
    Tiny,
    /// Minutes on the project machine: 1,000 agents, fleets up to 10,000 sites, 1e6 fuzz
    /// executions per target.
    Quick,
    /// The benchmark fleet: 10,000 sites and agents, 1e7 fuzz executions per target.
    Full,
}

/// Everything one run of the suite produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteResults {
    /// Version of the simulator that ran.
    pub version: String,
    /// The mode.
    pub mode: Mode,
    /// Seed of the fleet and the workloads.
    pub seed: u64,
    /// Start, unix millis.
    pub started_unix_ms: i64,
    /// Wall time of the whole run, seconds.
    pub seconds: f64,
    /// Where it ran.
    pub machine: Machine,
    /// Every figure.
    pub rows: Vec<Row>,
    /// Every plot's data.
    pub plots: Vec<PlotData>,
    /// Plots that were asked for but had no data in this run, with why.
    pub plots_missing: Vec<(String, String)>,
    /// Benchmarks that failed to run, with the error chain.
    pub errors: Vec<(String, String)>,
}

/// The machine a run measured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Machine {
    /// Logical CPUs.
    pub cpus: usize,
    /// Total memory, bytes (0 if unknown).
    pub memory_bytes: u64,
    /// Whether the simulator was built with optimisations (figures of a debug build mean
    /// little).
    pub optimised: bool,
}

impl Machine {
    /// This machine.
    pub fn this() -> Machine {
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?.to_owned();
                line.split_whitespace().nth(1)?.parse::<u64>().ok()
            })
            .map_or(0, |kb| kb * 1024);
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            optimised: !cfg!(debug_assertions),
        }
    }
}

fn cell(text: &str, width: usize) -> String {
    let n = text.chars().count();
    if n <= width {
        format!("{text:<width$}")
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('~');
        s
    }
}

impl SuiteResults {
    /// The table printed at the end of a run (also pasted into `docs/benchmarks.md`): one
    /// markdown row per figure.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| id | figure | measured | target | baseline (same run) | verdict |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for r in &self.rows {
            let md = |s: &str| s.replace('|', "\\|");
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                md(&r.id),
                md(&r.figure),
                md(&r.measured),
                md(&r.target),
                md(r.baseline.as_deref().unwrap_or("-")),
                r.verdict.label()
            );
        }
        out
    }

    /// A narrower, aligned table for the terminal.
    pub fn terminal_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} {} {} {} verdict",
            cell("id", 5),
            cell("figure", 58),
            cell("measured", 44),
            cell("target", 24),
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{} {} {} {} {}",
                cell(&r.id, 5),
                cell(&r.figure, 58),
                cell(&r.measured, 44),
                cell(&r.target, 24),
                r.verdict.label()
            );
            if let Some(b) = &r.baseline {
                let _ = writeln!(out, "{} baseline: {b}", cell("", 64));
            }
        }
        out
    }

    /// Counts of each verdict.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.rows.iter().filter(|r| r.verdict == verdict).count()
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("plain data serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> SuiteResults {
        SuiteResults {
            version: "0.1.0".into(),
            mode: Mode::Tiny,
            seed: 42,
            started_unix_ms: 1,
            seconds: 2.5,
            machine: Machine {
                cpus: 2,
                memory_bytes: 1 << 30,
                optimised: false,
            },
            rows: vec![
                Row::check(
                    "B2",
                    "fan-out p99 | 20 agents",
                    12.0,
                    "ms",
                    "12 ms",
                    "p99 <= 2 s",
                    Bound::AtMost(2000.0),
                )
                .baseline("etcd: not measured"),
                Row::check(
                    "B1",
                    "placements/s",
                    10.0,
                    "placements/s",
                    "10/s",
                    ">= 20,000/s",
                    Bound::AtLeast(20_000.0),
                ),
                Row::not_built("B10", "zero-touch ISO", "<= 60 s", "no ISO builder yet"),
                Row::not_measured("B2", "etcd watch fan-out", "faster", "no etcd here"),
            ],
            plots: vec![PlotData {
                file: "b2.svg".into(),
                title: "t".into(),
                x_label: "x".into(),
                y_label: "y".into(),
                series: vec![Series {
                    name: "s".into(),
                    points: vec![(0.0, 1.0), (1.0, f64::from(2u8))],
                }],
            }],
            plots_missing: vec![("util.svg".into(), "no data".into())],
            errors: vec![],
        }
    }

    #[test]
    fn verdicts_follow_the_bounds() {
        let s = sample();
        assert_eq!(s.rows[0].verdict, Verdict::Pass);
        assert_eq!(s.rows[1].verdict, Verdict::Miss);
        assert_eq!(s.count(Verdict::NotBuilt), 1);
        assert!(Bound::AtMost(1.0).met(1.0) && !Bound::AtMost(1.0).met(1.01));
        assert!(Bound::AtLeast(1.0).met(1.0) && !Bound::AtLeast(1.0).met(0.99));
    }

    #[test]
    fn json_round_trips_and_names_every_field() {
        let s = sample();
        let json = s.to_json();
        let back: SuiteResults = serde_json::from_str(&json).unwrap();
        assert_eq!(back, s);
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["rows"][0]["verdict"], "pass");
        assert_eq!(v["rows"][1]["verdict"], "miss");
        assert_eq!(v["rows"][0]["bound"]["at_most"], 2000.0);
        assert_eq!(v["rows"][2]["verdict"], "not_built");
        assert_eq!(v["mode"], "tiny");
        assert_eq!(v["plots"][0]["series"][0]["points"][1][1], 2.0);
    }

    #[test]
    fn tables_have_a_line_per_row() {
        let s = sample();
        let md = s.table();
        assert_eq!(md.lines().count(), 2 + s.rows.len());
        assert!(md.contains("| B10 | zero-touch ISO | not built |"));
        assert!(md.contains("fan-out p99 \\| 20 agents"));
        let term = s.terminal_table();
        assert!(term.contains("MISS"));
        assert!(term.contains("baseline: etcd: not measured"));
    }
}
