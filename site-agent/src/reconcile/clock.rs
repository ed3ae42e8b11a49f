//! The reconciler's wall clock, injected: allocation windows open and close on it, and
//! reports are stamped with it. [`SystemClock`] in the agent; [`ManualClock`] in tests, which
//! move time across a window's end without sleeping through it.
//!
//! Back-offs and the periodic resync are durations on tokio's monotonic clock, not on this one.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use meridian_common::ids::Timestamp;
use tokio::sync::watch;

/// A future that resolves once the clock reached an instant.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Wall-clock time, as the reconciler sees it.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// Now, unix millis.
    fn now(&self) -> Timestamp;

    /// Resolves once [`Clock::now`] is at or past `at` (it may resolve early on a system clock
    /// that was set back; callers re-check).
    fn sleep_until(&self, at: Timestamp) -> Sleep;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// Longest single sleep of [`SystemClock::sleep_until`], so a wall clock that jumps is noticed.
const MAX_SLEEP: Duration = Duration::from_secs(30);

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(crate::now_ms())
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep {
        Box::pin(async move {
            loop {
                let left = at.as_millis().saturating_sub(crate::now_ms());
                if left <= 0 {
                    return;
                }
                let d = Duration::from_millis(left as u64).min(MAX_SLEEP);
                tokio::time::sleep(d).await;
            }
        })
    }
}

/// A clock that moves only when told to ([`ManualClock::set`], [`ManualClock::advance`]);
/// sleepers wake as soon as it passes their instant.
#[derive(Debug)]
pub struct ManualClock {
    now: watch::Sender<Timestamp>,
}

impl ManualClock {
    /// A clock standing at `at`.
    pub fn new(at: Timestamp) -> Self {
        ManualClock {
            now: watch::Sender::new(at),
        }
    }

    /// Moves the clock to `at` (never backwards).
    pub fn set(&self, at: Timestamp) {
        self.now.send_if_modified(|t| {
            if at > *t {
                *t = at;
                true
            } else {
                false
            }
        });
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let at = self.now().saturating_add_millis(by.as_millis() as i64);
        self.set(at);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.borrow()
    }

    fn sleep_until(&self, at: Timestamp) -> Sleep {
        let mut rx = self.now.subscribe();
        Box::pin(async move {
            loop {
                if *rx.borrow_and_update() >= at {
                    return;
                }
                if rx.changed().await.is_err() {
                    return std::future::pending().await;
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn manual_sleepers_wake_when_time_passes() {
        let c = std::sync::Arc::new(ManualClock::new(Timestamp::from_millis(1_000)));
        let sleep = c.sleep_until(Timestamp::from_millis(5_000));
        let woke = tokio::spawn(sleep);
        c.advance(Duration::from_secs(2));
        tokio::task::yield_now().await;
        assert!(!woke.is_finished());
        c.set(Timestamp::from_millis(500)); // never backwards
        assert_eq!(c.now(), Timestamp::from_millis(3_000));
        c.advance(Duration::from_secs(2));
        tokio::time::timeout(Duration::from_secs(5), woke)
            .await
            .expect("woken")
            .unwrap();
    }
}
