//! Polling with a deadline: tests wait for what the system promises, not for a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

/// Generous limit for anything that should take well under a second, on a loaded 2-core
/// machine.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Polls `check` every 20 ms until it holds; panics naming `what` after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return;
        }
        if start.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Polls `check` every 5 ms until it holds (returns how long that took) or `limit` passes.
pub async fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}
