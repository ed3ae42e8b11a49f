//! Per-tenant request rate limits: one token bucket per key (a tenant, or a provider user),
//! sharded so tenants do not contend on one lock. A refused request costs a hash and a lock,
//! so a tenant flooding far past its limit cannot starve the others.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// The sustained rate per key, as `f64` bits (changeable while serving).
    per_second: AtomicU64,
    /// The burst per key, as `f64` bits.
    burst: AtomicU64,
    hasher: RandomState,
    shards: Vec<Mutex<HashMap<String, Bucket>>>,
}

impl RateLimiter {
    /// `per_second` sustained, `burst` at once, per key.
    pub fn new(per_second: f64, burst: f64) -> Self {
        RateLimiter {
            per_second: AtomicU64::new(per_second.to_bits()),
            burst: AtomicU64::new(burst.max(1.0).to_bits()),
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
        }
    }

    /// The limits in force: (per second, burst).
    pub fn limits(&self) -> (f64, f64) {
        (
            f64::from_bits(self.per_second.load(Ordering::Relaxed)),
            f64::from_bits(self.burst.load(Ordering::Relaxed)),
        )
    }

    /// Changes the limits for every key from now on (buckets keep the tokens they hold, up
    /// to the new burst).
    pub fn set_limits(&self, per_second: f64, burst: f64) {
        self.per_second
            .store(per_second.to_bits(), Ordering::Relaxed);
        self.burst
            .store(burst.max(1.0).to_bits(), Ordering::Relaxed);
    }

    /// Takes one token for `key` at `now`, or says how long until one is free.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let (per_second, burst) = self.limits();
        let mut map = self.shard(key);
        if map.len() > 10_000 {
            map.retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
        }
        let bucket = map.entry(key.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * per_second).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - bucket.tokens) / per_second;
            Err(Duration::from_secs_f64(wait.max(0.001)))
        }
    }

    /// Gives back a token taken by [`RateLimiter::check`] for a call that turned out not to
    /// count (a bucket never holds more than its burst).
    pub fn refund(&self, key: &str) {
        let (_, burst) = self.limits();
        if let Some(bucket) = self.shard(key).get_mut(key) {
            bucket.tokens = (bucket.tokens + 1.0).min(burst);
        }
    }

    fn shard(&self, key: &str) -> std::sync::MutexGuard<'_, HashMap<String, Bucket>> {
        self.shards[(self.hasher.hash_one(key) as usize) % SHARDS]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// Counts of callers refused for failed authentication, for logs and metrics.
#[derive(Debug, Default)]
pub struct AuthFailures {
    /// Calls whose credentials were missing, malformed, unknown, expired or revoked.
    pub failed: AtomicU64,
    /// Calls refused unread because their source address had spent its failure budget.
    pub refused: AtomicU64,
    logged: Mutex<Option<(Instant, u64, u64)>>,
}

/// How often the failure counts are logged at most, while failures go on.
const LOG_EVERY: Duration = Duration::from_secs(10);

impl AuthFailures {
    /// Records one failed authentication from `source`.
    pub fn fail(&self, source: Option<IpAddr>, now: Instant) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.maybe_log(source, now);
    }

    /// Records one call from `source` refused before authentication.
    pub fn refuse(&self, source: IpAddr, now: Instant) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        self.maybe_log(Some(source), now);
    }

    fn maybe_log(&self, source: Option<IpAddr>, now: Instant) {
        let failed = self.failed.load(Ordering::Relaxed);
        let refused = self.refused.load(Ordering::Relaxed);
        let mut last = self.logged.lock().unwrap_or_else(|p| p.into_inner());
        match *last {
            Some((at, _, _)) if now.saturating_duration_since(at) < LOG_EVERY => {}
            previous => {
                let (f0, r0) = previous.map_or((0, 0), |(_, f, r)| (f, r));
                tracing::warn!(
                    failed = failed - f0,
                    refused_unread = refused - r0,
                    latest_source = %source.map_or_else(|| "unknown".to_owned(), |s| s.to_string()),
                    "API calls failing authentication since the last report (refused_unread: \
                     source addresses past api.auth_failures_per_second)"
                );
                *last = Some((now, failed, refused));
            }
        }
    }
}

/// The rate-limit key of a source address: the address itself, or for IPv6 its /64 (one
/// host usually holds a whole /64).
pub fn source_key(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
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

    #[test]
    fn limits_change_while_serving() {
        let limiter = RateLimiter::new(1e6, 1e6);
        let t0 = Instant::now();
        for _ in 0..100 {
            limiter.check("tenant:a", t0).unwrap();
        }
        limiter.set_limits(10.0, 5.0);
        assert_eq!(limiter.limits(), (10.0, 5.0));
        for _ in 0..5 {
            limiter.check("tenant:a", t0).unwrap();
        }
        assert!(limiter.check("tenant:a", t0).is_err());
    }

    #[test]
    fn a_refunded_token_can_be_taken_again_up_to_the_burst() {
        let limiter = RateLimiter::new(1.0, 2.0);
        let t0 = Instant::now();
        for _ in 0..10 {
            limiter.check("127.0.0.2", t0).unwrap();
            limiter.refund("127.0.0.2");
        }
        limiter.refund("127.0.0.2");
        limiter.check("127.0.0.2", t0).unwrap();
        limiter.check("127.0.0.2", t0).unwrap();
        assert!(limiter.check("127.0.0.2", t0).is_err());
        limiter
            .check("127.0.0.2", t0 + Duration::from_secs(1))
            .unwrap();
    }

    #[test]
    fn sources_are_keyed_by_address_or_ipv6_prefix() {
        assert_eq!(source_key("127.0.0.2".parse().unwrap()), "127.0.0.2");
        assert_eq!(
            source_key("2001:db8:1:2:aaaa::1".parse().unwrap()),
            source_key("2001:db8:1:2:bbbb::9".parse().unwrap())
        );
        assert_ne!(
            source_key("2001:db8:1:2::1".parse().unwrap()),
            source_key("2001:db8:1:3::1".parse().unwrap())
        );
    }
}
