//! The agent's Redfish and BlueField drivers against the simulator's Redfish BMC emulator:
//! the provisioning flow end to end, and every failure path the driver handles (401 then
//! re-login, 412 then re-read, 503 with `Retry-After`, a task ending in `Exception`, media
//! inserted while media is present, an insert during an eject still in progress, timeouts).

mod redfish_support;

use std::time::{Duration, Instant};

use hyper::Method;
use meridian_drivers::bmc::{
    Bmc, BmcError, BootMode, BootOverride, BootOverrideEnabled, BootTarget, MediaPolicy,
    PowerAction, PowerState, RedfishBmc, RedfishConfig, SimpleUpdate, TaskState,
};
use meridian_drivers::dpu::{BfbImage, BlueFieldDpu, Dpu, DpuMode};
use meridian_drivers::http_client::TlsTrust;
use meridian_emulators::redfish::{BmcEmulator, BmcProfile, Fault, RunningBmc};
use redfish_support::Images;

fn config(bmc: &RunningBmc) -> RedfishConfig {
    let (user, password) = bmc.credentials();
    let mut cfg = RedfishConfig::new(bmc.url(), user, password);
    cfg.request_timeout = Duration::from_secs(3);
    cfg.retry_backoff = Duration::from_millis(50);
    cfg.poll_interval = Duration::from_millis(50);
    cfg.power_timeout = Duration::from_secs(10);
    cfg.restart_grace = Duration::from_millis(300);
    cfg.media_timeout = Duration::from_secs(10);
    cfg.task_timeout = Duration::from_secs(20);
    cfg
}

async fn gpu_server(profile: BmcProfile) -> RunningBmc {
    BmcEmulator::new(profile)
        .power_delay(Duration::from_millis(100))
        .media_delay(Duration::from_millis(50))
        .update_duration(Duration::from_millis(300))
        .require_if_match(true)
        .start()
        .await
        .unwrap()
}

