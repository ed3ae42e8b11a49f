//! `meridian-sim bench all --tiny`: the whole suite at smoke-test sizes, through the real
//! binary (the channel benchmark runs its agents in a child process of that binary). Checks
//! that every TARGETS.md id has a row with a verdict, that results.json, results.md and the
//! plots are written, and that every plot is well-formed SVG with data in it. B11 (the
//! console) also runs on its own at a tiny size, its counts checked.

use std::process::Command;

use meridian_sim::bench::console::{ConsoleBenchOptions, run_blocking};
use meridian_sim::bench::results::{SuiteResults, Verdict};
use meridian_sim::bench::suite::{PLOT_FILES, ROW_IDS};
use meridian_sim::bench::svg::{series_lines, well_formed};

#[test]
fn the_tiny_suite_writes_every_row_and_every_plot() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_meridian-sim"))
        .args(["bench", "all", "--tiny", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        run.status.success(),
        "bench all --tiny failed ({}):\n{stdout}\n{stderr}",
        run.status
    );

    let json = std::fs::read_to_string(out.path().join("results.json")).unwrap();
    let results: SuiteResults = serde_json::from_str(&json).unwrap();
    assert!(results.errors.is_empty(), "{:?}", results.errors);
    for id in ROW_IDS {
        let rows: Vec<_> = results.rows.iter().filter(|r| r.id == *id).collect();
        assert!(!rows.is_empty(), "no row for {id}");
        for r in rows {
            assert!(!r.figure.is_empty() && !r.target.is_empty(), "{r:?}");
            if matches!(r.verdict, Verdict::Pass | Verdict::Miss) {
                assert!(r.value.is_some_and(f64::is_finite), "{r:?}");
                assert!(r.bound.is_some(), "{r:?}");
            }
        }
    }
    // Everything that runs in tiny mode was measured: only what the suite does not measure
    // (kill -9, B1q), the etcd baseline where etcd cannot be installed (not root) and what
    // the agent binary gives (B7, when it is not built) is left.
    for r in &results.rows {
        if r.verdict == Verdict::NotMeasured {
            let note = r.note.as_deref().unwrap_or("");
            assert!(
                r.figure.contains("etcd")
                    || r.figure.contains("kill -9")
                    || r.id == "B1q"
                    || r.id == "B7"
                    || r.id == "B13",
                "{r:?}"
            );
            assert!(!note.is_empty(), "{r:?}");
        }
    }
    assert_eq!(
        results.rows.iter().find(|r| r.id == "B10").unwrap().verdict,
        Verdict::NotBuilt
    );
    // B11 ran: render time, page weight and the live-update fan-out, every change delivered.
    let b11: Vec<_> = results.rows.iter().filter(|r| r.id == "B11").collect();
    assert_eq!(b11.len(), 4, "{b11:?}");
    assert!(
        b11.iter()
            .all(|r| matches!(r.verdict, Verdict::Pass | Verdict::Miss) && r.value.is_some()),
        "{b11:?}"
    );
    assert!(
        b11.iter()
            .filter(|r| r.figure.starts_with("live updates"))
            .all(|r| r
                .note
                .as_deref()
                .is_some_and(|n| !n.contains("streams received every change"))),
        "{b11:?}"
    );
    // Every fuzz target ran its executions without a finding.
    let fuzz: Vec<_> = results.rows.iter().filter(|r| r.id == "R10").collect();
    assert!(fuzz.len() >= 6, "{fuzz:?}");
    assert!(fuzz.iter().all(|r| r.verdict == Verdict::Pass), "{fuzz:?}");
    // B8 always holds at any size: one push of one snapshot.
    assert!(
        results
            .rows
            .iter()
            .filter(|r| r.id == "B8")
            .all(|r| r.verdict == Verdict::Pass),
        "{:?}",
        results
            .rows
            .iter()
            .filter(|r| r.id == "B8")
            .collect::<Vec<_>>()
    );

    let table = std::fs::read_to_string(out.path().join("results.md")).unwrap();
    assert_eq!(table.lines().count(), 2 + results.rows.len());
    assert!(stdout.contains("Meridian benchmark suite"));

    let drawn: Vec<&str> = results.plots.iter().map(|p| p.file.as_str()).collect();
    let missing: Vec<&str> = results
        .plots_missing
        .iter()
        .map(|(f, _)| f.as_str())
        .collect();
    for file in PLOT_FILES {
        assert!(
            drawn.contains(file) || missing.contains(file),
            "{file} neither drawn nor explained"
        );
    }
    for plot in &results.plots {
        let svg = std::fs::read_to_string(out.path().join(&plot.file)).unwrap();
        well_formed(&svg).unwrap_or_else(|e| panic!("{}: {e}", plot.file));
        assert!(plot.series.iter().all(|s| !s.points.is_empty()), "{plot:?}");
        // One line per series (plotters draws axes and ticks as thinner polylines).
        assert_eq!(series_lines(&svg), plot.series.len(), "{}", plot.file);
        for s in &plot.series {
            assert!(
                svg.contains(&s.name),
                "{}: no legend for {}",
                plot.file,
                s.name
            );
        }
        assert!(!svg.contains("no data"), "{}", plot.file);
    }
    // With the etcd baseline measured, B2's plot draws it beside Meridian's fan-out.
    let etcd_measured = results
        .rows
        .iter()
        .any(|r| r.id == "B2" && r.figure.starts_with("baseline: etcd"));
    let b2 = results
        .plots
        .iter()
        .find(|p| p.file == "b2-fanout-latency.svg")
        .expect("B2 plot");
    assert_eq!(b2.series.len(), if etcd_measured { 2 } else { 1 }, "{b2:?}");
    // The reservation calendar ran: every reservation placed, no GPU held twice, and its
    // utilisation over time drawn with one point per hour of the calendar (2 days).
    let cal: Vec<_> = results.rows.iter().filter(|r| r.id == "CAL").collect();
    assert_eq!(cal.len(), 3, "{cal:?}");
    assert!(
        cal.iter()
            .all(|r| matches!(r.verdict, Verdict::Pass | Verdict::Info)),
        "{cal:?}"
    );
    let util = results
        .plots
        .iter()
        .find(|p| p.file == "utilisation.svg")
        .expect("utilisation plot");
    assert_eq!(util.series[0].points.len(), 48, "{util:?}");
    assert!(
        util.series[0].points.iter().any(|(_, y)| *y > 0.0),
        "{util:?}"
    );
    assert!(out.path().join("utilisation.json").exists());
    for file in [
        "b1-placement-growth.svg",
        "b2-fanout-latency.svg",
        "b3-reconnect.svg",
        "utilisation.svg",
    ] {
        assert!(drawn.contains(&file), "{file} not drawn");
    }
}

