//! Observation: what a server's BMC and GPUs say right now. Every reconcile of a server past
//! inspection starts here, so each step acts on the difference between this and the want, not
//! on what the record believes.

use super::ReconcileError;
use super::server::ServerDrivers;
use crate::compute::bmc::{BootOverride, BootOverrideEnabled, BootTarget, MediaStatus, PowerState};
use crate::compute::dpu::DpuModeStatus;
use crate::compute::gpu::{GpuDevice, GpuReport, MigDevice, MigState};

/// A server as its drivers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub power: PowerState,
    pub boot: BootOverride,
    pub media: MediaStatus,
    /// `None`: no GPU inventory driver for this server.
    pub gpus: Option<GpuReport>,
    /// `None`: no DPU managed on this server.
    pub dpu: Option<DpuSeen>,
}

/// A DPU as its BMC reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpuSeen {
    pub mode: DpuModeStatus,
    /// `DPU_OS` (the installed BFB bundle).
    pub os: Option<String>,
}

impl Device {
    /// A one-time (or, on BMCs that ignore `Once`, continuous) CD boot is set.
    pub fn cd_boot_armed(&self) -> bool {
        self.boot.target == BootTarget::Cd && self.boot.enabled != BootOverrideEnabled::Disabled
    }

    /// Power is on or on its way.
    pub fn powered(&self) -> bool {
        matches!(self.power, PowerState::On | PowerState::PoweringOn)
    }

    /// Power is changing.
    pub fn in_transition(&self) -> bool {
        matches!(self.power, PowerState::PoweringOn | PowerState::PoweringOff)
    }

    /// Whether `image` is inserted.
    pub fn has_media(&self, image: &str) -> bool {
        self.media.inserted && same_image(self.media.image.as_deref(), image)
    }

    /// The GPU with this index.
    pub fn gpu(&self, index: u32) -> Option<&GpuDevice> {
        self.gpus
            .as_ref()
            .and_then(|r| r.devices().iter().find(|g| g.index.0 == index))
    }

    /// MIG devices present on a GPU (empty when MIG is off or unsupported).
    pub fn mig_devices(&self, index: u32) -> &[MigDevice] {
        match self.gpu(index).map(|g| &g.mig) {
            Some(MigState::Supported { devices, .. }) => devices,
            _ => &[],
        }
    }

    /// `(current, pending)` MIG mode of a GPU; `None` when it has no MIG.
    pub fn mig_mode(&self, index: u32) -> Option<(bool, bool)> {
        match self.gpu(index).map(|g| &g.mig) {
            Some(MigState::Supported {
                current, pending, ..
            }) => Some((*current, *pending)),
            _ => None,
        }
    }
}

/// Whether the slot's reported image is `wanted` (some BMCs report only the file name).
pub fn same_image(reported: Option<&str>, wanted: &str) -> bool {
    match reported {
        Some(r) => r == wanted || wanted.rsplit('/').next() == Some(r),
        None => false,
    }
}

/// The MIG profile of a device, from its NVML name (`NVIDIA H100 80GB HBM3 MIG 1g.10gb`).
pub fn mig_profile_of(device: &MigDevice) -> &str {
    device.name.rsplit(' ').next().unwrap_or("")
}

/// Reads power, boot override and media from the BMC, the GPUs when the server has a GPU
/// inventory driver, and the DPU's mode and `DPU_OS` version when it has a managed DPU.
pub async fn observe(drivers: &ServerDrivers) -> Result<Device, ReconcileError> {
    let bmc = &drivers.bmc;
    let bmc_err = |step| move |source| ReconcileError::Bmc { step, source };
    let power = bmc.power_state().await.map_err(bmc_err("observe power"))?;
    let boot = bmc
        .boot_override()
        .await
        .map_err(bmc_err("observe boot override"))?;
    let media = bmc.media().await.map_err(bmc_err("observe media"))?;
    let gpus = match &drivers.gpus {
        Some(g) => Some(g.report().await.map_err(|source| ReconcileError::Gpu {
            step: "observe GPUs",
            source,
        })?),
        None => None,
    };
    let dpu = match &drivers.dpu {
        Some(d) => {
            let dpu_err = |step| move |source| ReconcileError::Dpu { step, source };
            let mode = d.driver.mode().await.map_err(dpu_err("observe DPU mode"))?;
            let firmware = d
                .driver
                .firmware()
                .await
                .map_err(dpu_err("observe DPU firmware"))?;
            Some(DpuSeen {
                mode,
                os: firmware.os,
            })
        }
        None => None,
    };
    Ok(Device {
        power,
        boot,
        media,
        gpus,
        dpu,
    })
}
