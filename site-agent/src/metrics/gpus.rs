//! GPU gauges read from the GPU driver (NVML) at scrape time: utilisation per GPU, memory per
//! GPU and per MIG device. Only servers with a GPU driver (`gpu_inventory = "nvml"`) have
//! them; NVML answers no utilisation for a GPU in MIG mode or for a MIG device, so those
//! have memory series only.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use meridian_drivers::gpu::{GpuInventory, GpuReport, MigDevice, MigState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// The `mig_profile` of a whole GPU's memory series.
pub const WHOLE_GPU: &str = "none";

/// A GPU: its server, NVML index and UUID.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    pub server: String,
    pub gpu: String,
    pub uuid: String,
}

/// A GPU or one of its MIG devices (`mig_profile` [`WHOLE_GPU`] for the GPU itself; `uuid`
/// the MIG device's own).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MemoryLabels {
    pub server: String,
    pub gpu: String,
    pub uuid: String,
    pub mig_profile: String,
}

type Ratio = Gauge<f64, AtomicU64>;

/// The GPU families; cheap to clone (shared).
#[derive(Debug, Clone, Default)]
pub struct GpuGauges {
    /// Fraction of the last sample period a kernel ran.
    pub utilisation: Family<GpuLabels, Ratio>,
    /// Fraction of the last sample period device memory was read or written.
    pub memory_utilisation: Family<GpuLabels, Ratio>,
    /// Framebuffer memory in use, bytes.
    pub memory_used: Family<MemoryLabels, Gauge>,
    /// Framebuffer memory, bytes.
    pub memory_total: Family<MemoryLabels, Gauge>,
}

/// The profile of a MIG device from its NVML name (`NVIDIA H100 80GB HBM3 MIG 1g.10gb`).
pub fn mig_profile(device: &MigDevice) -> String {
    device
        .name
        .rsplit_once(" MIG ")
        .map_or_else(|| "unknown".to_owned(), |(_, p)| p.trim().to_owned())
}

/// One reading of every value, before it is set.
#[derive(Debug, Default)]
struct Reading {
    utilisation: Vec<(GpuLabels, f64, f64)>,
    memory: Vec<(MemoryLabels, u64, u64)>,
}

fn bytes(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl GpuGauges {
    /// Registers the families in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "gpu_utilization_ratio",
            "Fraction of the last NVML sample period a kernel ran on the GPU (absent in MIG mode)",
            self.utilisation.clone(),
        );
        registry.register(
            "gpu_memory_utilization_ratio",
            "Fraction of the last NVML sample period the GPU's memory was read or written (absent in MIG mode)",
            self.memory_utilisation.clone(),
        );
        registry.register(
            "gpu_memory_used_bytes",
            "Framebuffer memory in use, per GPU (mig_profile none) and per MIG device",
            self.memory_used.clone(),
        );
        registry.register(
            "gpu_memory_total_bytes",
            "Framebuffer memory, per GPU (mig_profile none) and per MIG device",
            self.memory_total.clone(),
        );
    }

    /// Reads every server's GPUs and replaces the gauges with what they say (a GPU or MIG
    /// device that is gone loses its series). A driver that fails is skipped (logged).
    pub async fn refresh(&self, servers: &[(String, Arc<dyn GpuInventory>)]) {
        let mut reading = Reading::default();
        for (server, driver) in servers {
            let devices = match driver.report().await {
                Ok(GpuReport::Gpus { devices, .. }) => devices,
                Ok(GpuReport::NoGpus(_)) => continue,
                Err(e) => {
                    tracing::debug!(%server, error = %meridian_common::telemetry::error_chain(&e), "no GPU reading for /metrics");
                    continue;
                }
            };
            for d in devices {
                let gpu = d.index.0.to_string();
                if let Some(u) = d.utilisation {
                    reading.utilisation.push((
                        GpuLabels {
                            server: server.clone(),
                            gpu: gpu.clone(),
                            uuid: d.uuid.0.clone(),
                        },
                        f64::from(u.gpu) / 100.0,
                        f64::from(u.memory) / 100.0,
                    ));
                }
                reading.memory.push((
                    MemoryLabels {
                        server: server.clone(),
                        gpu: gpu.clone(),
                        uuid: d.uuid.0.clone(),
                        mig_profile: WHOLE_GPU.to_owned(),
                    },
                    d.memory.used,
                    d.memory.total,
                ));
                if let MigState::Supported { devices, .. } = &d.mig {
                    for m in devices {
                        let Some(memory) = m.memory else { continue };
                        reading.memory.push((
                            MemoryLabels {
                                server: server.clone(),
                                gpu: gpu.clone(),
                                uuid: m.uuid.0.clone(),
                                mig_profile: mig_profile(m),
                            },
                            memory.used,
                            memory.total,
                        ));
                    }
                }
            }
        }
        self.utilisation.clear();
        self.memory_utilisation.clear();
        self.memory_used.clear();
        self.memory_total.clear();
        for (labels, gpu, memory) in reading.utilisation {
            self.utilisation.get_or_create(&labels).set(gpu);
            self.memory_utilisation.get_or_create(&labels).set(memory);
        }
        for (labels, used, total) in reading.memory {
            self.memory_used.get_or_create(&labels).set(bytes(used));
            self.memory_total.get_or_create(&labels).set(bytes(total));
        }
    }
}
