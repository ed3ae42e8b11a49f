//! GPU utilisation: the agent samples NVML's utilisation rates and memory of every GPU (and
//! the memory of every MIG device) of its servers in service every `sample_interval`, and
//! reports one compacted summary per period ([`ReportBody::Metrics`] with a
//! [`MetricsPeriod`]) at least every `report_interval` **of the injected [`Clock`]**.
//!
//! - **Busy utilisation** is NVML's GPU utilisation (`nvmlDeviceGetUtilizationRates`: the
//!   percentage of the last sample period in which a kernel ran), averaged over the samples of
//!   the GPUs in service. Memory utilisation (the time memory was read or written) comes with
//!   it; framebuffer memory in use comes from `nvmlDeviceGetMemoryInfo`.
//! - MIG: NVML answers `NOT_SUPPORTED` for utilisation rates on a GPU in MIG mode and on MIG
//!   device handles, so such a GPU and its MIG devices are reported with memory in use only
//!   (`busy_samples` 0) and count in no busy mean.
//! - In service: a server whose worker last saw it `Available` or `Allocated` (online,
//!   healthy); a server being inspected, cleaned, or failed is not sampled. Central leaves out
//!   drained servers when it stores the summaries.
//! - Periods follow each other without gaps from the sampler's start: `[start, start +
//!   report_interval)`, then the next. A summary is made when the clock reaches the end of its
//!   period (with a last sample taken then, so a server in service has at least one), so a test
//!   on a [`ManualClock`](super::ManualClock) gets one per clock step of an interval. A clock
//!   that jumps further makes one summary up to its new time (at most a day). A site without
//!   GPUs reports its periods too, with an empty list: central reads from them how far the
//!   site's reports reach.
//! - The report's resource key holds the period's start, so one summary per period survives
//!   in the agent's buffer while central is away (and the buffer's bound limits how many).
//!
//! The summary maths ([`Accumulator`]) is pure and unit-tested; [`run`] is the loop.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use meridian_common::ids::{ServerId, SiteId, Timestamp};
use meridian_common::model::{GpuUtilisation, MetricsPeriod, ReportBody};
use meridian_drivers::gpu::{GpuInventory, GpuReport, MigState};

use super::clock::Clock;
use crate::reconciler::AgentLink;

/// Longest period one summary covers (a clock that jumped further is summarised up to here).
const MAX_PERIOD: Duration = Duration::from_secs(86_400);

/// How often the agent samples and reports utilisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UtilisationConfig {
    /// A summary at least this often, on the reconciler's clock
    /// (`utilisation_report_interval_ms`).
    pub report_interval: Duration,
    /// NVML is sampled this often, on tokio's clock (`utilisation_sample_interval_ms`), and
    /// once more at the end of each period.
    pub sample_interval: Duration,
}

impl Default for UtilisationConfig {
    fn default() -> Self {
        UtilisationConfig {
            report_interval: Duration::from_secs(60),
            sample_interval: Duration::from_secs(5),
        }
    }
}

/// Running sums of one GPU or MIG device.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Sums {
    samples: u32,
    busy_samples: u32,
    busy: f64,
    memory_busy: f64,
    memory_used: f64,
}

/// One period's samples, by (server, GPU index, MIG slot); pure.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Accumulator {
    gpus: BTreeMap<(ServerId, u32, Option<u32>), Sums>,
}

/// Memory in use, percent of `total` (0 for a device reporting no memory).
fn used_pct(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (used as f64 / total as f64 * 100.0).clamp(0.0, 100.0)
    }
}

