//! The Redfish driver's failure paths and the BlueField DPU driver, against the scripted mock
//! BMC in `mock_bmc/` (127.0.0.1, in-process): 401 then re-login, 412 then re-read and retry,
//! 503 with `Retry-After`, tasks ending in `Exception`, media inserted while media is present,
//! timeouts, advertised reset types only, inventory with GPUs, RShim and BFB install.

mod mock_bmc;

use std::time::{Duration, Instant};

use hyper::Method;
use meridian_drivers::bmc::{
    AuthMode, Bmc, BmcError, BootMode, BootOverride, BootOverrideEnabled, BootTarget, MediaPolicy,
    PowerAction, PowerState, RedfishBmc, RedfishConfig, SimpleUpdate, TaskState,
};
use meridian_drivers::dpu::{BfbImage, BlueFieldDpu, Dpu, DpuError, DpuMode};
use meridian_drivers::http_client::TransportError;
use mock_bmc::{BF_MGR_OEM, BF_OEM, CD, DPU_OS, Fault, Mock, MockState, PASSWORD, SYS, Seen, USER};

fn config(mock: &Mock) -> RedfishConfig {
    let mut cfg = RedfishConfig::new(mock.url(), USER, PASSWORD);
    cfg.request_timeout = Duration::from_secs(2);
    cfg.retry_backoff = Duration::from_millis(50);
    cfg.poll_interval = Duration::from_millis(50);
    cfg.power_timeout = Duration::from_secs(5);
    cfg.restart_grace = Duration::from_millis(200);
    cfg.media_timeout = Duration::from_secs(5);
    cfg.task_timeout = Duration::from_secs(10);
    cfg
}

async fn server() -> (Mock, RedfishBmc) {
    let mock = Mock::start(MockState::server()).await;
    let bmc = RedfishBmc::new(config(&mock)).unwrap();
    (mock, bmc)
}

fn boot(target: BootTarget, enabled: BootOverrideEnabled) -> BootOverride {
    BootOverride {
        target,
        enabled,
        mode: Some(BootMode::Uefi),
    }
}

#[tokio::test]
async fn discovery_follows_links_and_uses_a_session() {
    let (mock, bmc) = server().await;
    let d = bmc.discover().await.unwrap();
    assert_eq!(d.host_system.as_str(), SYS, "HGX baseboard is not the host");
    assert_eq!(d.systems.len(), 2);
    assert!(d.sessions && d.session_auth);
    assert_eq!(d.managers[0].id, "bmc-x");
    assert_eq!(mock.with(|s| s.logins), 1);
    // Every request after the login carried the session token.
    let auths: Vec<Option<String>> = mock.with(|s| {
        s.log
            .iter()
            .filter(|r| r.path != "/redfish/v1/" && r.method == Method::GET)
            .map(|r| r.auth.clone())
            .collect()
    });
    assert!(
        auths.iter().all(|a| a.as_deref() == Some("session")),
        "{auths:?}"
    );
    bmc.logout().await.unwrap();
    assert!(
        mock.with(|s| s.tokens.is_empty()),
        "logout deleted the session"
    );
}

#[tokio::test]
async fn expired_session_logs_in_again_once_then_fails() {
    let (mock, bmc) = server().await;
    bmc.discover().await.unwrap();
    // The BMC forgets every session (expiry, BMC reboot).
    mock.with(|s| s.tokens.clear());
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    assert_eq!(mock.with(|s| s.logins), 2);
    // The password changed: one more login is tried, then a clear error.
    mock.with(|s| {
        s.tokens.clear();
        s.reject_all = true;
    });
    let err = bmc.power_state().await.unwrap_err();
    assert!(matches!(err, BmcError::Unauthorized { .. }), "{err}");
    assert!(err.to_string().contains(SYS), "{err}");
}

