//! Benchmarks run by `meridian-sim bench`: each prints its figures beside the targets of
//! TARGETS.md and, where a target is a ratio, the baseline measured in the same run.
//! `meridian-sim bench all` ([`suite`]) runs them all and writes [`results`] as JSON plus
//! [`svg`] plots.

pub mod accounting;
pub mod api;
pub mod channel;
pub mod console;
pub mod endpoint;
pub mod etcd;
pub mod fuzz;
mod harness;
pub use harness::CHANGE_TXN_INTENTS;
pub mod ingest;
pub mod metrics;
pub mod noisy;
pub mod placement;
pub mod results;
pub mod resync;
pub mod suite;
pub mod svg;

pub use harness::rss_bytes;

/// Percentile of sorted samples (`q` in 0..=1).
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> T {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Milliseconds of a duration.
pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `p50 .., p99 .. (min .., max ..)` of sorted samples, ms.
pub fn spread_ms(sorted: &[std::time::Duration]) -> String {
    if sorted.is_empty() {
        return "no samples".into();
    }
    format!(
        "p50 {:.1} ms, p99 {:.1} ms (min {:.1} ms, max {:.1} ms)",
        ms(percentile(sorted, 0.5)),
        ms(percentile(sorted, 0.99)),
        ms(sorted[0]),
        ms(sorted[sorted.len() - 1])
    )
}
