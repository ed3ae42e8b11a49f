//! Several replicas at once, exactly.
//!
//! A replica's score is its site's part `a` plus `b x packing`, and packing on one server (or
//! MIG GPU) grows with every replica already there: the `j`-th replica on a unit with `u`
//! of `t` in use scores packing `(u + j c) / t`. Gains that grow with use defeat one-by-one
//! greedy choice (two replicas on two 7-GPU servers at 4/7 each lose to one 8-GPU server at
//! 4/8 then 8/8), so replicas are assigned by dynamic programming instead:
//!
//! 1. per site, the best packing sum for `k = 0..=K` replicas over its units (a bounded
//!    knapsack; identical units are grouped);
//! 2. across sites, the best total for `R` replicas with at most `max_per_site` per site,
//!    at least `min_sites` sites, and, where the tenant's site quota binds, at most as many
//!    sites beyond those it already holds as the quota leaves. A site whose storage array has
//!    room for fewer replicas than that takes at most as many as it has room for.
//!
//! Sites enter step 2 in site ID order, and a later site replaces an earlier choice only when
//! it scores strictly higher, so equal totals go to the lower site IDs.
//!
//! The search runs over the candidate sites with the highest score bounds (at least 16, and
//! four per replica), which on small fleets is every site, so the result is exact there;
//! on a large fleet a site outside that set could only win by packing better than sites whose
//! bounds are higher. With colocation, step 2 is the best single site holding all `R`.

use super::capacity::{Hold, mig_mask};
use super::decide::{Candidate, Need, Resolved, Slot};
use super::fleet::FleetIndex;
use super::quota::SiteBudget;

/// One server (whole GPUs, no GPU, bare metal) or one MIG GPU that can take replicas.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unit {
    pub server: u32,
    pub gpu: Option<u16>,
    pub used: f64,
    pub total: f64,
    pub per: f64,
    pub cap: u32,
}

impl Unit {
    /// Packing after the `j`-th replica (1-based) on this unit.
    pub fn packing(&self, j: u32) -> f64 {
        ((self.used + f64::from(j) * self.per) / self.total).min(1.0)
    }

    fn value(&self, k: u32) -> f64 {
        (1..=k).map(|j| self.packing(j)).sum()
    }

    fn same_shape(&self, other: &Unit) -> bool {
        self.used == other.used
            && self.total == other.total
            && self.per == other.per
            && self.cap == other.cap
    }
}

/// The units of `site` that can take at least one replica of `r`, with how many each takes
/// (drained servers take none; the site's storage array is the caller's to bound).
pub(crate) fn units(fleet: &FleetIndex, r: &Resolved, site: u32, free: &mut Vec<u16>) -> Vec<Unit> {
    let mut out = Vec::new();
    for &sv in &fleet.sites[site as usize].servers {
        if r.pin.is_some_and(|p| p != sv) {
            continue;
        }
        let server = &fleet.servers[sv as usize];
        if server.drained || server.cpu_cores < r.cpu_cores || server.memory_mib < r.memory_mib {
            continue;
        }
        match r.need {
            Need::NoGpu => out.push(Unit {
                server: sv,
                gpu: None,
                used: 1.0,
                total: 1.0,
                per: 0.0,
                cap: r.replicas,
            }),
            Need::BareMetal { model } => {
                if server.entirely_free(model, &r.span) {
                    out.push(Unit {
                        server: sv,
                        gpu: None,
                        used: 1.0,
                        total: 1.0,
                        per: 0.0,
                        cap: 1,
                    });
                }
            }
            Need::Whole { model, count } => {
                let total = server.whole_free(model, &r.span, free);
                let cap = free.len() as u32 / count;
                if cap > 0 {
                    out.push(Unit {
                        server: sv,
                        gpu: None,
                        used: (total - free.len()) as f64,
                        total: total as f64,
                        per: f64::from(count),
                        cap,
                    });
                }
            }
            Need::Mig { model, spec, .. } => {
                for (g, gpu) in server.gpus.iter().enumerate() {
                    let Some((_, used)) = gpu.mig_fit(model, spec, &r.span) else {
                        continue;
                    };
                    // How many fit one after another, lowest placement first.
                    let (mut compute, mut mask) = gpu.mig_taken(&r.span);
                    let mut cap = 0;
                    while let Some(p) = spec.placements.iter().copied().find(|&p| {
                        mig_mask(spec, p) & mask == 0
                            && p + spec.memory_slices <= model.mig_memory_slices()
                    }) {
                        if compute.saturating_add(spec.compute_slices) > model.mig_compute_slices()
                        {
                            break;
                        }
                        compute += spec.compute_slices;
                        mask |= mig_mask(spec, p);
                        cap += 1;
                    }
                    out.push(Unit {
                        server: sv,
                        gpu: Some(g as u16),
                        used: f64::from(used),
                        total: f64::from(model.mig_compute_slices()),
                        per: f64::from(spec.compute_slices),
                        cap,
                    });
                }
            }
        }
    }
    out
}

