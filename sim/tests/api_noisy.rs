//! Noisy neighbour (R9): tenant A floods the API far past its rate limit; tenant B, within its
//! own limit, keeps getting answers. The assertion is on B's success rate (>= 99.9 %); B's
//! latency with and without the flood is printed (timings are for the benchmark, not a test).

mod api_support;

use std::time::{Duration, Instant};

use meridian_proto::v1 as proto;
use tonic::Code;

const RATE: f64 = 50.0;

async fn tenant_b_round(
    c: &mut meridian_client::Clients,
    id: &str,
    n: usize,
) -> (usize, Vec<Duration>) {
    let mut ok = 0;
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        if c.placement
            .get_workload(proto::GetWorkloadRequest { id: id.into() })
            .await
            .is_ok()
        {
            ok += 1;
        }
        latencies.push(t.elapsed());
        // 20 requests/s: well inside B's limit.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort();
    (ok, latencies)
}

fn p99(l: &[Duration]) -> Duration {
    l[(l.len() * 99 / 100).min(l.len() - 1)]
}

/// Central limited to [`RATE`] per tenant, and tenant B's round alone.
struct Quiet {
    api: api_support::TestApi,
    people: Vec<(String, proto::Role, String)>,
    b: meridian_client::Clients,
    b_workload: String,
    base: Vec<Duration>,
}

async fn quiet_tenant() -> Quiet {
    let api = api_support::start(4, |c| {
        c.api.rate_per_second = RATE;
        c.api.rate_burst = RATE;
    })
    .await;
    let people = api.people().await;
    let b_secret = &people.iter().find(|p| p.0 == "globex-dev").unwrap().2;
    let mut b = api.clients(b_secret).await;
    let b_workload = api_support::create(&mut b, "steady").await;
    let (base_ok, base) = tenant_b_round(&mut b, &b_workload, 40).await;
    assert_eq!(base_ok, 40, "tenant B failed without any flood");
    Quiet {
        api,
        people,
        b,
        b_workload,
        base,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_flooding_past_its_limit_does_not_starve_another() {
    let Quiet {
        api,
        people,
        mut b,
        b_workload,
        base,
    } = quiet_tenant().await;
    let secret = |u: &str| people.iter().find(|p| p.0 == u).unwrap().2.clone();

    // A floods open loop at 100x its limit, from its own runtime.
    let flood = meridian_sim::bench::noisy::Flood::start(
        meridian_client::Target {
            endpoint: api.endpoint.clone(),
            token: secret("acme-dev"),
            ca: Some(api.ca.clone()),
        },
        100.0 * RATE,
    );
    let (flood_ok, flooded) = tenant_b_round(&mut b, &b_workload, 60).await;
    // While it floods, A's own refusals say when to come back.
    let mut a = api.clients(&secret("acme-dev")).await;
    let refused = loop {
        match a
            .placement
            .list_workloads(proto::ListWorkloadsRequest::default())
            .await
        {
            Err(s) => break s,
            Ok(_) => continue,
        }
    };
    let counts = flood.stop().unwrap();
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.metadata().get("retry-after-ms").is_some());
    println!(
        "R9: tenant A offered {:.0} req/s ({:.0}x its limit of {RATE}/s), {} refused, {} other \
         errors; tenant B {flood_ok}/60 ok, p99 {:?} under flood vs {:?} alone ({:.2}x)",
        counts.offered_per_second,
        counts.offered_per_second / RATE,
        counts.limited,
        counts.other_errors,
        p99(&flooded),
        p99(&base),
        p99(&flooded).as_secs_f64() / p99(&base).as_secs_f64()
    );
    // A really was far past its limit, and was refused for it rather than served.
    assert!(
        counts.offered_per_second > 20.0 * RATE,
        "the flood only reached {:.0} req/s",
        counts.offered_per_second
    );
    assert!(counts.limited > 0);
    assert_eq!(counts.other_errors, 0);
    // B: >= 99.9 % of 60 means all of them.
    assert_eq!(flood_ok, 60, "tenant B lost requests to A's flood");
    api.central.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_bad_tokens_from_another_address_does_not_starve_a_tenant() {
    let Quiet {
        api,
        mut b,
        b_workload,
        base,
        ..
    } = quiet_tenant().await;
    let budget = api.central.config().api.auth_failure_burst;
    let per_second = api.central.config().api.auth_failures_per_second;

    // Well-formed tokens nobody issued, open loop, from 127.0.0.2 (tenant B is 127.0.0.1):
    // without a limit each costs a hash and a store lookup.
    let started = Instant::now();
    let flood = meridian_sim::bench::noisy::Flood::start_from(
        meridian_client::Target {
            endpoint: api.endpoint.clone(),
            token: format!("tok-0123456789ab.{}", "0".repeat(64)),
            ca: Some(api.ca.clone()),
        },
        100.0 * RATE,
        Some("127.0.0.2".parse().unwrap()),
    );
    let (flood_ok, flooded) = tenant_b_round(&mut b, &b_workload, 60).await;
    let counts = flood.stop().unwrap();
    let seconds = started.elapsed().as_secs_f64();
    let failures = api.central.api().services().auth_failures();
    let failed = failures.failed.load(std::sync::atomic::Ordering::Relaxed);
    let refused = failures.refused.load(std::sync::atomic::Ordering::Relaxed);
    println!(
        "R9 unauthenticated: 127.0.0.2 offered {:.0} req/s of bad tokens; {} refused unread, {} \
         read and failed; tenant B {flood_ok}/60 ok, p99 {:?} under flood vs {:?} alone ({:.2}x)",
        counts.offered_per_second,
        counts.limited,
        counts.other_errors,
        p99(&flooded),
        p99(&base),
        p99(&flooded).as_secs_f64() / p99(&base).as_secs_f64()
    );
    assert!(
        counts.offered_per_second > 20.0 * RATE,
        "the flood only reached {:.0} req/s",
        counts.offered_per_second
    );
    // Past its budget the address is refused before its token is read: the failures that
    // were read (hashed and looked up) stay within the budget of the flood's duration.
    assert!(counts.limited > 0 && refused > 0, "{counts:?}, {refused}");
    let read_at_most = budget + per_second * seconds + 1.0;
    assert!(
        (counts.other_errors as f64) <= read_at_most && (failed as f64) <= read_at_most,
        "{} (server: {failed}) bad tokens were read in {seconds:.1} s; at most {read_at_most:.0} may be",
        counts.other_errors
    );
    assert_eq!(
        flood_ok, 60,
        "tenant B lost requests to the flood of bad tokens"
    );
    api.central.shutdown().await;
}
