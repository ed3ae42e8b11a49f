//! The planner: the indexed fleet plus committed placements and tenant usage.

use std::collections::{BTreeSet, BinaryHeap, HashMap};

use meridian_common::ids::{RegionId, SiteId, Timestamp, WorkloadId};
use meridian_common::model::{
    Assignment, GpuSlot, Placement, RejectReason, ScoreBreakdown, SiteState, Tenant,
};

use super::capacity::{Booking, Hold, Span, mig_mask};
use super::decide::{self, Candidate, Filtered, Holds, Need, Resolved, Slot};
use super::explain;
use super::fleet::FleetIndex;
use super::quota::{self, Usage};
use super::replicas;
use super::{
    Decision, FleetSnapshot, PlacementError, PlacementRequest, PlannerConfig, Unplaceable,
};

#[derive(Debug, Clone)]
struct TenantCell {
    tenant: Tenant,
    usages: Vec<Usage>,
}

#[derive(Debug, Clone)]
struct Committed {
    owner: u32,
    tenant: meridian_common::ids::TenantId,
    holds: Holds,
    /// The window it holds capacity in.
    span: Span,
}

/// The placement engine over one fleet. Pure: every method is synchronous and depends only on
/// its arguments and the planner's state.
#[derive(Debug, Clone)]
pub struct Planner {
    config: PlannerConfig,
    fleet: FleetIndex,
    tenants: HashMap<meridian_common::ids::TenantId, TenantCell>,
    committed: HashMap<WorkloadId, Committed>,
    next_owner: u32,
    /// Scratch buffers, reused across decisions: free-GPU lists, candidates, per-candidate
    /// flags, and the best-first order.
    free: Vec<u16>,
    candidates: Vec<Candidate>,
    flags: Vec<u8>,
    order: Vec<Bound>,
}

/// Per-candidate flags of one search.
const EXAMINED: u8 = 1;
const NO_CAPACITY: u8 = 2;

/// A candidate's best reachable score, ordered best first, then lower site ID first (equal
/// scores go to the lower site ID, whatever order the filters found the sites in).
#[derive(Debug, Clone, Copy, PartialEq)]
struct Bound {
    value: f64,
    /// The site ID's index (high half) and the candidate's index (low half): one word, so
    /// the heap's elements stay 16 bytes.
    key: u64,
}

impl Bound {
    fn new(value: f64, site: u32, index: usize) -> Bound {
        Bound {
            value,
            key: (u64::from(site) << 32) | index as u64,
        }
    }

    fn site(&self) -> u32 {
        (self.key >> 32) as u32
    }

    fn index(&self) -> usize {
        (self.key & u64::from(u32::MAX)) as usize
    }
}

impl Eq for Bound {}

impl PartialOrd for Bound {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Bound {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.value
            .total_cmp(&other.value)
            .then_with(|| other.key.cmp(&self.key))
    }
}

/// One replica's chosen place and score.
struct Chosen {
    candidate: Candidate,
    slot: Slot,
    score: f64,
}

impl Planner {
    /// Indexes `snapshot` and re-books its committed placements.
    pub fn new(snapshot: &FleetSnapshot, config: PlannerConfig) -> Result<Planner, PlacementError> {
        let fleet = FleetIndex::build(snapshot, &config.latency)?;
        let tenants = snapshot
            .tenants
            .iter()
            .map(|t| {
                (
                    t.id.clone(),
                    TenantCell {
                        tenant: t.clone(),
                        usages: Vec::new(),
                    },
                )
            })
            .collect();
        let mut planner = Planner {
            config,
            fleet,
            tenants,
            committed: HashMap::new(),
            next_owner: 1,
            free: Vec::with_capacity(16),
            candidates: Vec::new(),
            flags: Vec::new(),
            order: Vec::new(),
        };
        for placement in &snapshot.placements {
            planner.rebook(placement)?;
        }
        Ok(planner)
    }

    /// Decides `request` and commits it when placed.
    pub fn place(
        &mut self,
        request: &PlacementRequest,
        now: Timestamp,
    ) -> Result<Decision, PlacementError> {
        self.decide(request, now, true)
    }