#[tokio::test]
async fn without_a_session_service_basic_is_used() {
    let mut state = MockState::server();
    state.sessions_enabled = false;
    let mock = Mock::start(state).await;
    let bmc = RedfishBmc::new(config(&mock)).unwrap();
    let d = bmc.discover().await.unwrap();
    assert!(d.sessions && !d.session_auth, "login refused: Basic");
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    let last: Seen = mock.with(|s| s.log.last().cloned().unwrap());
    assert_eq!(last.auth.as_deref(), Some("basic"));

    // Basic only, by configuration: no session is attempted.
    let mock = Mock::start(MockState::server()).await;
    let mut cfg = config(&mock);
    cfg.auth = AuthMode::Basic;
    let bmc = RedfishBmc::new(cfg).unwrap();
    bmc.discover().await.unwrap();
    assert_eq!(mock.with(|s| s.logins), 0);
}

#[tokio::test]
async fn stale_etag_rereads_and_retries_once() {
    let (mock, bmc) = server().await;
    bmc.discover().await.unwrap();
    // Someone else changes the system between our read and our PATCH (once).
    mock.fault(Fault::status(Method::PATCH, SYS, 412, 1));
    let got = bmc
        .set_boot_override(&boot(BootTarget::Cd, BootOverrideEnabled::Once))
        .await
        .unwrap();
    assert_eq!(
        (got.target, got.enabled),
        (BootTarget::Cd, BootOverrideEnabled::Once)
    );
    let patches = mock.with(|s| s.requests(&Method::PATCH, SYS));
    assert_eq!(patches.len(), 2);
    assert!(
        patches.iter().all(|p| p.if_match.is_some()),
        "If-Match on every PATCH"
    );
    // Idempotent: the same override again sends no PATCH.
    bmc.set_boot_override(&boot(BootTarget::Cd, BootOverrideEnabled::Once))
        .await
        .unwrap();
    assert_eq!(mock.with(|s| s.requests(&Method::PATCH, SYS)).len(), 2);
    // A concurrent writer makes the ETag stale: the mock's own check answers 412, the driver
    // re-reads (fresh ETag) and succeeds.
    mock.with(|s| s.concurrent_writes = 1);
    bmc.set_boot_override(&boot(BootTarget::Hdd, BootOverrideEnabled::Continuous))
        .await
        .unwrap();
    let patches = mock.with(|s| s.requests(&Method::PATCH, SYS));
    assert_eq!(patches.len(), 4);
    assert_ne!(
        patches[2].if_match, patches[3].if_match,
        "the retry used the new ETag"
    );
    // 412 twice: a clear error.
    mock.fault(Fault::status(Method::PATCH, SYS, 412, 2));
    let err = bmc
        .set_boot_override(&boot(BootTarget::Pxe, BootOverrideEnabled::Once))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::PreconditionFailed { .. }), "{err}");
}

#[tokio::test]
async fn refusals_carry_the_redfish_message() {
    let (mock, bmc) = server().await;
    bmc.discover().await.unwrap();
    // The mock rejects Usb (not in its list); the driver's own check is bypassed by faking a
    // refusal of an allowed value.
    mock.fault(Fault {
        body: Some(
            serde_json::json!({"error": {"code": "Base.1.8.GeneralError",
            "message": "general", "@Message.ExtendedInfo": [{
            "MessageId": "Base.1.8.PropertyValueNotInList",
            "Message": "The value Pxe for BootSourceOverrideTarget is not in the list"}]}}),
        ),
        ..Fault::status(Method::PATCH, SYS, 400, 1)
    });
    let err = bmc
        .set_boot_override(&boot(BootTarget::Pxe, BootOverrideEnabled::Once))
        .await
        .unwrap_err();
    match &err {
        BmcError::Http {
            status: 400,
            url,
            message_id,
            ..
        } => {
            assert!(url.ends_with(SYS));
            assert_eq!(
                message_id.as_deref(),
                Some("Base.1.8.PropertyValueNotInList")
            );
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("is not in the list"), "{err}");
    // A target the BMC does not advertise is refused before sending anything.
    let err = bmc
        .set_boot_override(&boot(BootTarget::Usb, BootOverrideEnabled::Once))
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::Unsupported { .. }), "{err}");
}

