//! B6's measurement, shared by `cargo bench -p meridian-central --bench store_commit` and the
//! simulator's benchmark suite (`meridian-sim bench all`): durable commits per second of a
//! fresh [`SledStore`], one writer with a flush per commit against many writers sharing
//! flushes (group commit).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{Expect, SledStore, Store, StoreConfig, StoreError};

/// One measured run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CommitRate {
    /// Durable commits per second.
    pub per_second: f64,
    /// 99th percentile of one commit's latency.
    pub p99: Duration,
    /// Commits made.
    pub commits: usize,
}

/// Opens a store in `dir` (empty) and has `writers` concurrent tasks each put 256-byte values
/// under their own keys for `seconds`, every put acknowledged only once durable.
pub async fn measure(
    dir: &Path,
    group_commit: bool,
    writers: usize,
    seconds: f64,
) -> Result<CommitRate, StoreError> {
    let config = StoreConfig {
        group_commit,
        ..StoreConfig::default()
    };
    let store: Arc<dyn Store> = Arc::new(SledStore::open(dir, &config)?);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers.max(1) {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let value = vec![7u8; 256];
            let mut i = 0u64;
            while Instant::now() < deadline {
                let t = Instant::now();
                store
                    .put(format!("bench/{w}/{i}").as_bytes(), &value, Expect::Any)
                    .await?;
                latencies.push(t.elapsed());
                i += 1;
            }
            Ok::<_, StoreError>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            t.await
                .map_err(|e| StoreError::Backend(std::io::Error::other(e)))??,
        );
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort();
    let p99 = all
        .get((all.len() * 99 / 100).min(all.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default();
    Ok(CommitRate {
        per_second: all.len() as f64 / elapsed,
        p99,
        commits: all.len(),
    })
}
