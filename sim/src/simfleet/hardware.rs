//! Emulated hardware of one site: a Redfish BMC emulator (GPU-server profile) and a fake NVML
//! per server, shaped after the server central's fleet generator describes (GPU models, MIG
//! layouts), and the real site reconciler of the agent over them.
//!
//! What the agent then reports (Redfish + NVML inspection) is what central learns about the
//! site's servers: the generator's records of these sites are not loaded. GPU models the fake
//! NVML names the way real NVML does; MIG layouts are set up on 80 GB GPUs (the profiles the
//! fake knows), other GPUs come up with MIG off.

use std::sync::Arc;
use std::time::Duration;

use meridian_agent::compute::bmc::{RedfishBmc, RedfishConfig};
use meridian_agent::compute::gpu::GpuInventory;
use meridian_agent::reconcile::{
    RetryPolicy, ServerDrivers, ServerSpec, SiteReconciler, SiteReconcilerConfig, SystemClock,
};
use meridian_common::model::{GpuModel, MigConfig, Server};

use crate::nvml::{FakeGpu, FakeNvml};
use crate::redfish::{BmcEmulator, BmcEmulatorError, BmcProfile, RunningBmc};

/// How long the emulated BMCs take per power phase (real ones: tens of seconds).
pub const POWER_DELAY: Duration = Duration::from_millis(200);

/// The name NVML gives a GPU model, and its memory in GiB.
fn nvml_name(model: GpuModel) -> (&'static str, u64) {
    match model {
        GpuModel::A100_40GB => ("NVIDIA A100-SXM4-40GB", 40),
        GpuModel::A100_80GB => ("NVIDIA A100-SXM4-80GB", 80),
        GpuModel::H100_80GB => ("NVIDIA H100 80GB HBM3", 80),
        GpuModel::H100_94GB => ("NVIDIA H100 NVL", 94),
        GpuModel::H200_141GB => ("NVIDIA H200", 141),
        GpuModel::A30_24GB => ("NVIDIA A30", 24),
        GpuModel::L40S => ("NVIDIA L40S", 48),
        GpuModel::L4 => ("NVIDIA L4", 24),
    }
}

/// GPUs the fake sets up MIG on: the 80 GB family, whose profiles it knows.
fn fake_mig(model: GpuModel) -> bool {
    matches!(model, GpuModel::A100_80GB | GpuModel::H100_80GB)
}

/// One emulated server.
#[derive(Debug)]
pub struct EmulatedServer {
    pub server: Server,
    pub bmc: RunningBmc,
    pub gpus: Arc<FakeNvml>,
}

/// A site's emulated servers.
#[derive(Debug, Default)]
pub struct SiteHardware {
    pub servers: Vec<EmulatedServer>,
}

impl SiteHardware {
    /// Starts an emulated BMC and fake GPUs for each of `servers` (`gpu_serial` numbers the
    /// fake GPUs' UUIDs, unique over the simulation).
    pub async fn start(
        servers: &[Server],
        gpu_serial: &mut u32,
    ) -> Result<SiteHardware, BmcEmulatorError> {
        let mut out = Vec::with_capacity(servers.len());
        for server in servers {
            let names: Vec<&str> = server.gpus.iter().map(|g| nvml_name(g.model).0).collect();
            let bmc = BmcEmulator::new(BmcProfile::gpu_server(names))
                .power_delay(POWER_DELAY)
                .start()
                .await?;
            let gpus = server
                .gpus
                .iter()
                .map(|g| {
                    *gpu_serial += 1;
                    let (name, memory) = nvml_name(g.model);
                    let mig = fake_mig(g.model);
                    let mut fake = FakeGpu::model(*gpu_serial, name, memory, mig);
                    if let (true, MigConfig::Enabled { instances }) = (mig, &g.mig) {
                        fake = fake.mig_enabled();
                        for (slot, instance) in instances.iter().enumerate() {
                            fake = fake.with_mig_device(slot as u32, instance.profile.name());
                        }
                    }
                    fake
                })
                .collect();
            out.push(EmulatedServer {
                server: server.clone(),
                bmc,
                gpus: Arc::new(FakeNvml::with_gpus(gpus)),
            });
        }
        Ok(SiteHardware { servers: out })
    }

    /// The agent's site reconciler over these servers: the real Redfish driver against each
    /// emulator and the fake NVML as the GPU driver; converged servers are looked at again
    /// every `resync`.
    pub fn reconciler(
        &self,
        resync: Duration,
    ) -> Result<SiteReconciler, meridian_agent::compute::BmcError> {
        let mut specs = Vec::with_capacity(self.servers.len());
        for s in &self.servers {
            let (user, password) = s.bmc.credentials();
            let mut cfg = RedfishConfig::new(s.bmc.url(), user, password);
            cfg.request_timeout = Duration::from_secs(10);
            cfg.poll_interval = Duration::from_millis(50);
            cfg.power_timeout = Duration::from_secs(60);
            cfg.media_timeout = Duration::from_secs(60);
            cfg.task_timeout = Duration::from_secs(60);
            let gpus: Arc<dyn GpuInventory> = s.gpus.clone();
            specs.push(ServerSpec {
                id: s.server.id.clone(),
                bmc_url: s.bmc.url(),
                drivers: ServerDrivers {
                    bmc: Arc::new(RedfishBmc::new(cfg)?),
                    gpus: Some(gpus),
                    dpu: None,
                },
            });
        }
        let config = SiteReconcilerConfig {
            retry: RetryPolicy {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(5),
                ..RetryPolicy::default()
            },
            resync,
            power_poll: Duration::from_millis(50),
            transition_timeout: Duration::from_secs(60),
        };
        Ok(SiteReconciler::new(specs, config, Arc::new(SystemClock)))
    }

    /// GPUs of these servers.
    pub fn gpus(&self) -> usize {
        self.servers.iter().map(|s| s.server.gpus.len()).sum()
    }

    /// Stops the BMC emulator of server `index` (it refuses connections from now on, as a
    /// server that lost power or its network would); the server stays in the list.
    pub async fn stop_bmc(&mut self, index: usize) {
        if let Some(s) = self.servers.get_mut(index) {
            s.bmc.stop().await;
        }
    }

    /// Stops every emulator.
    pub async fn shutdown(self) {
        for s in self.servers {
            s.bmc.shutdown().await;
        }
    }
}
