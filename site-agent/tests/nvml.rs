//! `NvmlInventory` on nodes without NVIDIA software: a clear, typed "no GPUs", never a crash.
//! (The fake `GpuInventory` in `meridian-sim` covers the GPU cases; see `sim/tests/nvml_fake.rs`.)

use std::path::Path;

use meridian_agent::compute::gpu::{
    GpuError, GpuIndex, GpuInventory, GpuReport, NoGpus, NvmlInventory,
};

#[tokio::test]
async fn a_missing_library_means_no_gpus() {
    let inv = NvmlInventory::open_async(Some("/nonexistent/libnvidia-ml.so.1".into())).await;
    let report = inv.report().await.unwrap();
    match &report {
        GpuReport::NoGpus(NoGpus::LibraryMissing { detail }) => {
            assert!(detail.contains("libnvidia-ml"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
    assert!(report.devices().is_empty());
    assert!(GpuReport::NoGpus(inv.unavailable().unwrap().clone()) == report);
    // Operations say why they cannot act, and the inventory keeps answering.
    let err = inv.set_mig_mode(GpuIndex(0), true).await.unwrap_err();
    assert!(matches!(err, GpuError::NoGpus(_)), "{err}");
    assert!(err.to_string().starts_with("no GPUs on this node"), "{err}");
    assert!(inv.report().await.is_ok());
}

#[tokio::test]
async fn a_library_that_is_not_nvml_means_no_gpus() {
    let inv = NvmlInventory::open(Some(Path::new("libc.so.6")));
    match inv.report().await.unwrap() {
        GpuReport::NoGpus(NoGpus::LibraryMissing { detail }) => {
            assert!(detail.contains("not NVML"), "{detail}");
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_default_library_path_never_fails() {
    // On this project's machines there is no NVIDIA driver: "no GPUs". Where there is one, the
    // report lists the GPUs NVML sees.
    let inv = NvmlInventory::open_async(None).await;
    match inv.report().await.unwrap() {
        GpuReport::NoGpus(reason) => {
            assert!(
                matches!(
                    reason,
                    NoGpus::LibraryMissing { .. } | NoGpus::DriverNotLoaded | NoGpus::NoDevices
                ),
                "{reason}"
            );
            println!("{reason}");
        }
        GpuReport::Gpus { devices, .. } => {
            assert!(!devices.is_empty());
            for d in &devices {
                assert!(d.memory.total >= d.memory.used, "{d:?}");
                println!("{d:?}");
            }
        }
    }
}
