//! Servers: hardware inventory and provisioning state.
//!
//! A [`Server`] is what a site's inventory says one machine holds (BMC, CPUs, memory, GPUs,
//! DPU) plus its provisioning state. Consistency rules (unique GPU indices, valid MIG layouts)
//! are checked by [`validate_server`](crate::validate::validate_server).

use serde::{Deserialize, Serialize};

use crate::gpu::Gpu;
use crate::ids::{PoolId, ServerId, SiteId};

/// Who made the BMC, which decides the Redfish dialect the agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BmcVendor {
    /// Dell iDRAC.
    Dell,
    /// HPE iLO.
    Hpe,
    /// Lenovo XClarity.
    Lenovo,
    /// Supermicro.
    Supermicro,
    /// NVIDIA (DGX / HGX BMC).
    Nvidia,
    /// Any standard Redfish BMC.
    Generic,
}

/// How to reach a server's BMC.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BmcEndpoint {
    /// Redfish base URL (`https://10.0.0.5`).
    pub url: String,
    /// The BMC vendor.
    pub vendor: BmcVendor,
}

/// Whether a BlueField runs as a DPU (offloads, isolation) or as a plain NIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpuMode {
    /// DPU mode: the Arm cores own the data path.
    Dpu,
    /// NIC mode.
    Nic,
}

/// A DPU in a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Dpu {
    /// Model (`BlueField-3`).
    pub model: String,
    /// Serial number.
    pub serial: String,
    /// Operating mode.
    pub mode: DpuMode,
}

/// Provisioning state of a server.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServerState {
    /// Seen (e.g. by its BMC) but not inspected yet.
    Discovered,
    /// Its hardware is being inventoried.
    Inspecting,
    /// Clean and free to allocate.
    Available,
    /// Running a tenant's allocation.
    Allocated,
    /// Being wiped after an allocation.
    Cleaning,
    /// Out of service.
    Failed {
        /// Why.
        reason: String,
    },
}

/// One server as inventoried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// The server's ID.
    pub id: ServerId,
    /// The site it is in.
    pub site: SiteId,
    /// Its BMC.
    pub bmc: BmcEndpoint,
    /// Chassis serial number.
    pub serial: String,
    /// CPU cores (physical).
    pub cpu_cores: u32,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Its GPUs.
    #[serde(default)]
    pub gpus: Vec<Gpu>,
    /// Its DPU, if any.
    #[serde(default)]
    pub dpu: Option<Dpu>,
    /// The pool it belongs to, if any.
    #[serde(default)]
    pub pool: Option<PoolId>,
    /// Provisioning state.
    pub state: ServerState,
}

impl Server {
    /// The GPU at `index`, if present.
    pub fn gpu(&self, index: u32) -> Option<&Gpu> {
        self.gpus.iter().find(|g| g.index == index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_serde() {
        let text = r#"
            id = "srv-1"
            site = "fra-1"
            bmc = { url = "https://10.0.0.5", vendor = "dell" }
            serial = "SN123"
            cpu_cores = 64
            memory_mib = 1048576
            state = { failed = { reason = "psu" } }
            [[gpus]]
            index = 0
            model = "H100-80GB"
            memory_mib = 81920
            mig = "disabled"
            health = "healthy"
        "#;
        let s: Server = toml::from_str(text).unwrap();
        assert_eq!(
            s.state,
            ServerState::Failed {
                reason: "psu".into()
            }
        );
        assert!(s.gpu(0).is_some() && s.gpu(1).is_none());
        let again: Server = toml::from_str(&toml::to_string(&s).unwrap()).unwrap();
        assert_eq!(again, s);
        assert!(toml::from_str::<Server>(&format!("extra = 1\n{text}")).is_err());
    }
}
