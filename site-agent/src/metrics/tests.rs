//! `/metrics` served from an in-memory store and a stub GPU driver.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use meridian_common::ids::{Generation, SiteId, Timestamp};
use meridian_common::model::{ReportBody, Severity};
use meridian_drivers::gpu::{
    GpuDevice, GpuError, GpuIndex, GpuInventory, GpuMemory, GpuReport, GpuUuid, MigDevice, MigMode,
    MigProfile, MigState, Utilisation,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::gpus::GpuGauges;
use super::{MetricsServer, MetricsSources};
use crate::store::AgentStore;

const GIB: u64 = 1 << 30;

/// Two GPUs: GPU 0 whole (with utilisation), GPU 1 in MIG mode with the devices given.
#[derive(Debug)]
struct Stub {
    mig: Mutex<Vec<MigDevice>>,
}

#[async_trait]
impl GpuInventory for Stub {
    async fn report(&self) -> Result<GpuReport, GpuError> {
        let devices = self.mig.lock().unwrap().clone();
        Ok(GpuReport::Gpus {
            driver_version: None,
            devices: vec![
                GpuDevice {
                    index: GpuIndex(0),
                    uuid: GpuUuid("GPU-0".into()),
                    name: "NVIDIA L40S".into(),
                    memory: GpuMemory {
                        total: 48 * GIB,
                        used: 12 * GIB,
                    },
                    utilisation: Some(Utilisation {
                        gpu: 75,
                        memory: 40,
                    }),
                    mig: MigState::NotSupported,
                },
                GpuDevice {
                    index: GpuIndex(1),
                    uuid: GpuUuid("GPU-1".into()),
                    name: "NVIDIA H100 80GB HBM3".into(),
                    memory: GpuMemory {
                        total: 80 * GIB,
                        used: 10 * GIB,
                    },
                    utilisation: None,
                    mig: MigState::Supported {
                        current: true,
                        pending: true,
                        devices,
                        slots: 7,
                    },
                },
            ],
        })
    }

    async fn set_mig_mode(&self, _: GpuIndex, _: bool) -> Result<MigMode, GpuError> {
        unimplemented!()
    }

    async fn reset_gpu(&self, _: GpuIndex) -> Result<MigMode, GpuError> {
        unimplemented!()
    }

    async fn create_mig_device(&self, _: GpuIndex, _: &MigProfile) -> Result<MigDevice, GpuError> {
        unimplemented!()
    }

    async fn destroy_mig_device(&self, _: GpuIndex, _: &GpuUuid) -> Result<(), GpuError> {
        unimplemented!()
    }
}

fn mig(uuid: &str, profile: &str, used_gib: u64) -> MigDevice {
    MigDevice {
        slot: 0,
        uuid: GpuUuid(uuid.into()),
        name: format!("NVIDIA H100 80GB HBM3 MIG {profile}"),
        memory: Some(GpuMemory {
            total: 10 * GIB,
            used: used_gib * GIB,
        }),
    }
}

fn encode(gauges: &GpuGauges) -> String {
    let mut r = prometheus_client::registry::Registry::with_prefix(super::serve::PREFIX);
    gauges.register(&mut r);
    let mut text = String::new();
    prometheus_client::encoding::prometheus_text::encode(&mut text, &r).unwrap();
    text
}

#[tokio::test]
async fn gpus_and_mig_devices_have_series_that_go_with_them() {
    let stub = Arc::new(Stub {
        mig: Mutex::new(vec![mig("MIG-a", "1g.10gb", 3)]),
    });
    let drivers: Vec<(String, Arc<dyn GpuInventory>)> = vec![("srv-1".into(), stub.clone())];
    let gauges = GpuGauges::default();
    gauges.refresh(&drivers).await;
    let text = encode(&gauges);
    for line in [
        "meridian_agent_gpu_utilization_ratio{server=\"srv-1\",gpu=\"0\",uuid=\"GPU-0\"} 0.75",
        "meridian_agent_gpu_memory_utilization_ratio{server=\"srv-1\",gpu=\"0\",uuid=\"GPU-0\"} 0.4",
        "meridian_agent_gpu_memory_used_bytes{server=\"srv-1\",gpu=\"0\",uuid=\"GPU-0\",mig_profile=\"none\"} 12884901888",
        "meridian_agent_gpu_memory_used_bytes{server=\"srv-1\",gpu=\"1\",uuid=\"MIG-a\",mig_profile=\"1g.10gb\"} 3221225472",
        "meridian_agent_gpu_memory_total_bytes{server=\"srv-1\",gpu=\"1\",uuid=\"MIG-a\",mig_profile=\"1g.10gb\"} 10737418240",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
    // No utilisation for the GPU in MIG mode (NVML answers none).
    assert!(
        !text.contains("gpu_utilization_ratio{server=\"srv-1\",gpu=\"1\""),
        "{text}"
    );
    // The MIG device is destroyed: its series go.
    stub.mig.lock().unwrap().clear();
    gauges.refresh(&drivers).await;
    let text = encode(&gauges);
    assert!(!text.contains("MIG-a"), "{text}");
    assert!(
        text.contains("uuid=\"GPU-1\",mig_profile=\"none\""),
        "{text}"
    );
}

async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .unwrap();
    let mut out = String::new();
    tcp.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn the_listener_serves_the_report_buffer() {
    let store = AgentStore::in_memory();
    let site = SiteId::parse("edge-1").unwrap();
    for i in 0..3 {
        store
            .append_report(
                &site,
                Generation::new(1),
                Timestamp::from_millis(i),
                ReportBody::Event {
                    severity: Severity::Info,
                    resource: "test".into(),
                    message: format!("event {i}"),
                },
                100,
            )
            .unwrap();
    }
    let server = MetricsServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MetricsSources {
            store,
            reconciler: None,
        },
    )
    .await
    .unwrap();
    assert!(server.url().ends_with("/metrics"));
    let answer = get(server.local_addr(), "/metrics").await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("text/plain; version=0.0.4"), "{answer}");
    assert!(
        answer.contains("\nmeridian_agent_report_buffer_depth 3\n"),
        "{answer}"
    );
    assert!(
        answer.contains("\nmeridian_agent_reports_dropped_total 0\n"),
        "{answer}"
    );
    let missing = get(server.local_addr(), "/other").await;
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    server.shutdown().await;
}
