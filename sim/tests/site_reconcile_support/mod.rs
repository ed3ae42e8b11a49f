//! Shared harness of the site reconciler tests (`sim/tests/site_reconcile*.rs`): emulated
//! servers (the Redfish BMC emulator with the GPU-server profile and a fake NVML each), an
//! image server the BMCs fetch from, the real Redfish driver, and the agent's journal store.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use meridian_agent::reconcile::desired::{BfbWant, DpuWant};
use meridian_agent::reconcile::server::ManagedDpu;
use meridian_agent::reconcile::{RetryPolicy, ServerDrivers, ServerSpec, SiteReconcilerConfig};
use meridian_agent::store::AgentStore;
use meridian_common::ids::{Sequence, ServerId};
use meridian_common::model::{ReportBody, SiteIntent, SiteReport};
use meridian_drivers::bmc::{RedfishBmc, RedfishConfig};
use meridian_drivers::dpu::{BfbImage, BlueFieldDpu};
use meridian_drivers::gpu::GpuInventory;
use meridian_emulators::nvml::{FakeGpu, FakeNvml};
use meridian_emulators::redfish::{BmcEmulator, BmcProfile, DpuMode, RunningBmc};
use meridian_proto::v1 as proto;

pub mod gpu_remote;

/// The image server the emulated BMCs fetch from (the testkit's).
pub use meridian_testkit::images::ImageServer as Images;

pub fn server_id(s: &str) -> ServerId {
    ServerId::parse(s).unwrap()
}

/// One emulated server: its BMC, its GPUs and, where given one, its BlueField-3 DPU's BMC.
pub struct Emulated {
    pub id: ServerId,
    pub bmc: RunningBmc,
    pub gpus: Arc<FakeNvml>,
    pub dpu: Option<RunningBmc>,
}

/// The BFB bundle the DPU tests want, and the `DPU_OS` version it installs (the emulator
/// reports the image file's stem).
pub const BFB_FILE: &str = "doca-3.0.0.bfb";
pub const BFB_VERSION: &str = "doca-3.0.0";

/// Gives each server a BlueField-3 DPU BMC emulator (resets of 50 ms, BFB installs of
/// 300 ms); the servers named in `nic_mode` start with their DPU in NIC mode.
pub async fn add_dpus(servers: &mut [Emulated], nic_mode: &[&str]) {
    for s in servers {
        let mode = if nic_mode.contains(&s.id.as_str()) {
            DpuMode::NicMode
        } else {
            DpuMode::DpuMode
        };
        let dpu = BmcEmulator::new(BmcProfile::bluefield3().dpu_mode(mode))
            .power_delay(Duration::from_millis(50))
            .update_duration(Duration::from_millis(300))
            .start()
            .await
            .unwrap();
        s.dpu = Some(dpu);
    }
}

/// The reconciler's handle on an emulated DPU: the driver and the site's want (DPU mode, the
/// test bundle served by `images`).
pub fn managed_dpu(dpu: &RunningBmc, images: &Images) -> ManagedDpu {
    let (user, password) = dpu.credentials();
    ManagedDpu {
        driver: Arc::new(BlueFieldDpu::new(redfish_config(&dpu.url(), &user, &password)).unwrap()),
        want: DpuWant {
            mode: meridian_drivers::dpu::DpuMode::Dpu,
            bfb: Some(BfbWant {
                image: BfbImage {
                    url: images.url(BFB_FILE),
                    credentials: None,
                },
                version: BFB_VERSION.to_owned(),
            }),
        },
    }
}

/// The GPUs of the test site: `srv-1` 4x H100, `srv-2` 2x H100 (MIG), `srv-3` 2x L40S (no
/// MIG), `srv-4` 8x H100.
pub fn site_gpus() -> Vec<(&'static str, Vec<FakeGpu>)> {
    vec![
        ("srv-1", (0..4).map(FakeGpu::h100).collect()),
        ("srv-2", (10..12).map(FakeGpu::h100).collect()),
        ("srv-3", (20..22).map(FakeGpu::l40s).collect()),
        ("srv-4", (30..38).map(FakeGpu::h100).collect()),
    ]
}

/// Starts the four emulated servers (power phases of 100 ms, media inserted 50 ms after the
/// image is read, `If-Match` required).
pub async fn start_servers() -> Vec<Emulated> {
    start_servers_with(Duration::from_millis(100)).await
}

