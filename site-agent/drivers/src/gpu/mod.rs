//! The [`GpuInventory`] trait: the node's NVIDIA GPUs, their memory, utilisation and MIG
//! partitioning, as the reconciler sees them.
//!
//! A node without GPUs is normal (CPU servers, a driver not installed yet): [`GpuReport`] says
//! so as a typed answer ([`NoGpus`]), not an error, and the agent keeps running. Errors are for
//! GPUs that exist but misbehave.
//!
//! MIG: [`MigState::Supported`] carries the current and pending mode (a change is pending until
//! the GPU is reset) and the MIG devices present. Slots are numbered as NVML numbers them: up to
//! the GPU's maximum, with holes where no device exists.

pub mod nvml;

use std::fmt;

use async_trait::async_trait;

pub use nvml::NvmlInventory;

/// A GPU's NVML index on this node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuIndex(pub u32);

impl fmt::Display for GpuIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GPU {}", self.0)
    }
}

/// A GPU's or MIG device's UUID (`GPU-...` or `MIG-...`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuUuid(pub String);

impl fmt::Display for GpuUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A MIG GPU-instance profile by name (`1g.10gb`, `3g.40gb`, `7g.80gb`...).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MigProfile(pub String);

/// Why the node has no GPUs to offer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoGpus {
    /// `libnvidia-ml.so.1` could not be loaded (no NVIDIA driver installed), or the file
    /// loaded is not NVML.
    LibraryMissing { detail: String },
    /// The library is there but the kernel driver is not loaded.
    DriverNotLoaded,
    /// NVML works and counts zero devices.
    NoDevices,
    /// NVML failed to start for another reason (permissions, a broken install); logged.
    InitFailed { detail: String },
}

impl fmt::Display for NoGpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NoGpus::LibraryMissing { detail } => {
                write!(
                    f,
                    "no GPUs on this node: NVIDIA library not found ({detail})"
                )
            }
            NoGpus::DriverNotLoaded => {
                f.write_str("no GPUs on this node: the NVIDIA kernel driver is not loaded")
            }
            NoGpus::NoDevices => f.write_str("no GPUs on this node: NVML reports no devices"),
            NoGpus::InitFailed { detail } => {
                write!(
                    f,
                    "no GPUs usable on this node: NVML failed to start ({detail})"
                )
            }
        }
    }
}

/// Framebuffer memory, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuMemory {
    pub total: u64,
    pub used: u64,
}

/// Utilisation over the driver's last sample period, percent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Utilisation {
    pub gpu: u32,
    pub memory: u32,
}

/// One MIG device (a compute instance inside a GPU instance). It has no [`Utilisation`]:
/// `nvmlDeviceGetUtilizationRates` answers `NVML_ERROR_NOT_SUPPORTED` on MIG device handles
/// (and on a GPU in MIG mode), so only its memory is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigDevice {
    /// NVML's slot index under the parent GPU.
    pub slot: u32,
    pub uuid: GpuUuid,
    /// As NVML names it (`NVIDIA H100 80GB HBM3 MIG 1g.10gb`).
    pub name: String,
    pub memory: Option<GpuMemory>,
}

/// A GPU's MIG partitioning.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigState {
    /// The GPU cannot be partitioned.
    NotSupported,
    Supported {
        /// MIG mode in force.
        current: bool,
        /// MIG mode after the next GPU reset (differs from `current` while a change waits).
        pending: bool,
        /// Devices present (empty when MIG is off).
        devices: Vec<MigDevice>,
        /// How many slots NVML reports (the maximum, holes included).
        slots: u32,
    },
}

impl MigState {
    /// A mode change waits for a GPU reset.
    pub fn reset_pending(&self) -> bool {
        matches!(self, MigState::Supported { current, pending, .. } if current != pending)
    }
}

/// One physical GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuDevice {
    pub index: GpuIndex,
    pub uuid: GpuUuid,
    pub name: String,
    pub memory: GpuMemory,
    /// `None` when the GPU does not report it (in MIG mode, NVML does not).
    pub utilisation: Option<Utilisation>,
    pub mig: MigState,
}

/// The node's GPUs, or why there are none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GpuReport {
    NoGpus(NoGpus),
    Gpus {
        driver_version: Option<String>,
        devices: Vec<GpuDevice>,
    },
}

impl GpuReport {
    /// The devices (empty for [`GpuReport::NoGpus`]).
    pub fn devices(&self) -> &[GpuDevice] {
        match self {
            GpuReport::NoGpus(_) => &[],
            GpuReport::Gpus { devices, .. } => devices,
        }
    }
}

/// The MIG mode after a change request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MigMode {
    pub current: bool,
    pub pending: bool,
}

/// Why a GPU operation failed.
#[derive(Debug, thiserror::Error)]
pub enum GpuError {
    /// The node has no GPUs, so the operation has nothing to act on.
    #[error("{0}")]
    NoGpus(NoGpus),
    /// No GPU with this index.
    #[error("{0} does not exist on this node")]
    NoSuchGpu(GpuIndex),
    /// The GPU has no MIG support.
    #[error("{0} does not support MIG")]
    MigNotSupported(GpuIndex),
    /// MIG devices can be created only while MIG mode is on (after the reset).
    #[error("{0}: MIG mode is not in force (enable it and reset the GPU first)")]
    MigNotEnabled(GpuIndex),
    /// The GPU is busy (processes or MIG devices on it); stop them and retry.
    #[error("{gpu} is in use: {detail}")]
    InUse { gpu: GpuIndex, detail: String },
    /// The profile is unknown or no longer fits.
    #[error("{gpu}: MIG profile {profile} cannot be placed: {detail}")]
    ProfileUnavailable {
        gpu: GpuIndex,
        profile: String,
        detail: String,
    },
    /// No MIG device with this UUID on the GPU.
    #[error("{gpu}: no MIG device {uuid}")]
    NoSuchMigDevice { gpu: GpuIndex, uuid: GpuUuid },
    /// This implementation cannot do the operation.
    #[error("{op} is not supported by this GPU driver: {reason}")]
    Unsupported { op: &'static str, reason: String },
    /// An NVML call failed.
    #[error("NVML {op} failed")]
    Nvml {
        op: &'static str,
        #[source]
        source: nvml_wrapper::error::NvmlError,
    },
    /// The blocking worker running NVML calls died.
    #[error("the NVML worker task failed")]
    Worker(#[source] tokio::task::JoinError),
}

/// The node's GPUs.
#[async_trait]
pub trait GpuInventory: Send + Sync + fmt::Debug {
    /// Every GPU with memory, utilisation and MIG state, or why there are none.
    async fn report(&self) -> Result<GpuReport, GpuError>;

    /// Asks for MIG mode on or off; it becomes current at the next [`GpuInventory::reset_gpu`]
    /// (or at once where the driver can reset the GPU itself).
    async fn set_mig_mode(&self, gpu: GpuIndex, enabled: bool) -> Result<MigMode, GpuError>;

    /// Resets the GPU (no processes may run on it): a pending MIG mode becomes current.
    async fn reset_gpu(&self, gpu: GpuIndex) -> Result<MigMode, GpuError>;

    /// Creates a GPU instance of `profile` with one compute instance filling it.
    async fn create_mig_device(
        &self,
        gpu: GpuIndex,
        profile: &MigProfile,
    ) -> Result<MigDevice, GpuError>;

    /// Destroys a MIG device (its compute and GPU instance).
    async fn destroy_mig_device(&self, gpu: GpuIndex, uuid: &GpuUuid) -> Result<(), GpuError>;
}
