//! The NVUE switch-fabric driver against the NVUE emulator: the revision workflow, replace
//! semantics, no-op re-apply, invalid and failing applies, slow applies, credentials and
//! retries.

use std::net::Ipv4Addr;
use std::time::Duration;

use hyper::Method;
use meridian_common::ids::TenantId;
use meridian_common::model::{Ipv4Net, TenantNetworkIntent};
use meridian_drivers::nvue::{NvueClient, NvueConfig, render};
use meridian_drivers::{FabricError, FabricSpec, FabricTenant, SwitchFabric};
use meridian_emulators::nvue::{Fault, FaultAction, NvueEmulator, NvueEmulatorConfig};
use serde_json::json;

fn tenant(name: &str, n: u8, bond: &str, port: &str) -> FabricTenant {
    FabricTenant {
        network: TenantNetworkIntent {
            tenant: TenantId::parse(name).unwrap(),
            vni: 10100 + u32::from(n),
            table: 100 + u32::from(n),
            subnet: Ipv4Net::parse(&format!("10.{}.0.0/24", 100 + n)).unwrap(),
            gateway: Ipv4Addr::new(10, 100 + n, 0, 1),
        },
        l3_vni: 104000 + u32::from(n),
        vlan: 100 + u16::from(n),
        svi_address: Ipv4Addr::new(10, 100 + n, 0, 2),
        bonds: vec![(bond.into(), vec![port.into()])],
    }
}

fn spec(tenants: &[FabricTenant]) -> FabricSpec {
    FabricSpec {
        vtep: Ipv4Addr::new(10, 0, 0, 11),
        asn: 65011,
        uplinks: vec!["swp51".into(), "swp52".into()],
        private_range: Ipv4Net::parse("10.0.0.0/8").unwrap(),
        tenants: tenants.to_vec(),
    }
}

fn a() -> FabricTenant {
    tenant("tenant-a", 1, "bond3", "swp3")
}

fn b() -> FabricTenant {
    tenant("tenant-b", 2, "bond4", "swp4")
}

fn emulator() -> NvueEmulator {
    NvueEmulator::start(NvueEmulatorConfig {
        step_delay: Duration::from_millis(5),
        ..NvueEmulatorConfig::default()
    })
    .unwrap()
}

fn config(emu: &NvueEmulator) -> NvueConfig {
    let d = NvueEmulatorConfig::default();
    let mut cfg = NvueConfig::new(emu.url(), d.username, d.password);
    cfg.attempts = 3;
    cfg.retry_backoff = Duration::from_millis(10);
    cfg.request_timeout = Duration::from_secs(5);
    cfg.poll_interval = Duration::from_millis(10);
    cfg.apply_timeout = Duration::from_secs(10);
    cfg
}

fn client(emu: &NvueEmulator) -> NvueClient {
    NvueClient::new(config(emu)).unwrap()
}

#[tokio::test]
async fn a_tenant_is_applied_and_reads_back_equal() {
    let emu = emulator();
    let c = client(&emu);
    let want = spec(&[a()]);
    let report = c.apply(&want).await.unwrap();
    assert!(report.changed());
    assert!(
        report
            .changes
            .last()
            .unwrap()
            .starts_with("applied revision changeset/cumulus/")
    );
    assert_eq!(emu.revisions_created(), 1);
    assert_eq!(emu.applied(), render(&want).unwrap());
    assert_eq!(emu.startup(), emu.applied());
    assert!(c.drift(&want).await.unwrap().is_empty());
    assert_eq!(c.applied().await.unwrap(), render(&want).unwrap());
    // The revision went through the asynchronous states, confirmed by the auto-prompt.
    let rev = &emu.revisions()[0];
    assert_eq!(rev.history, ["pending", "apply", "ays_yes", "applied"]);
    // The id was sent URL-encoded (the emulator refuses it otherwise).
    assert!(emu.requests().iter().any(|r| {
        r.method == Method::PATCH
            && r.query
                .as_deref()
                .is_some_and(|q| q.contains("changeset%2Fcumulus%2F"))
    }));
}

#[tokio::test]
async fn re_applying_the_same_intent_makes_no_revision() {
    let emu = emulator();
    let c = client(&emu);
    let want = spec(&[a(), b()]);
    assert!(c.apply(&want).await.unwrap().changed());
    let before = emu.requests().len();
    let again = c.apply(&want).await.unwrap();
    assert!(!again.changed(), "{again}");
    assert_eq!(emu.revisions_created(), 1);
    // Only the read-back of the applied state was sent.
    let sent: Vec<_> = emu.requests()[before..].to_vec();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0].method, Method::GET);
}

