//! `NvmlInventory` on nodes without NVIDIA software: a clear, typed "no GPUs", never a crash;
//! and the real driver code run against a stand-in `libnvidia-ml.so.1` built from
//! `fake_nvml/fake_nvml.c` (GPUs, MIG with holes, no MIG, driver not loaded). The fake
//! `GpuInventory` in `meridian-sim` covers the reconciler's cases (`sim/tests/nvml_fake.rs`).

use std::path::Path;

use meridian_drivers::gpu::{
    GpuError, GpuIndex, GpuInventory, GpuReport, MigState, NoGpus, NvmlInventory,
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

/// Builds `tests/fake_nvml/fake_nvml.c` (a stand-in exporting the NVML entry points the driver
/// uses) into `dir`, with extra compiler flags.
fn build_fake_nvml(dir: &Path, name: &str, flags: &[&str]) -> std::path::PathBuf {
    let out = dir.join(name);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fake_nvml/fake_nvml.c");
    let status = std::process::Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-o"])
        .arg(&out)
        .args(flags)
        .arg(&src)
        .status()
        .expect("run cc (the C compiler Rust links with)");
    assert!(status.success(), "cc failed for {}", src.display());
    out
}

#[tokio::test]
async fn the_real_driver_reads_gpus_mig_and_holes_through_a_stand_in_library() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build_fake_nvml(dir.path(), "libnvidia-ml.so.1", &[]);
    let inv = NvmlInventory::open_async(Some(lib)).await;
    assert!(inv.unavailable().is_none());
    let GpuReport::Gpus {
        driver_version,
        devices,
    } = inv.report().await.unwrap()
    else {
        panic!("no GPUs from the stand-in library");
    };
    assert_eq!(driver_version.as_deref(), Some("570.172.08"));
    assert_eq!(devices.len(), 2);
    let h100 = &devices[0];
    assert_eq!(h100.name, "NVIDIA H100 80GB HBM3");
    assert_eq!(h100.memory.total, 80 << 30);
    assert_eq!(h100.utilisation, None, "not reported in MIG mode");
    match &h100.mig {
        MigState::Supported {
            current: true,
            pending: true,
            devices,
            slots: 7,
        } => {
            let slots: Vec<u32> = devices.iter().map(|d| d.slot).collect();
            assert_eq!(slots, [1, 4], "holes skipped");
            assert!(devices[1].name.ends_with("3g.40gb"));
            assert!(devices[1].uuid.0.starts_with("MIG-"));
        }
        other => panic!("{other:?}"),
    }
    let l40s = &devices[1];
    assert_eq!(l40s.mig, MigState::NotSupported);
    assert_eq!(l40s.utilisation.map(|u| (u.gpu, u.memory)), Some((42, 17)));
    // Turning MIG off is pending until a reset.
    let m = inv.set_mig_mode(GpuIndex(0), false).await.unwrap();
    assert!(m.current && !m.pending);
    assert!(inv.report().await.unwrap().devices()[0].mig.reset_pending());
    let err = inv.set_mig_mode(GpuIndex(1), true).await.unwrap_err();
    assert!(
        matches!(err, GpuError::MigNotSupported(GpuIndex(1))),
        "{err}"
    );
    let err = inv.set_mig_mode(GpuIndex(5), true).await.unwrap_err();
    assert!(matches!(err, GpuError::NoSuchGpu(GpuIndex(5))), "{err}");
    let err = inv.reset_gpu(GpuIndex(0)).await.unwrap_err();
    assert!(matches!(err, GpuError::Unsupported { .. }), "{err}");
}

#[tokio::test]
async fn driver_not_loaded_through_a_stand_in_library_means_no_gpus() {
    let dir = tempfile::tempdir().unwrap();
    let lib = build_fake_nvml(
        dir.path(),
        "libnvidia-ml.so.1",
        &["-DFAKE_DRIVER_NOT_LOADED"],
    );
    let inv = NvmlInventory::open_async(Some(lib)).await;
    assert_eq!(
        inv.report().await.unwrap(),
        GpuReport::NoGpus(NoGpus::DriverNotLoaded)
    );
}
