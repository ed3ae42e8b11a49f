//! R9: a noisy tenant. Tenant A floods the API far past its rate limit while tenant B keeps a
//! steady rate inside its own; then a caller with no valid token floods it from another
//! address (127.0.0.2). B's success rate and p99 under each flood are compared with B alone,
//! measured in the same run. The floods run on their own runtime, like a separate client
//! machine would.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_client::{Clients, Target};
use meridian_proto::v1 as proto;

use super::percentile;
use crate::fleet::{self, FleetSpec};

/// What R9 measured.
#[derive(Debug, Clone)]
pub struct NoisyReport {
    /// Tenant A's limit, requests/s.
    pub limit: f64,
    /// What A sent, requests/s.
    pub flood_rate: f64,
    /// Of A's requests, refused by the limiter.
    pub flood_limited: u64,
    /// B alone: successes, requests, p99.
    pub alone: (u64, u64, Duration),
    /// B under the flood: successes, requests, p99.
    pub flooded: (u64, u64, Duration),
    /// What the unauthenticated caller sent, requests/s.
    pub bad_token_rate: f64,
    /// Of its requests, refused before their token was read.
    pub bad_token_refused: u64,
    /// Of its requests, read and failed (within the address's failure budget).
    pub bad_token_read: u64,
    /// B under the flood of bad tokens: successes, requests, p99.
    pub bad_token_flooded: (u64, u64, Duration),
}

const LIMIT: f64 = 100.0;
const B_RATE: u64 = 50;

async fn steady(c: &mut Clients, id: &str, seconds: u64) -> (u64, u64, Duration) {
    let mut lat = Vec::new();
    let mut ok = 0;
    let period = Duration::from_millis(1000 / B_RATE);
    let mut next = Instant::now();
    let end = Instant::now() + Duration::from_secs(seconds);
    while Instant::now() < end {
        let t = Instant::now();
        if c.placement
            .get_workload(proto::GetWorkloadRequest { id: id.into() })
            .await
            .is_ok()
        {
            ok += 1;
        }
        lat.push(t.elapsed());
        next += period;
        tokio::time::sleep_until(next.into()).await;
    }
    lat.sort();
    let p99 = percentile(&lat, 0.99);
    (ok, lat.len() as u64, p99)
}

