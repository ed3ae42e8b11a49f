//! Busy GPU utilisation: each agent reports, per period, NVML's utilisation of its GPUs in
//! service (`ReportBody::Metrics` with a [`MetricsPeriod`]). Ingest adds each summary to the
//! site's `utilisation/{hour}/{site}` record ([`proto::BusyUtilisationRecord`]) of every hour
//! the period overlaps, in proportion, in the same transaction as the reports that carry it
//! ([`ops`]); the console and the cost service read them back ([`site_hours`],
//! [`fleet_hours`], [`Busy`]).
//!
//! Definitions (docs/console.md): **allocated utilisation** is GPU-seconds held by
//! allocations applied at their site over GPU-seconds available (online, healthy, not
//! drained); **busy utilisation** is NVML's GPU utilisation averaged over the same GPUs and
//! time. So servers drained when the summary arrives are left out (the agent already leaves
//! out servers that are not available or allocated), and MIG devices are not kept (NVML gives
//! them no utilisation rates; a GPU in MIG mode counts as reported, not measured).
//!
//! A summary is counted once per hour record: the record keeps the start of every period it
//! counted, so a resent summary, or a newer one of the same period, is skipped.

use futures_util::future::try_join_all;
use std::collections::{BTreeMap, BTreeSet};

use meridian_common::ids::{ServerId, SiteId, Timestamp};
use meridian_common::model::{MetricsPeriod, ReportBody, SiteReport};
use meridian_proto::v1 as proto;
use meridian_store::Op;
use meridian_store::Tables;
use meridian_store::tables::{AuditSeq, KeyPath, Table, TableError, TableKey};

/// An hour, ms.
pub const HOUR_MS: i64 = 3_600_000;

/// The start of the hour `t` is in.
pub fn hour_of(t: Timestamp) -> i64 {
    t.as_millis().div_euclid(HOUR_MS) * HOUR_MS
}

/// The hours `[start_ms, end_ms)` overlaps, with the seconds of it in each.
pub fn split_hours(start_ms: i64, end_ms: i64) -> Vec<(i64, f64)> {
    let mut out = Vec::new();
    let mut t = start_ms;
    while t < end_ms {
        let hour = t.div_euclid(HOUR_MS) * HOUR_MS;
        let until = (hour + HOUR_MS).min(end_ms);
        out.push((hour, (until - t) as f64 / 1000.0));
        t = until;
    }
    out
}

/// Adds `seconds` of `period` to `record` (whose hour they fall in), leaving out the servers
/// in `drained`. Returns `false`, changing nothing, when the record counted the period
/// already.
pub fn add_period(
    record: &mut proto::BusyUtilisationRecord,
    period: &MetricsPeriod,
    seconds: f64,
    drained: &BTreeSet<String>,
) -> bool {
    let start = period.start.as_millis();
    if record.periods.contains(&start) {
        return false;
    }
    record.periods.push(start);
    record.periods.sort_unstable();
    for g in &period.gpus {
        if g.mig_slot.is_some() || drained.contains(g.server.as_str()) {
            continue;
        }
        let i = match record
            .gpus
            .iter()
            .position(|t| t.server == g.server.as_str() && t.gpu == g.gpu)
        {
            Some(i) => i,
            None => {
                record.gpus.push(proto::GpuBusyTotal {
                    server: g.server.to_string(),
                    gpu: g.gpu,
                    ..Default::default()
                });
                record.gpus.len() - 1
            }
        };
        let t = &mut record.gpus[i];
        t.reported_seconds += seconds;
        t.memory_used_seconds += g.memory_used_pct / 100.0 * seconds;
        if g.busy_samples > 0 {
            t.measured_seconds += seconds;
            t.busy_seconds += g.busy_pct / 100.0 * seconds;
        }
    }
    record
        .gpus
        .sort_by(|a, b| (a.server.as_str(), a.gpu).cmp(&(b.server.as_str(), b.gpu)));
    true
}

/// The key path of a site's record of an hour.
fn path(hour_start_ms: i64, site: &SiteId) -> KeyPath {
    KeyPath(format!(
        "{}/{site}",
        AuditSeq(hour_start_ms.max(0) as u64).path()
    ))
}

