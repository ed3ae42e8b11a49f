//! `/metrics` of central and of the agents, scraped by a real Prometheus (Debian's
//! `prometheus` package, 2.42; `scripts/test.sh` installs it).
//!
//! A two-site simulated fleet (`SimFleet`: a real central and two real agents with their
//! site reconcilers, Redfish BMC emulators and fake NVML GPUs, in this process; every agent
//! serves its own `/metrics`) is scraped every second by a Prometheus child process. A
//! workload holding whole GPUs is placed; then Prometheus' HTTP API must answer:
//!
//! - GPUs held, summed by model, equal to what central's store holds (the placements of the
//!   workloads, by the servers' GPU models);
//! - the fan-out p99 (`histogram_quantile` over the whole histogram) equal to the quantile
//!   of the histogram in central's own `/metrics` text, parsed here: inside the bucket it
//!   falls in, and at the point Prometheus' interpolation gives;
//! - both agents' report buffer depth, and GPU utilisation per GPU, one GPU's set on its fake
//!   NVML and read back.
//!
//! Waits have generous limits and nothing is timed: a loaded 2-core machine only makes it
//! slower.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use meridian_common::ids::{ServerId, SiteId, TenantId};
use meridian_common::model::ReservationState;
use meridian_drivers::gpu::GpuIndex;
use meridian_sim::simfleet::workloads::{self, WorkloadMix};
use meridian_sim::simfleet::{Progress, SimFleet, SimFleetOptions};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Generous: a loaded 2-core machine.
const LIMIT: Duration = Duration::from_secs(90);

/// The utilisation set on one fake GPU, percent.
const SET_GPU_PCT: u32 = 42;
const SET_MEMORY_PCT: u32 = 17;

/// The Prometheus child, killed when dropped (also when the test panics).
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    /// Starts `prometheus` scraping `central` and `agents` every second, data in `dir`.
    fn start(dir: &Path, central: SocketAddr, agents: &[SocketAddr]) -> Prometheus {
        let bin = which("prometheus").unwrap_or_else(|| {
            panic!(
                "prometheus is not installed (Debian package `prometheus`; scripts/test.sh installs it)"
            )
        });
        let targets = |addrs: &[SocketAddr]| {
            addrs
                .iter()
                .map(|a| format!("'{a}'"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: central\n    static_configs:\n      - targets: [{}]\n  \
                 - job_name: agents\n    static_configs:\n      - targets: [{}]\n",
                targets(&[central]),
                targets(agents),
            ),
        )
        .unwrap();
        let port = meridian_testkit::processes::free_port(false);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let log = dir.join("prometheus.log");
        let child = Command::new(bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("prometheus starts");
        Prometheus { child, addr, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query's result vector, or `None` while Prometheus is not answering.
    async fn query(&self, promql: &str) -> Option<Vec<Value>> {
        let q = percent_encoding::utf8_percent_encode(promql, percent_encoding::NON_ALPHANUMERIC);
        let body = http_get(self.addr, &format!("/api/v1/query?query={q}")).await?;
        let v: Value = serde_json::from_str(&body).ok()?;
        if v["status"] != "success" {
            return None;
        }
        v["data"]["result"].as_array().cloned()
    }
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// `GET path` over HTTP/1.1 on a fresh connection; the body of a 200 answer.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut tcp =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr))
            .await
            .ok()?
            .ok()?;
    tcp.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .await
    .ok()?;
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tcp.read_to_end(&mut raw))
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return dechunk(body);
    }
    Some(body.to_owned())
}

fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size + 2..)?;
    }
}

/// The one number of a single-series result (`None`: no series, or several).
fn scalar(result: &[Value]) -> Option<f64> {
    match result {
        [one] => one["value"][1].as_str()?.parse().ok(),
        _ => None,
    }
}

/// A classic histogram's cumulative buckets `(le, count)` in order (+Inf last), parsed from
/// the exposition `text`.
fn buckets(text: &str, name: &str) -> Vec<(f64, f64)> {
    let prefix = format!("{name}_bucket{{le=\"");
    let mut out: Vec<(f64, f64)> = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&prefix)?;
            let (le, count) = rest.split_once("\"} ")?;
            let le = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((le, count.trim().parse().ok()?))
        })
        .collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

