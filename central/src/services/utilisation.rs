//! Allocated and busy GPU utilisation over time, fleet-wide or for one site (the console's
//! Utilisation page; the cost service measures with the same functions).
//!
//! - **Allocated utilisation**: GPU-seconds held by allocations applied at their site, over
//!   GPU-seconds available (online, healthy, not drained). Held: the placements of workloads
//!   that reached their site (active, or completed within their window), from their decision
//!   (or their window's start) to their window's end or now; a MIG instance holds its share
//!   of the GPU's compute slices. Available: the GPUs, not failed, of the servers that are
//!   available or allocated and not drained, as they are now (central keeps no history of
//!   them).
//! - **Busy utilisation**: NVML's GPU utilisation averaged over the same GPUs and time, from
//!   the agents' summaries ([`crate::channel::utilisation`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use meridian_common::ids::{ServerId, SiteId, Timestamp, WorkloadId};
use meridian_common::model::{GpuHealth, GpuModel};
use meridian_common::model::{GpuSlot, Placement, ReservationState, ServerState, Workload};

use super::error::ApiError;
use super::{Call, Services};
use crate::channel::utilisation::{Busy, HOUR_MS, fleet_hours, hour_of, site_hours};

/// One GPU of the fleet: (site, server, NVML index).
pub type GpuKey = (SiteId, ServerId, u32);

/// The GPUs available now (online, healthy, not drained), by key, with their model.
#[derive(Debug, Clone, Default)]
pub struct Available {
    pub gpus: BTreeMap<GpuKey, GpuModel>,
}

impl Available {
    /// Those of `site` (all without one).
    pub fn at(&self, site: Option<&SiteId>) -> impl Iterator<Item = (&GpuKey, &GpuModel)> {
        self.gpus
            .iter()
            .filter(move |(k, _)| site.is_none_or(|s| &k.0 == s))
    }
}

/// The span a placement's allocations were held (applied at their site), clipped to
/// `[from, to)`; `None` when it never reached its site.
pub fn held_span(
    placement: &Placement,
    state: &ReservationState,
    from: Timestamp,
    to: Timestamp,
) -> Option<(i64, i64)> {
    let start = placement.window.map_or(placement.decided_at, |w| {
        w.start().max(placement.decided_at)
    });
    let end = match (state, placement.window) {
        (ReservationState::Active, w) => w.map_or(to, |w| w.end().min(to)),
        (ReservationState::Completed, Some(w)) => w.end(),
        _ => return None,
    };
    let (s, e) = (
        start.as_millis().max(from.as_millis()),
        end.as_millis().min(to.as_millis()),
    );
    (e > s).then_some((s, e))
}

/// The share of a GPU a slot holds: 1 for a whole GPU, a MIG instance its compute slices
/// over the model's.
pub fn share(slot: &GpuSlot, model: Option<GpuModel>) -> f64 {
    match (slot, model) {
        (GpuSlot::Mig { profile, .. }, Some(m)) => profile
            .spec_for(m)
            .map(|p| f64::from(p.compute_slices) / f64::from(m.mig_compute_slices().max(1)))
            .unwrap_or(1.0),
        _ => 1.0,
    }
}

/// GPU-seconds held in `[from, to)` on the available GPUs that `keep` accepts, by the
/// placements of workloads in `states`.
pub fn held_seconds(
    placements: &[Placement],
    states: &HashMap<WorkloadId, ReservationState>,
    available: &Available,
    keep: &dyn Fn(&GpuKey) -> bool,
    from: Timestamp,
    to: Timestamp,
) -> f64 {
    let mut total = 0.0;
    for p in placements {
        let Some(state) = states.get(&p.workload) else {
            continue;
        };
        let Some((s, e)) = held_span(p, state, from, to) else {
            continue;
        };
        for a in &p.assignments {
            for i in a.slot.gpu_indices() {
                let key = (a.site.clone(), a.server.clone(), i);
                let Some(model) = available.gpus.get(&key) else {
                    continue;
                };
                if keep(&key) {
                    total += share(&a.slot, Some(*model)) * (e - s) as f64 / 1000.0;
                }
            }
        }
    }
    total
}

