//! [`NvmlInventory`]: [`GpuInventory`] over NVIDIA's NVML through `nvml-wrapper`.
//!
//! `nvml-wrapper` loads `libnvidia-ml.so.1` at run time (nothing is linked at build time), so
//! the agent builds and runs on nodes without NVIDIA software. NVML is initialised once, when
//! the inventory is opened, and shared in an `Arc`; a missing library or an unloaded driver
//! makes the inventory answer [`GpuReport::NoGpus`] for good (restart the agent after
//! installing the driver). NVML calls block, so each operation runs on Tokio's blocking pool.
//!
//! Creating and destroying MIG instances and resetting a GPU are not wrapped by `nvml-wrapper`
//! (they need raw `unsafe` calls, which this workspace forbids); this implementation reports
//! them as [`GpuError::Unsupported`]. Setting the MIG mode is wrapped and supported.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use nvml_wrapper::Nvml;
use nvml_wrapper::error::NvmlError;

use super::{
    GpuDevice, GpuError, GpuIndex, GpuInventory, GpuMemory, GpuReport, GpuUuid, MigDevice, MigMode,
    MigProfile, MigState, NoGpus, Utilisation,
};

/// The node's GPUs through NVML.
#[derive(Debug, Clone)]
pub struct NvmlInventory {
    state: NvmlState,
}

#[derive(Debug, Clone)]
enum NvmlState {
    Ready(Arc<Nvml>),
    Absent(NoGpus),
}

impl NvmlInventory {
    /// Loads NVML (`lib_path`, else `libnvidia-ml.so.1` from the loader's path) and initialises
    /// it. Never fails: a node without NVML gets an inventory that reports why. Blocks on
    /// `dlopen` and `nvmlInit`: call it at start-up, or use [`NvmlInventory::open_async`].
    pub fn open(lib_path: Option<&Path>) -> Self {
        let init = match lib_path {
            Some(p) => Nvml::builder().lib_path(p.as_os_str()).init(),
            None => Nvml::builder()
                .lib_path(OsStr::new("libnvidia-ml.so.1"))
                .init(),
        };
        let state = match init {
            Ok(nvml) => NvmlState::Ready(Arc::new(nvml)),
            Err(e) => {
                let reason = no_gpus_reason(e);
                match &reason {
                    NoGpus::InitFailed { detail } => {
                        tracing::warn!(detail, "NVML failed to start; reporting no GPUs");
                    }
                    other => tracing::info!(%other, "NVML unavailable"),
                }
                NvmlState::Absent(reason)
            }
        };
        Self { state }
    }

    /// [`NvmlInventory::open`] on the blocking pool.
    pub async fn open_async(lib_path: Option<PathBuf>) -> Self {
        let fallback = lib_path.clone();
        match tokio::task::spawn_blocking(move || Self::open(lib_path.as_deref())).await {
            Ok(inv) => inv,
            Err(e) => Self {
                state: NvmlState::Absent(NoGpus::InitFailed {
                    detail: format!("NVML initialisation worker failed ({e}) for {fallback:?}"),
                }),
            },
        }
    }

    /// Why there are no GPUs, when NVML could not be started.
    pub fn unavailable(&self) -> Option<&NoGpus> {
        match &self.state {
            NvmlState::Absent(r) => Some(r),
            NvmlState::Ready(_) => None,
        }
    }

    async fn with_nvml<T, F>(&self, f: F) -> Result<T, GpuError>
    where
        T: Send + 'static,
        F: FnOnce(&Nvml) -> Result<T, GpuError> + Send + 'static,
    {
        match &self.state {
            NvmlState::Absent(r) => Err(GpuError::NoGpus(r.clone())),
            NvmlState::Ready(nvml) => {
                let nvml = Arc::clone(nvml);
                tokio::task::spawn_blocking(move || f(&nvml))
                    .await
                    .map_err(GpuError::Worker)?
            }
        }
    }
}

fn no_gpus_reason(e: NvmlError) -> NoGpus {
    match e {
        NvmlError::LibloadingError(e) => NoGpus::LibraryMissing {
            detail: e.to_string(),
        },
        NvmlError::LibraryNotFound => NoGpus::LibraryMissing {
            detail: "NVML reports its library not found".to_owned(),
        },
        NvmlError::FailedToLoadSymbol(s) => NoGpus::LibraryMissing {
            detail: format!("the library loaded is not NVML: {s}"),
        },
        NvmlError::DriverNotLoaded => NoGpus::DriverNotLoaded,
        other => NoGpus::InitFailed {
            detail: other.to_string(),
        },
    }
}

fn nvml_err(op: &'static str) -> impl FnOnce(NvmlError) -> GpuError {
    move |source| GpuError::Nvml { op, source }
}

