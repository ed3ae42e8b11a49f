//! Per-tenant request rate limits: one token bucket per key (a tenant, or a provider user),
//! sharded so tenants do not contend on one lock. A refused request costs a hash and a lock,
//! so a tenant flooding far past its limit cannot starve the others.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::Mutex;
use std::time::{Duration, Instant};

const SHARDS: usize = 16;
/// Buckets idle this long are dropped when their shard is swept.
const IDLE: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by caller.
#[derive(Debug)]
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl RateLimiter {
    /// `per_second` sustained, `burst` at once, per key.
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimiter {
            per_second,
            burst: burst.max(1.0),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// Takes one token for `key` at `now`, or says how long until one is free.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let shard = &self.shards[(self.hasher.hash_one(key) as usize) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
        }
        let bucket = map.entry(key.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / self.per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate_and_keys_are_independent() {
        let limiter = RateLimiter::new(10.0, 5.0);
        let t0 = Instant::now();
        for _ in 0..5 {
            limiter.check("tenant:a", t0).unwrap();
        }
        let wait = limiter.check("tenant:a", t0).unwrap_err();
        assert!(wait > Duration::from_millis(50) && wait <= Duration::from_millis(101));
        limiter.check("tenant:b", t0).unwrap();
        // 100 ms later one more token has accrued, and only one.
        let t1 = t0 + Duration::from_millis(100);
        limiter.check("tenant:a", t1).unwrap();
        assert!(limiter.check("tenant:a", t1).is_err());
        // After a long pause the bucket holds its burst, not more.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..5 {
            limiter.check("tenant:a", t2).unwrap();
        }
        assert!(limiter.check("tenant:a", t2).is_err());
    }
}