/// [`start_servers`] with power phases of `power_delay`.
pub async fn start_servers_with(power_delay: Duration) -> Vec<Emulated> {
    let mut out = Vec::new();
    for (name, gpus) in site_gpus() {
        let model = if name == "srv-3" {
            "NVIDIA L40S"
        } else {
            "NVIDIA H100 80GB HBM3"
        };
        let models = vec![model; gpus.len()];
        let bmc = BmcEmulator::new(BmcProfile::gpu_server(models))
            .power_delay(power_delay)
            .media_delay(Duration::from_millis(50))
            .require_if_match(true)
            .start()
            .await
            .unwrap();
        out.push(Emulated {
            id: server_id(name),
            bmc,
            gpus: Arc::new(FakeNvml::with_gpus(gpus)),
            dpu: None,
        });
    }
    out
}

/// The Redfish driver's settings for tests: short timeouts and polls.
pub fn redfish_config(url: &str, user: &str, password: &str) -> RedfishConfig {
    let mut cfg = RedfishConfig::new(url, user, password);
    cfg.request_timeout = Duration::from_millis(1000);
    cfg.attempts = 2;
    cfg.retry_backoff = Duration::from_millis(20);
    cfg.max_retry_after = Duration::from_secs(1);
    cfg.poll_interval = Duration::from_millis(25);
    cfg.power_timeout = Duration::from_secs(20);
    cfg.restart_grace = Duration::from_millis(300);
    cfg.media_timeout = Duration::from_secs(20);
    cfg.task_timeout = Duration::from_secs(20);
    cfg
}

/// The reconciler's settings for tests.
pub fn reconciler_config() -> SiteReconcilerConfig {
    SiteReconcilerConfig {
        retry: RetryPolicy {
            initial: Duration::from_millis(50),
            max: Duration::from_millis(400),
            transient_attempts: 8,
            permanent_attempts: 2,
        },
        resync: Duration::from_secs(30),
        power_poll: Duration::from_millis(30),
        transition_timeout: Duration::from_secs(20),
    }
}

/// A server spec over an emulator and a GPU driver.
pub fn spec(id: &ServerId, bmc: &RunningBmc, gpus: Option<Arc<dyn GpuInventory>>) -> ServerSpec {
    let (user, password) = bmc.credentials();
    ServerSpec {
        id: id.clone(),
        bmc_url: bmc.url(),
        drivers: ServerDrivers {
            bmc: Arc::new(RedfishBmc::new(redfish_config(&bmc.url(), &user, &password)).unwrap()),
            gpus,
            dpu: None,
        },
    }
}

/// Waits up to `limit` for `site` to conclude generation `g`; panics with the site's status
/// when it does not.
pub async fn wait_outcome(
    site: &meridian_agent::reconcile::SiteReconciler,
    g: u64,
    limit: Duration,
) -> meridian_agent::reconciler::Convergence {
    let mut rx = site.outcomes();
    let seen = tokio::time::timeout(
        limit,
        rx.wait_for(|c| {
            c.as_ref()
                .is_some_and(|c| c.generation() == meridian_common::ids::Generation::new(g))
        }),
    )
    .await
    .unwrap_or_else(|_| {
        panic!(
            "generation {g} not concluded: {:#?}",
            *site.status().borrow()
        )
    })
    .unwrap();
    seen.clone().expect("a conclusion")
}

/// An intent from JSON allocations.
pub fn intent(site: &str, generation: u64, allocations: serde_json::Value) -> SiteIntent {
    serde_json::from_value(serde_json::json!({
        "site": site,
        "generation": generation,
        "allocations": allocations,
    }))
    .unwrap()
}

/// Every buffered report, in order.
pub fn reports(store: &AgentStore) -> Vec<SiteReport> {
    store
        .pending(Sequence::new(0), usize::MAX)
        .unwrap()
        .into_iter()
        .map(|r| SiteReport::try_from(r).unwrap())
        .collect()
}

/// The buffered events about `resource`, oldest first.
pub fn events(reports: &[SiteReport], resource: &str) -> Vec<String> {
    reports
        .iter()
        .filter_map(|r| match &r.body {
            ReportBody::Event {
                resource: res,
                message,
                ..
            } if res == resource => Some(message.clone()),
            _ => None,
        })
        .collect()
}

/// How many requests with `method` to a path ending in `suffix` the BMC answered with 2xx.
pub fn succeeded(bmc: &RunningBmc, method: &str, suffix: &str) -> usize {
    bmc.requests()
        .iter()
        .filter(|r| {
            r.method.as_str() == method
                && r.path.ends_with(suffix)
                && (200..300).contains(&r.status)
        })
        .count()
}

/// The wire form of a report (for tests that compare with central).
pub fn wire(r: &SiteReport) -> proto::SiteReport {
    proto::SiteReport::from(r.clone())
}
