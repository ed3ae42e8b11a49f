//! The ONTAP storage driver (`OntapArray`) against the ONTAP emulator: create, no-op re-ensure,
//! resize, client changes, delete, a create whose answer was lost, failed jobs, no space, bad
//! credentials; and the emulator's own REST behaviour (errors, policies in use, quotas).
//!
//! Waits are on conditions with deadlines, never sleeps standing for assertions.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode, header};
use meridian_common::model::Ipv4Net;
use meridian_drivers::http_client::HttpEndpoint;
use meridian_drivers::{OntapArray, OntapConfig, StorageArray, StorageError, VolumeWant};
use meridian_emulators::faults::Fault;
use meridian_emulators::ontap::{WriteError, codes};
use meridian_emulators::{OntapEmulator, OntapEmulatorConfig};
use serde_json::{Value, json};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn emulator(aggregate_size: u64) -> OntapEmulator {
    OntapEmulator::start(OntapEmulatorConfig {
        aggregate_size,
        job_delay: Duration::from_millis(5),
        ..OntapEmulatorConfig::default()
    })
    .unwrap()
}

fn config(emu: &OntapEmulator) -> OntapConfig {
    let d = OntapEmulatorConfig::default();
    let mut cfg = OntapConfig::new(emu.url(), d.username, d.password, d.svm, d.aggregate);
    cfg.job_poll = Duration::from_millis(2);
    // Generous: a loaded machine must not turn into a failed test.
    cfg.job_timeout = Duration::from_secs(60);
    cfg.request_timeout = Duration::from_secs(30);
    cfg
}

fn array(emu: &OntapEmulator) -> OntapArray {
    OntapArray::new(config(emu)).unwrap()
}

fn net(s: &str) -> Ipv4Net {
    Ipv4Net::parse(s).unwrap()
}

fn want(name: &str, size_mib: u64, clients: &[&str]) -> VolumeWant {
    VolumeWant {
        name: name.into(),
        size_mib,
        clients: clients.iter().map(|c| net(c)).collect(),
    }
}

/// Waits (up to 30 s) until `cond` holds.
async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::test]
async fn creates_a_volume_with_its_quota_and_only_the_tenant_subnet() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    let changes = ontap
        .ensure_volume(&want("t1_data", 100 * 1024, &["10.1.0.0/24"]))
        .await
        .unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("create volume t1_data")),
        "{changes:?}"
    );
    let v = emu.volume("t1_data").expect("the volume exists");
    assert_eq!(v.size, 100 * GIB);
    assert_eq!(v.quota_hard_limit, Some(100 * GIB));
    assert!(v.quota_enabled);
    assert_eq!(v.path, "/t1_data");
    assert_eq!(v.export_policy, "t1_data");
    assert_eq!(v.clients, vec!["10.1.0.0/24".to_owned()]);
    // Every job the create ran succeeded, through queued and running.
    let jobs = emu.jobs();
    assert!(!jobs.is_empty());
    for j in &jobs {
        assert_eq!(j.history, ["queued", "running", "success"], "{j:?}");
    }

    // The driver's own view agrees.
    let listed = ontap.volumes("t1_").await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].name, "t1_data");
    assert_eq!(listed[0].uuid, v.uuid);
    assert_eq!(listed[0].size_mib, 100 * 1024);
    assert_eq!(listed[0].quota_mib, Some(100 * 1024));
    assert_eq!(listed[0].clients, vec![net("10.1.0.0/24")]);
    assert!(ontap.volumes("t2_").await.unwrap().is_empty());

    // Ensuring again changes nothing and starts no job.
    let jobs_before = emu.jobs().len();
    let posts_before = emu
        .requests()
        .iter()
        .filter(|r| r.method != Method::GET)
        .count();
    let again = ontap
        .ensure_volume(&want("t1_data", 100 * 1024, &["10.1.0.0/24"]))
        .await
        .unwrap();
    assert!(again.is_empty(), "{again:?}");
    assert_eq!(emu.jobs().len(), jobs_before);
    let writes = emu
        .requests()
        .iter()
        .filter(|r| r.method != Method::GET)
        .count();
    assert_eq!(writes, posts_before, "a no-op ensure sent only GETs");

    let cap = ontap.capacity().await.unwrap();
    assert_eq!(cap.total_mib, 1 << 20);
    assert_eq!(cap.available_mib, (1 << 20) - 100 * 1024);
}

