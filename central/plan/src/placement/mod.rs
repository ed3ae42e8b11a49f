//! The placement engine: where each workload runs, and why.
//!
//! A pure module: no async, no IO, no clock reads, no randomness. Time (`now`) is an argument;
//! the same snapshot and the same requests in the same order give the same decisions.
//!
//! [`Planner::new`] indexes a [`FleetSnapshot`]; [`Planner::place`] decides one workload and
//! commits it, [`Planner::dry_run`] decides without committing, [`Planner::place_batch`] places
//! a batch in priority order, [`Planner::release`] frees a workload's capacity.
//!
//! # How a decision is made
//!
//! 1. **Filter**, from the cheapest index to the most precise check. A site rejected at one
//!    step is counted under that step's reason only, in this order: workload residency
//!    ([`RejectReason::Residency`], with the tenant's own rule), residency of every dataset
//!    read ([`RejectReason::DatasetResidency`]), tier, hardware ([`RejectReason::Hardware`]:
//!    the site has no usable GPU of the model in the needed MIG mode, no server at all for a
//!    workload without GPUs, or no storage array for a workload that asks for storage),
//!    latency from the nearest `from` region (a prefix of that region's RTT-sorted site list),
//!    then per remaining site: online, certifications, latency from every other `from`
//!    region, the tenant's site quota, and capacity ([`RejectReason::Capacity`]: the hardware
//!    is there but not free for the whole window) on concrete servers that are not drained
//!    and on the site's storage array.
//! 2. **Score** each candidate (higher is better, each part in `0..=1`): latency
//!    `1 - worst_rtt / max_rtt_ms` (1 without a latency constraint), data
//!    `1 - bytes_to_move / bytes_read` (datasets with a replica on the site need not move),
//!    price `1 - price / highest_price_in_fleet`, packing: the share of the chosen server's
//!    GPUs (or of the chosen GPU's MIG compute slices) in use after placing, so partly used
//!    servers fill first and whole servers stay free. The total is the weighted mean with the
//!    tenant's weights (equal by default). Equal scores go to the lower site ID (whatever
//!    order the filters found the sites in: RTT order or country lists), then the lower
//!    server ID, then GPU index.
//! 3. **Assign**: one replica goes to the best slot, searching candidates best-bound-first.
//!    Several replicas are assigned exactly by dynamic programming over the units (servers
//!    or MIG GPUs) of the best-bounded candidate sites, with `max_per_site` and `min_sites`
//!    (see `replicas.rs`); with `colocate`, the site whose best split of all replicas scores
//!    highest wins. A replica with storage books `storage_mib` on its site's array for its
//!    window, so a site takes at most as many replicas as its array has room for.
//! 4. **Quota**: the tenant's peak usage over the window plus this placement must fit its
//!    quotas (GPUs per model, MIG compute slices, storage in MiB, concurrent reservations,
//!    sites). Then commit (or, for a dry run, undo).
//!
//! # Storage, drains and RTTs
//!
//! - A site's storage array (`Site::storage_mib`, 0: none) is a calendar like a GPU's: the
//!   free space for a window is its size less every volume whose window overlaps it.
//!   [`Planner::release`] frees it. A [`Placement`] does not carry its storage, so a planner
//!   rebuilt from placements re-books it with [`Planner::rebook_storage`] (the workload
//!   spec's `resources.storage_mib`, per replica).
//! - A drained server ([`FleetSnapshot::drained`]) keeps its bookings and takes no new one.
//!   A site whose servers with room are all drained is rejected for capacity, and its near
//!   miss says `drained`.
//! - RTTs are measured ones where [`FleetSnapshot::rtts`] (or [`Planner::set_measured_rtt`])
//!   has one for the pair, else the distance estimate ([`LatencyModel`]). Every explanation
//!   that gives an RTT says which: `RTT 12 ms measured <= 20 ms`, `RTT estimated 9.0 ms >
//!   8 ms from fr-paris`, `RTT measured 30 ms > 20 ms from fr-paris (distance estimate
//!   5.0 ms)` (whole milliseconds without decimals, others with one).
//!
//! # Explanations
//!
//! A workload that cannot be placed gets an [`Unplaceable`] with the rejection counts, up to
//! three nearest misses and an explanation. Near misses are ranked by how late the check that
//! stopped them comes (capacity, quota, latency, certification, online, hardware, residency),
//! then by how far off they were, then by site ID, and the three named have different reasons
//! where there are three: a site lacking the hardware is named for `Hardware` (for example
//! `no MIG-enabled H100-80GB GPU (its H100-80GB GPUs have MIG disabled)`, `no storage array`),
//! apart from a site that has it but not free (`Capacity`: `no H100-80GB GPUs free for the
//! whole window`, `storage array full for the window: ...`, `drained: ...`), and a site
//! outside the residency rules that would otherwise be a candidate is named for `Residency`.
//! Replicas that cannot spread because too few sites have the hardware at all are explained
//! by the hardware, not by the spread rule.

