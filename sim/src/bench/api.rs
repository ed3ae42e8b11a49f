//! B9: the tenant gRPC API under load, with the load generator on the same machine.
//!
//! A real central (TLS from its CA, bearer tokens, rate limits, audit) over a generated fleet;
//! 50 tenants with a token each; 1,000 workloads. The load generator runs on its own tokio
//! runtime, over several HTTP/2 connections with many requests in flight, and measures, one
//! phase after another:
//! - the baseline: `grpc.health.v1.Health/Check` through the same server, TLS and client
//!   (no token, no store): tonic's own floor on this machine;
//! - authenticated `GetWorkload` of random workloads of the caller's tenant;
//! - authenticated `DryRun` placements of a one-GPU workload over the whole fleet.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_client::{Clients, Target};
use meridian_proto::v1 as proto;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::percentile;
use crate::fleet::{self, FleetSpec};

/// Options of `meridian-sim bench api`.
#[derive(Debug, Clone)]
pub struct ApiBenchOptions {
    pub sites: usize,
    pub seconds: u64,
    pub connections: usize,
    pub in_flight: usize,
    /// Tenants, each with a token (50 by default).
    pub tenants: usize,
    /// Workloads created before the measured phases (1,000 by default).
    pub workloads: usize,
}

impl ApiBenchOptions {
    /// The defaults of `meridian-sim bench api`: 1,000 sites and 5 s phases (10,000 sites and
    /// 15 s with `full`).
    pub fn new(full: bool) -> Self {
        ApiBenchOptions {
            sites: if full { 10_000 } else { 1_000 },
            seconds: if full { 15 } else { 5 },
            connections: 4,
            in_flight: 8,
            tenants: TENANTS,
            workloads: WORKLOADS,
        }
    }
}

/// One phase's figures.
#[derive(Debug, Clone)]
pub struct Phase {
    pub name: &'static str,
    pub requests: u64,
    pub errors: u64,
    pub per_second: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct ApiBenchReport {
    pub phases: Vec<Phase>,
}

#[derive(Clone, Copy)]
enum Call {
    Health,
    Get,
    DryRun,
}

const TENANTS: usize = 50;
const WORKLOADS: usize = 1_000;

/// Runs B9 and prints the table.
pub async fn run(options: &ApiBenchOptions) -> Result<ApiBenchReport, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = CentralConfig {
        data_dir: dir.path().to_owned(),
        ..CentralConfig::default()
    };
    config.channel.listen = "127.0.0.1:0".parse()?;
    config.api.listen = "127.0.0.1:0".parse()?;
    config.console.listen = "127.0.0.1:0".parse()?;
    config.metrics.listen = "127.0.0.1:0".parse()?;
    // One load generator speaks for every tenant: lift the per-tenant limit out of the way.
    config.api.rate_per_second = 1e9;
    config.api.rate_burst = 1e9;
    config.api.max_streams_per_connection = 1024;
    let central = Central::open(config).await?;
    eprintln!("B9: loading a {}-site fleet ...", options.sites);
    let fleet = fleet::generate(&FleetSpec::with_sites(42, options.sites));
    let admin = fleet::load_with_admin(&central, &fleet).await?;
    let endpoint = format!("https://{}", central.api().local_addr());
    let ca = dir.path().join("ca").join("ca.crt");
    let target = |token: &str| Target {
        endpoint: endpoint.clone(),
        token: token.to_owned(),
        ca: Some(ca.clone()),
    };
    let mut a = target(&admin).connect().await?;
    // Every tenant gets at least one workload (GetWorkload picks one of the caller's).
    let tenants = options.tenants.max(1);
    let workloads = options.workloads.max(tenants);
    eprintln!("B9: {tenants} tenants, their tokens and {workloads} workloads ...");
    let mut tokens = Vec::new();
    for i in 0..tenants {
        let id = format!("bench-{i:02}");
        let mut tenant = proto::Tenant::from(fleet.tenants[i % fleet.tenants.len()].clone());
        tenant.id = id.clone();
        tenant.name = id.clone();
        tenant.network = None;
        tenant.max_priority = 1000;
        a.tenants
            .create_tenant(proto::CreateTenantRequest {
                tenant: Some(tenant),
            })
            .await?;
        let user = format!("{id}-dev");
        let user = a
            .tenants
            .create_user(proto::CreateUserRequest {
                user: Some(proto::User {
                    id: user.clone(),
                    tenant: id.clone(),
                    role: proto::Role::TenantMember as i32,
                    display_name: user.clone(),
                    created_at: 0,
                }),
            })
            .await?
            .into_inner()
            .user
            .ok_or("no user")?
            .id;
        let secret = a
            .tenants
            .create_api_token(proto::CreateApiTokenRequest {
                user,
                role: None,
                ttl_ms: 3_600_000,
            })
            .await?
            .into_inner()
            .secret;
        tokens.push(secret);
    }
    let spec = dry_run_spec();
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); tenants];
    for i in 0..workloads {
        let mut c = target(&tokens[i % tenants]).connect().await?;
        let w = c
            .placement
            .create_workload(proto::CreateWorkloadRequest {
                spec: Some(spec.clone()),
                tenant: String::new(),
            })
            .await?
            .into_inner()
            .workload
            .ok_or("no workload")?;
        ids[i % tenants].push(w.id);
    }
    let mut phases = Vec::new();
    for (name, call) in [
        ("health check (baseline)", Call::Health),
        ("GetWorkload (authenticated)", Call::Get),
        ("DryRun (authenticated)", Call::DryRun),
    ] {
        let phase = load(
            name,
            call,
            options,
            &endpoint,
            &ca,
            &tokens,
            &ids,
            spec.clone(),
        )?;
        eprintln!(
            "B9: {name}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors",
            phase.per_second,
            phase.p50.as_secs_f64() * 1e3,
            phase.p99.as_secs_f64() * 1e3,
            phase.errors
        );
        phases.push(phase);
    }
    central.shutdown().await;
    let report = ApiBenchReport { phases };
    print_table(&report);
    Ok(report)
}