impl Accumulator {
    /// Adds one sample of `server`'s GPUs as its driver reported them.
    pub fn add(&mut self, server: &ServerId, report: &GpuReport) {
        for d in report.devices() {
            let s = self
                .gpus
                .entry((server.clone(), d.index.0, None))
                .or_default();
            s.samples += 1;
            s.memory_used += used_pct(d.memory.used, d.memory.total);
            if let Some(u) = d.utilisation {
                s.busy_samples += 1;
                s.busy += f64::from(u.gpu.min(100));
                s.memory_busy += f64::from(u.memory.min(100));
            }
            if let MigState::Supported { devices, .. } = &d.mig {
                for m in devices {
                    let Some(memory) = m.memory else { continue };
                    let s = self
                        .gpus
                        .entry((server.clone(), d.index.0, Some(m.slot)))
                        .or_default();
                    s.samples += 1;
                    s.memory_used += used_pct(memory.used, memory.total);
                }
            }
        }
    }

    /// Whether nothing was sampled.
    pub fn is_empty(&self) -> bool {
        self.gpus.is_empty()
    }

    /// The summary of the period `[start, start + length_ms)`: the site-wide mean busy
    /// utilisation (over every busy sample of every GPU: each GPU weighs by its samples; 0
    /// without any) and the per-GPU means.
    pub fn summary(&self, start: Timestamp, length_ms: u64) -> (f64, MetricsPeriod) {
        let mut busy = 0.0;
        let mut busy_samples = 0u64;
        let gpus = self
            .gpus
            .iter()
            .map(|((server, gpu, mig_slot), s)| {
                busy += s.busy;
                busy_samples += u64::from(s.busy_samples);
                let mean = |sum: f64, n: u32| {
                    if n == 0 {
                        0.0
                    } else {
                        (sum / f64::from(n)).clamp(0.0, 100.0)
                    }
                };
                GpuUtilisation {
                    server: server.clone(),
                    gpu: *gpu,
                    mig_slot: *mig_slot,
                    samples: s.samples,
                    busy_samples: s.busy_samples,
                    busy_pct: mean(s.busy, s.busy_samples),
                    memory_busy_pct: mean(s.memory_busy, s.busy_samples),
                    memory_used_pct: mean(s.memory_used, s.samples),
                }
            })
            .collect();
        let site = if busy_samples == 0 {
            0.0
        } else {
            (busy / busy_samples as f64).clamp(0.0, 100.0)
        };
        (
            site,
            MetricsPeriod {
                start,
                length_ms,
                gpus,
            },
        )
    }
}

/// What the sampler reads its GPUs through and which servers are in service.
pub(crate) struct Sources {
    /// The servers with a GPU driver; servers sharing one driver (one node's NVML) are
    /// sampled once, as the first of them.
    pub(crate) gpus: Vec<(ServerId, Arc<dyn GpuInventory>)>,
    /// Whether a server is in service now.
    pub(crate) in_service: Box<dyn Fn(&ServerId) -> bool + Send + Sync>,
    /// The site the reports are about, once known (the held intent's, else the enrolled
    /// identity's).
    pub(crate) site: Box<dyn Fn() -> Option<SiteId> + Send + Sync>,
}

/// One sample of every in-service server's GPUs.
async fn sample(acc: &mut Accumulator, sources: &Sources) {
    let mut seen: Vec<&Arc<dyn GpuInventory>> = Vec::new();
    for (server, gpus) in &sources.gpus {
        if seen.iter().any(|g| Arc::ptr_eq(g, gpus)) {
            continue;
        }
        seen.push(gpus);
        if !(sources.in_service)(server) {
            continue;
        }
        match gpus.report().await {
            Ok(report) => acc.add(server, &report),
            Err(e) => tracing::debug!(
                %server,
                error = %meridian_common::telemetry::error_chain(&e),
                "cannot sample GPU utilisation"
            ),
        }
    }
}

