//! Tenant quotas over time: a tenant's usage is the sum of its placements whose windows
//! overlap; a new placement fits when the peak over its window, plus itself, stays within
//! every quota (whole GPUs per model, MIG compute slices, storage in MiB, concurrent
//! reservations, and distinct sites occupied at any one instant).

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
    /// Storage over all replicas, in MiB.
    pub storage_mib: u64,
    pub sites: BTreeSet<u32>,
}

/// Which quota a placement would exceed, with the numbers for the explanation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QuotaExceeded {
    pub what: String,
    pub peak: u64,
    pub adding: u64,
    pub limit: u64,
    /// The unit the numbers are in, with its leading space (`" MiB"`), or empty for counts.
    pub unit: &'static str,
}

impl std::fmt::Display for QuotaExceeded {
    /// `tenant quota for storage: 800 MiB in use during the window, this needs 400 MiB, the
    /// limit is 1000 MiB`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let u = self.unit;
        write!(
            f,
            "tenant quota for {}: {}{u} in use during the window, this needs {}{u}, the limit is {}{u}",
            self.what, self.peak, self.adding, self.limit
        )
    }
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
    let exceeded_in = |what: String, peak: u64, adding: u64, limit: u64, unit| {
        if peak.saturating_add(adding) > limit {
            Err(QuotaExceeded {
                what,
                peak,
                adding,
                limit,
                unit,
            })
        } else {
            Ok(())
        }
    };
    let exceeded = |what: String, peak: u64, adding: u64, limit: u64| {
        exceeded_in(what, peak, adding, limit, "")
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
    if new.storage_mib > 0 {
        let used = peak(usages, &new.span, |u| u.storage_mib);
        exceeded_in(
            "storage".into(),
            used,
            new.storage_mib,
            quotas.storage_mib,
            " MiB",
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

/// How far a new placement over `span` may widen the tenant's footprint under its site quota.
///
/// At each instant where the tenant's sites change, a placement may add at most as many sites
/// as the quota leaves free then. Only instants where fewer sites are free than the placement
/// has replicas can bind; each is a [`SiteLimit`]. A search tracks, per limit, how many new
/// sites it has spent, as one mixed-radix number (see [`SiteBudget::spend`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SiteBudget {
    limits: Vec<SiteLimit>,
}

/// The sites the tenant holds at one binding instant, and how many others may be added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SiteLimit {
    pub held: BTreeSet<u32>,
    pub free: u32,
}

/// Above this many spent-count combinations the limits merge into one conservative limit
/// (the sites held at every binding instant, the fewest free sites at any).
const MAX_STATES: usize = 256;

impl SiteBudget {
    /// How many spent-count combinations a search must track (at least 1).
    pub fn states(&self) -> usize {
        self.limits.iter().map(|l| l.free as usize + 1).product()
    }

    /// The spent-state after also using `site` from state `state`; `None` when that would
    /// exceed a limit. State 0 is "nothing spent".
    pub fn spend(&self, state: usize, site: u32) -> Option<usize> {
        let mut stride = 1;
        let mut next = state;
        for l in &self.limits {
            let radix = l.free as usize + 1;
            if !l.held.contains(&site) {
                if (state / stride) % radix == l.free as usize {
                    return None;
                }
                next += stride;
            }
            stride *= radix;
        }
        Some(next)
    }
}

/// The site budget of a placement of `replicas` over `span`; `None` when the site quota
/// cannot bind, whichever sites the replicas use.
pub(crate) fn site_budget(
    quotas: &Quotas,
    usages: &[Usage],
    span: &Span,
    replicas: u32,
) -> Option<SiteBudget> {
    let limit = quotas.sites as usize;
    let replicas = replicas as usize;
    if sites_bound(usages, span) as usize + replicas <= limit {
        return None;
    }
    let mut limits: Vec<SiteLimit> = Vec::new();
    for held in sites_at_instants(usages, span) {
        let free = limit.saturating_sub(held.len());
        if free >= replicas {
            continue;
        }
        let free = free as u32;
        match limits.iter_mut().find(|l| l.held == held) {
            Some(l) => l.free = l.free.min(free),
            None => limits.push(SiteLimit { held, free }),
        }
    }
    if limits.is_empty() {
        return None;
    }
    let mut budget = SiteBudget { limits };
    if budget.states() > MAX_STATES {
        let merged = budget
            .limits
            .into_iter()
            .reduce(|a, b| SiteLimit {
                held: a.held.intersection(&b.held).copied().collect(),
                free: a.free.min(b.free),
            })
            .expect("at least one limit");
        budget = SiteBudget {
            limits: vec![merged],
        };
    }
    Some(budget)
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
            storage_mib: 0,
            sites: [site].into(),
        }
    }

    fn quotas(gpus: u32) -> Quotas {
        Quotas {
            gpus_per_model: [(GpuModel::H100_80GB, gpus)].into(),
            mig_slices: 0,
            concurrent_reservations: 10,
            sites: 3,
            storage_mib: 0,
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

    #[test]
    fn storage_is_a_quota_over_the_window_in_mib() {
        let mut q = quotas(64);
        q.storage_mib = 1000;
        let with = |owner, start, end, mib| {
            let mut u = usage(owner, start, end, 0, 0);
            u.model = None;
            u.storage_mib = mib;
            u
        };
        let existing = [with(1, 0, 100, 600), with(2, 100, 200, 600)];
        assert!(check(&q, &existing, &with(3, 0, 200, 400)).is_ok());
        let err = check(&q, &existing, &with(3, 50, 150, 500)).unwrap_err();
        assert_eq!(
            (err.what.as_str(), err.peak, err.adding, err.limit),
            ("storage", 600, 500, 1000)
        );
        assert_eq!(
            err.to_string(),
            "tenant quota for storage: 600 MiB in use during the window, this needs 500 MiB, \
             the limit is 1000 MiB"
        );
        // A workload without storage is not held to the storage quota.
        q.storage_mib = 0;
        assert!(check(&q, &existing, &with(3, 0, 200, 0)).is_ok());
    }

    #[test]
    fn site_budget_tracks_each_instant_where_the_quota_binds() {
        let mut q = quotas(64);
        q.sites = 3;
        let span = Span { start: 0, end: 100 };
        // Site 0 is held over [0, 100), site 1 only over [50, 100).
        let existing = [usage(1, 0, 100, 1, 0), usage(2, 50, 100, 1, 1)];
        assert_eq!(site_budget(&q, &existing, &span, 1), None);
        // Four replicas: at 0 two sites are free beyond {0}, at 50 one beyond {0, 1}.
        let b = site_budget(&q, &existing, &span, 4).expect("binds");
        let limits: Vec<(BTreeSet<u32>, u32)> =
            b.limits.iter().map(|l| (l.held.clone(), l.free)).collect();
        assert_eq!(limits, vec![([0].into(), 2), ([0, 1].into(), 1)]);
        assert_eq!(b.states(), 6);
        // Site 0 is free everywhere; site 1 costs at 0 only; site 7 costs at both.
        assert_eq!(b.spend(0, 0), Some(0));
        let s1 = b.spend(0, 1).expect("fits");
        let s17 = b.spend(s1, 7).expect("fits");
        assert_eq!(b.spend(s17, 8), None, "a third site beyond {{0}}");
        let s7 = b.spend(0, 7).expect("fits");
        assert_eq!(b.spend(s7, 8), None, "a second site beyond {{0, 1}}");
        // The exact check agrees with both.
        let mut new = usage(3, 0, 100, 1, 0);
        new.sites = [0, 1, 7].into();
        assert!(check(&q, &existing, &new).is_ok());
        new.sites = [0, 7, 8].into();
        assert!(check(&q, &existing, &new).is_err());
        // A quota full only later: site 4, held then, fits (spending the one site free before
        // it); no other site does.
        q.sites = 1;
        let later = [usage(1, 50, 100, 1, 4)];
        let b = site_budget(&q, &later, &span, 3).expect("binds");
        assert!(b.spend(0, 4).is_some());
        assert_eq!(b.spend(0, 5), None);
    }

    #[test]
    fn many_binding_instants_merge_into_one_conservative_limit() {
        let mut q = quotas(64);
        q.sites = 10;
        // Ten relays of two sites each: ten different binding instants with 8 free sites.
        let relay: Vec<Usage> = (0..10)
            .flat_map(|i| {
                let mut u = usage(i, i64::from(i) * 10, i64::from(i) * 10 + 10, 1, 0);
                u.sites = [100 + i, 200 + i].into();
                [u]
            })
            .collect();
        let b = site_budget(&q, &relay, &Span { start: 0, end: 100 }, 9).expect("binds");
        assert_eq!(b.limits.len(), 1);
        assert_eq!((b.limits[0].held.len(), b.limits[0].free), (0, 8));
    }
}