    /// Decides `request` exactly as [`Planner::place`] would, and leaves the planner as it was.
    pub fn dry_run(
        &mut self,
        request: &PlacementRequest,
        now: Timestamp,
    ) -> Result<Decision, PlacementError> {
        self.decide(request, now, false)
    }

    /// Places a batch in priority order (highest first, then workload ID); each workload is
    /// all-or-nothing. Results come back in the order of `requests`.
    pub fn place_batch(
        &mut self,
        requests: &[PlacementRequest],
        now: Timestamp,
    ) -> Vec<Result<Decision, PlacementError>> {
        let mut order: Vec<usize> = (0..requests.len()).collect();
        order.sort_by(|&a, &b| {
            let (ra, rb) = (&requests[a], &requests[b]);
            rb.spec
                .priority
                .cmp(&ra.spec.priority)
                .then_with(|| ra.workload.cmp(&rb.workload))
        });
        let mut results: Vec<Option<Result<Decision, PlacementError>>> = vec![None; requests.len()];
        for i in order {
            results[i] = Some(self.place(&requests[i], now));
        }
        results
            .into_iter()
            .map(|r| r.expect("every request decided"))
            .collect()
    }

    /// Frees everything `workload` holds; returns whether it was placed.
    pub fn release(&mut self, workload: &WorkloadId) -> bool {
        let Some(c) = self.committed.remove(workload) else {
            return false;
        };
        decide::unbook(&mut self.fleet, c.owner, &c.holds);
        if let Some(t) = self.tenants.get_mut(&c.tenant) {
            t.usages.retain(|u| u.owner != c.owner);
        }
        true
    }

    /// Re-books the storage of a committed workload: `storage_mib` per replica (its spec's
    /// `resources.storage_mib`) on each replica's site, for the placement's window, and in its
    /// tenant's storage usage. A [`Placement`] does not say how much storage its replicas hold,
    /// so a planner rebuilt from placements ([`Planner::new`]) holds none until this is called
    /// for each of them. Replaces what was booked for it before; never refused for lack of
    /// room (the volumes exist, even where an array has since shrunk). Returns whether
    /// `workload` is placed (nothing is booked when it is not).
    pub fn rebook_storage(&mut self, workload: &WorkloadId, storage_mib: u64) -> bool {
        let Some(c) = self.committed.get_mut(workload) else {
            return false;
        };
        let (owner, span) = (c.owner, c.span);
        decide::unbook_storage(&mut self.fleet, owner, &c.holds.sites);
        for &site in &c.holds.sites {
            decide::book_storage(&mut self.fleet, site, owner, span, storage_mib);
        }
        let total = storage_mib.saturating_mul(c.holds.sites.len() as u64);
        if let Some(t) = self.tenants.get_mut(&c.tenant)
            && let Some(u) = t.usages.iter_mut().find(|u| u.owner == owner)
        {
            u.storage_mib = total;
        }
        true
    }

    /// Whether `workload` holds capacity.
    pub fn is_placed(&self, workload: &WorkloadId) -> bool {
        self.committed.contains_key(workload)
    }

    /// Adds or replaces a tenant's policy (quotas, residency, weights).
    pub fn upsert_tenant(&mut self, tenant: Tenant) {
        match self.tenants.get_mut(&tenant.id) {
            Some(cell) => cell.tenant = tenant,
            None => {
                self.tenants.insert(
                    tenant.id.clone(),
                    TenantCell {
                        tenant,
                        usages: Vec::new(),
                    },
                );
            }
        }
    }

    /// Records a site's lifecycle state (only `Online` sites take new placements).
    pub fn set_site_state(
        &mut self,
        site: &SiteId,
        state: SiteState,
    ) -> Result<(), PlacementError> {
        let &s = self
            .fleet
            .site_ix
            .get(site)
            .ok_or_else(|| PlacementError::UnknownSite(site.clone()))?;
        self.fleet.online[s as usize] = state == SiteState::Online;
        Ok(())
    }

