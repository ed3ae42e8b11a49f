//! Benchmarks run by `meridian-sim bench`: each prints its figures beside the targets of
//! TARGETS.md and, where a target is a ratio, the baseline measured in the same run.

pub mod api;
pub mod channel;
pub mod noisy;
pub mod placement;

/// Percentile of sorted samples (`q` in 0..=1).
pub fn percentile<T: Copy>(sorted: &[T], q: f64) -> T {
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}
