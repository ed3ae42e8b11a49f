//! Reconnect backoff: exponential with full jitter (a uniform draw between zero and the
//! exponential ceiling), so that thousands of agents cut off together do not come back in
//! lock-step. The random source is an argument.

use std::time::Duration;

use rand::Rng;

/// An exponential backoff schedule with full jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    /// Ceilings `initial`, `2 * initial`, ... capped at `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial: initial.max(Duration::from_millis(1)),
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// The ceiling of the next delay (no jitter).
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(30)).unwrap_or(u32::MAX);
        self.initial.saturating_mul(factor).min(self.max)
    }

    /// The delay before the next attempt: uniform in `[0, ceiling]`; grows the ceiling.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = ceiling.as_millis().min(u64::MAX as u128) as u64;
        Duration::from_millis(rng.random_range(0..=millis))
    }

    /// Back to the first ceiling (after a session was established).
    pub fn reset(&mut self) {
        self.attempt = 0;
    }

    /// Attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ceilings_double_up_to_the_cap_and_delays_stay_below() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let mut rng = StdRng::seed_from_u64(7);
        let expected = [100, 200, 400, 800, 1600, 2000, 2000];
        for ceiling in expected {
            assert_eq!(b.ceiling(), Duration::from_millis(ceiling));
            assert!(b.next_delay(&mut rng) <= Duration::from_millis(ceiling));
        }
        b.reset();
        assert_eq!(b.ceiling(), Duration::from_millis(100));
    }

    #[test]
    fn jitter_spreads_over_the_whole_range() {
        let mut rng = StdRng::seed_from_u64(1);
        let draws: Vec<u128> = (0..1000)
            .map(|_| {
                let mut b = Backoff::new(Duration::from_millis(1000), Duration::from_secs(1));
                b.next_delay(&mut rng).as_millis()
            })
            .collect();
        assert!(draws.iter().any(|d| *d < 100));
        assert!(draws.iter().any(|d| *d > 900));
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        let mut rng = StdRng::seed_from_u64(3);
        for _ in 0..100 {
            assert!(b.next_delay(&mut rng) <= Duration::from_secs(60));
        }
    }
}
