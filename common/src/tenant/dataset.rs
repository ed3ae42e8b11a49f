//! Datasets: where a tenant's data lives (data gravity) and where it may live.
//!
//! Replica sites are unique and bounded, checked by
//! [`validate_dataset`](crate::validate::validate_dataset).

use serde::{Deserialize, Serialize};

use crate::ids::{DatasetId, Name, SiteId, TenantId};
use crate::jurisdiction::ResidencyRule;

/// A dataset as stored by central.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dataset {
    /// The dataset's ID.
    pub id: DatasetId,
    /// Its owner.
    pub tenant: TenantId,
    /// Its name.
    pub name: Name,
    /// Size in bytes.
    pub size_bytes: u64,
    /// Sites holding a full replica.
    #[serde(default)]
    pub replicas: Vec<SiteId>,
    /// Where the data may be stored and processed.
    #[serde(default)]
    pub residency: ResidencyRule,
}