/// Prometheus' `histogram_quantile` over cumulative `buckets` (its `bucketQuantile`), and
/// the bucket `(lower, upper]` the quantile falls in.
fn quantile(q: f64, buckets: &[(f64, f64)]) -> (f64, (f64, f64)) {
    let n = buckets.len();
    assert!(n >= 2 && buckets[n - 1].0.is_infinite(), "{buckets:?}");
    let observations = buckets[n - 1].1;
    assert!(observations > 0.0, "no observations: {buckets:?}");
    let mut rank = q * observations;
    let b = buckets[..n - 1]
        .iter()
        .position(|(_, c)| *c >= rank)
        .unwrap_or(n - 1);
    if b == n - 1 {
        return (buckets[n - 2].0, (buckets[n - 2].0, f64::INFINITY));
    }
    let end = buckets[b].0;
    let (start, mut count) = (if b > 0 { buckets[b - 1].0 } else { 0.0 }, buckets[b].1);
    if b > 0 {
        count -= buckets[b - 1].1;
        rank -= buckets[b - 1].1;
    }
    (start + (end - start) * (rank / count), (start, end))
}

/// Polls `f` every 250 ms until it gives a value; panics naming `what` (and Prometheus' log)
/// after [`LIMIT`].
async fn eventually<T, F, Fut>(prometheus: &Prometheus, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "never {what}; prometheus said:\n{}",
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_central_and_the_agents() {
    let started = Instant::now();
    let progress = Progress::quiet();
    // Seed 42's two sites: an edge site, with emulated hardware (its servers' BMCs and fake
    // NVML GPUs), and a core site whose 256 servers central knows from the generator (its
    // agent runs without hardware: emulating them would only make the test slower).
    let options = SimFleetOptions {
        agent_metrics: true,
        heartbeat_ms: 1_000,
        hardware_sites: 1,
        ..SimFleetOptions::new(2, 42)
    };
    let mut fleet = SimFleet::start(&options, &progress)
        .await
        .expect("the fleet starts");
    fleet
        .wait_online(LIMIT, &progress)
        .await
        .expect("both sites online");
    let central = fleet
        .central()
        .metrics_addr()
        .expect("central serves /metrics");
    let hardware: Vec<usize> = fleet.hardware_sites().collect();
    assert_eq!(hardware.len(), 1, "one site with emulated hardware");
    let agents: Vec<SocketAddr> = (0..2)
        .map(|i| fleet.agent_metrics_addr(i).expect("agent /metrics"))
        .collect();

    // One GPU's utilisation, set on its fake NVML.
    let set_server = {
        let hw = fleet.hardware(hardware[0]).unwrap();
        let server = hw
            .servers
            .iter()
            .find(|s| !s.server.gpus.is_empty())
            .expect("a server with GPUs");
        server
            .gpus
            .set_utilisation(GpuIndex(0), SET_GPU_PCT, SET_MEMORY_PCT);
        server.server.id.to_string()
    };

    let dir = tempfile::tempdir().unwrap();
    let prometheus = Prometheus::start(dir.path(), central, &agents);

    // Workloads holding whole GPUs: two of each site's main model (so both sites get a new
    // intent, and the fan-out histogram an acknowledgement from each).
    let tenant = TenantId::parse("metrics").unwrap();
    let mut models = Vec::new();
    for site in &fleet.fleet().sites {
        let servers = fleet.fleet().servers.iter().filter(|s| s.site == site.id);
        models.push(workloads::main_model(servers).expect("GPUs at every site"));
    }
    let mix = WorkloadMix {
        tenants: vec![workloads::open_tenant(tenant.clone())],
        datasets: Vec::new(),
        workloads: models
            .iter()
            .enumerate()
            .map(|(i, model)| {
                workloads::gpu_workload(
                    tenant.clone(),
                    format!("gpus-held-{i}"),
                    *model,
                    2,
                    1,
                    Some(fleet.fleet().sites[i].tier),
                    None,
                )
            })
            .collect(),
    };
    fleet.submit(&mix, &progress).await.expect("submitted");
    fleet.wait_settled(LIMIT, &progress).await.expect("settled");
    let all = fleet.workloads().await.unwrap();
    assert!(
        all.iter().all(|w| w.state == ReservationState::Active),
        "{:?}",
        all.iter().map(|w| &w.state).collect::<Vec<_>>()
    );

    // What central's store holds: GPUs held by the placements, by the servers' models.
    let tables = fleet.central().tables();
    let servers = tables.servers().list_all(None, 1000).await.unwrap();
    let model_of: BTreeMap<(SiteId, ServerId, u32), String> = servers
        .iter()
        .flat_map(|s| {
            s.gpus
                .iter()
                .map(move |g| ((s.site.clone(), s.id.clone(), g.index), g.model.to_string()))
        })
        .collect();
    let mut held: BTreeMap<String, f64> = BTreeMap::new();
    for p in tables.placements().list_all(None, 1000).await.unwrap() {
        for a in &p.assignments {
            for i in a.slot.gpu_indices() {
                let m = &model_of[&(a.site.clone(), a.server.clone(), i)];
                *held.entry(m.clone()).or_default() += 1.0;
            }
        }
    }
    assert_eq!(held.values().sum::<f64>(), 4.0, "{held:?}");

    // Prometheus: GPUs held by model, as the store says (the gauges are cached a few seconds).
    let by_model = eventually(&prometheus, "GPUs held by model as stored", || async {
        let result = prometheus
            .query("sum by (model) (meridian_gpus_held)")
            .await?;
        let seen: BTreeMap<String, f64> = result
            .iter()
            .filter_map(|r| {
                Some((
                    r["metric"]["model"].as_str()?.to_owned(),
                    r["value"][1].as_str()?.parse().ok()?,
                ))
            })
            .collect();
        let agrees = !seen.is_empty()
            && seen
                .iter()
                .all(|(m, v)| *v == held.get(m).copied().unwrap_or(0.0))
            && held.keys().all(|m| seen.contains_key(m));
        agrees.then_some(seen)
    })
    .await;
    eprintln!("GPUs held by model: {by_model:?}");

    // The fan-out p99: Prometheus' quantile over the whole histogram, once it has scraped
    // what central's /metrics says now, against the quantile of that text.
    let fanout = "meridian_intent_fanout_seconds";
    let (p99, text_buckets) = eventually(&prometheus, "the fan-out histogram scraped", || async {
        let text = http_get(central, "/metrics").await?;
        let b = buckets(&text, fanout);
        let count = b.last()?.1;
        if count == 0.0 {
            return None;
        }
        let scraped = scalar(&prometheus.query(&format!("{fanout}_count")).await?)?;
        if scraped != count {
            return None;
        }
        let p99 = scalar(
            &prometheus
                .query(&format!(
                    "histogram_quantile(0.99, sum by (le) ({fanout}_bucket))"
                ))
                .await?,
        )?;
        // Still the same histogram after the query (nothing acknowledged in between).
        let again = buckets(&http_get(central, "/metrics").await?, fanout);
        (again == b).then_some((p99, b))
    })
    .await;
    let (expected, (lower, upper)) = quantile(0.99, &text_buckets);
    eprintln!(
        "fan-out p99: prometheus {p99} s, central's text {expected} s in ({lower}, {upper}] over {} acknowledgements",
        text_buckets.last().unwrap().1
    );
    assert!(
        lower <= p99 && p99 <= upper,
        "p99 {p99} outside ({lower}, {upper}]: {text_buckets:?}"
    );
    assert!(
        (p99 - expected).abs() <= 1e-9 * expected.abs().max(1.0),
        "p99 {p99} != {expected}: {text_buckets:?}"
    );

    // The agents: both report buffers, and utilisation per GPU with the value set above.
    eventually(&prometheus, "both agents' report buffer depth", || async {
        let r = prometheus
            .query("meridian_agent_report_buffer_depth{job=\"agents\"}")
            .await?;
        (r.len() == 2).then_some(())
    })
    .await;
    eventually(
        &prometheus,
        "the reconcilers' passes and driver calls",
        || async {
            let passes = scalar(
                &prometheus
                    .query("sum(meridian_agent_reconcile_actions_total{kind=\"server\"})")
                    .await?,
            )?;
            let calls = scalar(
                &prometheus
                    .query("sum(meridian_agent_driver_latency_seconds_count{driver=\"redfish\"})")
                    .await?,
            )?;
            (passes > 0.0 && calls > 0.0).then_some(())
        },
    )
    .await;
    let selector =
        format!("meridian_agent_gpu_utilization_ratio{{server=\"{set_server}\",gpu=\"0\"}}");
    let util = eventually(
        &prometheus,
        "the GPU utilisation set on the fake NVML",
        || async {
            let v = scalar(&prometheus.query(&selector).await?)?;
            ((v - f64::from(SET_GPU_PCT) / 100.0).abs() < 1e-9).then_some(v)
        },
    )
    .await;
    let per_gpu = prometheus
        .query("count(meridian_agent_gpu_utilization_ratio)")
        .await
        .and_then(|r| scalar(&r))
        .unwrap_or(0.0);
    let memory = prometheus
        .query(&selector.replace("gpu_utilization", "gpu_memory_utilization"))
        .await
        .and_then(|r| scalar(&r));
    assert_eq!(memory, Some(f64::from(SET_MEMORY_PCT) / 100.0));
    assert!(per_gpu >= 2.0, "{per_gpu} GPUs with a utilisation series");
    eprintln!(
        "GPU utilisation of {set_server} GPU 0: {util}; {per_gpu} GPUs reported; \
         took {:?}",
        started.elapsed()
    );

    drop(prometheus);
    fleet.shutdown().await;
}
