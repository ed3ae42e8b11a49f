//! What a server's BMC, GPUs and DPU said when last observed ([`Device`]), as plain data the
//! pure planner reads. The observing itself (IO through the drivers) is
//! [`super::server::observe_server`]; every reconcile of a server past inspection starts there,
//! so each step acts on the difference between this and the want, not on what the record
//! believes.

use meridian_drivers::bmc::{
    BootOverride, BootOverrideEnabled, BootTarget, MediaStatus, PowerState,
};
use meridian_drivers::dpu::DpuModeStatus;
use meridian_drivers::gpu::{GpuDevice, GpuReport, MigDevice, MigState};

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
