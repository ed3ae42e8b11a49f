//! Measured latency, end to end: two sites X and Y, both about 5 ms from region `rhein` by the
//! distance estimate, each with an agent probing `rhein` through a UDP echo responder on
//! 127.0.0.1 behind its own fault proxy (one per site's probe path). X's path gets 15 ms each
//! way (30 ms round trip) injected. Once central stored X's measurement, a workload from
//! `rhein` with `max_rtt_ms = 20` goes to Y, not X, although the estimate says 5 ms for both;
//! and with Y full, the dry run's account names X as measured. Central also shows each
//! site's QUIC path RTT and its measured RTTs through the API. Once X stops measuring, its
//! last measurement goes stale and the planner falls back to the estimate.
//!
//! Timing is never asserted beyond the injected delay's lower bound: waits are bounded and
//! generous, for a loaded 2-core machine.

mod api_support;

use std::time::{Duration, Instant};

use meridian_agent::config::{ProbeConfig, ProbeKind};
use meridian_central::server::Central;
use meridian_client::{Clients, Target};
use meridian_common::ids::{TenantId, UserId, WorkloadId};
use meridian_common::model::{Region, ReportBody, Server, Severity};
use meridian_emulators::proxy::FaultProxy;
use meridian_proto::v1 as proto;
use meridian_testkit::echo::EchoServer;
use meridian_testkit::wait::wait_for;
use meridian_testkit::{agents, enrol, observe};

const LIMIT: Duration = Duration::from_secs(90);
const REGION: &str = "rhein";

/// A region about 200 km east of the testkit's sites (Frankfurt): an estimate of ~5 ms.
fn region() -> Region {
    serde_json::from_value(serde_json::json!({
        "id": REGION,
        "name": REGION,
        "location": {"lat": 50.1, "lon": 11.5},
        "country": "DE",
        "population": 1000
    }))
    .unwrap()
}

fn server(site: &str) -> Server {
    serde_json::from_value(serde_json::json!({
        "id": format!("srv-{site}"),
        "site": site,
        "bmc": {"url": format!("https://bmc-{site}.example"), "vendor": "generic"},
        "serial": format!("SN-{site}"),
        "cpu_cores": 64,
        "memory_mib": 524288,
        "gpus": [{"index": 0, "model": "H100-80GB", "memory_mib": 81920, "mig": "disabled", "health": "healthy"}],
        "dpu": null,
        "pool": null,
        "state": "available"
    }))
    .unwrap()
}

/// One H100 for a batch job that must be within 20 ms of `rhein`.
fn spec(name: &str) -> proto::WorkloadSpec {
    let s: meridian_common::model::WorkloadSpec = serde_json::from_value(serde_json::json!({
        "name": name,
        "kind": "batch_job",
        "replicas": 1,
        "priority": 10,
        "resources": {
            "accelerator": {"whole_gpus": {"model": "H100-80GB", "count": 1}},
            "cpu_cores": 4,
            "memory_mib": 16384
        },
        "constraints": {"latency": {"from": [REGION], "max_rtt_ms": 20}}
    }))
    .unwrap();
    s.into()
}

async fn drift(c: &mut Clients, site: &str) -> proto::SiteDrift {
    c.fleet
        .get_site_drift(proto::GetSiteDriftRequest { site: site.into() })
        .await
        .unwrap()
        .into_inner()
        .drift
        .unwrap()
}

fn measured(d: &proto::SiteDrift) -> Option<u32> {
    d.measured_rtts
        .iter()
        .find(|m| m.region == REGION)
        .map(|m| m.rtt_ms)
}

/// The dry run of [`spec`]; an error while the planner has not yet been rebuilt with the new
/// region (it is, within a few seconds of a fleet change).
async fn dry_run(c: &mut Clients) -> Result<proto::DryRunResponse, tonic::Status> {
    Ok(c.placement
        .dry_run(proto::DryRunRequest {
            spec: Some(spec("probe-dry-run")),
            tenant: api_support::ACME.into(),
            max_near_misses: 5,
        })
        .await?
        .into_inner())
}

fn placed_on(r: &proto::DryRunResponse) -> Option<&str> {
    r.placement
        .as_ref()
        .and_then(|p| p.assignments.first())
        .map(|a| a.site.as_str())
}