/// One hour of the history.
#[derive(Debug, Clone, PartialEq)]
pub struct HourUtilisation {
    /// The hour's start.
    pub start: Timestamp,
    /// Allocated utilisation, a fraction (`None`: no GPU available).
    pub allocated: Option<f64>,
    /// Busy utilisation, a fraction (`None`: nothing measured).
    pub busy: Option<f64>,
}

/// Allocated and busy utilisation per hour, fleet-wide or of one site.
#[derive(Debug, Clone, Default)]
pub struct UtilisationHistory {
    /// Oldest first; the last is the hour under way.
    pub hours: Vec<HourUtilisation>,
    /// GPUs available now.
    pub available: usize,
    /// Busy utilisation per site over the history (sites with measurements only).
    pub busy_by_site: BTreeMap<SiteId, f64>,
}

impl Services {
    /// The GPUs available now, and every placement with its workload's state.
    pub(crate) async fn allocation_inputs(
        &self,
    ) -> Result<
        (
            Available,
            Vec<Placement>,
            HashMap<WorkloadId, ReservationState>,
        ),
        ApiError,
    > {
        let servers = self.tables.servers().list_all(None, 5000).await?;
        let drained: BTreeSet<(String, String)> = self
            .tables
            .drains()
            .list_all(None, 5000)
            .await?
            .into_iter()
            .map(|d| (d.site, d.server))
            .collect();
        let mut available = Available::default();
        for s in &servers {
            if !matches!(s.state, ServerState::Available | ServerState::Allocated)
                || drained.contains(&(s.site.to_string(), s.id.to_string()))
            {
                continue;
            }
            for g in &s.gpus {
                if g.health != GpuHealth::Failed {
                    available
                        .gpus
                        .insert((s.site.clone(), s.id.clone(), g.index), g.model);
                }
            }
        }
        let placements = self.tables.placements().list_all(None, 5000).await?;
        let workloads: Vec<Workload> = self.tables.workloads().list_all(None, 5000).await?;
        let states = workloads.into_iter().map(|w| (w.id, w.state)).collect();
        Ok((available, placements, states))
    }

