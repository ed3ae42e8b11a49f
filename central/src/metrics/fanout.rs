//! The fan-out clock: when each site's newest intent was written, until its agent
//! acknowledges holding it (an `IntentAck` of `RECEIVED` or `APPLIED`, or a `Hello` that says
//! it holds that generation). The channel's distributor starts the clock as the write reaches
//! it; the site's session stops it.
//!
//! One entry per site at most (a newer generation replaces the older one, which the agent
//! will never be sent), removed when the site's intent is deleted, so the table is bounded by
//! the fleet's size whatever the agents do.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use meridian_common::ids::{Generation, SiteId};
use prometheus_client::metrics::histogram::Histogram;

/// One site's clock.
#[derive(Debug, Clone, Copy, Default)]
struct Clocked {
    /// The newest write not yet acknowledged, and when it was written.
    waiting: Option<(Generation, Instant)>,
    /// The newest generation the agent acknowledged holding: a write the distributor sees
    /// after its acknowledgement (the session read the intent before the watch delivered
    /// it) starts no clock.
    acknowledged: Generation,
}

/// See the module documentation.
#[derive(Debug)]
pub struct FanOut {
    sites: Mutex<HashMap<SiteId, Clocked>>,
    histogram: Histogram,
}

impl FanOut {
    /// A clock observing into `histogram` (seconds).
    pub fn new(histogram: Histogram) -> Self {
        FanOut {
            sites: Mutex::new(HashMap::new()),
            histogram,
        }
    }

    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<SiteId, Clocked>> {
        self.sites.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `site`'s intent of `generation` was written at `at`. A generation no newer than the
    /// one already waiting, or already acknowledged, changes nothing.
    pub fn written(&self, site: &SiteId, generation: Generation, at: Instant) {
        let mut table = self.table();
        let clocked = table.entry(site.clone()).or_default();
        if generation <= clocked.acknowledged
            || clocked.waiting.is_some_and(|(g, _)| g >= generation)
        {
            return;
        }
        clocked.waiting = Some((generation, at));
    }

    /// `site`'s agent acknowledged holding `generation` at `at`: the latency of the waiting
    /// write it covers is observed, once. Returns it.
    pub fn acknowledged(
        &self,
        site: &SiteId,
        generation: Generation,
        at: Instant,
    ) -> Option<Duration> {
        let mut table = self.table();
        let clocked = table.entry(site.clone()).or_default();
        clocked.acknowledged = clocked.acknowledged.max(generation);
        let (waiting, written) = clocked.waiting?;
        if generation < waiting {
            return None;
        }
        clocked.waiting = None;
        drop(table);
        let latency = at.saturating_duration_since(written);
        self.histogram.observe(latency.as_secs_f64());
        Some(latency)
    }

    /// `site`'s intent was deleted: nothing will be acknowledged.
    pub fn forget(&self, site: &SiteId) {
        self.table().remove(site);
    }

    /// Sites whose newest write is still waiting for its acknowledgement.
    pub fn waiting(&self) -> usize {
        self.table()
            .values()
            .filter(|c| c.waiting.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site(s: &str) -> SiteId {
        SiteId::parse(s).unwrap()
    }

    /// The histogram's count and sum, as exported.
    fn count_sum(h: &Histogram) -> (u64, f64) {
        let mut r = prometheus_client::registry::Registry::default();
        r.register("h", "h", h.clone());
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &r).unwrap();
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{name} in {text}"))
                .trim()
                .parse::<f64>()
                .unwrap()
        };
        (value("h_count ") as u64, value("h_sum "))
    }

    #[test]
    fn one_observation_per_acknowledged_write() {
        let h = Histogram::new([0.1, 1.0]);
        let f = FanOut::new(h.clone());
        let t0 = Instant::now();
        f.written(&site("edge-1"), Generation::new(3), t0);
        // An older acknowledgement does not stop the clock.
        assert_eq!(
            f.acknowledged(
                &site("edge-1"),
                Generation::new(2),
                t0 + Duration::from_millis(5)
            ),
            None
        );
        assert_eq!(
            f.acknowledged(
                &site("edge-1"),
                Generation::new(3),
                t0 + Duration::from_millis(50)
            ),
            Some(Duration::from_millis(50))
        );
        // A repeated acknowledgement is not observed twice.
        assert_eq!(
            f.acknowledged(
                &site("edge-1"),
                Generation::new(3),
                t0 + Duration::from_secs(1)
            ),
            None
        );
        let (count, sum) = count_sum(&h);
        assert_eq!(count, 1);
        assert!((sum - 0.05).abs() < 1e-9);
    }

    #[test]
    fn a_write_seen_after_its_acknowledgement_starts_no_clock() {
        let h = Histogram::new([0.1, 1.0]);
        let f = FanOut::new(h.clone());
        let t0 = Instant::now();
        f.acknowledged(&site("edge-1"), Generation::new(4), t0);
        f.written(&site("edge-1"), Generation::new(4), t0);
        assert_eq!(f.waiting(), 0);
        f.written(&site("edge-1"), Generation::new(5), t0);
        assert_eq!(f.waiting(), 1);
        assert_eq!(count_sum(&h).0, 0);
    }

    #[test]
    fn a_newer_write_restarts_the_clock_and_the_table_stays_bounded() {
        let h = Histogram::new([0.1, 1.0]);
        let f = FanOut::new(h.clone());
        let t0 = Instant::now();
        f.written(&site("edge-1"), Generation::new(1), t0);
        f.written(
            &site("edge-1"),
            Generation::new(2),
            t0 + Duration::from_secs(2),
        );
        // A replayed older write does not move it back.
        f.written(&site("edge-1"), Generation::new(1), t0);
        assert_eq!(f.waiting(), 1);
        // An acknowledgement of a newer generation than written covers it too.
        assert_eq!(
            f.acknowledged(
                &site("edge-1"),
                Generation::new(5),
                t0 + Duration::from_secs(3)
            ),
            Some(Duration::from_secs(1))
        );
        for i in 0..100 {
            f.written(&site(&format!("core-{i}")), Generation::new(1), t0);
        }
        assert_eq!(f.waiting(), 100);
        f.forget(&site("core-7"));
        assert_eq!(f.waiting(), 99);
        assert_eq!(
            f.acknowledged(&site("core-7"), Generation::new(1), t0),
            None
        );
    }
}
