//! What the planner is built from: the fleet as central knows it, at one moment.

use std::collections::BTreeSet;

use meridian_common::ids::{RegionId, ServerId, SiteId};
use meridian_common::model::{Dataset, Placement, Region, Server, Site, Tenant};

/// A round trip measured by a site's agent to a user region. Central gives the planner only
/// fresh measurements; the planner prefers them to its distance estimate and says so.
#[derive(Debug, Clone, PartialEq)]
pub struct MeasuredRtt {
    pub site: SiteId,
    pub region: RegionId,
    pub rtt_ms: f64,
}

/// The fleet as central knows it: sites with their state, servers with GPUs and MIG modes,
/// user regions, measured RTTs, datasets with their replicas, tenants with their policies,
/// and the placements already committed (their bookings hold capacity in their windows).
#[derive(Debug, Clone, Default)]
pub struct FleetSnapshot {
    pub sites: Vec<Site>,
    pub servers: Vec<Server>,
    pub regions: Vec<Region>,
    pub rtts: Vec<MeasuredRtt>,
    pub datasets: Vec<Dataset>,
    pub tenants: Vec<Tenant>,
    pub placements: Vec<Placement>,
    /// Servers an operator drained: they keep what they hold, and take no new placement.
    pub drained: BTreeSet<ServerId>,
}
