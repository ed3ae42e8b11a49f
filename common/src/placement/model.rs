//! Placements: what the planner decided for one workload, and why.
//!
//! A [`Placement`] is planned state: which site, server and GPU slot each replica gets, the
//! score of the choice broken into its parts, and how many sites were rejected for each
//! [`RejectReason`], so every decision can be explained.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gpu::MigProfile;
use crate::ids::{ServerId, SiteId, TenantId, TimeWindow, Timestamp, WorkloadId};

/// The GPU share one replica gets on its server.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GpuSlot {
    /// No GPU.
    None,
    /// Whole GPUs, by index in the server.
    WholeGpus {
        /// GPU indices.
        indices: Vec<u32>,
    },
    /// One MIG instance.
    Mig {
        /// The GPU's index in the server.
        gpu_index: u32,
        /// The profile.
        profile: MigProfile,
        /// The first memory slice.
        placement: u8,
    },
}

impl GpuSlot {
    /// The GPU indices the slot touches.
    pub fn gpu_indices(&self) -> Vec<u32> {
        match self {
            Self::None => Vec::new(),
            Self::WholeGpus { indices } => indices.clone(),
            Self::Mig { gpu_index, .. } => vec![*gpu_index],
        }
    }
}

/// Where one replica goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Replica number, `0..replicas`.
    pub replica: u32,
    /// The site.
    pub site: SiteId,
    /// The server.
    pub server: ServerId,
    /// The GPU share.
    pub slot: GpuSlot,
}

/// The score of a placement and its weighted parts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreBreakdown {
    /// The total.
    pub total: f64,
    /// Latency part.
    pub latency: f64,
    /// Data-gravity part.
    pub data: f64,
    /// Price part.
    pub price: f64,
    /// Packing part.
    pub packing: f64,
}

/// Why a site was not chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    /// The site is not online.
    SiteNotOnline,
    /// The site's country is outside the workload's or tenant's residency rule.
    Residency,
    /// A dataset's residency rule forbids the site.
    DatasetResidency,
    /// The site lacks a required certification.
    Certification,
    /// The site is of the wrong tier.
    Tier,
    /// The site is too far (RTT) from the users.
    Latency,
    /// The site has no free capacity of the right kind.
    Capacity,
    /// Using the site would break the spread rule.
    Spread,
    /// Using the site would break colocation.
    Colocation,
    /// Using the site would exceed the tenant's quota.
    Quota,
    /// The site has no hardware of the requested kind at all: no GPU of the model, no GPU in
    /// the needed MIG mode, or no storage array (as opposed to [`RejectReason::Capacity`]:
    /// hardware that is there but not free for the whole window).
    Hardware,
}

/// What the planner decided for one workload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Placement {
    /// The workload.
    pub workload: WorkloadId,
    /// Its owner.
    pub tenant: TenantId,
    /// One entry per replica.
    pub assignments: Vec<Assignment>,
    /// The reserved window (absent: from now on, open-ended).
    #[serde(default)]
    pub window: Option<TimeWindow>,
    /// The score of the choice.
    pub score: ScoreBreakdown,
    /// How many sites were rejected for each reason.
    #[serde(default)]
    pub rejections: BTreeMap<RejectReason, u32>,
    /// A human explanation of the decision.
    #[serde(default)]
    pub explanation: String,
    /// When it was decided.
    pub decided_at: Timestamp,
}