fn dry_run_spec() -> proto::WorkloadSpec {
    let s: meridian_common::model::WorkloadSpec = serde_json::from_value(serde_json::json!({
        "name": "bench",
        "kind": "inference_endpoint",
        "replicas": 1,
        "priority": 1,
        "resources": {
            "accelerator": {"whole_gpus": {"model": "H100-80GB", "count": 1}},
            "cpu_cores": 4,
            "memory_mib": 16384
        },
        "constraints": {}
    }))
    .expect("bench spec");
    s.into()
}

/// Runs one phase on a separate runtime (the load generator) and collects latencies.
#[allow(clippy::too_many_arguments)]
fn load(
    name: &'static str,
    call: Call,
    options: &ApiBenchOptions,
    endpoint: &str,
    ca: &std::path::Path,
    tokens: &[String],
    ids: &[Vec<String>],
    spec: proto::WorkloadSpec,
) -> Result<Phase, Box<dyn std::error::Error>> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let seconds = options.seconds;
    let (connections, in_flight) = (options.connections, options.in_flight);
    let endpoint = endpoint.to_owned();
    let ca = ca.to_owned();
    let tokens = tokens.to_vec();
    let ids = Arc::new(ids.to_vec());
    let result = std::thread::spawn(move || {
        runtime.block_on(async move {
            let stop = Arc::new(AtomicBool::new(false));
            let mut tasks = Vec::new();
            for conn in 0..connections {
                let tenant = conn % tokens.len();
                let clients: Clients = Target {
                    endpoint: endpoint.clone(),
                    token: tokens[tenant].clone(),
                    ca: Some(ca.clone()),
                }
                .connect()
                .await
                .expect("connect");
                let tls = tonic::transport::ClientTlsConfig::new().ca_certificate(
                    tonic::transport::Certificate::from_pem(std::fs::read(&ca).expect("ca")),
                );
                let health_channel = tonic::transport::Endpoint::from_shared(endpoint.clone())
                    .expect("endpoint")
                    .tls_config(tls)
                    .expect("tls")
                    .connect_lazy();
                for k in 0..in_flight {
                    let mut c = clients.clone();
                    let mut health = HealthClient::new(health_channel.clone());
                    let stop = Arc::clone(&stop);
                    let ids = Arc::clone(&ids);
                    let spec = spec.clone();
                    tasks.push(tokio::spawn(async move {
                        let mut lat = Vec::with_capacity(100_000);
                        let mut errors = 0u64;
                        let mut n = k;
                        while !stop.load(Ordering::Relaxed) {
                            n = n
                                .wrapping_mul(6364136223846793005)
                                .wrapping_add(1442695040888963407);
                            let t = Instant::now();
                            let ok = match call {
                                Call::Health => health
                                    .check(HealthCheckRequest {
                                        service: String::new(),
                                    })
                                    .await
                                    .is_ok(),
                                Call::Get => {
                                    let mine = &ids[tenant];
                                    let id = mine[(n >> 33) % mine.len()].clone();
                                    c.placement
                                        .get_workload(proto::GetWorkloadRequest { id })
                                        .await
                                        .is_ok()
                                }
                                Call::DryRun => c
                                    .placement
                                    .dry_run(proto::DryRunRequest {
                                        spec: Some(spec.clone()),
                                        tenant: String::new(),
                                        max_near_misses: 0,
                                    })
                                    .await
                                    .is_ok(),
                            };
                            lat.push(t.elapsed());
                            if !ok {
                                errors += 1;
                            }
                        }
                        (lat, errors)
                    }));
                }
            }
            // Warm up, then measure.
            tokio::time::sleep(Duration::from_millis(500)).await;
            let started = Instant::now();
            tokio::time::sleep(Duration::from_secs(seconds)).await;
            stop.store(true, Ordering::Relaxed);
            let elapsed = started.elapsed() + Duration::from_millis(500);
            let mut all = Vec::new();
            let mut errors = 0;
            for t in tasks {
                let (lat, e) = t.await.expect("load task");
                all.extend(lat);
                errors += e;
            }
            (all, errors, elapsed)
        })
    })
    .join()
    .map_err(|_| "load generator panicked")?;
    let (mut all, errors, elapsed) = result;
    all.sort();
    Ok(Phase {
        name,
        requests: all.len() as u64,
        errors,
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: percentile(&all, 0.5),
        p99: percentile(&all, 0.99),
    })
}

fn print_table(report: &ApiBenchReport) {
    let base = report.phases.first().map_or(1.0, |p| p.per_second);
    println!("B9 tenant gRPC API (TLS, load generator on the same machine)");
    println!(
        "{:<30} {:>10} {:>9} {:>9} {:>8} {:>10}  target",
        "call", "req/s", "p50 ms", "p99 ms", "errors", "vs health"
    );
    for p in &report.phases {
        println!(
            "{:<30} {:>10.0} {:>9.2} {:>9.2} {:>8} {:>9.2}x  {}",
            p.name,
            p.per_second,
            p.p50.as_secs_f64() * 1e3,
            p.p99.as_secs_f64() * 1e3,
            p.errors,
            p.per_second / base,
            if p.name.contains("baseline") {
                "-"
            } else {
                ">= 20,000 req/s, p99 <= 5 ms"
            }
        );
    }
}