mod capacity;
mod decide;
mod explain;
mod fleet;
pub mod latency;
mod planner;
mod quota;
mod replicas;
mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use meridian_common::ids::{DatasetId, RegionId, ServerId, SiteId, TenantId, WorkloadId};
use meridian_common::model::{Placement, RejectReason, ScoreWeights, WorkloadSpec};

pub use latency::LatencyModel;
pub use planner::Planner;
pub use snapshot::{FleetSnapshot, MeasuredRtt};

/// Tunables of the planner.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannerConfig {
    /// How RTTs are estimated where none was measured.
    pub latency: LatencyModel,
    /// Weights for tenants whose weights are all zero (tenants get equal weights by default).
    pub default_weights: ScoreWeights,
    /// Bandwidth between sites for moving datasets, in Gbit/s (for transfer-time estimates).
    pub inter_site_gbps: f64,
}

impl Default for PlannerConfig {
    fn default() -> Self {
        PlannerConfig {
            latency: LatencyModel::default(),
            default_weights: ScoreWeights::default(),
            inter_site_gbps: 10.0,
        }
    }
}

/// One workload to place.
#[derive(Debug, Clone, PartialEq)]
pub struct PlacementRequest {
    pub workload: WorkloadId,
    pub tenant: TenantId,
    pub spec: WorkloadSpec,
}

/// The outcome of one placement.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Decision {
    /// Placed (committed, unless this came from a dry run).
    Placed(Placement),
    /// No placement satisfies every hard constraint.
    Unplaceable(Unplaceable),
}

impl Decision {
    /// The placement, if placed.
    pub fn placement(&self) -> Option<&Placement> {
        match self {
            Decision::Placed(p) => Some(p),
            Decision::Unplaceable(_) => None,
        }
    }

    /// Sites rejected, per reason.
    pub fn rejections(&self) -> &BTreeMap<RejectReason, u32> {
        match self {
            Decision::Placed(p) => &p.rejections,
            Decision::Unplaceable(u) => &u.rejections,
        }
    }

    /// The human-readable explanation.
    pub fn explanation(&self) -> &str {
        match self {
            Decision::Placed(p) => &p.explanation,
            Decision::Unplaceable(u) => &u.explanation,
        }
    }
}

/// Why a workload was not placed.
#[derive(Debug, Clone, PartialEq)]
pub struct Unplaceable {
    pub workload: WorkloadId,
    pub tenant: TenantId,
    /// Sites rejected, per reason (each site counted once, under the first reason it failed).
    pub rejections: BTreeMap<RejectReason, u32>,
    /// The sites that came closest, with what stopped them.
    pub near_misses: Vec<NearMiss>,
    pub explanation: String,
}

/// A site that passed the cheap filters and failed a later check.
#[derive(Debug, Clone, PartialEq)]
pub struct NearMiss {
    pub site: SiteId,
    pub reason: RejectReason,
    pub detail: String,
}

/// A request the planner cannot evaluate at all (as opposed to one it cannot place).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlacementError {
    #[error("tenant {0} is not known to the planner")]
    UnknownTenant(TenantId),
    #[error("{field}: region {region} does not exist")]
    UnknownRegion { field: String, region: RegionId },
    #[error("{field}: dataset {dataset} does not exist")]
    UnknownDataset { field: String, dataset: DatasetId },
    #[error("constraints.pin_server: server {0} does not exist")]
    UnknownServer(ServerId),
    #[error("unknown site {0}")]
    UnknownSite(SiteId),
    #[error("workload {0} is already placed; release it first")]
    AlreadyPlaced(WorkloadId),
    #[error("inconsistent fleet snapshot: {0}")]
    BadSnapshot(String),
}