/// The best packing sum for `k = 0..=k_max` replicas on a site's units, and per `k` how many
/// replicas each unit takes (`None` where `k` does not fit).
pub(crate) struct SiteTable {
    pub units: Vec<Unit>,
    pub best: Vec<Option<f64>>,
    pub split: Vec<Vec<u32>>,
}

pub(crate) fn site_table(all: Vec<Unit>, k_max: u32) -> SiteTable {
    // Identical units are interchangeable: keep only as many as could ever be used.
    let mut units: Vec<Unit> = Vec::new();
    for u in all {
        let copies = units.iter().filter(|v| v.same_shape(&u)).count() as u32;
        if copies < k_max {
            units.push(u);
        }
    }
    let k_max = k_max as usize;
    // dp[i][k]: best sum with the first i units taking k replicas; take[i][k]: unit i's share.
    let mut dp = vec![vec![None::<f64>; k_max + 1]; units.len() + 1];
    let mut take = vec![vec![0u32; k_max + 1]; units.len() + 1];
    dp[0][0] = Some(0.0);
    for (i, unit) in units.iter().enumerate() {
        for k in 0..=k_max {
            let mut best: Option<(f64, u32)> = None;
            for t in 0..=(unit.cap as usize).min(k) {
                if let Some(v) = dp[i][k - t] {
                    let v = v + unit.value(t as u32);
                    // Prefer fewer replicas on later units on ties: deterministic.
                    if best.is_none_or(|(b, _)| v > b + 1e-12) {
                        best = Some((v, t as u32));
                    }
                }
            }
            if let Some((v, t)) = best {
                dp[i + 1][k] = Some(v);
                take[i + 1][k] = t;
            }
        }
    }
    let best: Vec<Option<f64>> = dp[units.len()].clone();
    let mut split = Vec::with_capacity(k_max + 1);
    for (k, value) in best.iter().enumerate() {
        let mut counts = vec![0u32; units.len()];
        if value.is_some() {
            let mut left = k;
            for i in (0..units.len()).rev() {
                let t = take[i + 1][left];
                counts[i] = t;
                left -= t as usize;
            }
        }
        split.push(counts);
    }
    SiteTable { units, best, split }
}