#[tokio::test]
async fn adding_and_removing_a_tenant_changes_exactly_its_subtree() {
    let emu = emulator();
    let c = client(&emu);
    c.apply(&spec(&[a()])).await.unwrap();
    let only_a = emu.applied();
    let b_paths = [
        "bridge.domain.br_default.vlan.102",
        "vrf.tenant-b",
        "interface.vlan102",
        "interface.bond4",
        "acl.TENANT_B_IN",
    ];
    let touches_b = |line: &str| b_paths.iter().any(|p| line.starts_with(p));

    let added = c.apply(&spec(&[a(), b()])).await.unwrap();
    let (rev, changes) = added.changes.split_last().unwrap();
    assert!(rev.starts_with("applied revision"));
    assert_eq!(changes.len(), b_paths.len(), "{added}");
    assert!(
        changes
            .iter()
            .all(|l| touches_b(l) && l.ends_with("missing")),
        "{added}"
    );
    let both = emu.applied();
    for key in ["vrf", "interface", "acl"] {
        for (k, v) in only_a[key].as_object().unwrap() {
            assert_eq!(&both[key][k], v, "{key}.{k} of tenant A changed");
        }
    }
    assert_eq!(both, render(&spec(&[a(), b()])).unwrap());

    let removed = c.apply(&spec(&[a()])).await.unwrap();
    let (_, changes) = removed.changes.split_last().unwrap();
    assert_eq!(changes.len(), b_paths.len(), "{removed}");
    assert!(
        changes
            .iter()
            .all(|l| touches_b(l) && l.ends_with("not desired")),
        "{removed}"
    );
    assert_eq!(emu.applied(), only_a);
    assert_eq!(emu.revisions_created(), 3);
}

#[tokio::test]
async fn an_invalid_config_is_an_error_with_the_issue_and_changes_nothing() {
    let emu = emulator();
    let c = client(&emu);
    c.apply(&spec(&[a()])).await.unwrap();
    let before = emu.applied();

    // The driver's own check refuses an L3 VNI equal to an L2 VNI before any revision.
    let mut clash = b();
    clash.l3_vni = a().network.vni;
    let err = c.apply(&spec(&[a(), clash])).await.unwrap_err();
    assert!(matches!(err, FabricError::Spec(_)), "{err}");
    assert_eq!(emu.revisions_created(), 1);

    // Pushed past the driver, the switch rejects it: the revision ends `invalid`.
    let mut tree = render(&spec(&[a(), b()])).unwrap();
    tree["vrf"]["tenant-b"]["evpn"]["vni"] = json!({"10101": {}});
    let err = c.apply_tree(&tree).await.unwrap_err();
    match &err {
        FabricError::Rejected { state, issue, .. } => {
            assert_eq!(state, "invalid");
            assert!(
                issue.contains("L3 VNI 10101 is already used as an L2 VNI"),
                "{issue}"
            );
        }
        other => panic!("expected a rejected revision, got {other}"),
    }
    assert!(err.to_string().contains("L3 VNI 10101"), "{err}");
    assert_eq!(emu.applied(), before);

    // A tenant in the default VRF, and an unknown key, likewise.
    let mut tree = render(&spec(&[a()])).unwrap();
    tree["vrf"]["default"]["evpn"] = json!({"enable": "on", "vni": {"104009": {}}});
    let err = c.apply_tree(&tree).await.unwrap_err();
    assert!(err.to_string().contains("default VRF"), "{err}");
    let mut tree = render(&spec(&[a()])).unwrap();
    tree["vrf"]["tenant-a"]["evpn"]["flavour"] = json!("vanilla");
    let err = c.apply_tree(&tree).await.unwrap_err();
    assert!(err.to_string().contains("unknown key 'flavour'"), "{err}");
    assert_eq!(emu.applied(), before);
}