    /// Records an RTT measured by a site's agent; it replaces the estimate.
    pub fn set_measured_rtt(
        &mut self,
        site: &SiteId,
        region: &RegionId,
        rtt_ms: f64,
    ) -> Result<(), PlacementError> {
        let &s = self
            .fleet
            .site_ix
            .get(site)
            .ok_or_else(|| PlacementError::UnknownSite(site.clone()))?;
        let &r = self
            .fleet
            .region_ix
            .get(region)
            .ok_or_else(|| PlacementError::UnknownRegion {
                field: "region".into(),
                region: region.clone(),
            })?;
        if !(rtt_ms.is_finite() && rtt_ms >= 0.0) {
            return Err(PlacementError::BadSnapshot(format!(
                "measured RTT {rtt_ms} is not a duration"
            )));
        }
        self.fleet.rtt.set_measured(r, s, rtt_ms as f32);
        Ok(())
    }

    /// Number of sites the planner knows.
    pub fn site_count(&self) -> usize {
        self.fleet.sites.len()
    }

    fn decide(
        &mut self,
        request: &PlacementRequest,
        now: Timestamp,
        commit: bool,
    ) -> Result<Decision, PlacementError> {
        if self.committed.contains_key(&request.workload) {
            return Err(PlacementError::AlreadyPlaced(request.workload.clone()));
        }
        let cell = self
            .tenants
            .get(&request.tenant)
            .ok_or_else(|| PlacementError::UnknownTenant(request.tenant.clone()))?;
        let r = decide::resolve(
            &self.fleet,
            request,
            &cell.tenant,
            &self.config.default_weights,
            now.as_millis(),
        )?;
        let allowance = quota::site_allowance(&cell.tenant.quotas, &cell.usages, &r.span);
        // One replica uses one site, which `allowance` already restricts where it must.
        let budget = if r.replicas > 1 {
            quota::site_budget(&cell.tenant.quotas, &cell.usages, &r.span, r.replicas)
        } else {
            None
        };
        let reuse = std::mem::take(&mut self.candidates);
        let mut filtered = decide::filter(&self.fleet, &r, allowance.as_ref(), reuse);
        let owner = self.next_owner;
        self.next_owner = self.next_owner.wrapping_add(1).max(1);
        let mut holds = Holds::default();
        let outcome = if r.colocate {
            self.assign_colocated(&r, &mut filtered, owner, &mut holds)
        } else if r.replicas > 1 {
            match self.assign_exact(&r, &mut filtered, owner, &mut holds, budget.as_ref()) {
                Some(chosen) => Ok(chosen),
                None => self.assign_spread(&r, &mut filtered, owner, &mut holds, budget.as_ref()),
            }
        } else {
            self.assign_spread(&r, &mut filtered, owner, &mut holds, budget.as_ref())
        };
        let chosen = match outcome {
            Ok(chosen) => chosen,
            Err(reason) => {
                decide::unbook(&mut self.fleet, owner, &holds);
                return Ok(self.unplaceable(request, &r, filtered, reason));
            }
        };
        let usage = self.usage_of(&r, owner, &chosen);
        let cell = self
            .tenants
            .get(&request.tenant)
            .expect("tenant checked above");
        if let Err(exceeded) = quota::check(&cell.tenant.quotas, &cell.usages, &usage) {
            decide::unbook(&mut self.fleet, owner, &holds);
            let feasible = filtered.feasible;
            filtered.reject(RejectReason::Quota, feasible);
            return Ok(self.unplaceable(request, &r, filtered, exceeded.to_string()));
        }
        let placement = self.placement(request, &r, &filtered, &chosen, now);
        self.candidates = std::mem::take(&mut filtered.candidates);
        if commit {
            self.tenants
                .get_mut(&request.tenant)
                .expect("tenant checked above")
                .usages
                .push(usage);
            self.committed.insert(
                request.workload.clone(),
                Committed {
                    owner,
                    tenant: request.tenant.clone(),
                    holds,
                    span: r.span,
                },
            );
        } else {
            decide::unbook(&mut self.fleet, owner, &holds);
        }
        Ok(Decision::Placed(placement))
    }

