//! The fake NVML acts out every case the reference lists, and the MIG operations the reconciler
//! relies on behave like NVML's (pending until reset, holes, capacity, busy GPUs).

use std::sync::Arc;

use meridian_drivers::gpu::{
    GpuError, GpuIndex, GpuInventory, GpuReport, MigProfile, MigState, NoGpus,
};
use meridian_emulators::nvml::{FakeGpu, FakeNvml};

fn profile(p: &str) -> MigProfile {
    MigProfile(p.to_owned())
}

#[tokio::test]
async fn library_missing_is_no_gpus() {
    let fake: Arc<dyn GpuInventory> = Arc::new(FakeNvml::library_missing());
    let r = fake.report().await.unwrap();
    assert!(
        matches!(r, GpuReport::NoGpus(NoGpus::LibraryMissing { .. })),
        "{r:?}"
    );
    let err = fake.set_mig_mode(GpuIndex(0), true).await.unwrap_err();
    assert!(matches!(err, GpuError::NoGpus(_)), "{err}");
}

#[tokio::test]
async fn driver_not_loaded_is_no_gpus() {
    let fake = FakeNvml::driver_not_loaded();
    assert_eq!(
        fake.report().await.unwrap(),
        GpuReport::NoGpus(NoGpus::DriverNotLoaded)
    );
    let err = fake.reset_gpu(GpuIndex(0)).await.unwrap_err();
    assert!(err.to_string().contains("driver is not loaded"), "{err}");
    let empty = FakeNvml::with_gpus(Vec::new());
    assert_eq!(
        empty.report().await.unwrap(),
        GpuReport::NoGpus(NoGpus::NoDevices)
    );
}

#[tokio::test]
async fn a_gpu_without_mig() {
    let fake = FakeNvml::with_gpus(vec![FakeGpu::l40s(0)]);
    let r = fake.report().await.unwrap();
    let d = &r.devices()[0];
    assert_eq!(d.mig, MigState::NotSupported);
    assert!(d.utilisation.is_some());
    for err in [
        fake.set_mig_mode(GpuIndex(0), true).await.unwrap_err(),
        fake.create_mig_device(GpuIndex(0), &profile("1g.10gb"))
            .await
            .unwrap_err(),
    ] {
        assert!(
            matches!(err, GpuError::MigNotSupported(GpuIndex(0))),
            "{err}"
        );
    }
    let err = fake.set_mig_mode(GpuIndex(3), true).await.unwrap_err();
    assert!(matches!(err, GpuError::NoSuchGpu(GpuIndex(3))), "{err}");
}

#[tokio::test]
async fn mig_pending_until_the_gpu_is_reset() {
    let fake = FakeNvml::with_gpus(vec![FakeGpu::h100(0).mig_pending(true)]);
    let r = fake.report().await.unwrap();
    let mig = &r.devices()[0].mig;
    assert!(mig.reset_pending());
    assert!(
        matches!(mig, MigState::Supported { current: false, pending: true, devices, .. } if devices.is_empty())
    );
    // No MIG devices before the reset.
    let err = fake
        .create_mig_device(GpuIndex(0), &profile("3g.40gb"))
        .await
        .unwrap_err();
    assert!(matches!(err, GpuError::MigNotEnabled(_)), "{err}");
    // A busy GPU cannot be reset.
    fake.set_busy(GpuIndex(0), true);
    let err = fake.reset_gpu(GpuIndex(0)).await.unwrap_err();
    assert!(matches!(err, GpuError::InUse { .. }), "{err}");
    fake.set_busy(GpuIndex(0), false);
    let m = fake.reset_gpu(GpuIndex(0)).await.unwrap();
    assert!(m.current && m.pending);
    let r = fake.report().await.unwrap();
    assert!(!r.devices()[0].mig.reset_pending());
    assert!(
        r.devices()[0].utilisation.is_none(),
        "none reported in MIG mode"
    );
}

#[tokio::test]
async fn mig_slots_with_holes_are_skipped() {
    let fake = FakeNvml::with_gpus(vec![
        FakeGpu::h100(0)
            .mig_enabled()
            .with_mig_device(1, "1g.10gb")
            .with_mig_device(4, "3g.40gb"),
    ]);
    let r = fake.report().await.unwrap();
    let MigState::Supported { devices, slots, .. } = &r.devices()[0].mig else {
        panic!("{r:?}");
    };
    assert_eq!(*slots, 7, "the maximum, holes included");
    let got: Vec<u32> = devices.iter().map(|d| d.slot).collect();
    assert_eq!(got, [1, 4]);
    assert!(devices[1].name.ends_with("3g.40gb"));
    // Create fills the lowest hole; capacity is checked in slices (1 + 3 used of 7).
    let d = fake
        .create_mig_device(GpuIndex(0), &profile("2g.20gb"))
        .await
        .unwrap();
    assert_eq!(d.slot, 0);
    let err = fake
        .create_mig_device(GpuIndex(0), &profile("3g.40gb"))
        .await
        .unwrap_err();
    assert!(matches!(err, GpuError::ProfileUnavailable { .. }), "{err}");
    let err = fake
        .create_mig_device(GpuIndex(0), &profile("9g.99gb"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown profile"), "{err}");
    // Destroying leaves a hole where it was.
    let slot4 = devices[1].uuid.clone();
    fake.destroy_mig_device(GpuIndex(0), &slot4).await.unwrap();
    let r = fake.report().await.unwrap();
    let MigState::Supported { devices, .. } = &r.devices()[0].mig else {
        panic!()
    };
    assert_eq!(devices.iter().map(|d| d.slot).collect::<Vec<_>>(), [0, 1]);
    let err = fake
        .destroy_mig_device(GpuIndex(0), &slot4)
        .await
        .unwrap_err();
    assert!(matches!(err, GpuError::NoSuchMigDevice { .. }), "{err}");
    // MIG cannot be turned off while devices exist; after destroying them it can, pending a
    // reset, and the reset removes MIG.
    let err = fake.set_mig_mode(GpuIndex(0), false).await.unwrap_err();
    assert!(matches!(err, GpuError::InUse { .. }), "{err}");
    for d in devices {
        fake.destroy_mig_device(GpuIndex(0), &d.uuid).await.unwrap();
    }
    let m = fake.set_mig_mode(GpuIndex(0), false).await.unwrap();
    assert!(m.current && !m.pending);
    let m = fake.reset_gpu(GpuIndex(0)).await.unwrap();
    assert!(!m.current && !m.pending);
}

#[tokio::test]
async fn memory_and_utilisation_change_between_polls() {
    let fake = FakeNvml::with_gpus(vec![FakeGpu::h100(0), FakeGpu::l40s(1)]);
    let a = fake.report().await.unwrap();
    let b = fake.report().await.unwrap();
    for (x, y) in a.devices().iter().zip(b.devices()) {
        assert_eq!(x.uuid, y.uuid);
        assert_ne!(
            (x.memory.used, x.utilisation),
            (y.memory.used, y.utilisation),
            "{x:?} / {y:?}"
        );
        assert!(y.memory.used <= y.memory.total);
        let u = y.utilisation.unwrap();
        assert!(u.gpu <= 100 && u.memory <= 100);
    }
    assert_ne!(a.devices()[0].uuid, a.devices()[1].uuid);
}