#[tokio::test]
async fn resizes_and_changes_clients() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    ontap
        .ensure_volume(&want("t1_data", 1024, &["10.1.0.0/24"]))
        .await
        .unwrap();

    let grown = ontap
        .ensure_volume(&want("t1_data", 2048, &["10.1.0.0/24"]))
        .await
        .unwrap();
    assert_eq!(
        grown,
        [
            "resize volume t1_data from 1024 MiB to 2048 MiB",
            "set quota hard limit of t1_data to 2048 MiB (was 1024 MiB)",
        ],
    );
    let v = emu.volume("t1_data").unwrap();
    assert_eq!((v.size, v.quota_hard_limit), (2048 * MIB, Some(2048 * MIB)));

    let shrunk = ontap
        .ensure_volume(&want("t1_data", 512, &["10.1.0.0/24"]))
        .await
        .unwrap();
    assert_eq!(
        shrunk,
        [
            "set quota hard limit of t1_data to 512 MiB (was 2048 MiB)",
            "resize volume t1_data from 2048 MiB to 512 MiB",
        ],
    );

    let moved = ontap
        .ensure_volume(&want("t1_data", 512, &["10.2.0.0/24", "10.1.0.0/24"]))
        .await
        .unwrap();
    assert_eq!(
        moved,
        ["set clients of export policy t1_data to 10.1.0.0/24, 10.2.0.0/24 (was 10.1.0.0/24)"],
    );
    let v = emu.volume("t1_data").unwrap();
    assert_eq!(v.clients, ["10.1.0.0/24", "10.2.0.0/24"]);
    assert_eq!(v.size, 512 * MIB);

    let narrowed = ontap
        .ensure_volume(&want("t1_data", 512, &["10.2.0.0/24"]))
        .await
        .unwrap();
    assert_eq!(narrowed.len(), 1, "{narrowed:?}");
    assert_eq!(emu.volume("t1_data").unwrap().clients, ["10.2.0.0/24"]);
    assert!(
        ontap
            .ensure_volume(&want("t1_data", 512, &["10.2.0.0/24"]))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn shrinking_below_what_is_used_is_refused_and_changes_nothing() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    ontap
        .ensure_volume(&want("t1_data", 1024, &["10.1.0.0/24"]))
        .await
        .unwrap();
    emu.write("t1_data", 600 * MIB).unwrap();
    // The quota stops writes at the hard limit.
    assert!(matches!(
        emu.write("t1_data", 500 * MIB),
        Err(WriteError::QuotaExceeded { limit, .. }) if limit == 1024 * MIB
    ));
    let err = ontap
        .ensure_volume(&want("t1_data", 512, &["10.1.0.0/24"]))
        .await
        .unwrap_err();
    match &err {
        StorageError::Api {
            status: 400, code, ..
        } => assert_eq!(*code, codes::QUOTA_BELOW_USED.to_string()),
        other => panic!("expected a 400, got {other}"),
    }
    assert!(!err.is_transient());
    let v = emu.volume("t1_data").unwrap();
    assert_eq!((v.size, v.quota_hard_limit), (1024 * MIB, Some(1024 * MIB)));
}

#[tokio::test]
async fn quotas_switched_off_on_the_array_are_switched_back_on() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    let w = want("t1_data", 1024, &["10.1.0.0/24"]);
    ontap.ensure_volume(&w).await.unwrap();
    let uuid = emu.volume("t1_data").unwrap().uuid;
    let (status, _) = call(
        &emu,
        Method::PATCH,
        &format!("/api/storage/volumes/{uuid}"),
        Some(r#"{"quota":{"enabled":false}}"#),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    until("quotas off", || {
        !emu.volume("t1_data").unwrap().quota_enabled
    })
    .await;
    // The rule is there but not enforced: reported as no quota.
    let listed = ontap.volumes("t1_").await.unwrap();
    assert_eq!(listed[0].quota_mib, None);
    let changes = ontap.ensure_volume(&w).await.unwrap();
    assert_eq!(changes, ["enable quotas on volume t1_data"]);
    assert_eq!(ontap.volumes("t1_").await.unwrap()[0].quota_mib, Some(1024));
}