/// Samples and reports until the agent stops; see the module documentation.
pub(crate) async fn run(
    link: AgentLink,
    clock: Arc<dyn Clock>,
    config: UtilisationConfig,
    sources: Sources,
) {
    let mut stop = link.stop.clone();
    let report_ms = config.report_interval.as_millis().max(1) as i64;
    let mut start = clock.now();
    let mut acc = Accumulator::default();
    loop {
        let end = start.saturating_add_millis(report_ms);
        let mut due = clock.sleep_until(end);
        loop {
            if *stop.borrow() {
                return;
            }
            tokio::select! {
                _ = &mut due => break,
                _ = tokio::time::sleep(config.sample_interval) => sample(&mut acc, &sources).await,
                r = stop.changed() => if r.is_err() { return },
            }
        }
        let now = clock.now();
        if now < end {
            // A system clock set back woke the sleeper early: wait on.
            continue;
        }
        sample(&mut acc, &sources).await;
        let length =
            (now.as_millis() - start.as_millis()).clamp(report_ms, MAX_PERIOD.as_millis() as i64);
        let (mean, period) = acc.summary(start, length as u64);
        if let Some(site) = (sources.site)() {
            let report = ReportBody::Metrics {
                gpu_utilisation_pct: mean,
                power_watts: 0.0,
                period: Some(period),
            };
            super::resource::commit_site_reports(
                &link,
                &site,
                now,
                &[report],
                &[],
                "GPU utilisation",
            );
        }
        acc = Accumulator::default();
        start = start.saturating_add_millis(length);
        // A clock that jumped more than a day: the next period starts now.
        if start < now.saturating_add_millis(-report_ms) {
            start = now;
        }
    }
}

/// The sampler of an agent that drives no hardware (no servers): it reports its periods,
/// with no GPUs, on the system clock.
pub fn start_without_gpus(
    link: AgentLink,
    config: UtilisationConfig,
) -> tokio::task::JoinHandle<()> {
    let store = link.store.clone();
    let sources = Sources {
        gpus: Vec::new(),
        in_service: Box::new(|_| false),
        site: Box::new(move || {
            if let Ok(Some(i)) = store.intent() {
                return Some(i.site);
            }
            store.identity().ok().flatten().map(|id| id.site)
        }),
    };
    tokio::spawn(run(
        link,
        Arc::new(super::clock::SystemClock),
        config,
        sources,
    ))
}

#[cfg(test)]
mod tests {
    use meridian_drivers::gpu::{GpuDevice, GpuIndex, GpuMemory, GpuUuid, MigDevice, Utilisation};

    use super::*;

    const GIB: u64 = 1 << 30;

    fn gpu(index: u32, used_gib: u64, utilisation: Option<(u32, u32)>) -> GpuDevice {
        GpuDevice {
            index: GpuIndex(index),
            uuid: GpuUuid(format!("GPU-{index}")),
            name: "NVIDIA H100 80GB HBM3".into(),
            memory: GpuMemory {
                total: 80 * GIB,
                used: used_gib * GIB,
            },
            utilisation: utilisation.map(|(gpu, memory)| Utilisation { gpu, memory }),
            mig: MigState::NotSupported,
        }
    }

    fn report(devices: Vec<GpuDevice>) -> GpuReport {
        GpuReport::Gpus {
            driver_version: None,
            devices,
        }
    }

    fn srv(s: &str) -> ServerId {
        ServerId::parse(s).unwrap()
    }