#[tokio::test]
async fn busy_bmc_is_retried_after_retry_after() {
    let (mock, bmc) = server().await;
    bmc.discover().await.unwrap();
    mock.fault(Fault {
        retry_after: Some(1),
        ..Fault::status(Method::GET, SYS, 503, 1)
    });
    let t = Instant::now();
    assert_eq!(bmc.power_state().await.unwrap(), PowerState::Off);
    assert!(
        t.elapsed() >= Duration::from_secs(1),
        "Retry-After honoured"
    );
    // Busy for longer than the attempts allow: an error naming the status and attempts.
    mock.fault(Fault::status(Method::GET, SYS, 503, 10));
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
}

#[tokio::test]
async fn timeouts_are_bounded() {
    let (mock, bmc) = server().await;
    bmc.discover().await.unwrap();
    // A request that never answers in time: retried, then a transport error.
    mock.fault(Fault {
        delay: Duration::from_secs(5),
        ..Fault::status(Method::GET, SYS, 0, 10)
    });
    let mut cfg = config(&mock);
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
    mock.with(|s| s.faults.clear());
    // A power transition that never finishes: a timeout naming the last state seen.
    mock.with(|s| s.power_stuck = true);
    let mut cfg = config(&mock);
    cfg.power_timeout = Duration::from_millis(800);
    let bmc = RedfishBmc::new(cfg).unwrap();
    let err = bmc.power(PowerAction::On).await.unwrap_err();
    match &err {
        BmcError::Timeout { last, .. } => assert_eq!(last, "PoweringOn"),
        other => panic!("{other}"),
    }
}

