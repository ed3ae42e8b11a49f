//! Egress metering at the gateway: the bytes each tenant sends out of the WAN, per period (a
//! UTC hour, as central bills), from the gateway's per-tenant accounting counters.
//!
//! The gateway resource reads the counters at every pass (each resync and each change) and
//! folds them in here: the growth since the last reading counts in the period the reading
//! falls in (so bytes sent in the minutes before an hour's end may count in the next hour, at
//! most one resync late). A counter that went down was reset (the ruleset was replaced, by
//! the agent or by hand), and its whole value is new. When the gateway itself replaced the
//! ruleset right after a reading, [`EgressMeter::restarted`] says so. The meter is stored as a
//! progress record in the same batch as its report, so an agent that restarts neither counts
//! bytes twice nor loses more than what was sent since the last pass.
//!
//! Each reading that saw bytes gives a [`ReportBody::Egress`] with the period's total so far.

use std::collections::BTreeMap;

use meridian_common::ids::{TenantId, Timestamp};
use meridian_common::model::ReportBody;
use serde::{Deserialize, Serialize};

/// The metering period: an hour.
pub const PERIOD_MS: i64 = 3_600_000;

/// The progress record the meter is kept under.
pub const RECORD_KEY: &[u8] = b"gateway/egress";

/// The meter's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EgressMeter {
    /// The counters as last read, per tenant.
    last: BTreeMap<TenantId, u64>,
    /// The period being counted (its start, unix ms; 0: none yet).
    period_start: i64,
    /// Bytes per tenant in that period so far.
    period: BTreeMap<TenantId, u64>,
}

impl EgressMeter {
    /// Folds in the counters read at `now`; returns the report to send when bytes moved.
    pub fn read(
        &mut self,
        now: Timestamp,
        counters: &BTreeMap<TenantId, u64>,
    ) -> Option<ReportBody> {
        let start = now.as_millis().div_euclid(PERIOD_MS) * PERIOD_MS;
        if start != self.period_start {
            self.period_start = start;
            self.period.clear();
        }
        let mut moved = false;
        for (tenant, &now_bytes) in counters {
            let before = self.last.get(tenant).copied().unwrap_or(0);
            let grown = if now_bytes >= before {
                now_bytes - before
            } else {
                now_bytes
            };
            if grown > 0 {
                *self.period.entry(tenant.clone()).or_default() += grown;
                moved = true;
            }
        }
        self.last = counters.clone();
        moved.then(|| ReportBody::Egress {
            period_start: Timestamp::from_millis(self.period_start),
            period_ms: PERIOD_MS as u64,
            tenants: self.period.iter().map(|(t, b)| (t.clone(), *b)).collect(),
        })
    }

    /// The gateway replaced its ruleset after the last reading: its counters start from zero.
    pub fn restarted(&mut self) {
        self.last.clear();
    }

    /// The stored form.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("the meter serialises")
    }

    /// Back from the stored form; a record that does not read starts a fresh meter (the
    /// counters' next growth is counted from their value then).
    pub fn decode(raw: Option<&[u8]>) -> Option<Self> {
        raw.and_then(|r| serde_json::from_slice(r).ok())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % PERIOD_MS;

    fn counters(list: &[(&str, u64)]) -> BTreeMap<TenantId, u64> {
        list.iter()
            .map(|(t, b)| (TenantId::parse(t).unwrap(), *b))
            .collect()
    }

    fn bytes(report: Option<ReportBody>) -> (i64, Vec<(String, u64)>) {
        match report {
            Some(ReportBody::Egress {
                period_start,
                tenants,
                ..
            }) => (
                period_start.as_millis(),
                tenants
                    .into_iter()
                    .map(|(t, b)| (t.to_string(), b))
                    .collect(),
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn growth_counts_in_the_period_of_the_reading_and_resets_are_new_bytes() {
        let mut m = EgressMeter::default();
        let at = |ms| Timestamp::from_millis(H0 + ms);
        // The first reading counts everything since the ruleset was installed.
        assert_eq!(
            bytes(m.read(at(1_000), &counters(&[("acme", 100)]))),
            (H0, vec![("acme".into(), 100)])
        );
        // Nothing moved: nothing to report.
        assert_eq!(m.read(at(2_000), &counters(&[("acme", 100)])), None);
        assert_eq!(
            bytes(m.read(at(3_000), &counters(&[("acme", 150), ("globex", 7)]))),
            (H0, vec![("acme".into(), 150), ("globex".into(), 7)])
        );
        // Replaced by hand: the counter went down, its whole value is new.
        assert_eq!(
            bytes(m.read(at(4_000), &counters(&[("acme", 20), ("globex", 7)]))),
            (H0, vec![("acme".into(), 170), ("globex".into(), 7)])
        );
        // Replaced by the agent: said so, and the growth from zero counts.
        m.restarted();
        assert_eq!(
            bytes(m.read(at(5_000), &counters(&[("acme", 5)]))),
            (H0, vec![("acme".into(), 175), ("globex".into(), 7)])
        );
        // The next hour starts from zero.
        assert_eq!(
            bytes(m.read(at(PERIOD_MS + 1), &counters(&[("acme", 9)]))),
            (H0 + PERIOD_MS, vec![("acme".into(), 4)])
        );
        let stored = EgressMeter::decode(Some(&m.encode())).unwrap();
        assert_eq!(stored, m);
        assert_eq!(EgressMeter::decode(Some(b"garbage")), None);
    }
}