    /// Allocated and busy utilisation per hour over the last `hours` hours (and the hour
    /// under way), fleet-wide or of `site`. Admitted as `ListSites`, like the fleet view.
    pub async fn utilisation_history(
        &self,
        _call: Call<'_>,
        site: Option<&SiteId>,
        hours: i64,
    ) -> Result<UtilisationHistory, ApiError> {
        let now = self.clock.now();
        let last = hour_of(now);
        let first = last - hours * HOUR_MS;
        let (available, placements, states) = self.allocation_inputs().await?;
        let records = match site {
            Some(s) => {
                site_hours(
                    &self.tables,
                    s,
                    Timestamp::from_millis(first),
                    Timestamp::from_millis(last + HOUR_MS),
                )
                .await?
            }
            None => {
                fleet_hours(
                    &self.tables,
                    Timestamp::from_millis(first),
                    Timestamp::from_millis(last + HOUR_MS),
                )
                .await?
            }
        };
        let gpus = available.at(site).count();
        let keep = |k: &GpuKey| site.is_none_or(|s| &k.0 == s);
        let mut by_hour: BTreeMap<i64, Busy> = BTreeMap::new();
        let mut by_site: BTreeMap<SiteId, Busy> = BTreeMap::new();
        for r in &records {
            by_hour
                .entry(r.hour_start_ms)
                .or_default()
                .add(r, |_, _| true);
            if let Ok(id) = SiteId::parse(&r.site) {
                by_site.entry(id).or_default().add(r, |_, _| true);
            }
        }
        let mut out = Vec::new();
        let mut h = first;
        while h <= last {
            let from = Timestamp::from_millis(h);
            let to = Timestamp::from_millis((h + HOUR_MS).min(now.as_millis().max(h + 1)));
            let seconds = (to.as_millis() - h) as f64 / 1000.0;
            let held = held_seconds(&placements, &states, &available, &keep, from, to);
            out.push(HourUtilisation {
                start: from,
                allocated: (gpus > 0).then(|| (held / (gpus as f64 * seconds)).clamp(0.0, 1.0)),
                busy: by_hour.get(&h).and_then(Busy::utilisation),
            });
            h += HOUR_MS;
        }
        Ok(UtilisationHistory {
            hours: out,
            available: gpus,
            busy_by_site: by_site
                .into_iter()
                .filter_map(|(s, b)| Some((s, b.utilisation()?)))
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use meridian_common::ids::{TenantId, TimeWindow};
    use meridian_common::model::{Assignment, ScoreBreakdown};

    use super::*;

    fn placement(decided: i64, window: Option<(i64, i64)>, slot: GpuSlot) -> Placement {
        Placement {
            workload: WorkloadId::parse("wl-1").unwrap(),
            tenant: TenantId::parse("acme").unwrap(),
            assignments: vec![Assignment {
                replica: 0,
                site: SiteId::parse("edge-1").unwrap(),
                server: ServerId::parse("srv-1").unwrap(),
                slot,
            }],
            window: window.map(|(s, e)| {
                TimeWindow::new(Timestamp::from_millis(s), Timestamp::from_millis(e)).unwrap()
            }),
            score: ScoreBreakdown::default(),
            rejections: BTreeMap::new(),
            explanation: String::new(),
            decided_at: Timestamp::from_millis(decided),
        }
    }

    #[test]
    fn held_spans_count_applied_allocations_only() {
        let t = Timestamp::from_millis;
        let open = placement(1_000, None, GpuSlot::None);
        assert_eq!(
            held_span(&open, &ReservationState::Active, t(0), t(10_000)),
            Some((1_000, 10_000))
        );
        assert_eq!(
            held_span(&open, &ReservationState::Approved, t(0), t(10_000)),
            None
        );
        assert_eq!(
            held_span(&open, &ReservationState::Completed, t(0), t(10_000)),
            None,
            "an open-ended completed one has no known end"
        );
        let windowed = placement(1_000, Some((4_000, 6_000)), GpuSlot::None);
        assert_eq!(
            held_span(&windowed, &ReservationState::Completed, t(0), t(10_000)),
            Some((4_000, 6_000))
        );
        assert_eq!(
            held_span(&windowed, &ReservationState::Active, t(5_000), t(5_500)),
            Some((5_000, 5_500))
        );
    }

    #[test]
    fn allocated_gpu_seconds_weigh_mig_instances_by_their_share() {
        let mig = GpuSlot::Mig {
            gpu_index: 1,
            profile: meridian_common::model::MigProfile::parse(GpuModel::H100_80GB, "3g.40gb")
                .unwrap(),
            placement: 4,
        };
        let whole = GpuSlot::WholeGpus {
            indices: vec![0, 5],
        };
        let mut available = Available::default();
        for i in 0..2 {
            available.gpus.insert(
                (
                    SiteId::parse("edge-1").unwrap(),
                    ServerId::parse("srv-1").unwrap(),
                    i,
                ),
                GpuModel::H100_80GB,
            );
        }
        let placements = [placement(0, None, mig), placement(0, None, whole)];
        let states =
            HashMap::from([(WorkloadId::parse("wl-1").unwrap(), ReservationState::Active)]);
        let held = held_seconds(
            &placements,
            &states,
            &available,
            &|_| true,
            Timestamp::from_millis(0),
            Timestamp::from_millis(3_600_000),
        );
        // GPU 1: 3 of 7 slices for an hour; GPU 0: whole for an hour; GPU 5 is not available.
        assert!((held - (3.0 / 7.0 + 1.0) * 3_600.0).abs() < 1e-6, "{held}");
    }
}
