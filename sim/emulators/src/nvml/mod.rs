//! [`FakeNvml`]: a [`GpuInventory`] that acts out what NVML does on real nodes, for the
//! reconciler's tests and the simulated site.
//!
//! It covers the cases the reference lists: the library missing, the driver not loaded, GPUs
//! without MIG (`NotSupported`), a MIG mode change pending a GPU reset (`current != pending`),
//! MIG slots with holes (NVML counts the maximum number of slots and answers `NotFound` for
//! empty ones), and memory and utilisation that change between polls (deterministically, from a
//! poll counter, so tests can predict them, or as a test set them with
//! [`FakeNvml::set_utilisation`] and [`FakeNvml::set_memory_used`]). It also performs the MIG
//! operations the reconciler needs: set the mode (pending until [`GpuInventory::reset_gpu`]),
//! create a MIG device of a profile in the lowest free slot, destroy one (leaving a hole).

use std::sync::Mutex;

use async_trait::async_trait;
use meridian_drivers::gpu::{
    GpuDevice, GpuError, GpuIndex, GpuInventory, GpuMemory, GpuReport, GpuUuid, MigDevice, MigMode,
    MigProfile, MigState, NoGpus, Utilisation,
};

const GIB: u64 = 1 << 30;

/// A MIG GPU-instance profile of the fake H100/A100 (80 GB, 7 compute slices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProfileSpec {
    pub name: &'static str,
    pub slices: u32,
    pub memory_gib: u64,
}

/// The profiles of an 80 GB GPU.
pub const PROFILES_80GB: &[ProfileSpec] = &[
    ProfileSpec {
        name: "1g.10gb",
        slices: 1,
        memory_gib: 10,
    },
    ProfileSpec {
        name: "1g.20gb",
        slices: 1,
        memory_gib: 20,
    },
    ProfileSpec {
        name: "2g.20gb",
        slices: 2,
        memory_gib: 20,
    },
    ProfileSpec {
        name: "3g.40gb",
        slices: 3,
        memory_gib: 40,
    },
    ProfileSpec {
        name: "4g.40gb",
        slices: 4,
        memory_gib: 40,
    },
    ProfileSpec {
        name: "7g.80gb",
        slices: 7,
        memory_gib: 80,
    },
];

/// Compute slices of an 80 GB GPU, and the most MIG devices NVML reports slots for.
const SLICES: u32 = 7;

#[derive(Debug, Clone)]
struct FakeMigDevice {
    uuid: GpuUuid,
    profile: ProfileSpec,
}

#[derive(Debug, Clone)]
struct FakeMig {
    current: bool,
    pending: bool,
    /// NVML's slots: `None` is a hole (`NotFound`).
    slots: Vec<Option<FakeMigDevice>>,
}

/// One fake GPU; build it with the methods below.
#[derive(Debug, Clone)]
pub struct FakeGpu {
    uuid: GpuUuid,
    name: String,
    memory_total: u64,
    mig: Option<FakeMig>,
    busy: bool,
    /// Utilisation rates set by a test (else they change from poll to poll).
    utilisation: Option<Utilisation>,
    /// Framebuffer memory in use set by a test, bytes (else it changes from poll to poll).
    memory_used: Option<u64>,
}

impl FakeGpu {
    /// An 80 GB H100 that supports MIG, with MIG off. `n` makes its UUID unique.
    pub fn h100(n: u32) -> Self {
        Self {
            uuid: GpuUuid(format!("GPU-fa4e0000-0000-4000-8000-{n:012}")),
            name: "NVIDIA H100 80GB HBM3".to_owned(),
            memory_total: 80 * GIB,
            mig: Some(FakeMig {
                current: false,
                pending: false,
                slots: vec![None; SLICES as usize],
            }),
            busy: false,
            utilisation: None,
            memory_used: None,
        }
    }

