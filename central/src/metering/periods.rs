//! Usage per period, from the stored spans: pure, so the billing figures follow from the spans
//! and the sites' report marks alone, and tests can recompute them independently.
//!
//! A span counts in a period for the part of it that lies in the period and that its site's
//! reports cover: a closed span up to its end, a span still open up to the site's mark (the
//! newest observation time among its stored reports). A period is **final** for a site once
//! the site's mark reached the period's end; its amount never changes after that, because
//! ingest never starts or ends a span before a site's mark ([`super::record`]).

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::ids::Timestamp;

use super::model::{Egress, Quantity, Resource, Span, UsageRow};

/// One metering period: an hour.
pub const PERIOD_MS: i64 = 3_600_000;

/// Longest range one export covers.
pub const MAX_RANGE_MS: i64 = 31 * 24 * PERIOD_MS;

/// The start of the period holding `t`.
pub fn period_of(t: i64) -> i64 {
    t.div_euclid(PERIOD_MS) * PERIOD_MS
}

/// `[from, to)` widened to whole periods.
pub fn whole_periods(from: Timestamp, to: Timestamp) -> (i64, i64) {
    let from = period_of(from.as_millis());
    let to = to.as_millis();
    let to = if to.rem_euclid(PERIOD_MS) == 0 {
        to
    } else {
        period_of(to) + PERIOD_MS
    };
    (from, to)
}

/// Whether one period is complete, and which sites keep it open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodStatus {
    /// Its start, unix ms.
    pub start_ms: i64,
    /// Sites that can have usage in it whose reports do not reach its end.
    pub sites_behind: BTreeSet<String>,
}

impl PeriodStatus {
    /// Every site that can have usage in it has reported past its end.
    pub fn is_final(&self) -> bool {
        self.sites_behind.is_empty()
    }
}

/// The usage rows of the periods of `[from, to)` (whole periods, see [`whole_periods`]) and
/// each period's status. `marks` is each site's report mark; `sites` the sites that can have
/// usage in the range beside those of the spans (where the tenants in scope hold placements
/// now). Rows are per (period, tenant, workload, site, resource, detail), in that order; an
/// amount is in the resource's unit ([`Resource::unit`]). Egress counts as the tenant's, with
/// no workload.
pub fn usage(
    spans: &[Span],
    egress: &[Egress],
    marks: &BTreeMap<String, i64>,
    sites: &BTreeSet<String>,
    from: i64,
    to: i64,
) -> (Vec<UsageRow>, Vec<PeriodStatus>) {
    type Key = (i64, String, String, String, Resource, String);
    let mut sums: BTreeMap<Key, f64> = BTreeMap::new();
    let mark = |site: &str| marks.get(site).copied().unwrap_or(i64::MIN);
    let mut involved: BTreeSet<&str> = sites.iter().map(String::as_str).collect();
    for span in spans {
        let end = span.end_ms.unwrap_or_else(|| mark(&span.site));
        let (start, end) = (span.start_ms.max(from), end.min(to));
        if span.start_ms < to && span.end_ms.is_none_or(|e| e > from) {
            involved.insert(&span.site);
        }
        let mut p = period_of(start);
        while p < end {
            let ms = (end.min(p + PERIOD_MS) - start.max(p)).max(0);
            if ms > 0 {
                for q in &span.quantities {
                    let key = (
                        p,
                        span.tenant.clone(),
                        span.workload.clone(),
                        span.site.clone(),
                        q.resource,
                        q.detail.clone(),
                    );
                    *sums.entry(key).or_default() += amount(q, ms);
                }
            }
            p += PERIOD_MS;
        }
    }
    for e in egress {
        if e.period_start_ms >= from && e.period_start_ms < to && e.bytes > 0 {
            involved.insert(&e.site);
            let key = (
                period_of(e.period_start_ms),
                e.tenant.clone(),
                String::new(),
                e.site.clone(),
                Resource::Egress,
                String::new(),
            );
            *sums.entry(key).or_default() += e.bytes as f64;
        }
    }
    let rows = sums
        .into_iter()
        .map(
            |((period, tenant, workload, site, resource, detail), amount)| UsageRow {
                period_start_ms: period,
                final_: mark(&site) >= period + PERIOD_MS,
                tenant,
                workload,
                site,
                resource,
                detail,
                amount,
            },
        )
        .collect();
    let mut periods = Vec::new();
    let mut p = from;
    while p < to {
        periods.push(PeriodStatus {
            start_ms: p,
            sites_behind: involved
                .iter()
                .filter(|s| mark(s) < p + PERIOD_MS)
                .map(|s| (*s).to_owned())
                .collect(),
        });
        p += PERIOD_MS;
    }
    (rows, periods)
}