    #[test]
    fn means_per_gpu_and_site_weigh_every_busy_sample() {
        let mut acc = Accumulator::default();
        let (a, b) = (srv("srv-a"), srv("srv-b"));
        // srv-a GPU 0: 20 %, 40 %, 90 % busy; GPU 1: idle at 0 %, three times.
        for (busy, mem) in [(20, 5), (40, 10), (90, 45)] {
            acc.add(
                &a,
                &report(vec![
                    gpu(0, 40, Some((busy, mem))),
                    gpu(1, 20, Some((0, 0))),
                ]),
            );
        }
        // srv-b GPU 0: one sample at 100 %.
        acc.add(&b, &report(vec![gpu(0, 80, Some((100, 50)))]));
        let start = Timestamp::from_millis(1_800_000_000_000);
        let (site, p) = acc.summary(start, 60_000);
        assert_eq!(p.start, start);
        assert_eq!(p.length_ms, 60_000);
        assert_eq!(p.gpus.len(), 3);
        let a0 = &p.gpus[0];
        assert_eq!(
            (a0.server.as_str(), a0.gpu, a0.mig_slot),
            ("srv-a", 0, None)
        );
        assert_eq!((a0.samples, a0.busy_samples), (3, 3));
        assert_eq!(a0.busy_pct, 50.0);
        assert_eq!(a0.memory_busy_pct, 20.0);
        assert_eq!(a0.memory_used_pct, 50.0);
        assert_eq!(p.gpus[1].busy_pct, 0.0);
        assert_eq!(p.gpus[1].memory_used_pct, 25.0);
        assert_eq!(p.gpus[2].busy_pct, 100.0);
        assert_eq!(p.gpus[2].memory_used_pct, 100.0);
        // (20 + 40 + 90 + 0 + 0 + 0 + 100) / 7 samples.
        assert_eq!(site, 250.0 / 7.0);
    }

    #[test]
    fn mig_gpus_have_memory_only_and_count_in_no_busy_mean() {
        let mut acc = Accumulator::default();
        let mut g = gpu(0, 30, None);
        g.mig = MigState::Supported {
            current: true,
            pending: true,
            slots: 7,
            devices: vec![
                MigDevice {
                    slot: 2,
                    uuid: GpuUuid("MIG-2".into()),
                    name: "NVIDIA H100 80GB HBM3 MIG 1g.10gb".into(),
                    memory: Some(GpuMemory {
                        total: 10 * GIB,
                        used: 5 * GIB,
                    }),
                },
                MigDevice {
                    slot: 3,
                    uuid: GpuUuid("MIG-3".into()),
                    name: "NVIDIA H100 80GB HBM3 MIG 1g.10gb".into(),
                    memory: None,
                },
            ],
        };
        acc.add(&srv("srv-m"), &report(vec![g, gpu(1, 0, Some((60, 30)))]));
        let (site, p) = acc.summary(Timestamp::from_millis(1), 1_000);
        let keys: Vec<(u32, Option<u32>)> = p.gpus.iter().map(|g| (g.gpu, g.mig_slot)).collect();
        assert_eq!(keys, [(0, None), (0, Some(2)), (1, None)]);
        assert_eq!((p.gpus[0].samples, p.gpus[0].busy_samples), (1, 0));
        assert_eq!(p.gpus[0].busy_pct, 0.0);
        assert_eq!(p.gpus[1].memory_used_pct, 50.0);
        assert_eq!(p.gpus[1].busy_samples, 0);
        assert_eq!(site, 60.0, "only the GPU NVML gave rates for");
    }

    #[test]
    fn no_gpus_make_an_empty_period_at_mean_zero() {
        let mut acc = Accumulator::default();
        acc.add(
            &srv("srv-c"),
            &GpuReport::NoGpus(meridian_drivers::gpu::NoGpus::NoDevices),
        );
        assert!(acc.is_empty());
        let (site, p) = acc.summary(Timestamp::from_millis(5), 60_000);
        assert_eq!(site, 0.0);
        assert!(p.gpus.is_empty());
        assert_eq!(p.end(), Timestamp::from_millis(60_005));
    }

    #[test]
    fn out_of_range_rates_are_clamped() {
        let mut acc = Accumulator::default();
        let mut g = gpu(0, 90, Some((250, 101)));
        g.memory.used = g.memory.total * 2;
        acc.add(&srv("srv-x"), &report(vec![g]));
        let (site, p) = acc.summary(Timestamp::from_millis(1), 1);
        assert_eq!(site, 100.0);
        assert_eq!(p.gpus[0].memory_busy_pct, 100.0);
        assert_eq!(p.gpus[0].memory_used_pct, 100.0);
    }
}
