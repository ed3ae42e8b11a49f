//! B6: durable commits per second of the sled store, one writer with a flush per commit
//! against many writers sharing flushes (group commit), measured in the same run.
//!
//! `cargo bench -p meridian-store --bench store_commit` prints min/median/max over runs
//! and the group/single ratio. `MERIDIAN_BENCH_RUNS` and `MERIDIAN_BENCH_SECONDS` tune it.

use std::time::Duration;

use meridian_store::commit_rate;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Commits per second with `writers` concurrent tasks for `seconds`.
async fn measure(group_commit: bool, writers: usize, seconds: f64) -> (f64, Duration) {
    let dir = tempfile::tempdir().expect("temp dir");
    let r = commit_rate::measure(dir.path(), group_commit, writers, seconds)
        .await
        .expect("durable puts");
    (r.per_second, r.p99)
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(|a, b| a.total_cmp(b));
    (v[0], v[v.len() / 2], v[v.len() - 1])
}

fn main() {
    let runs: usize = env_or("MERIDIAN_BENCH_RUNS", 5);
    let seconds: f64 = env_or("MERIDIAN_BENCH_SECONDS", 2.0);
    let writers: usize = env_or("MERIDIAN_BENCH_WRITERS", 64);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut single = Vec::new();
    let mut group = Vec::new();
    let mut group_p99 = Vec::new();
    let mut single_p99 = Vec::new();
    for run in 0..runs {
        let (s, sp) = runtime.block_on(measure(false, 1, seconds));
        let (g, gp) = runtime.block_on(measure(true, writers, seconds));
        println!(
            "run {run}: single {s:>8.0} commits/s (p99 {:.2} ms), group x{writers} {g:>8.0} commits/s (p99 {:.2} ms)",
            sp.as_secs_f64() * 1e3,
            gp.as_secs_f64() * 1e3
        );
        single.push(s);
        group.push(g);
        single_p99.push(sp.as_secs_f64() * 1e3);
        group_p99.push(gp.as_secs_f64() * 1e3);
    }
    let (smin, smed, smax) = stats(single);
    let (gmin, gmed, gmax) = stats(group);
    let (_, spmed, _) = stats(single_p99);
    let (_, gpmed, _) = stats(group_p99);
    println!("B6 durable commits/s over {runs} runs of {seconds} s (min / median / max):");
    println!(
        "  single commit (1 writer, 1 flush per commit): {smin:.0} / {smed:.0} / {smax:.0}  p99 {spmed:.2} ms"
    );
    println!(
        "  group commit ({writers} writers):               {gmin:.0} / {gmed:.0} / {gmax:.0}  p99 {gpmed:.2} ms"
    );
    println!(
        "  ratio group/single (median): {:.1}x; target >= 2000 commits/s: {}",
        gmed / smed,
        if gmed >= 2000.0 { "met" } else { "NOT met" }
    );
}