/// The writes the batch's utilisation summaries call for (`reports` in sequence order): the
/// site's hour records they add to. Reports without a period, or with no GPUs, write nothing
/// (and cost no read).
pub async fn ops<'a>(
    tables: &Tables,
    site: &SiteId,
    reports: impl Iterator<Item = &'a SiteReport>,
) -> Result<Vec<Op>, TableError> {
    let periods: Vec<&MetricsPeriod> = reports
        .filter_map(|r| match &r.body {
            ReportBody::Metrics {
                period: Some(p), ..
            } if p.gpus.iter().any(|g| g.mig_slot.is_none()) => Some(p),
            _ => None,
        })
        .collect();
    if periods.is_empty() {
        return Ok(Vec::new());
    }
    // Every read up front and at once: a store read waits until what it saw is durable, so
    // reads one after another would each wait for a group commit on the ingest path.
    let hours: BTreeSet<i64> = periods
        .iter()
        .flat_map(|p| split_hours(p.start.as_millis(), p.end().as_millis()))
        .map(|(hour, _)| hour)
        .collect();
    let table = tables.busy_utilisation();
    let drains = tables.drains();
    let (drained, stored) = tokio::try_join!(
        drains.list_all(Some(site), 1000),
        try_join_all(hours.iter().map(|&hour| {
            let table = &table;
            async move {
                let stored = table.get(&path(hour, site)).await?.map(|v| v.record);
                Ok::<_, TableError>((hour, stored))
            }
        })),
    )?;
    let drained: BTreeSet<String> = drained.into_iter().map(|d| d.server).collect();
    let mut records: BTreeMap<i64, (proto::BusyUtilisationRecord, bool)> = stored
        .into_iter()
        .map(|(hour, stored)| {
            let record = stored.unwrap_or_else(|| proto::BusyUtilisationRecord {
                site: site.to_string(),
                hour_start_ms: hour,
                ..Default::default()
            });
            (hour, (record, false))
        })
        .collect();
    for p in periods {
        for (hour, seconds) in split_hours(p.start.as_millis(), p.end().as_millis()) {
            let (record, changed) = records.get_mut(&hour).expect("read above");
            *changed |= add_period(record, p, seconds, &drained);
        }
    }
    records
        .into_values()
        .filter(|(_, changed)| *changed)
        .map(|(r, _)| Table::<proto::BusyUtilisationRecord>::put_op(&r))
        .collect()
}

/// A site's records of the hours overlapping `[from, to)`, oldest first.
pub async fn site_hours(
    tables: &Tables,
    site: &SiteId,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<proto::BusyUtilisationRecord>, TableError> {
    let table = tables.busy_utilisation();
    let mut out = Vec::new();
    let mut hour = hour_of(from);
    while hour < to.as_millis() {
        if let Some(v) = table.get(&path(hour, site)).await? {
            out.push(v.record);
        }
        hour += HOUR_MS;
    }
    Ok(out)
}

/// Every site's records of the hours overlapping `[from, to)`, by hour.
pub async fn fleet_hours(
    tables: &Tables,
    from: Timestamp,
    to: Timestamp,
) -> Result<Vec<proto::BusyUtilisationRecord>, TableError> {
    let table = tables.busy_utilisation();
    let end = to.as_millis();
    let mut out = Vec::new();
    // `{hour}` sorts just before `{hour}/{site}`: listing after it starts at that hour.
    let mut after = AuditSeq(hour_of(from).max(0) as u64).path();
    loop {
        let page = table.list(None, Some(&after), 1000).await?;
        for v in page.items {
            if v.record.hour_start_ms >= end {
                return Ok(out);
            }
            out.push(v.record);
        }
        match page.next {
            Some(next) => after = next,
            None => return Ok(out),
        }
    }
}

/// Busy and measured GPU-seconds, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Busy {
    /// Seconds with busy samples, summed over GPUs.
    pub measured_seconds: f64,
    /// Busy seconds (utilisation x seconds), summed over GPUs.
    pub busy_seconds: f64,
}

impl Busy {
    /// The GPUs of `record` that `keep` (server, GPU index) accepts, added.
    pub fn add(&mut self, record: &proto::BusyUtilisationRecord, keep: impl Fn(&str, u32) -> bool) {
        for g in &record.gpus {
            if keep(&g.server, g.gpu) {
                self.measured_seconds += g.measured_seconds;
                self.busy_seconds += g.busy_seconds;
            }
        }
    }

