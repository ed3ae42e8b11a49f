//! Tenant quotas over time: a tenant's usage is the sum of its placements whose windows
//! overlap; a new placement fits when the peak over its window, plus itself, stays within
//! every quota (whole GPUs per model, MIG compute slices, concurrent reservations, and
//! distinct sites occupied at any one instant).

use std::collections::BTreeSet;

use meridian_common::model::{GpuModel, Quotas};

use super::capacity::Span;

/// What one committed placement of a tenant holds.
#[derive(Debug, Clone)]
pub(crate) struct Usage {
    pub owner: u32,
    pub span: Span,
    pub model: Option<GpuModel>,
    pub gpus: u32,
    pub mig_slices: u32,
    pub sites: BTreeSet<u32>,
}

/// Which quota a placement would exceed, with the numbers for the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuotaExceeded {
    pub what: String,
    pub peak: u64,
    pub adding: u64,
    pub limit: u64,
}

/// The peak of `amount` over the usages overlapping `span` (a sweep over start/end events).
fn peak(usages: &[Usage], span: &Span, amount: impl Fn(&Usage) -> u64) -> u64 {
    let mut events: Vec<(i64, i64)> = Vec::new();
    for u in usages.iter().filter(|u| u.span.overlaps(span)) {
        let a = amount(u) as i64;
        if a == 0 {
            continue;
        }
        events.push((u.span.start.max(span.start), a));
        events.push((u.span.end.min(span.end), -a));
    }
    // Ends sort before starts at the same instant: windows are half-open.
    events.sort_by(|x, y| x.0.cmp(&y.0).then(x.1.cmp(&y.1)));
    let (mut now, mut max) = (0i64, 0i64);
    for (_, delta) in events {
        now += delta;
        max = max.max(now);
    }
    max as u64
}

/// Checks a new usage against the tenant's quotas and existing usages.
pub(crate) fn check(quotas: &Quotas, usages: &[Usage], new: &Usage) -> Result<(), QuotaExceeded> {
    let exceeded = |what: String, peak: u64, adding: u64, limit: u64| {
        if peak + adding > limit {
            Err(QuotaExceeded {
                what,
                peak,
                adding,
                limit,
            })
        } else {
            Ok(())
        }
    };
    if let Some(model) = new.model
        && new.gpus > 0
    {
        let limit = quotas.gpus_per_model.get(&model).copied().unwrap_or(0);
        let used = peak(usages, &new.span, |u| {
            if u.model == Some(model) {
                u64::from(u.gpus)
            } else {
                0
            }
        });
        exceeded(
            format!("{model} GPUs"),
            used,
            u64::from(new.gpus),
            u64::from(limit),
        )?;
    }
    if new.mig_slices > 0 {
        let used = peak(usages, &new.span, |u| u64::from(u.mig_slices));
        exceeded(
            "MIG compute slices".into(),
            used,
            u64::from(new.mig_slices),
            u64::from(quotas.mig_slices),
        )?;
    }
    let concurrent = peak(usages, &new.span, |_| 1);
    exceeded(
        "concurrent reservations".into(),
        concurrent,
        1,
        u64::from(quotas.concurrent_reservations),
    )?;
    let limit = u64::from(quotas.sites);
    if sites_bound(usages, &new.span) + new.sites.len() as u64 <= limit {
        return Ok(());
    }
    for in_use in sites_at_instants(usages, &new.span) {
        let added = new.sites.iter().filter(|s| !in_use.contains(s)).count() as u64;
        exceeded("sites".into(), in_use.len() as u64, added, limit)?;
    }
    Ok(())
}

/// An upper bound on the sites the tenant occupies at any instant of `span`, without sets.
fn sites_bound(usages: &[Usage], span: &Span) -> u64 {
    usages
        .iter()
        .filter(|u| u.span.overlaps(span))
        .map(|u| u.sites.len() as u64)
        .sum()
}

/// The sites the tenant occupies at each instant of `span` where its usage changes (the
/// start of the span and every start inside it).
fn sites_at_instants(usages: &[Usage], span: &Span) -> Vec<BTreeSet<u32>> {
    let overlapping: Vec<&Usage> = usages.iter().filter(|u| u.span.overlaps(span)).collect();
    let mut instants: Vec<i64> = overlapping
        .iter()
        .map(|u| u.span.start.max(span.start))
        .chain([span.start])
        .collect();
    instants.sort_unstable();
    instants.dedup();
    instants
        .into_iter()
        .map(|t| {
            overlapping
                .iter()
                .filter(|u| u.span.start <= t && t < u.span.end)
                .flat_map(|u| u.sites.iter().copied())
                .collect()
        })
        .collect()
}

/// Where a workload over `span` may still go under the site quota: `None` when any site is
/// fine, else only the sites the tenant already occupies at every instant its quota is full.
pub(crate) fn site_allowance(
    quotas: &Quotas,
    usages: &[Usage],
    span: &Span,
) -> Option<BTreeSet<u32>> {
    let limit = quotas.sites as usize;
    if sites_bound(usages, span) < limit as u64 {
        return None;
    }
    let mut allowed: Option<BTreeSet<u32>> = None;
    for in_use in sites_at_instants(usages, span) {
        if in_use.len() >= limit {
            allowed = Some(match allowed {
                None => in_use,
                Some(a) => a.intersection(&in_use).copied().collect(),
            });
        }
    }
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(owner: u32, start: i64, end: i64, gpus: u32, site: u32) -> Usage {
        Usage {
            owner,
            span: Span { start, end },
            model: Some(GpuModel::H100_80GB),
            gpus,
            mig_slices: 0,
            sites: [site].into(),
        }
    }

    fn quotas(gpus: u32) -> Quotas {
        Quotas {
            gpus_per_model: [(GpuModel::H100_80GB, gpus)].into(),
            mig_slices: 0,
            concurrent_reservations: 10,
            sites: 3,
        }
    }

    #[test]
    fn peaks_count_only_overlapping_windows() {
        // Monday and Tuesday reservations of 64 GPUs each never overlap.
        let existing = [usage(1, 0, 100, 64, 0)];
        assert!(check(&quotas(64), &existing, &usage(2, 100, 200, 64, 0)).is_ok());
        let err = check(&quotas(64), &existing, &usage(2, 50, 150, 1, 0)).unwrap_err();
        assert_eq!((err.peak, err.adding, err.limit), (64, 1, 64));
        // Two 32s that do not overlap each other peak at 32 inside a window covering both.
        let split = [usage(1, 0, 10, 32, 0), usage(2, 10, 20, 32, 0)];
        assert!(check(&quotas(64), &split, &usage(3, 0, 20, 32, 0)).is_ok());
        assert!(check(&quotas(64), &split, &usage(3, 0, 20, 33, 0)).is_err());
    }

    #[test]
    fn models_without_quota_and_site_limits_refuse() {
        let mut q = quotas(8);
        let mut other = usage(1, 0, 10, 1, 0);
        other.model = Some(GpuModel::L4);
        assert_eq!(check(&q, &[], &other).unwrap_err().limit, 0);
        q.sites = 1;
        let existing = [usage(1, 0, 10, 1, 0)];
        assert!(check(&q, &existing, &usage(2, 0, 10, 1, 0)).is_ok());
        assert_eq!(
            check(&q, &existing, &usage(2, 0, 10, 1, 7))
                .unwrap_err()
                .what,
            "sites"
        );
        q.concurrent_reservations = 1;
        assert!(check(&q, &existing, &usage(2, 5, 10, 1, 0)).is_err());
        assert!(check(&q, &existing, &usage(2, 10, 20, 1, 0)).is_ok());
    }
}