#[test]
fn unknown_ids_are_refused_before_anything_runs() {
    let out = tempfile::tempdir().unwrap();
    let run = Command::new(env!("CARGO_BIN_EXE_meridian-sim"))
        .args(["bench", "all", "--tiny", "--only", "B5,B42", "--out"])
        .arg(out.path())
        .output()
        .unwrap();
    assert_eq!(run.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&run.stderr).contains("B42"));
    assert!(!out.path().join("results.json").exists());
}

#[test]
fn the_console_benchmark_delivers_every_change_to_every_stream() {
    let options = ConsoleBenchOptions {
        sites: 50,
        renders: 5,
        streams: 5,
        changes: 20,
        per_txn: 8,
        seed: 7,
    };
    let r = run_blocking(&options).unwrap();
    assert_eq!(r.sites, 50);
    assert!(r.page_bytes > 0);
    assert_eq!(r.renders.len(), 5);
    assert_eq!(r.fresh_renders.len(), 5);
    assert_eq!((r.streams, r.changes), (5, 20));
    // Every stream got every change, exactly once each, and none fell behind.
    assert_eq!(r.complete, 5, "{r}");
    assert_eq!(r.stream_done.len(), 5, "{r}");
    assert_eq!(r.delivery.len(), 5 * 20, "{r}");
    assert_eq!(r.delivered, 5 * 20, "{r}");
    assert_eq!(r.reloads, 0, "{r}");
    assert!(r.all_delivered());
}