    /// Every GPU of `records`.
    pub fn of(records: &[proto::BusyUtilisationRecord]) -> Self {
        let mut b = Busy::default();
        for r in records {
            b.add(r, |_, _| true);
        }
        b
    }

    /// Busy utilisation, a fraction; `None` when nothing was measured.
    pub fn utilisation(&self) -> Option<f64> {
        (self.measured_seconds > 0.0)
            .then(|| (self.busy_seconds / self.measured_seconds).clamp(0.0, 1.0))
    }
}

/// Whether `server`'s GPU `gpu` is one of `held` (site-local (server, GPU index) pairs).
pub fn holds(held: &BTreeSet<(ServerId, u32)>, server: &str, gpu: u32) -> bool {
    held.iter().any(|(s, g)| s.as_str() == server && *g == gpu)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use meridian_common::ids::{Generation, Sequence};
    use meridian_common::model::GpuUtilisation;
    use meridian_store::{Store, Txn};

    use super::*;

    /// 2026-01-01T10:00:00Z.
    const H10: i64 = 1_767_261_600_000;
    const MIN: i64 = 60_000;

    fn gpu(server: &str, gpu: u32, busy: Option<f64>, mig_slot: Option<u32>) -> GpuUtilisation {
        GpuUtilisation {
            server: ServerId::parse(server).unwrap(),
            gpu,
            mig_slot,
            samples: 12,
            busy_samples: if busy.is_some() { 12 } else { 0 },
            busy_pct: busy.unwrap_or(0.0),
            memory_busy_pct: 0.0,
            memory_used_pct: 50.0,
        }
    }

    fn summary(seq: u64, start: i64, length_ms: u64, gpus: Vec<GpuUtilisation>) -> SiteReport {
        SiteReport {
            site: SiteId::parse("edge-1").unwrap(),
            sequence: Sequence::new(seq),
            generation: Generation::new(1),
            at: Timestamp::from_millis(start + length_ms as i64),
            body: ReportBody::Metrics {
                gpu_utilisation_pct: 0.0,
                power_watts: 0.0,
                period: Some(MetricsPeriod {
                    start: Timestamp::from_millis(start),
                    length_ms,
                    gpus,
                }),
            },
        }
    }

    #[test]
    fn periods_split_over_the_hours_they_overlap() {
        assert_eq!(split_hours(H10, H10 + MIN), [(H10, 60.0)]);
        assert_eq!(
            split_hours(H10 - 20_000, H10 + 40_000),
            [(H10 - HOUR_MS, 20.0), (H10, 40.0)]
        );
        assert_eq!(split_hours(H10, H10), []);
        assert_eq!(hour_of(Timestamp::from_millis(H10 + 59 * MIN)), H10);
    }

    #[test]
    fn a_period_adds_busy_seconds_once_leaving_out_mig_devices_and_drained_servers() {
        let mut r = proto::BusyUtilisationRecord {
            site: "edge-1".into(),
            hour_start_ms: H10,
            ..Default::default()
        };
        let p = MetricsPeriod {
            start: Timestamp::from_millis(H10),
            length_ms: 60_000,
            gpus: vec![
                gpu("srv-1", 0, Some(40.0), None),
                gpu("srv-1", 1, None, None),
                gpu("srv-1", 1, None, Some(2)),
                gpu("srv-2", 0, Some(100.0), None),
            ],
        };
        let drained = BTreeSet::from(["srv-2".to_owned()]);
        assert!(add_period(&mut r, &p, 60.0, &drained));
        assert!(!add_period(&mut r, &p, 60.0, &drained), "counted once");
        assert_eq!(r.periods, [H10]);
        assert_eq!(r.gpus.len(), 2);
        let g0 = &r.gpus[0];
        assert_eq!((g0.server.as_str(), g0.gpu), ("srv-1", 0));
        assert_eq!((g0.measured_seconds, g0.busy_seconds), (60.0, 24.0));
        assert_eq!((g0.reported_seconds, g0.memory_used_seconds), (60.0, 30.0));
        let g1 = &r.gpus[1];
        assert_eq!((g1.measured_seconds, g1.reported_seconds), (0.0, 60.0));
        assert_eq!(Busy::of(&[r]).utilisation(), Some(0.4));
        assert_eq!(Busy::default().utilisation(), None);
    }

    #[tokio::test]
    async fn summaries_are_stored_per_hour_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> =
            Arc::new(meridian_store::SledStore::open(dir.path(), &Default::default()).unwrap());
        let tables = Tables::new(store.clone());
        let site = SiteId::parse("edge-1").unwrap();
        let apply = |ops: Vec<Op>| {
            let store = store.clone();
            async move {
                let mut txn = Txn::new();
                for op in ops {
                    txn = txn.then(op);
                }
                assert!(store.txn(txn).await.unwrap().succeeded);
            }
        };
        // Minute 59 of 09:00 at 20 % busy, minutes 0 and 1 of 10:00 at 40 % and 60 %; a
        // minute straddling 10:59-11:00 at 100 %; a report of an older agent (no period).
        let reports = [
            summary(
                1,
                H10 - MIN,
                60_000,
                vec![gpu("srv-1", 0, Some(20.0), None)],
            ),
            summary(2, H10, 60_000, vec![gpu("srv-1", 0, Some(40.0), None)]),
            summary(
                3,
                H10 + MIN,
                60_000,
                vec![gpu("srv-1", 0, Some(60.0), None)],
            ),
            summary(
                4,
                H10 + HOUR_MS - 30_000,
                60_000,
                vec![gpu("srv-1", 0, Some(100.0), None)],
            ),
            SiteReport {
                body: ReportBody::Metrics {
                    gpu_utilisation_pct: 3.0,
                    power_watts: 0.0,
                    period: None,
                },
                ..summary(5, H10, 1, vec![])
            },
        ];
        let written = ops(&tables, &site, reports.iter()).await.unwrap();
        assert_eq!(written.len(), 3, "09:00, 10:00 and 11:00");
        apply(written).await;
        // The same batch again (a replay) and a newer summary of a counted period: no change.
        let again = ops(&tables, &site, reports[1..3].iter()).await.unwrap();
        assert!(again.is_empty(), "{again:?}");
        let hours = site_hours(
            &tables,
            &site,
            Timestamp::from_millis(H10),
            Timestamp::from_millis(H10 + HOUR_MS),
        )
        .await
        .unwrap();
        assert_eq!(hours.len(), 1);
        let h = &hours[0];
        assert_eq!(h.periods, [H10, H10 + MIN, H10 + HOUR_MS - 30_000]);
        // 60 s at 40 %, 60 s at 60 %, 30 s at 100 %: 90 busy seconds of 150.
        let b = Busy::of(&hours);
        assert!((b.measured_seconds - 150.0).abs() < 1e-9);
        assert!((b.busy_seconds - 90.0).abs() < 1e-9);
        assert!((b.utilisation().unwrap() - 0.6).abs() < 1e-9);
        // The fleet's hours from 09:00 to 11:00 (exclusive): the 09:00 and 10:00 records.
        let fleet = fleet_hours(
            &tables,
            Timestamp::from_millis(H10 - HOUR_MS),
            Timestamp::from_millis(H10 + HOUR_MS),
        )
        .await
        .unwrap();
        let starts: Vec<i64> = fleet.iter().map(|r| r.hour_start_ms).collect();
        assert_eq!(starts, [H10 - HOUR_MS, H10]);
        let eleven = site_hours(
            &tables,
            &site,
            Timestamp::from_millis(H10 + HOUR_MS),
            Timestamp::from_millis(H10 + HOUR_MS + 1),
        )
        .await
        .unwrap();
        assert!((Busy::of(&eleven).busy_seconds - 30.0).abs() < 1e-9);
        // A drained server's GPUs are not added.
        tables
            .drains()
            .upsert(&proto::ServerDrainRecord {
                site: "edge-1".into(),
                server: "srv-9".into(),
                request: 1,
            })
            .await
            .unwrap();
        let drained = ops(
            &tables,
            &site,
            [summary(
                6,
                H10 + 2 * MIN,
                60_000,
                vec![gpu("srv-9", 0, Some(90.0), None)],
            )]
            .iter(),
        )
        .await
        .unwrap();
        apply(drained).await;
        let hours = site_hours(
            &tables,
            &site,
            Timestamp::from_millis(H10),
            Timestamp::from_millis(H10 + 1),
        )
        .await
        .unwrap();
        assert_eq!(hours[0].periods.len(), 4);
        assert!(hours[0].gpus.iter().all(|g| g.server == "srv-1"));
    }
}
