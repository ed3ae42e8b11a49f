//! The Redfish BMC driver's failure paths and the BlueField DPU driver, against the
//! simulator's Redfish emulator (the one BMC double, faithful to DSP0266 and the vendors'
//! documented behaviour): 401 then re-login, a refused login then HTTP Basic, 412 then re-read
//! and retry (injected, and a genuinely stale ETag), 503 with `Retry-After`, refusals carrying
//! the Redfish message, timeouts, advertised reset types only, media under the Manager and
//! media present (409, and 500 during an eject), tasks ending in `Exception`, inventory with
//! HGX GPUs, and BlueField mode, RShim and BFB install. The emulator's request log shows which
//! requests the driver made, with which credentials, `If-Match` and body.

mod redfish_support;

use std::time::{Duration, Instant};

use hyper::Method;
use meridian_drivers::bmc::{
    AuthMode, Bmc, BmcError, BootMode, BootOverride, BootOverrideEnabled, BootTarget, MediaPolicy,
    PowerAction, PowerState, RedfishBmc, RedfishConfig, SimpleUpdate, TaskState,
};
use meridian_drivers::dpu::{BfbImage, BlueFieldDpu, Dpu, DpuError, DpuMode};
use meridian_drivers::http_client::TransportError;
use meridian_emulators::redfish::{
    BmcEmulator, BmcProfile, Fault, LoggedRequest, MediaLocation, RequestAuth, ResetType,
    RunningBmc,
};
use redfish_support::Images;

const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";
const SIMPLE_UPDATE: &str = "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate";
const DPU_OS: &str = "/redfish/v1/UpdateService/FirmwareInventory/DPU_OS";

fn config(emu: &RunningBmc) -> RedfishConfig {
    let (user, password) = emu.credentials();
    let mut cfg = RedfishConfig::new(emu.url(), user, password);
    cfg.request_timeout = Duration::from_secs(2);
    cfg.retry_backoff = Duration::from_millis(50);
    cfg.poll_interval = Duration::from_millis(50);
    cfg.power_timeout = Duration::from_secs(5);
    cfg.restart_grace = Duration::from_millis(200);
    cfg.media_timeout = Duration::from_secs(5);
    cfg.task_timeout = Duration::from_secs(10);
    cfg
}

/// An emulator with short delays and `If-Match` required on every PATCH.
fn emulator(profile: BmcProfile) -> BmcEmulator {
    BmcEmulator::new(profile)
        .power_delay(Duration::from_millis(100))
        .media_delay(Duration::from_millis(50))
        .update_duration(Duration::from_millis(300))
        .require_if_match(true)
}

fn h100s(n: usize) -> BmcProfile {
    BmcProfile::gpu_server(vec!["NVIDIA H100 80GB HBM3"; n])
}

async fn server() -> (RunningBmc, RedfishBmc) {
    let emu = emulator(h100s(2)).start().await.unwrap();
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    (emu, bmc)
}

fn system(emu: &RunningBmc) -> String {
    format!("/redfish/v1/Systems/{}", emu.system_id())
}

/// The requests with `method` to `path`, in order.
fn requests(emu: &RunningBmc, method: &Method, path: &str) -> Vec<LoggedRequest> {
    emu.requests()
        .into_iter()
        .filter(|r| r.method == *method && r.path == path)
        .collect()
}

/// The status of every session login tried.
fn logins(emu: &RunningBmc) -> Vec<u16> {
    requests(emu, &Method::POST, SESSIONS)
        .iter()
        .map(|r| r.status)
        .collect()
}