#[tokio::test]
async fn a_failing_apply_is_an_error_and_the_next_apply_succeeds() {
    let emu = emulator();
    let c = client(&emu);
    emu.fail_next_apply("switchd: hardware programming failed");
    let err = c.apply(&spec(&[a()])).await.unwrap_err();
    match &err {
        FabricError::Rejected { state, issue, .. } => {
            assert_eq!(state, "apply_fail");
            assert!(issue.contains("hardware programming failed"), "{issue}");
        }
        other => panic!("expected apply_fail, got {other}"),
    }
    assert_eq!(emu.applied(), json!({}));
    assert!(c.apply(&spec(&[a()])).await.unwrap().changed());
    assert!(c.drift(&spec(&[a()])).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_slow_apply_is_waited_for_and_a_too_slow_one_times_out() {
    let emu = emulator();
    let c = client(&emu);
    emu.set_apply_delay(Duration::from_millis(300));
    c.apply(&spec(&[a()])).await.unwrap();
    let rev = emu.revisions()[0].id.clone();
    let polls = emu.count(&Method::GET, &format!("/nvue_v1/revision/{rev}"));
    assert!(polls >= 2, "polled {polls} times: the driver did not wait");
    assert_eq!(emu.applied(), render(&spec(&[a()])).unwrap());

    let mut cfg = config(&emu);
    cfg.apply_timeout = Duration::from_millis(50);
    emu.set_apply_delay(Duration::from_secs(2));
    let impatient = NvueClient::new(cfg).unwrap();
    let err = impatient.apply(&spec(&[a(), b()])).await.unwrap_err();
    assert!(matches!(err, FabricError::ApplyTimeout { .. }), "{err}");
}

#[tokio::test]
async fn bad_credentials_are_a_clear_auth_error_and_not_retried() {
    let emu = emulator();
    let mut cfg = config(&emu);
    cfg.password = "wrong".into();
    let c = NvueClient::new(cfg).unwrap();
    let err = c.apply(&spec(&[a()])).await.unwrap_err();
    match &err {
        FabricError::Auth { status, user, .. } => {
            assert_eq!(*status, 401);
            assert_eq!(user, "cumulus");
        }
        other => panic!("expected an auth error, got {other}"),
    }
    assert!(err.to_string().contains("refused the credentials"), "{err}");
    assert_eq!(emu.requests().len(), 1);
    assert_eq!(emu.revisions_created(), 0);
}

#[tokio::test]
async fn busy_and_dropped_answers_are_retried_a_bounded_number_of_times() {
    let emu = emulator();
    let c = client(&emu);
    // Two 503s then success: within the 3 attempts.
    emu.inject(Fault {
        method: Some(Method::POST),
        path: "/nvue_v1/revision".into(),
        times: 2,
        action: FaultAction::Status(503),
    });
    // A dropped connection on the apply PATCH.
    let first_id = "changeset/cumulus/2026-11-21_10.02.03_0001";
    emu.inject(Fault {
        method: Some(Method::PATCH),
        path: format!("/nvue_v1/revision/{first_id}"),
        times: 1,
        action: FaultAction::Drop,
    });
    c.apply(&spec(&[a()])).await.unwrap();
    assert_eq!(emu.count(&Method::POST, "/nvue_v1/revision"), 3);
    assert_eq!(emu.revisions_created(), 1);
    assert_eq!(emu.applied(), render(&spec(&[a()])).unwrap());

    // Busy for longer than the attempts: an error after exactly 3 tries.
    emu.inject(Fault {
        method: Some(Method::GET),
        path: "/nvue_v1/".into(),
        times: 10,
        action: FaultAction::Status(503),
    });
    let before = emu.count(&Method::GET, "/nvue_v1/");
    let err = c.apply(&spec(&[a(), b()])).await.unwrap_err();
    match &err {
        FabricError::Http {
            status, attempts, ..
        } => {
            assert_eq!(*status, 503);
            assert_eq!(*attempts, 3);
        }
        other => panic!("expected a 503 error, got {other}"),
    }
    assert_eq!(emu.count(&Method::GET, "/nvue_v1/") - before, 3);
}

#[tokio::test]
async fn an_unreachable_switch_is_a_transport_error_after_bounded_attempts() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut cfg = NvueConfig::new(format!("http://127.0.0.1:{port}"), "cumulus", "x");
    cfg.attempts = 3;
    cfg.retry_backoff = Duration::from_millis(5);
    let err = NvueClient::new(cfg)
        .unwrap()
        .apply(&spec(&[a()]))
        .await
        .unwrap_err();
    match &err {
        FabricError::Transport { attempts, .. } => assert_eq!(*attempts, 3),
        other => panic!("expected a transport error, got {other}"),
    }
    assert!(std::error::Error::source(&err).is_some());
}

fn raw_status(emu: &NvueEmulator, method: &str, target: &str) -> String {
    use base64::Engine as _;
    use std::io::{Read, Write};
    let d = NvueEmulatorConfig::default();
    let auth =
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", d.username, d.password));
    let mut s = std::net::TcpStream::connect(emu.addr()).unwrap();
    write!(
        s,
        "{method} {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\n\
         Content-Length: 0\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out.lines().next().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn revision_ids_are_accepted_only_url_encoded() {
    let emu = emulator();
    client(&emu).apply(&spec(&[a()])).await.unwrap();
    let id = emu.revisions()[0].id.clone();
    assert!(id.contains('/'));
    let enc = meridian_drivers::nvue::encode_revision_id(&id);
    assert!(raw_status(&emu, "GET", &format!("/nvue_v1/revision/{enc}")).contains(" 200 "));
    assert!(raw_status(&emu, "GET", &format!("/nvue_v1/revision/{id}")).contains(" 404 "));
    assert!(raw_status(&emu, "GET", &format!("/nvue_v1/vrf?rev={enc}")).contains(" 200 "));
    assert!(raw_status(&emu, "GET", &format!("/nvue_v1/vrf?rev={id}")).contains(" 400 "));
    // Without credentials: 401.
    let mut s = std::net::TcpStream::connect(emu.addr()).unwrap();
    use std::io::{Read, Write};
    s.write_all(b"GET /nvue_v1/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 401"), "{out}");
    assert!(
        out.to_ascii_lowercase().contains("www-authenticate: basic"),
        "{out}"
    );
}
