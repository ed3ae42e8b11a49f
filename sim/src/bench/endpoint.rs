//! B13: from `CreateWorkload` to the endpoint answering through the site's gateway, on the
//! real kernel (the two-site lab of [`crate::netlab`]: real central, real agents, gateway and
//! host namespaces, NVUE emulators realising VXLAN); and the agent's memory with the gateway
//! worker serving 50 tenants.
//!
//! Each run applies a one-replica inference endpoint exposing 443/tcp through the CLI, starts
//! the tenant's server in the replica's namespace as soon as the agent has made it (what a
//! container runtime would do), and connects from the "internet" namespace to the published
//! address until the server answers; the time from the apply to that answer is the sample.
//! The workload is then deleted and its namespace awaited gone before the next run. The
//! networking (gateway DNAT, the host's namespace) does not wait for the server's lifecycle,
//! so the time until the site reports the intent applied (the BMC's power-on included) is
//! reported beside it.
//!
//! The memory figure runs the real `meridian-agent` with only a `[gateway]` (in a namespace
//! of its own) against an in-process central, whose site intent carries 50 tenant networks
//! and 50 exposures; once the agent reports the intent applied, its RSS is read.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meridian_central::config::CentralConfig;
use meridian_central::server::Central;
use meridian_common::ids::{Generation, SiteId, TenantId, WorkloadId};
use meridian_common::model::{Exposure, Ipv4Net, Protocol, SiteIntent, TenantNetworkIntent};
use meridian_testkit::netns::{Namespaces, in_ns, ns_ok, veth};

use super::harness::rss_bytes;
use crate::netlab::{LabConfig, NetLab};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// What B13 measured.
#[derive(Debug, Clone, Default)]
pub struct EndpointReport {
    /// Apply to first answer, sorted.
    pub samples: Vec<Duration>,
    /// Apply to the site reporting the intent applied (servers included), sorted.
    pub applied: Vec<Duration>,
    /// The agent's RSS with the gateway serving `tenants` tenants, bytes.
    pub rss: Option<u64>,
    /// Its peak RSS (VmHWM), bytes.
    pub rss_peak: Option<u64>,
    pub tenants: usize,
}

/// Why B13 cannot run here, if it cannot.
pub fn unavailable() -> Option<String> {
    if let Some(why) = crate::simfleet::gateway::kernel_unavailable() {
        return Some(why);
    }
    let here = std::env::current_exe().ok()?;
    for bin in ["meridian-central", "meridian-agent", "meridian"] {
        if !here.with_file_name(bin).exists() {
            return Some(format!(
                "{bin} not found next to this executable (cargo build --release --bins)"
            ));
        }
    }
    None
}

/// A server in `ns` on port 443 until `stop`, answering each connection with "ok".
fn serve(ns: &str, stop: Arc<AtomicBool>) -> std::io::Result<()> {
    let listener = in_ns(ns, || TcpListener::bind("0.0.0.0:443"))?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let _ = s.write_all(b"ok");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
    Ok(())
}

fn answers(ns: &str, addr: SocketAddr) -> bool {
    in_ns(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok_and(|mut s| {
            use std::io::Read;
            let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
            let mut b = [0u8; 2];
            s.read_exact(&mut b).is_ok()
        })
    })
}