async fn tenant_token(admin: &mut Clients, id: &str) -> Result<String, Box<dyn std::error::Error>> {
    let tenant: proto::Tenant = meridian_common::model::Tenant {
        id: meridian_common::ids::TenantId::parse(id)?,
        name: meridian_common::ids::Name::parse(id)?,
        quotas: meridian_common::model::Quotas {
            gpus_per_model: [(meridian_common::model::GpuModel::H100_80GB, 8)].into(),
            mig_slices: 0,
            concurrent_reservations: 10,
            sites: 10,
            storage_mib: 0,
        },
        residency: Default::default(),
        weights: Default::default(),
        max_priority: 10,
        network: None,
    }
    .into();
    admin
        .tenants
        .create_tenant(proto::CreateTenantRequest {
            tenant: Some(tenant),
        })
        .await?;
    let user = format!("{id}-dev");
    let user = admin
        .tenants
        .create_user(proto::CreateUserRequest {
            user: Some(proto::User {
                id: user.clone(),
                tenant: id.into(),
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
    Ok(admin
        .tenants
        .create_api_token(proto::CreateApiTokenRequest {
            user,
            role: None,
            ttl_ms: 3_600_000,
        })
        .await?
        .into_inner()
        .secret)
}

/// Runs R9 for `seconds` per phase and prints the result.
pub async fn run(seconds: u64) -> Result<NoisyReport, Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let mut config = CentralConfig {
        data_dir: dir.path().to_owned(),
        ..CentralConfig::default()
    };
    config.channel.listen = "127.0.0.1:0".parse()?;
    config.api.listen = "127.0.0.1:0".parse()?;
    config.console.listen = "127.0.0.1:0".parse()?;
    config.metrics.listen = "127.0.0.1:0".parse()?;
    config.api.rate_per_second = LIMIT;
    config.api.rate_burst = LIMIT;
    let central = Central::open(config).await?;
    let fleet = fleet::generate(&FleetSpec::with_sites(42, 20));
    let admin = fleet::load_with_admin(&central, &fleet).await?;
    let ca = dir.path().join("ca").join("ca.crt");
    let endpoint = format!("https://{}", central.api().local_addr());
    let target = |token: &str| Target {
        endpoint: endpoint.clone(),
        token: token.to_owned(),
        ca: Some(ca.clone()),
    };
    let mut a_admin = target(&admin).connect().await?;
    let a_token = tenant_token(&mut a_admin, "noisy-a").await?;
    let b_token = tenant_token(&mut a_admin, "quiet-b").await?;
    let mut b = target(&b_token).connect().await?;
    let spec: proto::WorkloadSpec =
        serde_json::from_value::<meridian_common::model::WorkloadSpec>(serde_json::json!({
            "name": "steady", "kind": "batch_job", "replicas": 1,
            "resources": {"accelerator": "none"}, "constraints": {}
        }))?
        .into();
    let b_id = b
        .placement
        .create_workload(proto::CreateWorkloadRequest {
            spec: Some(spec),
            tenant: String::new(),
        })
        .await?
        .into_inner()
        .workload
        .ok_or("no workload")?
        .id;

    let alone = steady(&mut b, &b_id, seconds).await;

    let flood = Flood::start(target(&a_token), 100.0 * LIMIT);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let flooded = steady(&mut b, &b_id, seconds).await;
    let flood = flood.stop()?;

    // Well-formed tokens nobody issued, from another address.
    let bad = Flood::start_from(
        target(&format!("tok-0123456789ab.{}", "0".repeat(64))),
        100.0 * LIMIT,
        Some(std::net::IpAddr::from([127, 0, 0, 2])),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let bad_token_flooded = steady(&mut b, &b_id, seconds).await;
    let bad = bad.stop()?;
    central.shutdown().await;
    let report = NoisyReport {
        limit: LIMIT,
        flood_rate: flood.offered_per_second,
        flood_limited: flood.limited,
        alone,
        flooded,
        bad_token_rate: bad.offered_per_second,
        bad_token_refused: bad.limited,
        bad_token_read: bad.other_errors,
        bad_token_flooded,
    };
    let pct = |(ok, n, _): (u64, u64, Duration)| 100.0 * ok as f64 / n.max(1) as f64;
    println!("R9 noisy tenant (rate limit {LIMIT}/s per tenant)");
    println!(
        "  tenant A: offered {:.0} req/s ({:.0}x its limit), {} refused by the limiter",
        report.flood_rate,
        report.flood_rate / LIMIT,
        report.flood_limited
    );
    println!(
        "  tenant B alone:      {:.2} % ok of {}, p99 {:.2} ms",
        pct(report.alone),
        report.alone.1,
        report.alone.2.as_secs_f64() * 1e3
    );
    println!(
        "  tenant B under flood: {:.2} % ok of {}, p99 {:.2} ms ({:.2}x alone)   target >= 99.9 %, p99 <= 1.5x",
        pct(report.flooded),
        report.flooded.1,
        report.flooded.2.as_secs_f64() * 1e3,
        report.flooded.2.as_secs_f64() / report.alone.2.as_secs_f64().max(1e-9)
    );
    println!(
        "  127.0.0.2, bad tokens: offered {:.0} req/s, {} refused unread, {} read and failed",
        report.bad_token_rate, report.bad_token_refused, report.bad_token_read
    );
    println!(
        "  tenant B under bad tokens: {:.2} % ok of {}, p99 {:.2} ms ({:.2}x alone)   target >= 99.9 %, p99 <= 1.5x",
        pct(report.bad_token_flooded),
        report.bad_token_flooded.1,
        report.bad_token_flooded.2.as_secs_f64() * 1e3,
        report.bad_token_flooded.2.as_secs_f64() / report.alone.2.as_secs_f64().max(1e-9)
    );
    Ok(report)
}

/// What a flood did.
#[derive(Debug, Clone, Copy)]
pub struct FloodCounts {
    /// Requests sent per second (open loop: whether or not answers came back).
    pub offered_per_second: f64,
    /// Requests sent.
    pub sent: u64,
    /// Answered `RESOURCE_EXHAUSTED`.
    pub limited: u64,
    /// Answered with any other error.
    pub other_errors: u64,
}

/// An open-loop flood: `ListWorkloads` at a fixed rate from its own thread and runtime, over
/// several connections, whatever the answers and however late they come.
#[derive(Debug)]
pub struct Flood {
    stop: Arc<AtomicBool>,
    counts: Arc<[AtomicU64; 3]>,
    thread: std::thread::JoinHandle<Duration>,
}

impl Flood {
    /// Starts sending `per_second` requests per second as `target`.
    pub fn start(target: Target, per_second: f64) -> Flood {
        Flood::start_from(target, per_second, None)
    }

    /// Like [`Flood::start`], from the local address `source` (127.0.0.2: a flooder that is
    /// not the quiet tenant's address).
    pub fn start_from(target: Target, per_second: f64, source: Option<std::net::IpAddr>) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let counts: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let thread = {
            let (stop, counts) = (Arc::clone(&stop), Arc::clone(&counts));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .expect("runtime");
                rt.block_on(async move {
                    let mut clients = Vec::new();
                    for _ in 0..8 {
                        clients.push(target.connect_from(source).await.expect("connect"));
                    }
                    // Bounded only to keep the client's memory finite: 8 connections x 256
                    // streams.
                    let slots = Arc::new(tokio::sync::Semaphore::new(2048));
                    let started = Instant::now();
                    let mut tick = tokio::time::interval(Duration::from_millis(1));
                    let per_tick = per_second / 1000.0;
                    let mut due = 0.0;
                    let mut n = 0usize;
                    while !stop.load(Ordering::Relaxed) {
                        tick.tick().await;
                        due += per_tick;
                        while due >= 1.0 {
                            due -= 1.0;
                            counts[0].fetch_add(1, Ordering::Relaxed);
                            let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                                continue;
                            };
                            let mut c = clients[n % clients.len()].clone();
                            n += 1;
                            let counts = Arc::clone(&counts);
                            tokio::spawn(async move {
                                let r = c
                                    .placement
                                    .list_workloads(proto::ListWorkloadsRequest::default())
                                    .await;
                                match r {
                                    Err(s) if s.code() == tonic::Code::ResourceExhausted => {
                                        counts[1].fetch_add(1, Ordering::Relaxed);
                                    }
                                    Err(_) => {
                                        counts[2].fetch_add(1, Ordering::Relaxed);
                                    }
                                    Ok(_) => {}
                                }
                                drop(permit);
                            });
                        }
                    }
                    started.elapsed()
                })
            })
        };
        Flood {
            stop,
            counts,
            thread,
        }
    }

    /// Stops the flood and says what it did.
    pub fn stop(self) -> Result<FloodCounts, Box<dyn std::error::Error>> {
        self.stop.store(true, Ordering::Relaxed);
        let elapsed = self.thread.join().map_err(|_| "flood thread panicked")?;
        let sent = self.counts[0].load(Ordering::Relaxed);
        Ok(FloodCounts {
            offered_per_second: sent as f64 / elapsed.as_secs_f64().max(1e-9),
            sent,
            limited: self.counts[1].load(Ordering::Relaxed),
            other_errors: self.counts[2].load(Ordering::Relaxed),
        })
    }
}