    /// Replicas one by one to the best site still allowed by spread and the site budget.
    fn assign_spread(
        &mut self,
        r: &Resolved,
        filtered: &mut Filtered,
        owner: u32,
        holds: &mut Holds,
        budget: Option<&quota::SiteBudget>,
    ) -> Result<Vec<Chosen>, String> {
        // (site, replicas there): a handful of entries, a linear scan beats hashing.
        let mut per_site: Vec<(u32, u32)> = Vec::with_capacity(r.replicas as usize);
        let n = filtered.candidates.len();
        let mut flags = std::mem::take(&mut self.flags);
        flags.clear();
        flags.resize(n, 0);
        let mut chosen: Vec<Chosen> = Vec::with_capacity(r.replicas as usize);
        for replica in 0..r.replicas {
            let remaining = r.replicas - replica;
            let must_be_new = r.min_sites.saturating_sub(per_site.len() as u32) >= remaining;
            let mut best: Option<Chosen> = None;
            let mut blocked_by_spread = 0;
            let mut blocked_by_quota = 0;
            let spent = budget.map_or(Some(0), |b| {
                per_site.iter().try_fold(0, |e, (s, _)| b.spend(e, *s))
            });
            // Candidates by the score they could reach with the best packing their site
            // allows, best first: once that bound cannot beat the best found, no later one can.
            let mut bounds = std::mem::take(&mut self.order);
            bounds.clear();
            bounds.extend(
                filtered
                    .candidates
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| flags[*i] & NO_CAPACITY == 0)
                    .map(|(i, c)| {
                        Bound::new(
                            decide::total(
                                &r.weights,
                                c,
                                decide::packing_bound(&self.fleet, r, c.site),
                            ),
                            c.site,
                            i,
                        )
                    }),
            );
            let mut order = BinaryHeap::from(bounds);
            while let Some(bound) = order.pop() {
                let (value, i) = (bound.value, bound.index());
                // Equal scores go to the lower site ID: a bound equal to the best found only
                // helps at a lower site.
                if let Some(b) = &best
                    && (value < b.score || (value == b.score && bound.site() > b.candidate.site))
                {
                    break;
                }
                let c = &filtered.candidates[i];
                let here = per_site
                    .iter()
                    .find(|(s, _)| *s == c.site)
                    .map_or(0, |(_, n)| *n);
                if here >= r.max_per_site || (must_be_new && here > 0) {
                    blocked_by_spread += 1;
                    continue;
                }
                if here == 0
                    && let Some(b) = budget
                    && spent.and_then(|e| b.spend(e, c.site)).is_none()
                {
                    blocked_by_quota += 1;
                    continue;
                }
                flags[i] |= EXAMINED;
                let Some(slot) = decide::find_slot(&self.fleet, r, c.site, &mut self.free) else {
                    flags[i] |= NO_CAPACITY;
                    continue;
                };
                let score = decide::total(&r.weights, c, slot.packing);
                // Ties go to the lower site ID (within a site, find_slot already chose).
                if best.as_ref().is_none_or(|b| {
                    score > b.score || (score == b.score && c.site < b.candidate.site)
                }) {
                    best = Some(Chosen {
                        candidate: *c,
                        slot,
                        score,
                    });
                }
            }
            self.order = order.into_vec();
            let Some(pick) = best else {
                let capacity = flags.iter().filter(|f| **f & NO_CAPACITY != 0).count() as u32;
                let fits = filtered.candidates.len() as u32 - capacity;
                filtered.reject(RejectReason::Capacity, capacity);
                let blocked = if blocked_by_spread == 0 && blocked_by_quota > 0 {
                    RejectReason::Quota
                } else {
                    RejectReason::Spread
                };
                filtered.reject(blocked, fits);
                let full: Vec<u32> = filtered
                    .candidates
                    .iter()
                    .zip(&flags)
                    .filter(|(_, f)| **f & NO_CAPACITY != 0)
                    .map(|(c, _)| c.site)
                    .collect();
                for site in full {
                    filtered.miss(decide::Miss {
                        depth: decide::DEPTH_CAPACITY,
                        site,
                        reason: RejectReason::Capacity,
                        value: 0.0,
                    });
                }
                self.flags = flags;
                return Err(if filtered.candidates.is_empty() {
                    "no site meets the constraints".to_owned()
                } else if replica == 0 {
                    "no site that meets the constraints has capacity for the whole window"
                        .to_owned()
                } else if blocked_by_spread == 0 && blocked_by_quota > 0 {
                    format!(
                        "only {replica} of {} replicas fit on as many sites as the tenant's site quota allows",
                        r.replicas
                    )
                } else if blocked_by_spread == 0 {
                    format!(
                        "only {replica} of {} replicas fit: no other site that meets the constraints has capacity for the whole window",
                        r.replicas
                    )
                } else if let Some(reason) = too_few_with_hardware(r, filtered) {
                    reason
                } else {
                    format!(
                        "only {replica} of {} replicas fit within the spread rules ({blocked_by_spread} sites blocked by spread)",
                        r.replicas
                    )
                });
            };
            decide::book(
                &mut self.fleet,
                &pick.slot,
                owner,
                r.span,
                r.storage_mib,
                holds,
            );
            match per_site.iter_mut().find(|(s, _)| *s == pick.candidate.site) {
                Some((_, n)) => *n += 1,
                None => per_site.push((pick.candidate.site, 1)),
            }
            chosen.push(pick);
        }
        // A site that took replicas and then filled up is used, not rejected.
        let capacity = flags
            .iter()
            .zip(&filtered.candidates)
            .filter(|(f, c)| **f & NO_CAPACITY != 0 && !per_site.iter().any(|(s, _)| *s == c.site))
            .count() as u32;
        filtered.reject(RejectReason::Capacity, capacity);
        filtered.feasible = filtered.candidates.len() as u32 - capacity;
        filtered.unexamined = flags.iter().filter(|f| **f & EXAMINED == 0).count() as u32;
        self.flags = flags;
        Ok(chosen)
    }

    /// Several replicas by dynamic programming over the best-bounded candidate sites (see
    /// `replicas`); `None` when those sites cannot hold them all, so the caller falls back to
    /// the one-by-one search over every candidate.
    fn assign_exact(
        &mut self,
        r: &Resolved,
        filtered: &mut Filtered,
        owner: u32,
        holds: &mut Holds,
        budget: Option<&quota::SiteBudget>,
    ) -> Option<Vec<Chosen>> {
        let wanted = (4 * r.replicas as usize).max(16);
        let mut order: BinaryHeap<Bound> = filtered
            .candidates
            .iter()
            .enumerate()
            .map(|(i, c)| {
                Bound::new(
                    decide::total(&r.weights, c, decide::packing_bound(&self.fleet, r, c.site)),
                    c.site,
                    i,
                )
            })
            .collect();
        let k_max = r.replicas.min(r.max_per_site);
        let mut picked = Vec::with_capacity(wanted);
        let mut full = 0u32;
        while picked.len() < wanted
            && let Some(bound) = order.pop()
        {
            let c = filtered.candidates[bound.index()];
            let room = decide::storage_room(&self.fleet, r, c.site);
            let units = if room == 0 {
                Vec::new()
            } else {
                replicas::units(&self.fleet, r, c.site, &mut self.free)
            };
            if units.is_empty() {
                full += 1;
                continue;
            }
            picked.push((c, replicas::site_table(units, k_max.min(room))));
        }
        // Site ID order, so that equal totals go to the lower site IDs (see `replicas`).
        let mut by_site: Vec<&(Candidate, replicas::SiteTable)> = picked.iter().collect();
        by_site.sort_unstable_by_key(|(c, _)| c.site);
        let w = &r.weights;
        let sum = w.latency + w.data + w.price + w.packing;
        let site_part =
            |c: &Candidate| (w.latency * c.latency + w.data * c.data + w.price * c.price) / sum;
        let counts = replicas::across_sites(r, &by_site, site_part, w.packing / sum, budget)?;
        let mut chosen = Vec::with_capacity(r.replicas as usize);
        for (&(candidate, table), k) in by_site.iter().zip(counts) {
            if k == 0 {
                continue;
            }
            for (unit, n) in table.units.iter().zip(&table.split[k as usize]) {
                for j in 1..=*n {
                    let slot = replicas::slot_on(&self.fleet, r, unit, j, &mut self.free)
                        .expect("the unit had room for this replica a moment ago");
                    decide::book(&mut self.fleet, &slot, owner, r.span, r.storage_mib, holds);
                    let score = decide::total(w, candidate, slot.packing);
                    chosen.push(Chosen {
                        candidate: *candidate,
                        slot,
                        score,
                    });
                }
            }
        }
        filtered.reject(RejectReason::Capacity, full);
        filtered.feasible = filtered.candidates.len() as u32 - full;
        filtered.unexamined = (filtered.candidates.len() - picked.len()) as u32 - full;
        Some(chosen)
    }

    /// All replicas on one site: the site whose best split of every replica over its servers
    /// scores highest (ties: the lower site ID).
    fn assign_colocated(
        &mut self,
        r: &Resolved,
        filtered: &mut Filtered,
        owner: u32,
        holds: &mut Holds,
    ) -> Result<Vec<Chosen>, String> {
        let w = r.weights;
        let sum = w.latency + w.data + w.price + w.packing;
        let mut best: Option<(f64, Candidate, replicas::SiteTable)> = None;
        let (mut capacity, mut partial) = (0u32, 0u32);
        for c in filtered.candidates.clone() {
            let room = decide::storage_room(&self.fleet, r, c.site);
            let units = if room == 0 {
                Vec::new()
            } else {
                replicas::units(&self.fleet, r, c.site, &mut self.free)
            };
            if units.is_empty() {
                capacity += 1;
                filtered.miss(decide::Miss {
                    depth: decide::DEPTH_CAPACITY,
                    site: c.site,
                    reason: RejectReason::Capacity,
                    value: 0.0,
                });
                continue;
            }
            let table = replicas::site_table(units, r.replicas.min(room));
            let Some(&Some(pack)) = table.best.get(r.replicas as usize) else {
                partial += 1;
                let most = (0..table.best.len())
                    .rev()
                    .find(|&k| table.best[k].is_some())
                    .unwrap_or(0);
                filtered.miss(decide::Miss {
                    depth: decide::DEPTH_CAPACITY,
                    site: c.site,
                    reason: RejectReason::Colocation,
                    value: (r.replicas as usize - most) as f32,
                });
                continue;
            };
            let site_part = (w.latency * c.latency + w.data * c.data + w.price * c.price) / sum;
            let mean = site_part + w.packing / sum * pack / f64::from(r.replicas);
            if best
                .as_ref()
                .is_none_or(|(b, bc, _)| mean > *b || (mean == *b && c.site < bc.site))
            {
                best = Some((mean, c, table));
            }
        }
        filtered.reject(RejectReason::Capacity, capacity);
        filtered.reject(RejectReason::Colocation, partial);
        filtered.feasible = filtered.candidates.len() as u32 - capacity - partial;
        let Some((_, c, table)) = best else {
            return Err(if filtered.candidates.is_empty() {
                "no site meets the constraints".to_owned()
            } else {
                format!("no single site can hold all {} replicas", r.replicas)
            });
        };
        let mut chosen = Vec::with_capacity(r.replicas as usize);
        for (unit, n) in table.units.iter().zip(&table.split[r.replicas as usize]) {
            for j in 1..=*n {
                let slot = replicas::slot_on(&self.fleet, r, unit, j, &mut self.free)
                    .expect("the site had room for every replica a moment ago");
                decide::book(&mut self.fleet, &slot, owner, r.span, r.storage_mib, holds);
                let score = decide::total(&w, &c, slot.packing);
                chosen.push(Chosen {
                    candidate: c,
                    slot,
                    score,
                });
            }
        }
        Ok(chosen)
    }

    fn usage_of(&self, r: &Resolved, owner: u32, chosen: &[Chosen]) -> Usage {
        let (model, gpus, mig_slices) = match r.need {
            Need::NoGpu => (None, 0, 0),
            Need::Whole { model, count } => (Some(model), count * r.replicas, 0),
            Need::BareMetal { model } => {
                let gpus = chosen.iter().map(|c| c.slot.gpus.len() as u32).sum();
                (Some(model), gpus, 0)
            }
            Need::Mig { spec, .. } => (None, 0, u32::from(spec.compute_slices) * r.replicas),
        };
        Usage {
            owner,
            span: r.span,
            model,
            gpus,
            mig_slices,
            storage_mib: r.storage_mib.saturating_mul(u64::from(r.replicas)),
            sites: chosen
                .iter()
                .map(|c| c.candidate.site)
                .collect::<BTreeSet<_>>(),
        }
    }

    fn placement(
        &self,
        request: &PlacementRequest,
        r: &Resolved,
        filtered: &Filtered,
        chosen: &[Chosen],
        now: Timestamp,
    ) -> Placement {
        let n = chosen.len() as f64;
        let mean = |f: &dyn Fn(&Chosen) -> f64| chosen.iter().map(f).sum::<f64>() / n;
        let score = ScoreBreakdown {
            total: mean(&|c| c.score),
            latency: mean(&|c| c.candidate.latency),
            data: mean(&|c| c.candidate.data),
            price: mean(&|c| c.candidate.price),
            packing: mean(&|c| c.slot.packing),
        };
        let assignments: Vec<Assignment> = chosen
            .iter()
            .enumerate()
            .map(|(replica, c)| {
                let server = &self.fleet.servers[c.slot.server as usize];
                Assignment {
                    replica: replica as u32,
                    site: self.fleet.sites[c.candidate.site as usize].id.clone(),
                    server: server.id.clone(),
                    slot: match (r.need, c.slot.gpus.first()) {
                        (
                            Need::Mig { .. },
                            Some((
                                g,
                                Hold::Mig {
                                    profile, placement, ..
                                },
                            )),
                        ) => GpuSlot::Mig {
                            gpu_index: server.gpus[*g as usize].index,
                            profile: *profile,
                            placement: *placement,
                        },
                        (Need::NoGpu, _) => GpuSlot::None,
                        _ => GpuSlot::WholeGpus {
                            indices: c
                                .slot
                                .gpus
                                .iter()
                                .map(|(g, _)| server.gpus[*g as usize].index)
                                .collect(),
                        },
                    },
                }
            })
            .collect();
        let explanation = explain::placed(
            &self.fleet,
            &self.config,
            r,
            filtered,
            chosen.iter().map(|c| (&c.candidate, &c.slot)),
            &score,
        );
        Placement {
            workload: request.workload.clone(),
            tenant: request.tenant.clone(),
            assignments,
            window: request.spec.window,
            score,
            rejections: filtered.rejections.clone(),
            explanation,
            decided_at: now,
        }
    }

    fn unplaceable(
        &self,
        request: &PlacementRequest,
        r: &Resolved,
        filtered: Filtered,
        reason: String,
    ) -> Decision {
        let near_misses = explain::near_misses(&self.fleet, r, &filtered);
        let explanation = explain::unplaceable(&self.fleet, &filtered, &near_misses, &reason);
        Decision::Unplaceable(Unplaceable {
            workload: request.workload.clone(),
            tenant: request.tenant.clone(),
            rejections: filtered.rejections,
            near_misses,
            explanation,
        })
    }

    /// Books a committed placement from the snapshot at exactly its recorded GPUs.
    fn rebook(&mut self, p: &Placement) -> Result<(), PlacementError> {
        if self.committed.contains_key(&p.workload) {
            return Err(PlacementError::BadSnapshot(format!(
                "workload {} is placed twice",
                p.workload
            )));
        }
        let owner = self.next_owner;
        self.next_owner += 1;
        let span = match &p.window {
            Some(w) => Span::of(Some(w), 0),
            None => Span {
                start: p.decided_at.as_millis(),
                end: i64::MAX,
            },
        };
        let mut holds = Holds::default();
        let (mut model, mut gpus, mut mig_slices) = (None, 0u32, 0u32);
        let mut sites = BTreeSet::new();
        for a in &p.assignments {
            let bad = |what: &str| {
                PlacementError::BadSnapshot(format!("placement of {} {what}", p.workload))
            };
            let &sv = self
                .fleet
                .server_ix
                .get(&a.server)
                .ok_or_else(|| bad("names an unknown server"))?;
            sites.insert(self.fleet.servers[sv as usize].site);
            holds.sites.push(self.fleet.servers[sv as usize].site);
            let server = &self.fleet.servers[sv as usize];
            let position = |index: u32| {
                server
                    .gpus
                    .iter()
                    .position(|g| g.index == index)
                    .map(|g| g as u16)
                    .ok_or_else(|| bad("names an unknown GPU"))
            };
            let mut slot_gpus = Vec::new();
            match &a.slot {
                GpuSlot::None => {}
                GpuSlot::WholeGpus { indices } => {
                    for &i in indices {
                        let g = position(i)?;
                        let gpu = &server.gpus[g as usize];
                        if !gpu.whole_free(gpu.model, &span) {
                            return Err(bad("double-books a GPU"));
                        }
                        model = Some(gpu.model);
                        gpus += 1;
                        slot_gpus.push((g, Hold::Whole));
                    }
                }
                GpuSlot::Mig {
                    gpu_index,
                    profile,
                    placement,
                } => {
                    let g = position(*gpu_index)?;
                    let gpu = &server.gpus[g as usize];
                    let spec = profile
                        .spec_for(gpu.model)
                        .map_err(|_| bad("uses a MIG profile its GPU lacks"))?;
                    let (_, taken) = gpu.mig_taken(&span);
                    if !gpu.mig || taken & mig_mask(spec, *placement) != 0 {
                        return Err(bad("double-books a MIG slice"));
                    }
                    mig_slices += u32::from(spec.compute_slices);
                    slot_gpus.push((
                        g,
                        Hold::Mig {
                            compute: spec.compute_slices,
                            mask: mig_mask(spec, *placement),
                            profile: *profile,
                            placement: *placement,
                        },
                    ));
                }
            }
            let server = &mut self.fleet.servers[sv as usize];
            for (g, hold) in slot_gpus {
                server.book(g, Booking { owner, span, hold });
                holds.gpus.push((sv, g));
            }
            self.fleet.raise_fill(sv);
        }
        if let Some(t) = self.tenants.get_mut(&p.tenant) {
            t.usages.push(Usage {
                owner,
                span,
                model,
                gpus,
                mig_slices,
                storage_mib: 0,
                sites,
            });
        }
        self.committed.insert(
            p.workload.clone(),
            Committed {
                owner,
                tenant: p.tenant.clone(),
                holds,
                span,
            },
        );
        Ok(())
    }
}

