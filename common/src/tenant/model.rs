//! Tenants: quotas, residency policy, scoring preferences and network allocation.
//!
//! Bounds (weights finite in `0..=100`, a usable VNI and routing table) are checked by
//! [`validate_tenant`](crate::validate::validate_tenant).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::gpu::GpuModel;
use crate::ids::{Name, TenantId};
use crate::jurisdiction::ResidencyRule;
use crate::net::Ipv4Net;

/// What a tenant may use at once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quotas {
    /// Whole GPUs per model; a model not listed has quota 0.
    #[serde(default)]
    pub gpus_per_model: BTreeMap<GpuModel, u32>,
    /// MIG compute slices over all models.
    #[serde(default)]
    pub mig_slices: u32,
    /// Reservations that may be pending, approved or active at once.
    #[serde(default)]
    pub concurrent_reservations: u32,
    /// Distinct sites the tenant may occupy at once.
    #[serde(default)]
    pub sites: u32,
    /// Storage (volumes on the sites' arrays) the tenant may hold at once, in MiB.
    #[serde(default)]
    pub storage_mib: u64,
}

/// How much each scoring term matters to the tenant, each in `0..=100`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoreWeights {
    /// Weight of round-trip time to users.
    pub latency: f64,
    /// Weight of closeness to the datasets used.
    pub data: f64,
    /// Weight of price.
    pub price: f64,
    /// Weight of packing (filling used servers before empty ones).
    pub packing: f64,
}

impl Default for ScoreWeights {
    /// Equal weights.
    fn default() -> Self {
        Self {
            latency: 25.0,
            data: 25.0,
            price: 25.0,
            packing: 25.0,
        }
    }
}

/// The overlay network a tenant gets on every site it uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantNetwork {
    /// VXLAN network identifier, `1..=16_777_215`.
    pub vni: u32,
    /// VRF routing table number (not 0, 253, 254 or 255, which Linux reserves).
    pub table: u32,
    /// The prefix per-site subnets are carved from.
    pub supernet: Ipv4Net,
}

/// A tenant as stored by central.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant's ID.
    pub id: TenantId,
    /// Its name.
    pub name: Name,
    /// Its quotas.
    #[serde(default)]
    pub quotas: Quotas,
    /// Where its data and workloads may go.
    #[serde(default)]
    pub residency: ResidencyRule,
    /// Its scoring preferences.
    #[serde(default)]
    pub weights: ScoreWeights,
    /// The highest workload priority it may use.
    #[serde(default)]
    pub max_priority: u32,
    /// Its network, once allocated.
    #[serde(default)]
    pub network: Option<TenantNetwork>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_serde_with_model_keys() {
        let text = r#"
            id = "acme"
            name = "acme-corp"
            residency = ["EU"]
            max_priority = 10
            network = { vni = 1001, table = 1001, supernet = "10.64.0.0/16" }
            [quotas]
            gpus_per_model = { "H100-80GB" = 16, "L40S" = 4 }
            mig_slices = 14
        "#;
        let t: Tenant = toml::from_str(text).unwrap();
        assert_eq!(t.quotas.gpus_per_model[&GpuModel::H100_80GB], 16);
        assert_eq!(t.weights, ScoreWeights::default());
        let again: Tenant = toml::from_str(&toml::to_string(&t).unwrap()).unwrap();
        assert_eq!(again, t);
        assert!(toml::from_str::<Tenant>(&format!("{text}\nbogus = 1")).is_err());
    }
}