/// What `ms` milliseconds of `q` come to in the resource's unit.
fn amount(q: &Quantity, ms: i64) -> f64 {
    let seconds = ms as f64 / 1000.0;
    match q.resource {
        Resource::Storage => q.amount * seconds / 3600.0,
        _ => q.amount * seconds,
    }
}

/// Per-(resource, detail) totals of `rows`.
pub fn totals(rows: &[UsageRow]) -> Vec<(Resource, String, f64)> {
    let mut out: BTreeMap<(Resource, String), f64> = BTreeMap::new();
    for r in rows {
        *out.entry((r.resource, r.detail.clone())).or_default() += r.amount;
    }
    out.into_iter().map(|((r, d), a)| (r, d, a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = PERIOD_MS;
    const T0: i64 = 1_800_000_000_000 - 1_800_000_000_000 % H;

    fn span(site: &str, start: i64, end: Option<i64>, gpus: f64) -> Span {
        Span {
            site: site.into(),
            tenant: "acme".into(),
            workload: "wl-1".into(),
            subject: "alloc/wl-1/srv-1".into(),
            start_ms: start,
            end_ms: end,
            quantities: vec![Quantity {
                resource: Resource::Gpu,
                detail: "H100-80GB".into(),
                amount: gpus,
            }],
        }
    }

    fn marks(list: &[(&str, i64)]) -> BTreeMap<String, i64> {
        list.iter().map(|(s, m)| ((*s).into(), *m)).collect()
    }

    #[test]
    fn a_span_is_split_across_the_periods_it_crosses() {
        // 2 GPUs from 00:30 to 02:15: 1,800 s + 3,600 s + 900 s of 2 GPUs.
        let spans = [span("a", T0 + H / 2, Some(T0 + 2 * H + H / 4), 2.0)];
        let (rows, periods) = usage(
            &spans,
            &[],
            &marks(&[("a", T0 + 5 * H)]),
            &BTreeSet::new(),
            T0,
            T0 + 3 * H,
        );
        let amounts: Vec<f64> = rows.iter().map(|r| r.amount).collect();
        assert_eq!(amounts, vec![3_600.0, 7_200.0, 1_800.0]);
        assert!(rows.iter().all(|r| r.final_));
        assert!(periods.iter().all(PeriodStatus::is_final));
        assert_eq!(totals(&rows)[0].2, 12_600.0);
    }

    #[test]
    fn an_open_span_counts_up_to_its_sites_mark_and_is_not_final_past_it() {
        // Open since 00:00; the site's reports reach 01:30 (then it was cut off).
        let spans = [span("a", T0, None, 1.0)];
        let (rows, periods) = usage(
            &spans,
            &[],
            &marks(&[("a", T0 + H + H / 2)]),
            &BTreeSet::new(),
            T0,
            T0 + 3 * H,
        );
        assert_eq!(rows.len(), 2);
        assert_eq!((rows[0].amount, rows[0].final_), (3_600.0, true));
        assert_eq!((rows[1].amount, rows[1].final_), (1_800.0, false));
        let behind: Vec<bool> = periods.iter().map(PeriodStatus::is_final).collect();
        assert_eq!(behind, vec![true, false, false]);
        assert_eq!(
            periods[2].sites_behind.iter().collect::<Vec<_>>(),
            vec!["a"]
        );
    }

    #[test]
    fn a_site_with_placements_but_no_span_keeps_periods_open_until_it_reports() {
        let (rows, periods) = usage(
            &[],
            &[Egress {
                site: "b".into(),
                tenant: "acme".into(),
                period_start_ms: T0 + H,
                bytes: 1_500,
            }],
            &marks(&[("b", T0 + H)]),
            &["b".to_owned()].into(),
            T0,
            T0 + 2 * H,
        );
        // The egress counted in the second hour is the tenant's, not final yet.
        assert_eq!(rows.len(), 1);
        assert_eq!(
            (rows[0].resource, rows[0].amount, rows[0].final_),
            (Resource::Egress, 1_500.0, false)
        );
        assert!(periods[0].is_final());
        assert!(!periods[1].is_final());
    }

    #[test]
    fn storage_is_in_gib_hours_and_ranges_widen_to_whole_periods() {
        let mut s = span("a", T0, Some(T0 + H / 2), 100.0);
        s.quantities[0].resource = Resource::Storage;
        let (rows, _) = usage(
            &[s],
            &[],
            &marks(&[("a", T0 + H)]),
            &BTreeSet::new(),
            T0,
            T0 + H,
        );
        assert_eq!(rows[0].amount, 50.0);
        let (from, to) = whole_periods(
            Timestamp::from_millis(T0 + 1),
            Timestamp::from_millis(T0 + H + 1),
        );
        assert_eq!((from, to), (T0, T0 + 2 * H));
        assert_eq!(
            whole_periods(Timestamp::from_millis(T0), Timestamp::from_millis(T0 + H)),
            (T0, T0 + H)
        );
    }
}