/// Per chosen site, how many replicas it takes. With a site `budget`, the chosen sites stay
/// within the tenant's site quota at every instant where it binds.
pub(crate) fn across_sites(
    r: &Resolved,
    sites: &[&(Candidate, SiteTable)],
    site_part: impl Fn(&Candidate) -> f64,
    b: f64,
    budget: Option<&SiteBudget>,
) -> Option<Vec<u32>> {
    let replicas = r.replicas as usize;
    let need_sites = r.min_sites as usize;
    let per_max = r.max_per_site as usize;
    // The site budget's spent-state; one state when the quota cannot bind.
    let spend = |e: usize, site: u32| budget.map_or(Some(e), |b| b.spend(e, site));
    // dp[j][m][e]: best total with j replicas placed on m sites (m capped at need_sites) and
    // the budget in state e.
    let (ms, es) = (need_sites + 1, budget.map_or(1, SiteBudget::states));
    let states = (replicas + 1) * ms * es;
    let at = |j: usize, m: usize, e: usize| (j * ms + m) * es + e;
    let mut dp = vec![None::<f64>; states];
    dp[at(0, 0, 0)] = Some(0.0);
    let none = (0u32, usize::MAX);
    let mut choice = vec![vec![none; states]; sites.len()];
    for (s, &(candidate, table)) in sites.iter().enumerate() {
        let a = site_part(candidate);
        let mut next = dp.clone();
        for j in 0..=replicas {
            for m in 0..ms {
                for e in 0..es {
                    let from = at(j, m, e);
                    let Some(base) = dp[from] else { continue };
                    let Some(e2) = spend(e, candidate.site) else {
                        continue;
                    };
                    for k in 1..=per_max.min(replicas - j).min(table.best.len() - 1) {
                        let Some(pack) = table.best[k] else { continue };
                        let v = base + k as f64 * a + b * pack;
                        let to = at(j + k, (m + 1).min(need_sites), e2);
                        if next[to].is_none_or(|cur| v > cur + 1e-12) {
                            next[to] = Some(v);
                            choice[s][to] = (k as u32, from);
                        }
                    }
                }
            }
        }
        // Record "site s takes nothing" where the value did not improve.
        for state in 0..states {
            if next[state] == dp[state] {
                choice[s][state] = none;
            }
        }
        dp = next;
    }
    let end = (0..es)
        .map(|e| at(replicas, need_sites, e))
        .filter(|&state| dp[state].is_some())
        .max_by(|&x, &y| {
            let (vx, vy) = (dp[x].unwrap_or(f64::MIN), dp[y].unwrap_or(f64::MIN));
            // Equal totals: the lowest state, for determinism.
            vx.total_cmp(&vy).then(y.cmp(&x))
        })?;
    let mut counts = vec![0u32; sites.len()];
    let mut state = end;
    for s in (0..sites.len()).rev() {
        let (k, from) = choice[s][state];
        if k > 0 && from != usize::MAX {
            counts[s] = k;
            state = from;
        }
    }
    (state == at(0, 0, 0)).then_some(counts)
}

/// A concrete slot for the next replica on `unit`.
pub(crate) fn slot_on(
    fleet: &FleetIndex,
    r: &Resolved,
    unit: &Unit,
    j: u32,
    free: &mut Vec<u16>,
) -> Option<Slot> {
    let server = &fleet.servers[unit.server as usize];
    let gpus = match r.need {
        Need::NoGpu => Vec::new(),
        Need::BareMetal { .. } => (0..server.gpus.len() as u16)
            .map(|g| (g, Hold::Whole))
            .collect(),
        Need::Whole { model, count } => {
            server.whole_free(model, &r.span, free);
            if free.len() < count as usize {
                return None;
            }
            free[..count as usize]
                .iter()
                .map(|&g| (g, Hold::Whole))
                .collect()
        }
        Need::Mig {
            model,
            profile,
            spec,
        } => {
            let g = unit.gpu?;
            let (placement, _) = server.gpus[usize::from(g)].mig_fit(model, spec, &r.span)?;
            vec![(
                g,
                Hold::Mig {
                    compute: spec.compute_slices,
                    mask: mig_mask(spec, placement),
                    profile,
                    placement,
                },
            )]
        }
    };
    Some(Slot {
        server: unit.server,
        gpus,
        packing: unit.packing(j),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(server: u32, used: f64, total: f64, per: f64, cap: u32) -> Unit {
        Unit {
            server,
            gpu: None,
            used,
            total,
            per,
            cap,
        }
    }

    #[test]
    fn concentrating_replicas_beats_one_by_one_greedy() {
        // Two 7-GPU servers (4/7 each) against one 8-GPU server (4/8, then 8/8).
        let units = vec![
            unit(0, 0.0, 7.0, 4.0, 1),
            unit(1, 0.0, 7.0, 4.0, 1),
            unit(2, 0.0, 8.0, 4.0, 2),
        ];
        let t = site_table(units, 2);
        assert_eq!(t.best[2], Some(1.5));
        assert_eq!(t.split[2], vec![0, 0, 2]);
        assert!((t.best[1].unwrap() - 4.0 / 7.0).abs() < 1e-12);
    }

    #[test]
    fn identical_units_are_grouped_and_capacity_bounds_k() {
        let units: Vec<Unit> = (0..256).map(|s| unit(s, 0.0, 8.0, 8.0, 1)).collect();
        let t = site_table(units, 3);
        assert_eq!(t.units.len(), 3);
        assert_eq!(t.best[3], Some(3.0));
        let t = site_table(vec![unit(0, 0.0, 8.0, 8.0, 1)], 2);
        assert_eq!(t.best[2], None);
        assert!(t.split[2].iter().all(|c| *c == 0));
    }
}