fn boot(target: BootTarget, enabled: BootOverrideEnabled) -> BootOverride {
    BootOverride {
        target,
        enabled,
        mode: Some(BootMode::Uefi),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_follows_links_and_uses_a_session() {
    let emu = emulator(h100s(2).hgx_baseboard(["NVIDIA H100 80GB HBM3"]))
        .start()
        .await
        .unwrap();
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    let d = bmc.discover().await.unwrap();
    assert_eq!(
        d.host_system.as_str(),
        system(&emu),
        "HGX baseboard is not the host"
    );
    assert_eq!(d.systems.len(), 2);
    assert!(d.sessions && d.session_auth);
    assert_eq!(d.managers[0].id, emu.manager_id());
    assert_eq!(logins(&emu), [201]);
    // Every request after the login carried the session token.
    let auths: Vec<Option<RequestAuth>> = emu
        .requests()
        .iter()
        .filter(|r| r.path != "/redfish/v1/" && r.method == Method::GET)
        .map(|r| r.auth)
        .collect();
    assert!(
        !auths.is_empty() && auths.iter().all(|a| *a == Some(RequestAuth::Session)),
        "{auths:?}"
    );
    bmc.logout().await.unwrap();
    assert_eq!(emu.session_count(), 0, "logout deleted the session");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_session_logs_in_again_once_then_fails() {
    let (emu, bmc) = server().await;
    bmc.discover().await.unwrap();
    // The BMC forgets every session (expiry, BMC reboot).
    emu.expire_sessions();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(logins(&emu), [201, 201]);
    // The password changed: one more login is tried, then a clear error.
    let (user, _) = emu.credentials();
    assert!(emu.set_password(&user, "Changed-Elsewhere-9"));
    emu.expire_sessions();
    let err = bmc.power_state().await.unwrap_err();
    assert!(matches!(err, BmcError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains(&system(&emu)), "{err}");
    assert_eq!(logins(&emu), [201, 201, 401], "one more login was tried");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_login_falls_back_to_basic() {
    // A BMC that refuses a login beyond its session limit with 403 (as Lenovo XCC does); its
    // only session is held by another client.
    let emu = emulator(h100s(1).session_limit_forbidden(true))
        .session_limit(1)
        .start()
        .await
        .unwrap();
    let other = RedfishBmc::new(config(&emu)).unwrap();
    assert!(other.discover().await.unwrap().session_auth);
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    let d = bmc.discover().await.unwrap();
    assert!(d.sessions && !d.session_auth, "login refused: Basic");
    assert_eq!(logins(&emu), [201, 403]);
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    let last = emu.requests().last().cloned().unwrap();
    assert_eq!(last.auth, Some(RequestAuth::Basic), "{last:?}");
    assert_eq!(last.status, 200);
    emu.shutdown().await;

    // Basic only, by configuration: no session is attempted.
    let emu = emulator(h100s(1)).start().await.unwrap();
    let mut cfg = config(&emu);
    cfg.auth = AuthMode::Basic;
    let bmc = RedfishBmc::new(cfg).unwrap();
    bmc.discover().await.unwrap();
    assert!(logins(&emu).is_empty());
    assert!(
        emu.requests()
            .iter()
            .filter(|r| r.path != "/redfish/v1/")
            .all(|r| r.auth == Some(RequestAuth::Basic))
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_etag_rereads_and_retries_once() {
    let (emu, bmc) = server().await;
    let sys = system(&emu);
    bmc.discover().await.unwrap();
    // Someone else changes the system between our read and our PATCH (once, injected).
    emu.faults().inject(
        Fault::status(sys.as_str(), 412)
            .method(Method::PATCH)
            .times(1),
    );
    let got = bmc
        .set_boot_override(&boot(BootTarget::Cd, BootOverrideEnabled::Once))
        .await
        .unwrap();
    assert_eq!(
        (got.target, got.enabled),
        (BootTarget::Cd, BootOverrideEnabled::Once)
    );
    let patches = requests(&emu, &Method::PATCH, &sys);
    assert_eq!(patches.len(), 2);
    assert!(
        patches.iter().all(|p| p.if_match.is_some()),
        "If-Match on every PATCH"
    );
    // Idempotent: the same override again sends no PATCH.
    bmc.set_boot_override(&boot(BootTarget::Cd, BootOverrideEnabled::Once))
        .await
        .unwrap();
    assert_eq!(requests(&emu, &Method::PATCH, &sys).len(), 2);
    // Another client really writes the system between our read and our PATCH: the
    // emulator's own ETag check answers 412, the driver re-reads (fresh ETag) and succeeds.
    emu.race_system_patches(1);
    bmc.set_boot_override(&boot(BootTarget::Hdd, BootOverrideEnabled::Continuous))
        .await
        .unwrap();
    let patches = requests(&emu, &Method::PATCH, &sys);
    assert_eq!(patches.len(), 4);
    assert_eq!(
        (patches[2].status, patches[3].status),
        (412, 200),
        "{patches:?}"
    );
    assert_ne!(
        patches[2].if_match, patches[3].if_match,
        "the retry used the new ETag"
    );
    assert_eq!(emu.boot_override().target, "Hdd");
    // 412 twice: a clear error.
    emu.faults().inject(
        Fault::status(sys.as_str(), 412)
            .method(Method::PATCH)
            .times(2),
    );
    let err = bmc
        .set_boot_override(&boot(BootTarget::Pxe, BootOverrideEnabled::Once))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::PreconditionFailed { .. }), "{err}");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_carry_the_redfish_message() {
    // A UEFI-only server (no legacy BIOS boot) that offers no USB boot.
    let profile =
        h100s(1)
            .boot_modes(&["UEFI"])
            .boot_targets(&["None", "Pxe", "Cd", "Hdd", "BiosSetup"]);
    let emu = emulator(profile).start().await.unwrap();
    let sys = system(&emu);
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    bmc.discover().await.unwrap();
    // The driver checks the target against the advertised list but leaves the mode to the
    // BMC, which refuses Legacy.
    let err = bmc
        .set_boot_override(&BootOverride {
            target: BootTarget::Pxe,
            enabled: BootOverrideEnabled::Once,
            mode: Some(BootMode::Legacy),
        })
        .await
        .unwrap_err();
    match &err {
        BmcError::Http {
            status: 400,
            url,
            message_id,
            ..
        } => {
            assert!(url.ends_with(&sys), "{url}");
            assert!(
                message_id.as_deref().is_some_and(
                    |id| id.starts_with("Base.") && id.ends_with(".PropertyValueNotInList")
                ),
                "{message_id:?}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("is not in the list"), "{err}");
    // A target the BMC does not advertise is refused before sending anything.
    let sent = requests(&emu, &Method::PATCH, &sys).len();
    let err = bmc
        .set_boot_override(&boot(BootTarget::Usb, BootOverrideEnabled::Once))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
    assert_eq!(requests(&emu, &Method::PATCH, &sys).len(), sent);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn busy_bmc_is_retried_after_retry_after() {
    let (emu, bmc) = server().await;
    let sys = system(&emu);
    bmc.discover().await.unwrap();
    emu.faults().inject(
        Fault::status(sys.as_str(), 503)
            .method(Method::GET)
            .retry_after(1)
            .times(1),
    );
    let t = Instant::now();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    // Busy for longer than the attempts allow: an error naming the status and attempts.
    let before = requests(&emu, &Method::GET, &sys).len();
    emu.faults().inject(
        Fault::status(sys.as_str(), 503)
            .method(Method::GET)
            .times(10),
    );
    let err = bmc.power_state().await.unwrap_err();
    assert!(
        matches!(
            err,
            BmcError::Http {
                status: 503,
                attempts: 4,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.is_transient());
    let tries: Vec<u16> = requests(&emu, &Method::GET, &sys)[before..]
        .iter()
        .map(|r| r.status)
        .collect();
    assert_eq!(tries, [503; 4]);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeouts_are_bounded() {
    // Power phases of an hour: a transition that never finishes within the test.
    let emu = emulator(h100s(1))
        .power_delay(Duration::from_secs(3600))
        .start()
        .await
        .unwrap();
    let sys = system(&emu);
    // A request that never answers in time: retried, then a transport error.
    emu.faults().inject(
        Fault::latency(sys.as_str(), Duration::from_secs(5))
            .method(Method::GET)
            .times(10),
    );
    let mut cfg = config(&emu);
    cfg.request_timeout = Duration::from_millis(300);
    cfg.attempts = 2;
    let slow = RedfishBmc::new(cfg).unwrap();
    let t = Instant::now();
    let err = slow.power_state().await.unwrap_err();
    assert!(
        matches!(
            err,
            BmcError::Transport {
                attempts: 2,
                source: TransportError::TimedOut(_),
                ..
            }
        ),
        "{err:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(3));
    emu.faults().clear();
    // A power transition that never finishes: a timeout naming the last state seen.
    let mut cfg = config(&emu);
    cfg.power_timeout = Duration::from_millis(800);
    let bmc = RedfishBmc::new(cfg).unwrap();
    let err = bmc.power(PowerAction::On).await.unwrap_err();
    match &err {
        BmcError::Timeout { last, .. } => assert_eq!(last, "PoweringOn"),
        other => panic!("{other}"),
    }
    emu.shutdown().await;
}

/// The `ResetType` of every `ComputerSystem.Reset` sent, in order.
fn resets_sent(emu: &RunningBmc) -> Vec<String> {
    requests(
        emu,
        &Method::POST,
        &format!("{}/Actions/ComputerSystem.Reset", system(emu)),
    )
    .iter()
    .map(|r| {
        r.body.as_ref().unwrap()["ResetType"]
            .as_str()
            .unwrap()
            .to_owned()
    })
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn power_uses_only_advertised_reset_types() {
    // Advertised: ForceOn, not On; ForceOff; GracefulRestart, not ForceRestart; no PowerCycle.
    let profile = h100s(1).reset_types(&[
        ResetType::ForceOn,
        ResetType::ForceOff,
        ResetType::GracefulShutdown,
        ResetType::GracefulRestart,
    ]);
    let emu = emulator(profile).start().await.unwrap();
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    assert_eq!(bmc.power(PowerAction::On).await.unwrap(), PowerState::On);
    assert_eq!(bmc.power(PowerAction::On).await.unwrap(), PowerState::On);
    assert_eq!(
        bmc.power(PowerAction::ForceRestart).await.unwrap(),
        PowerState::On
    );
    assert_eq!(
        bmc.power(PowerAction::ForceOff).await.unwrap(),
        PowerState::Off
    );
    assert_eq!(
        resets_sent(&emu),
        ["ForceOn", "GracefulRestart", "ForceOff"]
    );
    // No power-cycle reset type advertised: ForceOff, then ForceOn.
    bmc.power(PowerAction::On).await.unwrap();
    assert_eq!(
        bmc.power(PowerAction::PowerCycle).await.unwrap(),
        PowerState::On
    );
    assert_eq!(
        resets_sent(&emu),
        [
            "ForceOn",
            "GracefulRestart",
            "ForceOff",
            "ForceOn",
            "ForceOff",
            "ForceOn"
        ]
    );
    emu.shutdown().await;

    // A BMC (on) that advertises no reset type for the action: refused without a request.
    let profile = h100s(1)
        .reset_types(&[ResetType::ForceOn])
        .initial_power(meridian_emulators::redfish::PowerState::On);
    let emu = emulator(profile).start().await.unwrap();
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    let err = bmc.power(PowerAction::ForceOff).await.unwrap_err();
    match &err {
        BmcError::Unsupported { offered, .. } => assert_eq!(offered, &["ForceOn".to_owned()]),
        other => panic!("{other}"),
    }
    assert!(resets_sent(&emu).is_empty());
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_under_the_manager_and_media_present() {
    let images = Images::start();
    // Virtual media under the Manager only, a USB stick listed before the CD (HPE iLO), and
    // an eject that keeps running for a second after it is answered (Dell iDRAC).
    let profile = h100s(1)
        .virtual_media(MediaLocation::Manager)
        .usb_media("RemovableDisk")
        .eject_lag(Duration::from_secs(1));
    let emu = emulator(profile).start().await.unwrap();
    let cd = format!("/redfish/v1/Managers/{}/VirtualMedia/CD", emu.manager_id());
    let mut cfg = config(&emu);
    // Longer than the eject lag: the one retry of an insert that met it comes after it.
    cfg.retry_backoff = Duration::from_millis(1500);
    let bmc = RedfishBmc::new(cfg).unwrap();
    // Someone else's client on the same BMC.
    let other = RedfishBmc::new(config(&emu)).unwrap();

    // The system has no VirtualMedia; the manager's CD slot (not the USB one) is used.
    assert_eq!(bmc.media().await.unwrap().slot.as_str(), cd);
    // Someone else's media is in the slot.
    other
        .insert_media(&images.url("rescue.iso"), MediaPolicy::Fail)
        .await
        .unwrap();
    let deploy = images.url("deploy.iso");
    let err = bmc
        .insert_media(&deploy, MediaPolicy::Fail)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::MediaPresent { .. }), "{err}");
    assert!(err.to_string().contains("rescue.iso"), "{err}");
    // EjectFirst: eject, then insert; the insert right after the eject meets the eject still
    // finishing (500) and is retried.
    let mark = emu.requests().len();
    let st = bmc
        .insert_media(&deploy, MediaPolicy::EjectFirst)
        .await
        .unwrap();
    assert!(st.inserted && st.image.as_deref() == Some(deploy.as_str()));
    let sent: Vec<LoggedRequest> = emu.requests()[mark..]
        .iter()
        .filter(|r| r.method == Method::POST && r.path.starts_with(&cd))
        .cloned()
        .collect();
    let order: Vec<(&str, u16)> = sent
        .iter()
        .map(|r| (r.path.rsplit('.').next().unwrap(), r.status))
        .collect();
    assert_eq!(
        order,
        [
            ("EjectMedia", 204),
            ("InsertMedia", 500),
            ("InsertMedia", 204)
        ]
    );
    assert_eq!(sent[1].body.as_ref().unwrap()["WriteProtected"], true);

    // The BMC knows of media the driver did not see under policy Fail (409): someone else's
    // insert is still downloading its image, so the slot reads empty.
    bmc.eject_media().await.unwrap();
    emu.advance(Duration::from_secs(2));
    let mark = emu.requests().len();
    let inserts = |emu: &RunningBmc| -> Vec<u16> {
        emu.requests()[mark..]
            .iter()
            .filter(|r| r.method == Method::POST && r.path.ends_with("InsertMedia"))
            .map(|r| r.status)
            .collect()
    };
    let big = images.url("held/big.iso");
    let theirs = tokio::spawn(async move { other.insert_media(&big, MediaPolicy::Fail).await });
    let t = Instant::now();
    while inserts(&emu).is_empty() {
        assert!(t.elapsed() < Duration::from_secs(5), "the other insert");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!bmc.media().await.unwrap().inserted);
    let err = bmc
        .insert_media(&images.url("b.iso"), MediaPolicy::Fail)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::MediaPresent { .. }), "{err}");
    assert!(err.to_string().contains("big.iso"), "{err}");
    assert_eq!(inserts(&emu), [204, 409]);
    images.release();
    theirs.await.unwrap().unwrap();
    assert!(!bmc.eject_media().await.unwrap().inserted);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_poll_to_completion_or_exception() {
    let images = Images::start();
    let emu = emulator(h100s(1))
        .update_duration(Duration::from_millis(1500))
        .start()
        .await
        .unwrap();
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    let update = |name: &str| SimpleUpdate {
        image_uri: images.url(name),
        transfer_protocol: Some("HTTP".to_owned()),
        targets: Vec::new(),
        credentials: None,
    };
    let t = Instant::now();
    let done = bmc.simple_update(&update("bios-1.5.0.bin")).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 on each poll"
    );
    assert_eq!(emu.firmware_version("BIOS").as_deref(), Some("bios-1.5.0"));
    emu.fail_next_update("Image verification failed");
    let err = bmc.simple_update(&update("bios-9.bin")).await.unwrap_err();
    match &err {
        BmcError::TaskFailed {
            state, messages, ..
        } => {
            assert_eq!(*state, TaskState::Exception);
            assert!(
                messages
                    .last()
                    .is_some_and(|m| m.ends_with("Image verification failed")),
                "{messages:?}"
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("Image verification failed"));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_reads_cpus_gpus_memory_and_firmware() {
    let profile = h100s(2)
        .hgx_baseboard(["NVIDIA H100 SXM5 80GB"])
        .firmware("BIOS", "1.4.2");
    let emu = emulator(profile).start().await.unwrap();
    let bmc = RedfishBmc::new(config(&emu)).unwrap();
    let inv = bmc.inventory().await.unwrap();
    assert_eq!(inv.cpus.len(), 2);
    assert_eq!(
        inv.gpus.len(),
        3,
        "two under the host, one under HGX: {inv:?}"
    );
    assert!(
        inv.gpus
            .iter()
            .any(|g| g.path.as_str().contains("HGX_Baseboard_0")
                && g.model.as_deref() == Some("NVIDIA H100 SXM5 80GB")),
        "{inv:?}"
    );
    // The profile's 16 DIMMs of 64 GiB.
    assert_eq!(inv.dimms.len(), 16);
    assert_eq!(inv.total_memory_gib, Some(1024.0));
    assert!(inv.unavailable.is_empty());
    let fw = bmc.firmware().await.unwrap();
    let bios = fw.iter().find(|f| f.id == "BIOS").unwrap();
    assert_eq!(bios.version.as_deref(), Some("1.4.2"));
    emu.shutdown().await;
}

fn bf_system_oem(emu: &RunningBmc) -> String {
    format!("{}/Oem/Nvidia", system(emu))
}

fn bf_manager_oem(emu: &RunningBmc) -> String {
    format!("/redfish/v1/Managers/{}/Oem/Nvidia", emu.manager_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluefield_mode_is_pending_until_reset() {
    let emu = emulator(BmcProfile::bluefield3()).start().await.unwrap();
    let dpu = BlueFieldDpu::new(config(&emu)).unwrap();
    let m = dpu.mode().await.unwrap();
    assert_eq!((m.current, m.pending), (DpuMode::Dpu, None));
    let m = dpu.set_mode(DpuMode::Nic).await.unwrap();
    assert_eq!((m.current, m.pending), (DpuMode::Dpu, Some(DpuMode::Nic)));
    // Asking again sends nothing.
    dpu.set_mode(DpuMode::Nic).await.unwrap();
    let mode_set = format!("{}/Actions/Mode.Set", bf_system_oem(&emu));
    assert_eq!(requests(&emu, &Method::POST, &mode_set).len(), 1);
    let m = dpu.reset().await.unwrap();
    assert_eq!((m.current, m.pending), (DpuMode::Nic, None));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluefield_bfb_install_takes_rshim_and_polls_the_task() {
    let images = Images::start();
    let profile = BmcProfile::bluefield3().firmware("DPU_OS", "DOCA_2.9.0_BSP_4.9.0");
    let emu = emulator(profile).start().await.unwrap();
    let dpu = BlueFieldDpu::new(config(&emu)).unwrap();
    let fw = dpu.firmware().await.unwrap();
    assert_eq!(fw.os.as_deref(), Some("DOCA_2.9.0_BSP_4.9.0"));
    assert!(fw.nic.is_some() && fw.uefi.is_some());
    let url = images.url("bfb/DOCA_2.9.1_BSP_4.9.1.bfb");
    let done = dpu
        .install_bfb(&BfbImage {
            url: url.clone(),
            credentials: None,
        })
        .await
        .unwrap();
    assert_eq!(done.task.state, TaskState::Completed);
    assert_eq!(done.version.as_deref(), Some("DOCA_2.9.1_BSP_4.9.1"));
    let host_rshim = format!("{}/Actions/HostRshim.Set", bf_system_oem(&emu));
    let release = requests(&emu, &Method::POST, &host_rshim);
    assert_eq!(release.len(), 1, "the host's RShim was released first");
    let rshim = requests(&emu, &Method::PATCH, &bf_manager_oem(&emu));
    assert_eq!(rshim.len(), 1);
    assert!(rshim[0].if_match.is_some());
    let updates = requests(&emu, &Method::POST, SIMPLE_UPDATE);
    assert_eq!(updates.len(), 1);
    let log = emu.requests();
    let at = |r: &LoggedRequest| log.iter().position(|x| x == r).unwrap();
    assert!(
        at(&release[0]) < at(&rshim[0]) && at(&rshim[0]) < at(&updates[0]),
        "release, take, then update"
    );
    let update = updates[0].body.clone().unwrap();
    // NVIDIA's BMC takes the image URI without its scheme.
    assert_eq!(update["ImageURI"], url.strip_prefix("http://").unwrap());
    assert_eq!(update["TransferProtocol"], "HTTP");
    assert_eq!(update["Targets"][0], DPU_OS);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bluefield_rshim_held_by_the_host_is_reported() {
    let emu = emulator(BmcProfile::bluefield3().host_keeps_rshim(true))
        .start()
        .await
        .unwrap();
    let dpu = BlueFieldDpu::new(config(&emu)).unwrap();
    let err = dpu
        .install_bfb(&BfbImage {
            url: "http://127.0.0.1:9/bf.bfb".to_owned(),
            credentials: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, DpuError::RshimNotOwned { .. }), "{err}");
    assert!(err.to_string().contains("release it on the host"), "{err}");
    assert!(!emu.bmc_owns_rshim());
    assert!(
        requests(&emu, &Method::POST, SIMPLE_UPDATE).is_empty(),
        "no update attempted"
    );
    emu.shutdown().await;
}