    /// A 48 GB L40S: no MIG support (`NotSupported`).
    pub fn l40s(n: u32) -> Self {
        Self {
            uuid: GpuUuid(format!("GPU-1405f000-0000-4000-8000-{n:012}")),
            name: "NVIDIA L40S".to_owned(),
            memory_total: 48 * GIB,
            mig: None,
            busy: false,
            utilisation: None,
            memory_used: None,
        }
    }

    /// A GPU named `name` (as NVML names it, e.g. `NVIDIA L4`) with `memory_gib` of memory,
    /// MIG-capable (with the 80 GB profiles, MIG off) or not. `n` makes its UUID unique.
    pub fn model(n: u32, name: &str, memory_gib: u64, mig_capable: bool) -> Self {
        Self {
            uuid: GpuUuid(format!("GPU-5e0e0000-0000-4000-8000-{n:012}")),
            name: name.to_owned(),
            memory_total: memory_gib * GIB,
            mig: mig_capable.then(|| FakeMig {
                current: false,
                pending: false,
                slots: vec![None; SLICES as usize],
            }),
            busy: false,
            utilisation: None,
            memory_used: None,
        }
    }

    /// MIG mode on (current and pending).
    pub fn mig_enabled(mut self) -> Self {
        if let Some(m) = &mut self.mig {
            m.current = true;
            m.pending = true;
        }
        self
    }

    /// MIG mode asked for (`pending`) but not in force until a reset.
    pub fn mig_pending(mut self, pending: bool) -> Self {
        if let Some(m) = &mut self.mig {
            m.pending = pending;
        }
        self
    }

    /// A MIG device of `profile` in `slot` (so slots before it can be holes). Panics on a
    /// profile this fake does not know or a GPU without MIG (a test-construction mistake).
    pub fn with_mig_device(mut self, slot: u32, profile: &str) -> Self {
        let spec = *PROFILES_80GB
            .iter()
            .find(|p| p.name == profile)
            .expect("a known profile");
        let uuid = GpuUuid(format!("MIG-{}-{slot}", &self.uuid.0[4..]));
        let m = self.mig.as_mut().expect("a MIG-capable GPU");
        m.slots[slot as usize] = Some(FakeMigDevice {
            uuid,
            profile: spec,
        });
        self
    }

    /// Processes run on it: mode changes and resets answer `InUse`.
    pub fn busy(mut self) -> Self {
        self.busy = true;
        self
    }
}

#[derive(Debug)]
enum Availability {
    LibraryMissing,
    DriverNotLoaded,
    Present,
}

#[derive(Debug)]
struct FakeState {
    availability: Availability,
    gpus: Vec<FakeGpu>,
    polls: u64,
    created: u64,
}

/// A fake NVML; see the module documentation.
#[derive(Debug)]
pub struct FakeNvml {
    state: Mutex<FakeState>,
}

impl FakeNvml {
    fn new(availability: Availability, gpus: Vec<FakeGpu>) -> Self {
        Self {
            state: Mutex::new(FakeState {
                availability,
                gpus,
                polls: 0,
                created: 0,
            }),
        }
    }

    /// A node where `libnvidia-ml.so.1` cannot be loaded.
    pub fn library_missing() -> Self {
        Self::new(Availability::LibraryMissing, Vec::new())
    }

    /// A node with the library but no kernel driver (`NVML_ERROR_DRIVER_NOT_LOADED`).
    pub fn driver_not_loaded() -> Self {
        Self::new(Availability::DriverNotLoaded, Vec::new())
    }

    /// A node with these GPUs, indexed in order.
    pub fn with_gpus(gpus: Vec<FakeGpu>) -> Self {
        Self::new(Availability::Present, gpus)
    }

    /// Sets what NVML answers for a GPU's utilisation rates from now on (percent: `gpu` the
    /// time a kernel ran, `memory` the time memory was read or written). A GPU in MIG mode
    /// still reports none, as NVML does.
    pub fn set_utilisation(&self, gpu: GpuIndex, gpu_pct: u32, memory_pct: u32) {
        if let Some(g) = self.lock().gpus.get_mut(gpu.0 as usize) {
            g.utilisation = Some(Utilisation {
                gpu: gpu_pct.min(100),
                memory: memory_pct.min(100),
            });
        }
    }