#[tokio::test]
async fn delete_removes_volume_rule_and_policy() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    ontap
        .ensure_volume(&want("t1_data", 1024, &["10.1.0.0/24"]))
        .await
        .unwrap();
    ontap
        .ensure_volume(&want("t2_data", 1024, &["10.2.0.0/24"]))
        .await
        .unwrap();
    assert!(ontap.delete_volume("t1_data").await.unwrap());
    assert!(emu.volume("t1_data").is_none());
    assert!(emu.quota_rules().iter().all(|r| r.0 != "t1_data"));
    assert!(emu.export_policies().iter().all(|p| p.0 != "t1_data"));
    // The other tenant's volume is untouched.
    assert!(emu.volume("t2_data").is_some());
    assert_eq!(emu.quota_rules().len(), 1);
    // Absent is success, and nothing is sent but reads.
    let writes_before = emu
        .requests()
        .iter()
        .filter(|r| r.method != Method::GET)
        .count();
    assert!(!ontap.delete_volume("t1_data").await.unwrap());
    let writes = emu
        .requests()
        .iter()
        .filter(|r| r.method != Method::GET)
        .count();
    assert_eq!(writes, writes_before);
    let cap = ontap.capacity().await.unwrap();
    assert_eq!(cap.available_mib, (1 << 20) - 1024);
}

#[tokio::test]
async fn a_lost_create_answer_is_converged_through_the_name_in_use() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    emu.pause_jobs();
    emu.lose_next_create_answer();
    let w = want("t1_data", 1024, &["10.1.0.0/24"]);
    // The create is queued, but its answer never comes: a transient transport error.
    let err = ontap.ensure_volume(&w).await.unwrap_err();
    assert!(
        matches!(err, StorageError::Transport { ref method, .. } if method == "POST"),
        "{err}"
    );
    assert!(err.is_transient());
    assert_eq!(emu.jobs().len(), 1);

    // The retry does not see the volume yet (its job is held), so it creates it again.
    let retry = {
        let ontap = ontap.clone();
        let w = w.clone();
        tokio::spawn(async move { ontap.ensure_volume(&w).await })
    };
    until("the retry's create job", || emu.jobs().len() == 2).await;
    emu.resume_jobs();
    let changes = retry.await.unwrap().unwrap();

    let jobs = emu.jobs();
    assert_eq!(jobs[0].state, "success", "{jobs:?}");
    assert_eq!(jobs[1].state, "failure", "{jobs:?}");
    assert_eq!(jobs[1].code, codes::DUPLICATE_VOLUME_NAME);
    assert!(
        changes
            .iter()
            .any(|c| c.contains("already existed (an earlier create)")),
        "{changes:?}"
    );
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("create quota rule on t1_data")),
        "{changes:?}"
    );
    let vols = emu.volumes();
    assert_eq!(vols.len(), 1);
    assert_eq!(vols[0].size, 1024 * MIB);
    assert_eq!(vols[0].quota_hard_limit, Some(1024 * MIB));
    assert_eq!(vols[0].clients, ["10.1.0.0/24"]);
    assert!(ontap.ensure_volume(&w).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_failed_job_is_transient_and_the_retry_succeeds() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    emu.fail_next_job("Volume create failed: node busy, retry later");
    let w = want("t1_data", 1024, &["10.1.0.0/24"]);
    let err = ontap.ensure_volume(&w).await.unwrap_err();
    match &err {
        StorageError::JobFailed { message, code, .. } => {
            assert!(message.contains("node busy"), "{message}");
            assert_eq!(*code, codes::INJECTED_JOB_FAILURE.to_string());
        }
        other => panic!("expected a failed job, got {other}"),
    }
    assert!(err.is_transient());
    assert!(emu.volumes().is_empty());
    let changes = ontap.ensure_volume(&w).await.unwrap();
    assert!(
        changes
            .iter()
            .any(|c| c.starts_with("create volume t1_data")),
        "{changes:?}"
    );
    assert_eq!(emu.volume("t1_data").unwrap().size, 1024 * MIB);
}