/// When replicas fail to spread because too few sites have the hardware at all (fewer
/// candidates than the sites the replicas need, and some sites rejected for hardware), the
/// reason says so instead of blaming the spread rule.
fn too_few_with_hardware(r: &Resolved, filtered: &Filtered) -> Option<String> {
    let lacking = filtered
        .rejections
        .get(&RejectReason::Hardware)
        .copied()
        .unwrap_or(0);
    let needed = r.min_sites.max(r.replicas.div_ceil(r.max_per_site.max(1)));
    let have = filtered.candidates.len() as u32;
    if lacking == 0 || have >= needed {
        return None;
    }
    let sites = |n: u32| {
        if n == 1 {
            "1 site".to_owned()
        } else {
            format!("{n} sites")
        }
    };
    let has = |n: u32| if n == 1 { "has" } else { "have" };
    let mut hardware = r.need.hardware();
    if r.storage_mib > 0 {
        hardware.push_str(" and a storage array");
    }
    Some(format!(
        "too few sites have the hardware ({hardware}): {} replicas need at least {}, only {} that {} the other constraints {} it ({} {} none)",
        r.replicas,
        sites(needed),
        sites(have),
        if have == 1 { "meets" } else { "meet" },
        has(have),
        sites(lacking),
        has(lacking),
    ))
}