/// Runs B13: `runs` apply-to-answer samples and the 50-tenant gateway memory figure.
pub async fn run(runs: usize) -> Result<EndpointReport, BoxError> {
    if let Some(why) = unavailable() {
        return Err(why.into());
    }
    let here = std::env::current_exe()?;
    let mut lab = NetLab::start(
        LabConfig {
            central_bin: here.with_file_name("meridian-central"),
            agent_bin: here.with_file_name("meridian-agent"),
            cli_bin: here.with_file_name("meridian"),
            central_env: Vec::new(),
        },
        &format!("mb{}-", std::process::id()),
    )
    .await?;
    let token = lab.tenant("bench")?;
    let yaml = lab.file(
        "bench.yaml",
        "name: bench\nkind: inference_endpoint\nreplicas: 1\nresources:\n  accelerator: none\n  cpu_cores: 4\n  memory_mib: 4096\nconstraints: {}\nexpose:\n  - {port: 443, protocol: tcp}\n",
    );
    let mut samples = Vec::with_capacity(runs);
    let mut applied = Vec::with_capacity(runs);
    for i in 0..runs {
        let started = Instant::now();
        let id = lab.json(&token, &["workload", "apply", "-f", &yaml])?["id"]
            .as_str()
            .ok_or("no workload id")?
            .to_owned();
        let got = lab.wait_workload(
            &token,
            &id,
            "given an endpoint",
            Duration::from_secs(60),
            |g| {
                g["endpoints"].as_array().is_some_and(|e| !e.is_empty())
                    && g["placement"].is_object()
            },
        )?;
        let placed = started.elapsed();
        let server = got["placement"]["assignments"][0]["server"]
            .as_str()
            .ok_or("no server")?
            .to_owned();
        let e = &got["endpoints"][0]["exposure"];
        let public: Ipv4Addr = e["public_ip"].as_str().ok_or("no public ip")?.parse()?;
        let port = e["public_port"].as_u64().ok_or("no public port")? as u16;
        let ns = NetLab::replica_netns(&server, "bench");
        let deadline = started + Duration::from_secs(60);
        while !std::path::Path::new("/run/netns").join(&ns).exists() {
            if Instant::now() > deadline {
                return Err(format!("run {i}: no namespace {ns}\n{}", lab.logs()).into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let namespace = started.elapsed();
        let stop = Arc::new(AtomicBool::new(false));
        serve(&ns, Arc::clone(&stop))?;
        let addr = SocketAddr::from((public, port));
        while !answers(&lab.inet, addr) {
            if Instant::now() > deadline {
                return Err(format!("run {i}: {addr} never answered\n{}", lab.logs()).into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let took = started.elapsed();
        samples.push(took);
        lab.wait_workload(&token, &id, "applied", Duration::from_secs(60), |g| {
            g["endpoints"][0]["applied"] == true
        })?;
        let done = started.elapsed();
        applied.push(done);
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        eprintln!(
            "B13 run {}: placed and published in the intent after {:.0} ms, replica namespace \
             after {:.0} ms, answering after {:.0} ms, applied after {:.0} ms",
            i + 1,
            ms(placed),
            ms(namespace),
            ms(took),
            ms(done)
        );
        stop.store(true, Ordering::Relaxed);
        lab.delete_workload(&token, &id)?;
        while std::path::Path::new("/run/netns").join(&ns).exists() {
            if Instant::now() > started + Duration::from_secs(120) {
                return Err(format!("run {i}: {ns} never removed").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    lab.stop();
    drop(lab);
    samples.sort();
    applied.sort();
    let (rss, rss_peak, tenants) =
        fifty_tenants(&here.with_file_name("meridian-agent"), 50).await?;
    Ok(EndpointReport {
        samples,
        applied,
        rss,
        rss_peak,
        tenants,
    })
}

fn peak_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The real agent keeping a gateway with `n` tenants (networks and one exposure each): its
/// RSS and peak once it applied that intent.
async fn fifty_tenants(
    agent_bin: &std::path::Path,
    n: usize,
) -> Result<(Option<u64>, Option<u64>, usize), BoxError> {
    let dir = tempfile::tempdir()?;
    let ns = Namespaces::new(format!("mr{}-", std::process::id()));
    let gw = ns.add("gw");
    let peer = ns.add("wan");
    veth(&gw, "wan0", &peer, "wan0");
    ns_ok(&gw, "ip addr add 198.51.100.1/24 dev wan0");
    ns_ok(&gw, "ip link add und0 type bridge");
    ns_ok(&gw, "ip addr add 10.255.0.1/24 dev und0");
    ns_ok(&gw, "ip link set und0 up");
    let mut config = CentralConfig {
        data_dir: dir.path().join("central"),
        ..CentralConfig::default()
    };
    config.channel.listen = "127.0.0.1:0".parse()?;
    config.api.listen = "127.0.0.1:0".parse()?;
    config.console.listen = "127.0.0.1:0".parse()?;
    config.metrics.listen = "127.0.0.1:0".parse()?;
    let central = Central::open(config).await?;
    let site = "sim-b13";
    meridian_testkit::enrol::add_site(&central, site).await?;
    let boot = meridian_testkit::enrol::write_bootstrap(&central, site, vec![], dir.path()).await?;
    let agent_config = dir.path().join("agent.toml");
    std::fs::write(
        &agent_config,
        format!(
            "data_dir = \"{}\"\nbootstrap_file = \"{}\"\nbind = \"127.0.0.1:0\"\n\n[telemetry]\nfilter = \"warn\"\n\n[gateway]\nwan_interface = \"wan0\"\nwan_next_hop = \"198.51.100.254\"\negress_address = \"198.51.100.1\"\npublic_range = \"198.51.100.0/24\"\nunderlay_address = \"10.255.0.1\"\nleaf_vteps = [\"10.255.0.2\"]\nnetns = \"{gw}\"\n",
            dir.path().join("agent").display(),
            boot.display()
        ),
    )?;
    let mut child = Command::new(agent_bin)
        .arg("--config")
        .arg(&agent_config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let networks: Vec<TenantNetworkIntent> = (0..n)
        .map(|i| {
            let i = i as u32;
            Ok(TenantNetworkIntent {
                tenant: TenantId::parse(&format!("t{i:03}"))?,
                vni: 20_000 + i,
                table: 2_000 + i,
                subnet: Ipv4Net::new(
                    Ipv4Addr::new(10, (i / 256) as u8 + 1, (i % 256) as u8, 0),
                    24,
                )?,
                gateway: Ipv4Addr::new(10, (i / 256) as u8 + 1, (i % 256) as u8, 1),
            })
        })
        .collect::<Result<_, BoxError>>()?;
    let exposures: Vec<Exposure> = networks
        .iter()
        .enumerate()
        .map(|(i, net)| {
            Ok(Exposure {
                tenant: net.tenant.clone(),
                workload: WorkloadId::parse(&format!("w{i:03}"))?,
                public_ip: Ipv4Addr::new(198, 51, 100, 1),
                public_port: 10_000 + i as u16,
                protocol: Protocol::Tcp,
                backend_ip: Ipv4Addr::from(u32::from(net.gateway) + 1),
                backend_port: 443,
            })
        })
        .collect::<Result<_, BoxError>>()?;
    let intent = SiteIntent {
        networks,
        exposures,
        ..SiteIntent::empty(SiteId::parse(site)?, Generation::new(1))
    };
    central.tables().intents().upsert(&intent).await?;
    let tables = central.tables();
    let store = tables.store();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ch =
            meridian_store::schema::site_channel(store.as_ref(), &SiteId::parse(site)?).await?;
        if ch.applied_generation >= Generation::new(1) {
            break;
        }
        if Instant::now() > deadline || child.try_wait()?.is_some() {
            let _ = child.kill();
            return Err("B13: the agent never applied the 50-tenant intent".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Settle, then read.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = rss_bytes(&child.id().to_string());
    let peak = peak_bytes(child.id());
    let _ = child.kill();
    let _ = child.wait();
    central.shutdown().await;
    Ok((rss, peak, n))
}