#[tokio::test]
async fn no_space_is_a_permanent_error_naming_space() {
    let emu = emulator(10 * GIB);
    let ontap = array(&emu);
    let err = ontap
        .ensure_volume(&want("t1_data", 20 * 1024, &["10.1.0.0/24"]))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::NoSpace { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("space"), "{err}");
    assert!(emu.volumes().is_empty());

    // Growing past the aggregate fails the same way and leaves the volume as it was.
    ontap
        .ensure_volume(&want("t1_data", 8 * 1024, &["10.1.0.0/24"]))
        .await
        .unwrap();
    let err = ontap
        .ensure_volume(&want("t1_data", 12 * 1024, &["10.1.0.0/24"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::NoSpace { ref what, .. } if what.contains("resize")),
        "{err}"
    );
    assert_eq!(emu.volume("t1_data").unwrap().size, 8 * GIB);
}

#[tokio::test]
async fn a_bad_password_is_unauthorized() {
    let emu = emulator(1 << 40);
    let mut cfg = config(&emu);
    cfg.password = "wrong".into();
    let ontap = OntapArray::new(cfg).unwrap();
    let err = ontap.volumes("").await.unwrap_err();
    assert!(
        matches!(err, StorageError::Unauthorized { status: 401, .. }),
        "{err}"
    );
    assert!(!err.is_transient());
    let err = ontap
        .ensure_volume(&want("t1_data", 1024, &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Unauthorized { .. }), "{err}");
    assert!(emu.jobs().is_empty());
}

#[tokio::test]
async fn server_errors_and_lost_connections_are_transient() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    emu.inject(Fault::status("/api/storage/volumes", 503).times(1));
    let err = ontap.volumes("").await.unwrap_err();
    assert!(
        matches!(err, StorageError::Api { status: 503, .. }),
        "{err}"
    );
    assert!(err.is_transient());
    emu.drop_requests(Some(Method::GET), "/api/storage/aggregates", 1);
    let err = ontap.capacity().await.unwrap_err();
    assert!(matches!(err, StorageError::Transport { .. }), "{err}");
    assert!(err.is_transient());
    // Both faults are used up.
    assert!(ontap.volumes("").await.unwrap().is_empty());
    assert_eq!(ontap.capacity().await.unwrap().total_mib, 1 << 20);
}

#[tokio::test]
async fn a_job_that_never_finishes_times_out() {
    let emu = emulator(1 << 40);
    let mut cfg = config(&emu);
    cfg.job_timeout = Duration::from_millis(50);
    let ontap = OntapArray::new(cfg).unwrap();
    emu.pause_jobs();
    let err = ontap
        .ensure_volume(&want("t1_data", 1024, &["10.1.0.0/24"]))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::JobTimeout { ref state, .. } if state == "queued"),
        "{err}"
    );
    assert!(err.is_transient());
}

#[tokio::test]
async fn invalid_requests_are_refused_before_anything_is_sent() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    for w in [
        want("1bad", 1024, &[]),
        want("t1-data", 1024, &[]),
        want("t1", 0, &[]),
    ] {
        let err = ontap.ensure_volume(&w).await.unwrap_err();
        assert!(matches!(err, StorageError::Invalid(_)), "{err}");
        assert!(!err.is_transient());
    }
    assert!(matches!(
        ontap.volumes("t1*").await.unwrap_err(),
        StorageError::Invalid(_)
    ));
    assert!(emu.requests().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The emulator's REST face, spoken to directly.

async fn call(
    emu: &OntapEmulator,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (StatusCode, Value) {
    let d = OntapEmulatorConfig::default();
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{}:{}", d.username, d.password)
        )
    );
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, auth)
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body.unwrap_or("").to_owned())))
        .unwrap();
    let resp = HttpEndpoint::new(&emu.url(), None)
        .unwrap()
        .send(req)
        .await
        .unwrap();
    let status = resp.status();
    let v = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
    (status, v)
}

