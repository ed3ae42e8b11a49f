//! Measured RTTs: each agent probes the user regions its configuration lists and reports
//! `ReportBody::Rtt { region, rtt_ms }`. Ingest keeps the latest per (site, region) at
//! `rtts/{site}/{region}` ([`proto::MeasuredRttRecord`]), written in the same transaction as
//! the reports that carry it ([`ops`]); the lifecycle hands the fresh ones to the planner,
//! which prefers them over its distance estimate ([`fresh`]).

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::ids::{RegionId, SiteId, Timestamp};
use meridian_common::model::{ReportBody, SiteReport};
use meridian_plan::placement::MeasuredRtt;
use meridian_proto::v1 as proto;
use meridian_store::Op;
use meridian_store::Tables;
use meridian_store::tables::{Table, TableError};

/// The writes of the newest RTT per region among `reports` (a batch in sequence order).
/// Every report rewrites its record, so the stored time stays that of the latest measurement.
pub(crate) fn ops<'a>(
    site: &SiteId,
    reports: impl Iterator<Item = &'a SiteReport>,
) -> Result<Vec<Op>, TableError> {
    let mut latest: BTreeMap<&RegionId, (u32, Timestamp)> = BTreeMap::new();
    for report in reports {
        if let ReportBody::Rtt { region, rtt_ms } = &report.body {
            latest.insert(region, (*rtt_ms, report.at));
        }
    }
    latest
        .into_iter()
        .map(|(region, (rtt_ms, at))| {
            Table::<proto::MeasuredRttRecord>::put_op(&record(site, region, rtt_ms, at))
        })
        .collect()
}

/// The stored form of one measurement (an RTT below 1 ms is kept as 1 ms, as agents send it).
pub(crate) fn record(
    site: &SiteId,
    region: &RegionId,
    rtt_ms: u32,
    at: Timestamp,
) -> proto::MeasuredRttRecord {
    proto::MeasuredRttRecord {
        site: site.to_string(),
        region: region.to_string(),
        rtt_ms: rtt_ms.max(1),
        measured_at_ms: at.as_millis(),
    }
}

/// Whether a measurement taken at `measured_at_ms` is still fresh at `now`.
pub(crate) fn is_fresh(measured_at_ms: i64, now: Timestamp, max_age_ms: u64) -> bool {
    now.as_millis().saturating_sub(measured_at_ms) <= i64::try_from(max_age_ms).unwrap_or(i64::MAX)
}

/// What the planner gets: the measurements no older than `max_age_ms` at `now`, of the sites
/// and regions it knows (a measurement of a deleted site or region is skipped), and the
/// earliest time one of them goes stale (`None`: none is fresh).
pub(crate) async fn fresh(
    tables: &Tables,
    sites: &BTreeSet<&SiteId>,
    regions: &BTreeSet<&RegionId>,
    now: Timestamp,
    max_age_ms: u64,
) -> Result<(Vec<MeasuredRtt>, Option<Timestamp>), TableError> {
    let mut out = Vec::new();
    let mut expires: Option<i64> = None;
    for r in tables.rtts().list_all(None, 1000).await? {
        if !is_fresh(r.measured_at_ms, now, max_age_ms) {
            continue;
        }
        let (Ok(site), Ok(region)) = (SiteId::parse(&r.site), RegionId::parse(&r.region)) else {
            continue;
        };
        if !sites.contains(&site) || !regions.contains(&region) {
            continue;
        }
        let at = r
            .measured_at_ms
            .saturating_add(i64::try_from(max_age_ms).unwrap_or(i64::MAX));
        expires = Some(expires.map_or(at, |e| e.min(at)));
        out.push(MeasuredRtt {
            site,
            region,
            rtt_ms: f64::from(r.rtt_ms),
        });
    }
    Ok((
        out,
        expires.map(|e| Timestamp::from_millis(e.saturating_add(1))),
    ))
}

/// The RTTs a site's agent measured, by region.
pub(crate) async fn of_site(
    tables: &Tables,
    site: &SiteId,
) -> Result<Vec<proto::MeasuredRttRecord>, TableError> {
    tables.rtts().list_all(Some(site), 1000).await
}

#[cfg(test)]
mod tests {
    use meridian_common::ids::{Generation, Sequence};

    use super::*;

    fn rtt(seq: u64, region: &str, rtt_ms: u32, at: i64) -> SiteReport {
        SiteReport {
            site: SiteId::parse("edge-1").unwrap(),
            sequence: Sequence::new(seq),
            generation: Generation::new(1),
            at: Timestamp::from_millis(at),
            body: ReportBody::Rtt {
                region: RegionId::parse(region).unwrap(),
                rtt_ms,
            },
        }
    }

    #[test]
    fn the_newest_measurement_per_region_is_written() {
        let site = SiteId::parse("edge-1").unwrap();
        let reports = [
            rtt(1, "paris", 12, 1_000),
            rtt(2, "berlin", 0, 1_500),
            rtt(3, "paris", 30, 2_000),
        ];
        let ops = ops(&site, reports.iter()).unwrap();
        assert_eq!(ops.len(), 2);
        let written: Vec<(String, proto::MeasuredRttRecord)> = ops
            .into_iter()
            .map(|op| match op {
                Op::Put { key, value } => (
                    String::from_utf8(key).unwrap(),
                    <proto::MeasuredRttRecord as prost::Message>::decode(value.as_slice()).unwrap(),
                ),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(written[0].0, "rtts/edge-1/berlin");
        assert_eq!(written[0].1.rtt_ms, 1, "below 1 ms is kept as 1 ms");
        assert_eq!(written[1].0, "rtts/edge-1/paris");
        assert_eq!(
            (written[1].1.rtt_ms, written[1].1.measured_at_ms),
            (30, 2_000)
        );
    }

    #[test]
    fn freshness_is_inclusive_of_the_max_age() {
        let now = Timestamp::from_millis(10_000);
        assert!(is_fresh(4_000, now, 6_000));
        assert!(!is_fresh(3_999, now, 6_000));
        assert!(is_fresh(12_000, now, 0), "a clock ahead of ours is fresh");
    }
}
