//! Regions: named populations of users at a location, the `from` of latency goals.
//!
//! Coordinates and population are checked by
//! [`validate_region`](crate::validate::validate_region).

use serde::{Deserialize, Serialize};

use crate::ids::{Name, RegionId};
use crate::jurisdiction::Jurisdiction;
use crate::site::GeoPoint;

/// A region as stored by central.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    /// The region's ID.
    pub id: RegionId,
    /// Its name.
    pub name: Name,
    /// Its centre.
    pub location: GeoPoint,
    /// The country it is in.
    pub country: Jurisdiction,
    /// How many users it stands for.
    pub population: u64,
}