fn h100s(n: usize) -> BmcProfile {
    BmcProfile::gpu_server(vec!["NVIDIA H100 80GB HBM3"; n])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_flow_on_the_emulator() {
    let images = Images::start();
    let emu = gpu_server(h100s(4)).await;
    let bmc = RedfishBmc::new(config(&emu)).unwrap();

    let d = bmc.discover().await.unwrap();
    assert!(d.session_auth, "the emulator offers sessions");
    assert!(d.host_system.as_str().ends_with(&emu.system_id()));
    let inv = bmc.inventory().await.unwrap();
    assert_eq!((inv.cpus.len(), inv.gpus.len()), (2, 4));
    assert_eq!(inv.dimms.len(), 16);
    assert!(
        inv.gpus
            .iter()
            .all(|g| g.model.as_deref() == Some("NVIDIA H100 80GB HBM3"))
    );
    let fw = bmc.firmware().await.unwrap();
    assert!(fw.iter().any(|f| f.id == "BIOS"));

    // The zero-touch flow: eject, insert, one-time CD boot, power on, then disk.
    bmc.eject_media().await.unwrap();
    let iso = images.url("deploy.iso");
    let st = bmc
        .insert_media(&iso, MediaPolicy::EjectFirst)
        .await
        .unwrap();
    assert!(st.inserted);
    assert_eq!(emu.media_image().as_deref(), Some(iso.as_str()));
    let once = bmc
        .set_boot_override(&BootOverride {
            target: BootTarget::Cd,
            enabled: BootOverrideEnabled::Once,
            mode: Some(BootMode::Uefi),
        })
        .await
        .unwrap();
    assert_eq!(once.enabled, BootOverrideEnabled::Once);
    assert_eq!(bmc.power(PowerAction::On).await.unwrap(), PowerState::On);
    // The boot consumed the one-time override.
    let after = bmc.boot_override().await.unwrap();
    assert_eq!(after.enabled, BootOverrideEnabled::Disabled, "{after:?}");
    assert_eq!(emu.boots().len(), 1);
    assert_eq!(
        bmc.power(PowerAction::ForceRestart).await.unwrap(),
        PowerState::On
    );
    assert_eq!(
        bmc.power(PowerAction::PowerCycle).await.unwrap(),
        PowerState::On
    );
    assert!(!bmc.eject_media().await.unwrap().inserted);
    assert_eq!(
        bmc.power(PowerAction::ForceOff).await.unwrap(),
        PowerState::Off
    );

    // A BIOS update through a task monitor.
    let done = bmc
        .simple_update(&SimpleUpdate {
            image_uri: images.url("bios-2.4.0.bin"),
            transfer_protocol: Some("HTTP".to_owned()),
            targets: Vec::new(),
            credentials: None,
        })
        .await
        .unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert_eq!(emu.firmware_version("BIOS").as_deref(), Some("bios-2.4.0"));

    bmc.logout().await.unwrap();
    assert_eq!(emu.session_count(), 0);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_paths_on_the_emulator() {
    let images = Images::start();
    let emu = gpu_server(h100s(1).eject_lag(Duration::from_millis(300))).await;
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    let sys = bmc.discover().await.unwrap().host_system;

    // 401 after the sessions expired: one new login, the request succeeds.
    emu.expire_sessions();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(emu.session_count(), 1);

    // 412 once: the driver re-reads and retries.
    emu.faults().inject(
        Fault::status(sys.as_str(), 412)
            .method(Method::PATCH)
            .times(1),
    );
    bmc.set_boot_override(&BootOverride {
        target: BootTarget::Pxe,
        enabled: BootOverrideEnabled::Continuous,
        mode: None,
    })
    .await
    .unwrap();
    let patches = emu
        .requests()
        .into_iter()
        .filter(|r| r.method == Method::PATCH)
        .map(|r| r.status)
        .collect::<Vec<_>>();
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0], 412);
    assert!((200..300).contains(&patches[1]), "{patches:?}");

    // 503 with Retry-After: honoured, then success.
    emu.faults().inject(
        Fault::status("/redfish/v1/Systems/*", 503)
            .method(Method::GET)
            .retry_after(1)
            .times(1),
    );
    let t = Instant::now();
    bmc.power_state().await.unwrap();
    assert!(t.elapsed() >= Duration::from_secs(1));

    // A task ending in Exception.
    emu.fail_next_update("image signature invalid");
    let err = bmc
        .simple_update(&SimpleUpdate {
            image_uri: images.url("bios-9.bin"),
            transfer_protocol: Some("HTTP".to_owned()),
            targets: Vec::new(),
            credentials: None,
        })
        .await
        .unwrap_err();
    match &err {
        BmcError::TaskFailed { state, .. } => assert_eq!(*state, TaskState::Exception),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("image signature invalid"), "{err}");

    // Media present: refused under Fail; under EjectFirst the insert during the eject lag gets
    // a 500 and is retried.
    bmc.insert_media(&images.url("a.iso"), MediaPolicy::Fail)
        .await
        .unwrap();
    let err = bmc
        .insert_media(&images.url("b.iso"), MediaPolicy::Fail)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::MediaPresent { .. }), "{err}");
    let st = bmc
        .insert_media(&images.url("b.iso"), MediaPolicy::EjectFirst)
        .await
        .unwrap();
    assert_eq!(st.image.as_deref(), Some(images.url("b.iso").as_str()));

    // A BMC that hangs: bounded by the request timeout and attempts.
    emu.faults()
        .inject(Fault::hang(sys.as_str()).method(Method::GET));
    let mut cfg = config(&emu);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.attempts = 2;
    let impatient = RedfishBmc::new(cfg).unwrap();
    let t = Instant::now();
    let err = impatient.power_state().await.unwrap_err();
    assert!(matches!(err, BmcError::Transport { .. }), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3));
    emu.faults().clear();
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_the_emulators_certificate_or_insecure() {
    let emu = BmcEmulator::new(h100s(1))
        .https(true)
        .start()
        .await
        .unwrap();
    let pem = emu.certificate_pem().unwrap().to_owned();
    let der = pem_to_der(&pem);
    let mut cfg = config(&emu);
    cfg.tls = Some(TlsTrust::Roots(vec![der.into()]));
    let trusted = RedfishBmc::new(cfg).unwrap();
    assert!(trusted.discover().await.unwrap().session_auth);
    let mut cfg = config(&emu);
    cfg.tls = Some(TlsTrust::InsecureAcceptAny);
    RedfishBmc::new(cfg).unwrap().discover().await.unwrap();
    // Without either, https is a configuration error.
    let err = RedfishBmc::new(config(&emu)).unwrap_err();
    assert!(matches!(err, BmcError::Config(_)), "{err}");
    emu.shutdown().await;
}

fn pem_to_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let b64: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluefield_on_the_emulator() {
    let images = Images::start();
    let emu = BmcEmulator::new(BmcProfile::bluefield3())
        .power_delay(Duration::from_millis(100))
        .update_duration(Duration::from_millis(300))
        .start()
        .await
        .unwrap();
    let dpu = BlueFieldDpu::new(config(&emu)).unwrap();

    let fw = dpu.firmware().await.unwrap();
    assert!(
        fw.os.is_some() && fw.nic.is_some() && fw.uefi.is_some(),
        "{fw:?}"
    );

    let m = dpu.set_mode(DpuMode::Nic).await.unwrap();
    assert_eq!((m.current, m.pending), (DpuMode::Dpu, Some(DpuMode::Nic)));
    assert!(emu.pending_dpu_mode().is_some());
    let m = dpu.reset().await.unwrap();
    assert_eq!((m.current, m.pending), (DpuMode::Nic, None));

    assert!(!emu.bmc_owns_rshim());
    let done = dpu
        .install_bfb(&BfbImage {
            url: images.url("bf-bundle-2.9.1.bfb"),
            credentials: None,
        })
        .await
        .unwrap();
    assert!(emu.bmc_owns_rshim());
    assert_eq!(done.task.state, TaskState::Completed);
    assert_eq!(done.version.as_deref(), Some("bf-bundle-2.9.1"));
    assert_ne!(done.previous_version, done.version);
    emu.shutdown().await;
}