#[tokio::test]
async fn power_uses_only_advertised_reset_types() {
    let (mock, bmc) = server().await;
    // The mock advertises ForceOn, not On; ForceOff; GracefulRestart, not ForceRestart.
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
    let sent: Vec<String> = mock.with(|s| {
        s.requests(
            &Method::POST,
            &format!("{SYS}/Actions/ComputerSystem.Reset"),
        )
        .iter()
        .map(|r| {
            r.body.as_ref().unwrap()["ResetType"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
    });
    assert_eq!(sent, ["ForceOn", "GracefulRestart", "ForceOff"]);
    // No power-cycle reset type advertised: ForceOff, then ForceOn.
    bmc.power(PowerAction::On).await.unwrap();
    assert_eq!(
        bmc.power(PowerAction::PowerCycle).await.unwrap(),
        PowerState::On
    );
    let sent = mock.with(|s| {
        s.requests(
            &Method::POST,
            &format!("{SYS}/Actions/ComputerSystem.Reset"),
        )
        .len()
    });
    assert_eq!(sent, 6);
    // An action with no advertised reset type is refused without a request.
    mock.with(|s| {
        s.resources.get_mut(SYS).unwrap()["Actions"]["#ComputerSystem.Reset"]
            ["ResetType@Redfish.AllowableValues"] = serde_json::json!(["ForceOn"]);
    });
    let err = bmc.power(PowerAction::ForceOff).await.unwrap_err();
    match &err {
        BmcError::Unsupported { offered, .. } => assert_eq!(offered, &["ForceOn".to_owned()]),
        other => panic!("{other}"),
    }
    assert_eq!(
        mock.with(|s| s
            .requests(
                &Method::POST,
                &format!("{SYS}/Actions/ComputerSystem.Reset")
            )
            .len()),
        6
    );
}

#[tokio::test]
async fn media_under_the_manager_and_media_present() {
    let (mock, bmc) = server().await;
    // The system has no VirtualMedia; the manager's CD slot (not the USB one) is used.
    assert_eq!(bmc.media().await.unwrap().slot.as_str(), CD);
    // Someone else's media is in the slot.
    mock.with(|s| {
        let r = s.resources.get_mut(CD).unwrap();
        r["Inserted"] = serde_json::json!(true);
        r["Image"] = serde_json::json!("http://other/rescue.iso");
    });
    let err = bmc
        .insert_media("http://127.0.0.1:9/deploy.iso", MediaPolicy::Fail)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::MediaPresent { .. }), "{err}");
    assert!(err.to_string().contains("rescue.iso"), "{err}");
    // EjectFirst: eject, then insert; the insert right after the eject fails once with 500
    // (an eject still finishing) and is retried.
    mock.fault(Fault::status(
        Method::POST,
        &format!("{CD}/Actions/VirtualMedia.InsertMedia"),
        500,
        1,
    ));
    let st = bmc
        .insert_media("http://127.0.0.1:9/deploy.iso", MediaPolicy::EjectFirst)
        .await
        .unwrap();
    assert!(st.inserted && st.image.as_deref() == Some("http://127.0.0.1:9/deploy.iso"));
    let order: Vec<String> = mock.with(|s| {
        s.log
            .iter()
            .filter(|r| r.method == Method::POST && r.path.starts_with(CD))
            .map(|r| r.path.rsplit('.').next().unwrap().to_owned())
            .collect()
    });
    assert_eq!(order, ["EjectMedia", "InsertMedia", "InsertMedia"]);
    let body = mock.with(|s| {
        s.requests(
            &Method::POST,
            &format!("{CD}/Actions/VirtualMedia.InsertMedia"),
        )[0]
        .body
        .clone()
        .unwrap()
    });
    assert_eq!(body["WriteProtected"], true);
    // The BMC reports media the driver did not see (409) under policy Fail.
    bmc.eject_media().await.unwrap();
    mock.fault(Fault::status(
        Method::POST,
        &format!("{CD}/Actions/VirtualMedia.InsertMedia"),
        409,
        1,
    ));
    let err = bmc
        .insert_media("http://127.0.0.1:9/b.iso", MediaPolicy::Fail)
        .await
        .unwrap_err();
    assert!(matches!(err, BmcError::MediaPresent { .. }), "{err}");
    assert!(!bmc.eject_media().await.unwrap().inserted);
}

#[tokio::test]
async fn tasks_poll_to_completion_or_exception() {
    let (mock, bmc) = server().await;
    let update = SimpleUpdate {
        image_uri: "http://127.0.0.1:9/bios.bin".to_owned(),
        transfer_protocol: Some("HTTP".to_owned()),
        targets: Vec::new(),
        credentials: None,
    };
    let t = Instant::now();
    let done = bmc.simple_update(&update).await.unwrap();
    assert_eq!(done.state, TaskState::Completed);
    assert!(
        t.elapsed() >= Duration::from_secs(2),
        "Retry-After: 1 on each poll"
    );
    mock.with(|s| {
        s.update_end = (
            1,
            "Exception".to_owned(),
            "Image verification failed".into(),
        )
    });
    let err = bmc.simple_update(&update).await.unwrap_err();
    match &err {
        BmcError::TaskFailed {
            state, messages, ..
        } => {
            assert_eq!(*state, TaskState::Exception);
            assert_eq!(messages, &["Image verification failed".to_owned()]);
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("Image verification failed"));
}

#[tokio::test]
async fn inventory_reads_cpus_gpus_memory_and_firmware() {
    let (_mock, bmc) = server().await;
    let inv = bmc.inventory().await.unwrap();
    assert_eq!(inv.cpus.len(), 2);
    assert_eq!(
        inv.gpus.len(),
        3,
        "two under the host, one under HGX: {inv:?}"
    );
    assert_eq!(inv.dimms.len(), 2);
    assert_eq!(inv.total_memory_gib, Some(64.0));
    assert!(inv.unavailable.is_empty());
    let fw = bmc.firmware().await.unwrap();
    let bios = fw.iter().find(|f| f.id == "BIOS").unwrap();
    assert_eq!(bios.version.as_deref(), Some("1.4.2"));
}

fn bluefield_config(mock: &Mock) -> RedfishConfig {
    config(mock)
}

#[tokio::test]
async fn bluefield_mode_is_pending_until_reset() {
    let mock = Mock::start(MockState::bluefield()).await;
    let dpu = BlueFieldDpu::new(bluefield_config(&mock)).unwrap();
    let m = dpu.mode().await.unwrap();
    assert_eq!((m.current, m.pending), (DpuMode::Dpu, None));
    let m = dpu.set_mode(DpuMode::Nic).await.unwrap();
    assert_eq!((m.current, m.pending), (DpuMode::Dpu, Some(DpuMode::Nic)));
    // Asking again sends nothing.
    dpu.set_mode(DpuMode::Nic).await.unwrap();
    let posts = mock.with(|s| s.requests(&Method::POST, &format!("{BF_OEM}/Actions/Mode.Set")));
    assert_eq!(posts.len(), 1);
    let m = dpu.reset().await.unwrap();
    assert_eq!((m.current, m.pending), (DpuMode::Nic, None));
}

#[tokio::test]
async fn bluefield_bfb_install_takes_rshim_and_polls_the_task() {
    let mock = Mock::start(MockState::bluefield()).await;
    let dpu = BlueFieldDpu::new(bluefield_config(&mock)).unwrap();
    let fw = dpu.firmware().await.unwrap();
    assert_eq!(fw.os.as_deref(), Some("DOCA_2.9.0_BSP_4.9.0"));
    assert!(fw.nic.is_some() && fw.uefi.is_some());
    let image = BfbImage {
        url: "http://127.0.0.1:9/bfb/bf-bundle.bfb".to_owned(),
        credentials: None,
    };
    let done = dpu.install_bfb(&image).await.unwrap();
    assert_eq!(done.task.state, TaskState::Completed);
    assert_eq!(done.version.as_deref(), Some("DOCA_2.9.1_BSP_4.9.1"));
    let release =
        mock.with(|s| s.requests(&Method::POST, &format!("{BF_OEM}/Actions/HostRshim.Set")));
    assert_eq!(release.len(), 1, "the host's RShim was released first");
    let rshim = mock.with(|s| s.requests(&Method::PATCH, BF_MGR_OEM));
    assert_eq!(rshim.len(), 1);
    assert!(rshim[0].if_match.is_some());
    let update = mock.with(|s| {
        s.requests(
            &Method::POST,
            "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate",
        )[0]
        .body
        .clone()
        .unwrap()
    });
    assert_eq!(update["ImageURI"], "127.0.0.1:9/bfb/bf-bundle.bfb");
    assert_eq!(update["TransferProtocol"], "HTTP");
    assert_eq!(update["Targets"][0], DPU_OS);
}

#[tokio::test]
async fn bluefield_rshim_held_by_the_host_is_reported() {
    let mut state = MockState::bluefield();
    state.host_keeps_rshim = true;
    let mock = Mock::start(state).await;
    let dpu = BlueFieldDpu::new(bluefield_config(&mock)).unwrap();
    let err = dpu
        .install_bfb(&BfbImage {
            url: "http://127.0.0.1:9/bf.bfb".to_owned(),
            credentials: None,
        })
        .await
        .unwrap_err();
    assert!(matches!(err, DpuError::RshimNotOwned { .. }), "{err}");
    assert!(err.to_string().contains("release it on the host"), "{err}");
    assert!(
        mock.with(|s| s
            .requests(
                &Method::POST,
                "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate"
            )
            .is_empty()),
        "no update attempted"
    );
}