    /// Sets a GPU's framebuffer memory in use from now on, bytes (at most its total).
    pub fn set_memory_used(&self, gpu: GpuIndex, bytes: u64) {
        if let Some(g) = self.lock().gpus.get_mut(gpu.0 as usize) {
            g.memory_used = Some(bytes.min(g.memory_total));
        }
    }

    /// Marks a GPU busy or idle (processes start or end on it).
    pub fn set_busy(&self, gpu: GpuIndex, busy: bool) {
        if let Some(g) = self.lock().gpus.get_mut(gpu.0 as usize) {
            g.busy = busy;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl FakeState {
    fn present(&self) -> Result<(), GpuError> {
        match self.availability {
            Availability::LibraryMissing => Err(GpuError::NoGpus(library_missing())),
            Availability::DriverNotLoaded => Err(GpuError::NoGpus(NoGpus::DriverNotLoaded)),
            Availability::Present if self.gpus.is_empty() => {
                Err(GpuError::NoGpus(NoGpus::NoDevices))
            }
            Availability::Present => Ok(()),
        }
    }

    fn gpu(&mut self, gpu: GpuIndex) -> Result<&mut FakeGpu, GpuError> {
        self.present()?;
        self.gpus
            .get_mut(gpu.0 as usize)
            .ok_or(GpuError::NoSuchGpu(gpu))
    }

    fn mig(&mut self, gpu: GpuIndex) -> Result<&mut FakeMig, GpuError> {
        self.gpu(gpu)?
            .mig
            .as_mut()
            .ok_or(GpuError::MigNotSupported(gpu))
    }
}

fn library_missing() -> NoGpus {
    NoGpus::LibraryMissing {
        detail: "libnvidia-ml.so.1: cannot open shared object file: No such file or directory"
            .to_owned(),
    }
}

#[async_trait]
impl GpuInventory for FakeNvml {
    async fn report(&self) -> Result<GpuReport, GpuError> {
        let mut s = self.lock();
        match s.present() {
            Err(GpuError::NoGpus(r)) => return Ok(GpuReport::NoGpus(r)),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        s.polls += 1;
        let poll = s.polls;
        let devices = s
            .gpus
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let i = i as u64;
                let wobble = (poll * 7 + i * 3) % 16;
                let mig = match &g.mig {
                    None => MigState::NotSupported,
                    Some(m) => {
                        let devices: Vec<MigDevice> = if m.current {
                            m.slots
                                .iter()
                                .enumerate()
                                .filter_map(|(slot, d)| {
                                    let d = d.as_ref()?;
                                    let total = d.profile.memory_gib * GIB;
                                    Some(MigDevice {
                                        slot: slot as u32,
                                        uuid: d.uuid.clone(),
                                        name: format!("{} MIG {}", g.name, d.profile.name),
                                        memory: Some(GpuMemory {
                                            total,
                                            used: total / 32 * ((poll + slot as u64) % 16),
                                        }),
                                    })
                                })
                                .collect()
                        } else {
                            Vec::new()
                        };
                        MigState::Supported {
                            current: m.current,
                            pending: m.pending,
                            devices,
                            slots: if m.current { SLICES } else { 0 },
                        }
                    }
                };
                let mig_on = matches!(mig, MigState::Supported { current: true, .. });
                GpuDevice {
                    index: GpuIndex(i as u32),
                    uuid: g.uuid.clone(),
                    name: g.name.clone(),
                    memory: GpuMemory {
                        total: g.memory_total,
                        used: g.memory_used.unwrap_or(g.memory_total / 32 * wobble),
                    },
                    // NVML reports no utilisation for a GPU in MIG mode (NOT_SUPPORTED).
                    utilisation: (!mig_on).then(|| {
                        g.utilisation.unwrap_or(Utilisation {
                            gpu: ((poll * 37 + i * 11) % 101) as u32,
                            memory: ((poll * 13 + i * 29) % 101) as u32,
                        })
                    }),
                    mig,
                }
            })
            .collect();
        Ok(GpuReport::Gpus {
            driver_version: Some("570.172.08".to_owned()),
            devices,
        })
    }

    async fn set_mig_mode(&self, gpu: GpuIndex, enabled: bool) -> Result<MigMode, GpuError> {
        let mut s = self.lock();
        let busy = s.gpu(gpu)?.busy;
        let m = s.mig(gpu)?;
        if busy {
            return Err(GpuError::InUse {
                gpu,
                detail: "processes are running on the GPU".to_owned(),
            });
        }
        if !enabled && m.slots.iter().any(Option::is_some) {
            return Err(GpuError::InUse {
                gpu,
                detail: "MIG devices exist; destroy them first".to_owned(),
            });
        }
        m.pending = enabled;
        Ok(MigMode {
            current: m.current,
            pending: m.pending,
        })
    }

    async fn reset_gpu(&self, gpu: GpuIndex) -> Result<MigMode, GpuError> {
        let mut s = self.lock();
        let g = s.gpu(gpu)?;
        if g.busy {
            return Err(GpuError::InUse {
                gpu,
                detail: "processes are running on the GPU".to_owned(),
            });
        }
        match &mut g.mig {
            None => Ok(MigMode {
                current: false,
                pending: false,
            }),
            Some(m) => {
                m.current = m.pending;
                if !m.current {
                    m.slots.iter_mut().for_each(|s| *s = None);
                }
                Ok(MigMode {
                    current: m.current,
                    pending: m.pending,
                })
            }
        }
    }

    async fn create_mig_device(
        &self,
        gpu: GpuIndex,
        profile: &MigProfile,
    ) -> Result<MigDevice, GpuError> {
        let mut s = self.lock();
        s.created += 1;
        let n = s.created;
        let g = s.gpu(gpu)?;
        let (gpu_uuid, gpu_name) = (g.uuid.0.clone(), g.name.clone());
        let m = s.mig(gpu)?;
        if !m.current {
            return Err(GpuError::MigNotEnabled(gpu));
        }
        let unavailable = |detail: &str| GpuError::ProfileUnavailable {
            gpu,
            profile: profile.0.clone(),
            detail: detail.to_owned(),
        };
        let spec = *PROFILES_80GB
            .iter()
            .find(|p| p.name == profile.0)
            .ok_or_else(|| unavailable("unknown profile"))?;
        let used: u32 = m.slots.iter().flatten().map(|d| d.profile.slices).sum();
        if used + spec.slices > SLICES {
            return Err(unavailable(&format!(
                "{} of {SLICES} slices free",
                SLICES - used
            )));
        }
        let slot = m
            .slots
            .iter()
            .position(Option::is_none)
            .ok_or_else(|| unavailable("no free slot"))?;
        let uuid = GpuUuid(format!("MIG-{}-{slot}-{n}", &gpu_uuid[4..]));
        m.slots[slot] = Some(FakeMigDevice {
            uuid: uuid.clone(),
            profile: spec,
        });
        Ok(MigDevice {
            slot: slot as u32,
            uuid,
            name: format!("{gpu_name} MIG {}", spec.name),
            memory: Some(GpuMemory {
                total: spec.memory_gib * GIB,
                used: 0,
            }),
        })
    }

    async fn destroy_mig_device(&self, gpu: GpuIndex, uuid: &GpuUuid) -> Result<(), GpuError> {
        let mut s = self.lock();
        let m = s.mig(gpu)?;
        let slot = m
            .slots
            .iter_mut()
            .find(|d| d.as_ref().is_some_and(|d| d.uuid == *uuid))
            .ok_or_else(|| GpuError::NoSuchMigDevice {
                gpu,
                uuid: uuid.clone(),
            })?;
        *slot = None;
        Ok(())
    }
}