fn read_report(nvml: &Nvml) -> Result<GpuReport, GpuError> {
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(NvmlError::DriverNotLoaded) => return Ok(GpuReport::NoGpus(NoGpus::DriverNotLoaded)),
        Err(e) => return Err(nvml_err("device_count")(e)),
    };
    if count == 0 {
        return Ok(GpuReport::NoGpus(NoGpus::NoDevices));
    }
    let driver_version = nvml.sys_driver_version().ok();
    let mut devices = Vec::with_capacity(count as usize);
    for i in 0..count {
        let d = nvml
            .device_by_index(i)
            .map_err(nvml_err("device_by_index"))?;
        let mem = d.memory_info().map_err(nvml_err("memory_info"))?;
        let utilisation = d.utilization_rates().ok().map(|u| Utilisation {
            gpu: u.gpu,
            memory: u.memory,
        });
        let mig = match d.mig_mode() {
            Err(NvmlError::NotSupported | NvmlError::FailedToLoadSymbol(_)) => {
                MigState::NotSupported
            }
            Err(e) => return Err(nvml_err("mig_mode")(e)),
            Ok(m) => {
                let current = m.current == 1;
                let slots = if current {
                    d.mig_device_count().map_err(nvml_err("mig_device_count"))?
                } else {
                    0
                };
                let mut mig_devices = Vec::new();
                for slot in 0..slots {
                    match d.mig_device_by_index(slot) {
                        Ok(md) => mig_devices.push(MigDevice {
                            slot,
                            uuid: GpuUuid(md.uuid().map_err(nvml_err("mig uuid"))?),
                            name: md.name().map_err(nvml_err("mig name"))?,
                            memory: md.memory_info().ok().map(|m| GpuMemory {
                                total: m.total,
                                used: m.used,
                            }),
                        }),
                        // An empty slot: the maximum counts every possible one.
                        Err(NvmlError::NotFound) => continue,
                        Err(e) => return Err(nvml_err("mig_device_by_index")(e)),
                    }
                }
                MigState::Supported {
                    current,
                    pending: m.pending == 1,
                    devices: mig_devices,
                    slots,
                }
            }
        };
        devices.push(GpuDevice {
            index: GpuIndex(i),
            uuid: GpuUuid(d.uuid().map_err(nvml_err("uuid"))?),
            name: d.name().map_err(nvml_err("name"))?,
            memory: GpuMemory {
                total: mem.total,
                used: mem.used,
            },
            utilisation,
            mig,
        });
    }
    Ok(GpuReport::Gpus {
        driver_version,
        devices,
    })
}

#[async_trait]
impl GpuInventory for NvmlInventory {
    async fn report(&self) -> Result<GpuReport, GpuError> {
        match &self.state {
            NvmlState::Absent(r) => Ok(GpuReport::NoGpus(r.clone())),
            NvmlState::Ready(_) => self.with_nvml(read_report).await,
        }
    }

    async fn set_mig_mode(&self, gpu: GpuIndex, enabled: bool) -> Result<MigMode, GpuError> {
        self.with_nvml(move |nvml| {
            let count = nvml.device_count().map_err(nvml_err("device_count"))?;
            if gpu.0 >= count {
                return Err(GpuError::NoSuchGpu(gpu));
            }
            let d = nvml
                .device_by_index(gpu.0)
                .map_err(nvml_err("device_by_index"))?;
            match d.set_mig_mode(enabled) {
                Ok(_) => {}
                Err(NvmlError::NotSupported) => return Err(GpuError::MigNotSupported(gpu)),
                Err(NvmlError::InUse) => {
                    return Err(GpuError::InUse {
                        gpu,
                        detail: "processes or MIG devices are using the GPU".to_owned(),
                    });
                }
                Err(e) => return Err(nvml_err("set_mig_mode")(e)),
            }
            let m = d.mig_mode().map_err(nvml_err("mig_mode"))?;
            Ok(MigMode {
                current: m.current == 1,
                pending: m.pending == 1,
            })
        })
        .await
    }

    async fn reset_gpu(&self, _gpu: GpuIndex) -> Result<MigMode, GpuError> {
        Err(unsupported("reset_gpu"))
    }

    async fn create_mig_device(
        &self,
        _gpu: GpuIndex,
        _profile: &MigProfile,
    ) -> Result<MigDevice, GpuError> {
        Err(unsupported("create_mig_device"))
    }

    async fn destroy_mig_device(&self, _gpu: GpuIndex, _uuid: &GpuUuid) -> Result<(), GpuError> {
        Err(unsupported("destroy_mig_device"))
    }
}

fn unsupported(op: &'static str) -> GpuError {
    GpuError::Unsupported {
        op,
        reason: "nvml-wrapper does not wrap GPU reset or MIG instance management; \
                 use nvidia-smi on the node"
            .to_owned(),
    }
}
