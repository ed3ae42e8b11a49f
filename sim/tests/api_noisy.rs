//! Noisy neighbour (R9): tenant A floods the API far past its rate limit; tenant B, within its
//! own limit, keeps getting answers. The assertion is on B's success rate (>= 99.9 %); B's
//! latency with and without the flood is printed (timings are for the benchmark, not a test).

mod api_support;

use std::time::{Duration, Instant};

use meridian_proto::v1 as proto;
use tonic::Code;

const RATE: f64 = 50.0;

async fn tenant_b_round(
    c: &mut meridian_central::cli::Clients,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_flooding_past_its_limit_does_not_starve_another() {
    let api = api_support::start(4, |c| {
        c.api.rate_per_second = RATE;
        c.api.rate_burst = RATE;
    })
    .await;
    let people = api.people().await;
    let secret = |u: &str| people.iter().find(|p| p.0 == u).unwrap().2.clone();
    let mut b = api.clients(&secret("globex-dev")).await;
    let b_workload = api_support::create(&mut b, "steady").await;

    let (base_ok, base) = tenant_b_round(&mut b, &b_workload, 40).await;
    assert_eq!(base_ok, 40, "tenant B failed without any flood");

    // A floods open loop at 100x its limit, from its own runtime.
    let flood = meridian_sim::bench::noisy::Flood::start(
        meridian_central::cli::Target {
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
