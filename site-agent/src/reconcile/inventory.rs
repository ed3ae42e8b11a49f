//! Inspection: a server's inventory in the domain model ([`Server`]) from what Redfish and the
//! GPU driver report. NVML's view of the GPUs wins where there is one (index, memory, MIG);
//! otherwise the BMC's GPU processors are listed in order.

use meridian_common::ids::{ServerId, SiteId};
use meridian_common::model::{
    BmcEndpoint, BmcVendor, Gpu, GpuHealth, GpuModel, MigConfig, Server, ServerState,
};

use super::device::mig_profile_of;
use super::plan::mig_instances;
use meridian_drivers::bmc::{HardwareInventory, Vendor};
use meridian_drivers::gpu::{GpuReport, MigState};

/// The GPU model a device name denotes (`NVIDIA H100 80GB HBM3` -> `H100-80GB`), if Meridian
/// knows it.
pub fn gpu_model(name: &str) -> Option<GpuModel> {
    let n = name.to_ascii_uppercase();
    let has = |s: &str| {
        n.split(|c: char| !c.is_ascii_alphanumeric())
            .any(|w| w == s)
    };
    if has("H200") {
        Some(GpuModel::H200_141GB)
    } else if has("H100") {
        Some(if n.contains("94GB") || has("NVL") {
            GpuModel::H100_94GB
        } else {
            GpuModel::H100_80GB
        })
    } else if has("A100") {
        Some(if n.contains("40GB") {
            GpuModel::A100_40GB
        } else {
            GpuModel::A100_80GB
        })
    } else if has("A30") {
        Some(GpuModel::A30_24GB)
    } else if has("L40S") {
        Some(GpuModel::L40S)
    } else if has("L4") {
        Some(GpuModel::L4)
    } else {
        None
    }
}

/// The domain model's vendor for a detected BMC vendor.
pub fn bmc_vendor(v: &Vendor) -> BmcVendor {
    match v {
        Vendor::Dell => BmcVendor::Dell,
        Vendor::Hpe => BmcVendor::Hpe,
        Vendor::Lenovo => BmcVendor::Lenovo,
        Vendor::Supermicro => BmcVendor::Supermicro,
        Vendor::Nvidia => BmcVendor::Nvidia,
        _ => BmcVendor::Generic,
    }
}

/// What inspection found, as a [`Server`] in state `Available`, and the names of GPUs whose
/// model Meridian does not know (left out).
pub fn server_from(
    id: &ServerId,
    site: &SiteId,
    bmc_url: &str,
    vendor: &Vendor,
    hw: &HardwareInventory,
    gpus: Option<&GpuReport>,
) -> (Server, Vec<String>) {
    let mut unknown = Vec::new();
    let mut list = Vec::new();
    match gpus {
        Some(report @ GpuReport::Gpus { .. }) => {
            for d in report.devices() {
                let Some(model) = gpu_model(&d.name) else {
                    unknown.push(d.name.clone());
                    continue;
                };
                let mig = match &d.mig {
                    MigState::Supported {
                        current: true,
                        devices,
                        ..
                    } => {
                        let profiles: Vec<&str> = devices.iter().map(mig_profile_of).collect();
                        MigConfig::Enabled {
                            instances: mig_instances(model, &profiles),
                        }
                    }
                    _ => MigConfig::Disabled,
                };
                list.push(Gpu {
                    index: d.index.0,
                    model,
                    memory_mib: d.memory.total / (1024 * 1024),
                    mig,
                    health: GpuHealth::Healthy,
                });
            }
        }
        _ => {
            for (i, p) in hw.gpus.iter().enumerate() {
                let name = p.model.clone().unwrap_or_default();
                let Some(model) = gpu_model(&name) else {
                    unknown.push(name);
                    continue;
                };
                list.push(Gpu {
                    index: i as u32,
                    model,
                    memory_mib: model.nominal_memory_mib(),
                    mig: MigConfig::Disabled,
                    health: GpuHealth::Healthy,
                });
            }
        }
    }
    let memory_mib = hw
        .total_memory_gib
        .map(|g| (g * 1024.0) as u64)
        .unwrap_or_else(|| hw.dimms.iter().filter_map(|d| d.capacity_mib).sum());
    let server = Server {
        id: id.clone(),
        site: site.clone(),
        bmc: BmcEndpoint {
            url: bmc_url.to_owned(),
            vendor: bmc_vendor(vendor),
        },
        serial: hw
            .serial_number
            .clone()
            .unwrap_or_else(|| "unknown".to_owned()),
        cpu_cores: hw.cpus.iter().filter_map(|c| c.cores).sum(),
        memory_mib,
        gpus: list,
        dpu: None,
        pool: None,
        state: ServerState::Available,
    };
    (server, unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_names_map_to_models() {
        assert_eq!(
            gpu_model("NVIDIA H100 80GB HBM3"),
            Some(GpuModel::H100_80GB)
        );
        assert_eq!(gpu_model("NVIDIA H100 NVL"), Some(GpuModel::H100_94GB));
        assert_eq!(
            gpu_model("NVIDIA A100-SXM4-40GB"),
            Some(GpuModel::A100_40GB)
        );
        assert_eq!(gpu_model("NVIDIA L40S"), Some(GpuModel::L40S));
        assert_eq!(gpu_model("NVIDIA L4"), Some(GpuModel::L4));
        assert_eq!(gpu_model("NVIDIA H200"), Some(GpuModel::H200_141GB));
        assert_eq!(gpu_model("Matrox G200"), None);
    }
}