#[tokio::test]
async fn unknown_uuids_and_bad_bodies_answer_ontap_errors() {
    let emu = emulator(1 << 40);
    let (status, v) = call(&emu, Method::GET, "/api/storage/volumes/no-such-uuid", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["error"]["code"], codes::NOT_FOUND);
    let (status, _) = call(&emu, Method::DELETE, "/api/storage/quota/rules/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = call(&emu, Method::GET, "/api/cluster/jobs/nope", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, v) = call(
        &emu,
        Method::POST,
        "/api/storage/volumes",
        Some("{not json"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["target"], "body");
    let (status, v) = call(
        &emu,
        Method::POST,
        "/api/storage/volumes",
        Some(r#"{"name":"v1","svm":{"name":"svm1"},"aggregates":[{"name":"aggr1"}],"size":"big"}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["target"], "size");
    let (status, v) = call(
        &emu,
        Method::POST,
        "/api/storage/volumes",
        Some(r#"{"svm":{"name":"svm1"},"aggregates":[{"name":"aggr1"}]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["target"], "name");
    let (status, v) = call(
        &emu,
        Method::POST,
        "/api/storage/volumes",
        Some(
            r#"{"name":"v1","svm":{"name":"svm1"},"aggregates":[{"name":"aggr1"}],"colour":"red"}"#,
        ),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], codes::UNEXPECTED_ARGUMENT);
    assert_eq!(v["error"]["target"], "colour");
    let (status, v) = call(
        &emu,
        Method::POST,
        "/api/protocols/nfs/export-policies",
        Some(r#"{"name":"p","svm":{"name":"svm1"},"rules":[{"clients":[{"match":"10.1.0.1/24"}],"ro_rule":["sys"],"rw_rule":["sys"]}]}"#),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["error"]["code"], codes::CLIENTMATCH_HOST_BITS);
    assert!(emu.jobs().is_empty());
}

#[tokio::test]
async fn a_policy_in_use_cannot_be_deleted_and_duplicates_fail_in_the_job() {
    let emu = emulator(1 << 40);
    let ontap = array(&emu);
    ontap
        .ensure_volume(&want("t1_data", 1024, &["10.1.0.0/24"]))
        .await
        .unwrap();
    let (_, v) = call(
        &emu,
        Method::GET,
        "/api/protocols/nfs/export-policies?name=t1_data&fields=rules",
        None,
    )
    .await;
    assert_eq!(v["num_records"], 1);
    let rule = &v["records"][0]["rules"][0];
    assert_eq!(rule["clients"], json!([{"match": "10.1.0.0/24"}]));
    assert_eq!(rule["protocols"], json!(["nfs"]));
    assert_eq!(rule["superuser"], json!(["none"]));
    let id = v["records"][0]["id"].as_u64().unwrap();
    let (status, v) = call(
        &emu,
        Method::DELETE,
        &format!("/api/protocols/nfs/export-policies/{id}"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"]["code"], codes::POLICY_IN_USE);

    // Without fields= a record carries only its identity.
    let (_, v) = call(&emu, Method::GET, "/api/storage/volumes?name=t1_*", None).await;
    let rec = v["records"][0].as_object().unwrap();
    assert!(rec.contains_key("uuid") && rec.contains_key("name") && !rec.contains_key("size"));

    // A second create of the name is accepted, then fails in its job.
    let (status, v) = call(
        &emu,
        Method::POST,
        "/api/storage/volumes",
        Some(r#"{"name":"t1_data","svm":{"name":"svm1"},"aggregates":[{"name":"aggr1"}],"size":104857600}"#),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let href = v["job"]["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .to_owned();
    let start = Instant::now();
    let job = loop {
        let (_, j) = call(&emu, Method::GET, &href, None).await;
        if j["state"] == "failure" || j["state"] == "success" {
            break j;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "job stuck: {j}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    assert_eq!(job["state"], "failure");
    assert_eq!(job["code"], codes::DUPLICATE_VOLUME_NAME);
    assert!(
        job["message"]
            .as_str()
            .unwrap()
            .contains("Duplicate volume name")
    );
    assert_eq!(emu.volumes().len(), 1);
}
