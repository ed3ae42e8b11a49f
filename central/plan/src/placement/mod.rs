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
//!    read ([`RejectReason::DatasetResidency`]), tier, hardware (no usable GPU of the model and
//!    MIG mode: [`RejectReason::Capacity`]), latency from the nearest `from` region (a prefix
//!    of that region's RTT-sorted site list), then per remaining site: online, certifications,
//!    latency from every other `from` region, the tenant's site quota, and capacity on concrete
//!    servers for the whole window.
//! 2. **Score** each candidate (higher is better, each part in `0..=1`): latency
//!    `1 - worst_rtt / max_rtt_ms` (1 without a latency constraint), data
//!    `1 - bytes_to_move / bytes_read` (datasets with a replica on the site need not move),
//!    price `1 - price / highest_price_in_fleet`, packing: the share of the chosen server's
//!    GPUs (or of the chosen GPU's MIG compute slices) in use after placing, so partly used
//!    servers fill first and whole servers stay free. The total is the weighted mean with the
//!    tenant's weights (equal by default). Ties go to the
//!    lower site ID, then server ID, then GPU index.
//! 3. **Assign**: one replica goes to the best slot, searching candidates best-bound-first.
//!    Several replicas are assigned exactly by dynamic programming over the units (servers
//!    or MIG GPUs) of the best-bounded candidate sites, with `max_per_site` and `min_sites`
//!    (see `replicas.rs`); with `colocate`, the site whose best split of all replicas scores
//!    highest wins.
//! 4. **Quota**: the tenant's peak usage over the window plus this placement must fit its
//!    quotas. Then commit (or, for a dry run, undo).
//!
//! A workload that cannot be placed gets an [`Unplaceable`] with the rejection counts, up to
//! three nearest misses and an explanation.

mod capacity;
mod decide;
mod explain;
mod fleet;
pub mod latency;
mod planner;
mod quota;
mod replicas;
mod snapshot;

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