/// The dry run's account: its explanation and every near miss.
fn account(r: &proto::DryRunResponse) -> String {
    let mut text = r.explanation.clone();
    for m in &r.near_misses {
        text.push_str(&format!("\n{}: {}", m.site, m.detail));
    }
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_measured_rtt_overrides_the_estimate_and_is_shown() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = api_support::config(&dir.path().join("central"));
    // Short, so the test also sees a measurement go stale (agents probe every second).
    config.placement.rtt_max_age_s = 10;
    let central = Central::open(config).await.unwrap();
    let t = central.tables();
    t.regions().create(&region()).await.unwrap();
    for site in ["site-x", "site-y"] {
        enrol::add_site(&central, site).await.unwrap();
        t.servers().create(&server(site)).await.unwrap();
    }
    central.lifecycle().fleet_changed();
    let admin = meridian_central::accounts::bootstrap_admin(
        &t,
        &UserId::parse("admin").unwrap(),
        Duration::from_secs(3600),
        meridian_central::clock::now(),
    )
    .await
    .unwrap()
    .secret;
    let mut c = Target {
        endpoint: format!("https://{}", central.api().local_addr()),
        token: admin,
        ca: Some(dir.path().join("central").join("ca").join("ca.crt")),
    }
    .connect()
    .await
    .unwrap();
    c.tenants
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(api_support::tenant(api_support::ACME)),
        })
        .await
        .unwrap();

    // One echo responder for the region; each site's probe path through its own proxy, X's
    // with 15 ms each way.
    let echo = EchoServer::start().await.unwrap();
    let mut proxies = Vec::new();
    let mut running = Vec::new();
    for (i, site) in ["site-x", "site-y"].into_iter().enumerate() {
        let proxy = FaultProxy::new(echo.addr(), 7 + i as u64);
        let path = proxy.add_site(site).await.unwrap();
        if site == "site-x" {
            proxy.set_delay(Duration::from_millis(15));
        }
        let boot = enrol::write_bootstrap(&central, site, vec![], dir.path())
            .await
            .unwrap();
        let mut config = agents::config(&dir.path().join(site), &boot, 300);
        config.probe = vec![ProbeConfig {
            region: REGION.into(),
            targets: vec![path.to_string()],
            kind: ProbeKind::UdpEcho,
            interval_s: 1,
            timeout_ms: 1_000,
        }];
        let (agent, _) = agents::start_recording(config).await.unwrap();
        proxies.push(proxy);
        running.push(agent);
    }

    // Central stores both sites' measurements and shows them with the path RTTs.
    let deadline = Instant::now() + LIMIT;
    let (x, y) = loop {
        let (x, y) = (drift(&mut c, "site-x").await, drift(&mut c, "site-y").await);
        if measured(&x).is_some()
            && measured(&y).is_some()
            && x.path_rtt_us > 0
            && y.path_rtt_us > 0
        {
            break (x, y);
        }
        assert!(
            Instant::now() < deadline,
            "no measurements and path RTTs at central: {x:?} {y:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let x_rtt = measured(&x).unwrap();
    assert!(
        (30..=60).contains(&x_rtt),
        "X's probe path has 30 ms injected, measured {x_rtt} ms"
    );
    assert!(
        measured(&y).unwrap() < 20,
        "Y's probe path is loopback: {y:?}"
    );
    assert!(x.path_rtt_us > 0 && y.path_rtt_us > 0);

    // The planner picks the measurement up: X is out of a 20 ms bound although its estimate
    // (like Y's) is about 5 ms, so the workload goes to Y.
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = dry_run(&mut c).await;
        if let Ok(r) = &r
            && placed_on(r) == Some("site-y")
        {
            let latency = r
                .rejections
                .iter()
                .find(|j| j.reason == proto::RejectReason::Latency as i32)
                .map_or(0, |j| j.count);
            assert!(latency >= 1, "X is rejected for latency: {r:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the planner never used X's measurement: {r:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let id = c
        .placement
        .create_workload(proto::CreateWorkloadRequest {
            spec: Some(spec("near-rhein")),
            tenant: api_support::ACME.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .workload
        .unwrap()
        .id;
    let deadline = Instant::now() + LIMIT;
    let workload = loop {
        let w = c
            .placement
            .get_workload(proto::GetWorkloadRequest { id: id.clone() })
            .await
            .unwrap()
            .into_inner()
            .workload
            .unwrap();
        if w.state.as_ref().unwrap().phase != proto::ReservationPhase::Pending as i32 {
            break w;
        }
        assert!(Instant::now() < deadline, "{id} stayed pending");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Approved, or already Active once Y applied the intent holding it.
    let state = workload.state.unwrap();
    assert!(
        [
            proto::ReservationPhase::Approved as i32,
            proto::ReservationPhase::Active as i32
        ]
        .contains(&state.phase),
        "{state:?}"
    );
    let placement = central
        .tables()
        .placements()
        .get(&(
            &TenantId::parse(api_support::ACME).unwrap(),
            &WorkloadId::parse(&id).unwrap(),
        ))
        .await
        .unwrap()
        .expect("an approved workload is placed")
        .record;
    assert_eq!(
        placement.assignments[0].site.as_str(),
        "site-y",
        "{placement:?}"
    );

    // Y is full now; only X has a GPU, and it is 30 ms away as measured: unplaceable, and
    // the account names X and says its RTT was measured.
    let deadline = Instant::now() + LIMIT;
    let r = loop {
        let r = dry_run(&mut c).await.unwrap();
        if r.placement.is_none() {
            break r;
        }
        assert!(Instant::now() < deadline, "Y never filled up: {r:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let text = account(&r);
    assert!(text.contains("site-x"), "{text}");
    assert!(text.contains("measured"), "{text}");
    // ... and says so of X itself, among the nearest misses.
    let x_miss = r
        .near_misses
        .iter()
        .find(|m| m.site == "site-x")
        .unwrap_or_else(|| panic!("X is a near miss: {text}"));
    assert!(x_miss.detail.contains("measured"), "{}", x_miss.detail);

    // The CLI's view of the same (JSON of `meridian site drift`) is built from these fields.
    let x = drift(&mut c, "site-x").await;
    assert!(x.path_rtt_us > 0, "{x:?}");

    // X's probe path is cut: its rounds get no answer, so it reports no RTT (and warns once),
    // and once its last measurement is older than `placement.rtt_max_age_s` the planner
    // falls back to the estimate (4.9 ms): the workload fits on X.
    proxies[0].cut_site("site-x", Duration::from_secs(3_600));
    let deadline = Instant::now() + LIMIT;
    loop {
        let r = dry_run(&mut c).await.unwrap();
        if placed_on(&r) == Some("site-x") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "X's stale measurement is still used: {}",
            account(&r)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    wait_for(
        "X's warning that its region does not answer",
        LIMIT,
        || async {
            observe::stored_reports(&central, "site-x")
            .await
            .iter()
            .any(|r| {
                matches!(&r.body, ReportBody::Event { severity: Severity::Warning, resource, .. }
                    if resource == "probe/rhein")
            })
        },
    )
    .await;

    for agent in running {
        agent.shutdown().await;
    }
    for proxy in proxies {
        proxy.shutdown().await;
    }
    central.shutdown().await;
}
