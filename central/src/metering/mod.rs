//! Metering: durable records of what each tenant used, per tenant, workload, site and
//! resource, from what actually ran.
//!
//! Ingest records **spans** (`usage/intervals/`, [`record`]): an allocation from the time its
//! site reported it applied to the time it reported it ended, holding whole GPUs by model, a
//! MIG slice by profile and CPU cores; a volume while it exists, in GiB. Egress bytes come
//! per tenant and hour from the sites' gateway counters (`usage/egress/`). The times are the
//! site's observation times, so a site cut off from central meters the hour it was away
//! correctly once its buffered reports arrive. Each site's **mark** is the newest observation
//! time among its stored reports (agents report their utilisation at least every minute, so
//! a connected site's mark follows the clock).
//!
//! Usage per period (an hour, UTC) is computed from the spans and the marks ([`periods`]): a
//! period is final for a site once its mark passed the period's end, and a final period never
//! changes. Nothing is summed at ingest, so accounting costs ingest one extra write per
//! allocation start or end, none per report.

pub mod model;
pub mod periods;
pub(crate) mod record;

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::ids::TenantId;
use meridian_store::schema::{SITES_PREFIX, SiteChannel, SiteRecord, site_of};
use meridian_store::tables::TableError;
use meridian_store::{RangeRequest, Tables};

pub use model::{Egress, Quantity, Resource, Span, UsageRow};
pub use periods::{MAX_RANGE_MS, PERIOD_MS, PeriodStatus};

/// Usage of `[from, to)` (unix ms, whole periods), of one tenant or (`None`) every tenant.
pub async fn usage(
    tables: &Tables,
    tenant: Option<&TenantId>,
    from: i64,
    to: i64,
) -> Result<(Vec<UsageRow>, Vec<PeriodStatus>), TableError> {
    let spans: Vec<Span> = tables
        .usage_intervals()
        .list_all(None, 1000)
        .await?
        .into_iter()
        .map(Span::from)
        .filter(|s| tenant.is_none_or(|t| s.tenant == t.as_str()))
        .filter(|s| s.start_ms < to && s.end_ms.is_none_or(|e| e > from))
        .collect();
    // Sites where the tenants in scope hold placements now: a report of theirs may still be
    // on its way from there.
    let mut sites = BTreeSet::new();
    for p in tables
        .placements()
        .list_all(tenant.map(|t| t as _), 1000)
        .await?
    {
        for a in p.assignments {
            sites.insert(a.site.to_string());
        }
    }
    let egress: Vec<Egress> = tables
        .usage_egress()
        .list_all(None, 1000)
        .await?
        .into_iter()
        .map(Egress::from)
        .filter(|e| tenant.is_none_or(|t| e.tenant == t.as_str()))
        .filter(|e| e.period_start_ms >= from && e.period_start_ms < to)
        .collect();
    let marks = marks(tables).await?;
    Ok(periods::usage(&spans, &egress, &marks, &sites, from, to))
}

/// Every site's mark: the newest observation time among its stored reports.
pub async fn marks(tables: &Tables) -> Result<BTreeMap<String, i64>, TableError> {
    let response = tables
        .store()
        .range(RangeRequest::prefix(SITES_PREFIX))
        .await?;
    let mut out = BTreeMap::new();
    for kv in response.kvs {
        if let Some(site) = site_of(&kv.key, SITES_PREFIX) {
            let c = SiteChannel::decode(&kv.key, &kv.value)?;
            out.insert(site.to_string(), c.reports_through_ms);
        }
    }
    Ok(out)
}
