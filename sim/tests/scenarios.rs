//! Each scenario file of `sim/scenarios/` at a small size (fewer sites, accelerated time):
//! the typed outcome and every check asserted. Waits are bounded by generous limits, never
//! fixed sleeps: a loaded 2-core machine running a debug build must pass.

use std::path::{Path, PathBuf};
use std::time::Duration;

use meridian_sim::scenario::{self, Outcome, Overrides, ScenarioResult, wan_outage};
use meridian_sim::simfleet::Progress;

/// Generous: a loaded 2-core machine running a debug build.
const LIMIT: Duration = Duration::from_secs(240);

fn file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("scenarios")
        .join(name)
}

async fn run(name: &str, overrides: Overrides) -> ScenarioResult {
    let scenario = scenario::load(&file(name)).unwrap();
    let overrides = Overrides {
        limit: Some(LIMIT),
        ..overrides
    };
    let result = scenario::run(&scenario, &overrides, &Progress::quiet())
        .await
        .unwrap();
    eprintln!("{result}");
    assert!(result.passed(), "{result}");
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wan_outage_keeps_cut_sites_running_and_places_new_work_elsewhere() {
    // 20 sites, 4 cut off; ten simulated minutes in six seconds.
    let result = run(
        "wan-outage.toml",
        Overrides {
            sites: Some(20),
            scale: Some(100.0),
            ..Overrides::default()
        },
    )
    .await;
    let Outcome::WanOutage(o) = &result.outcome else {
        panic!("{result}");
    };
    assert!(!o.cut.is_empty() && o.cut.len() <= 4, "{result}");
    assert!(o.workloads_on_cut > 0);
    assert_eq!(o.still_active, o.workloads_on_cut);
    assert_eq!(o.agents_kept_intent, o.cut.len());
    assert_eq!(o.new_submitted, 8);
    assert_eq!(o.new_placed, 8);
    assert_eq!(o.new_on_cut_sites, 0);
    assert!(o.outage >= Duration::from_secs(6), "{result}");
    assert_eq!(o.active_at_end, o.workloads);
    assert!(o.reports_stored >= o.reports_produced);
    assert!(o.reports_produced >= (o.cut.len() * wan_outage::EVENTS_WHILE_CUT) as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reconnect_storm_resyncs_every_site() {
    let result = run(
        "reconnect-storm.toml",
        Overrides {
            sites: Some(30),
            ..Overrides::default()
        },
    )
    .await;
    let Outcome::ReconnectStorm(o) = &result.outcome else {
        panic!("{result}");
    };
    assert_eq!(o.sites, 30);
    assert_eq!(o.resynced, 30);
    assert!(o.workloads > 0 && o.max_generation > 0, "{result}");
    assert!(o.reconnected_after <= o.resynced_after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lose_half_servers_is_reported_on_reconnect() {
    // Two minutes of outage in twelve seconds (at least until the agent failed the servers).
    let result = run(
        "lose-half-servers.toml",
        Overrides {
            scale: Some(10.0),
            ..Overrides::default()
        },
    )
    .await;
    let Outcome::LoseHalfServers(o) = &result.outcome else {
        panic!("{result}");
    };
    assert!(o.allocated > 0, "{result}");
    assert_eq!(o.lost.len(), o.servers / 2);
    assert_eq!(o.central_failed_before_heal, 0);
    assert_eq!(o.central_failed, o.lost.len());
    assert!(o.reasons.iter().all(|r| !r.is_empty()));
    assert_eq!(o.others_failed, 0);
    assert_eq!(o.others_unchanged, o.servers - o.lost.len());
    assert_eq!(o.reports_dropped, 0);
    assert!(o.reports_stored >= o.reports_produced && o.reports_produced > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservation_calendar_never_overcommits_a_gpu() {
    // 12 sites: one core site of 2048 GPUs; the file's 60 reservations.
    let out = tempfile::tempdir().unwrap();
    let result = run(
        "reservation-calendar.toml",
        Overrides {
            sites: Some(12),
            out_dir: Some(out.path().to_owned()),
            ..Overrides::default()
        },
    )
    .await;
    let Outcome::ReservationCalendar(o) = &result.outcome else {
        panic!("{result}");
    };
    assert_eq!(o.core_sites, 1);
    assert_eq!(o.placed, o.submitted);
    assert_eq!(o.overcommitted, 0);
    assert!(o.overlapping_hours > 0);
    assert_eq!(o.utilisation_per_hour.len(), 7 * 24);
    assert!(o.peak_utilisation > 0.0 && o.peak_utilisation <= 100.0);
    let svg = std::fs::read_to_string(&o.svg).unwrap();
    meridian_sim::bench::svg::well_formed(&svg).unwrap();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&o.json).unwrap()).unwrap();
    assert_eq!(
        json["outcome"]["reserved_per_hour"]
            .as_array()
            .unwrap()
            .len(),
        7 * 24
    );
}

#[test]
fn every_scenario_file_parses_and_a_bad_key_is_named() {
    for name in ["wan-outage.toml", "reconnect-storm.toml"] {
        scenario::load(&file(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let e = scenario::parse(
        "kind = \"wan-outage\"\noutage_seconds = 5\n",
        Path::new("bad.toml"),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("outage_seconds") && e.contains("bad.toml"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metering_bills_what_ran_and_finalises_a_cut_off_hour_on_reconnect() {
    let result = run("metering.toml", Overrides::default()).await;
    let Outcome::Metering(o) = &result.outcome else {
        panic!("{result}");
    };
    // Whole GPUs, a MIG slice and CPU cores, each equal to the scenario's recomputation.
    let resources: std::collections::BTreeSet<&str> =
        o.expected.keys().map(|k| k.1.as_str()).collect();
    assert_eq!(
        resources,
        ["cpu_core", "gpu", "mig_slice"].into_iter().collect()
    );
    assert_eq!(o.expected, o.metered, "{result}");
    assert!(o.during_cut.iter().any(|p| !p.is_final()), "{result}");
    assert!(o.after.iter().all(|p| p.is_final()), "{result}");
}
