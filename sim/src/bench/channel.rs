//! `meridian-sim bench channel`: the agent channel's benchmarks (TARGETS.md B2, B3, B4, B7).
//!
//! Central runs in this process (a real `Central`, sled store, QUIC on 127.0.0.1); the N
//! simulated agents run in a child process (`meridian-sim bench channel-agents`), all real
//! `meridian_agent::Agent`s with in-memory stores sharing a few
//! QUIC endpoints, so central's memory is measured on its own.
//!
//! - B7: the real `meridian-agent` binary (next to this executable), enrolled, connected and
//!   idle: its RSS, CPU and file size. Then the same binary managing 100 servers: 100 Redfish
//!   BMC emulators (GPU-server profile, each its own 127.0.0.1 port, served by this process)
//!   in its `[[servers]]` (`gpu_inventory = "none"`: the binary has no fake NVML); once central
//!   holds the inventory of all 100, inspected and `Available`, its RSS (peak of samples every
//!   100 ms) and CPU over a window in which its reconciler's resync (every second here, 60 s
//!   by default) keeps observing every BMC.
//! - B2: one change touching all N sites (a new generation for every site), written as
//!   central's compiler publishes a change (transactions of 512 intents, one after another):
//!   time from the start of the change until central holds each agent's acknowledgement that
//!   it persisted it (`IntentAck RECEIVED`, seen in central's store): p50, p99, max.
//! - B4: central's RSS growth from before the agents connected to N connected idle sites with
//!   their intents cached, divided by N.
//! - B3: central restarts (same data directory and port); time until all N agents are back
//!   with a session and their generation resynced, beside the raw quinn handshake rate
//!   measured in this run (N handshakes, server certificate only) and UDP receive-buffer drops.

use std::collections::HashMap;
use std::io::BufRead;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_agent::reconciler::RecordingReconciler;
use meridian_central::server::Central;
use meridian_common::ids::{Generation, SiteId};
use meridian_common::model::SiteIntent;
use meridian_store::schema::{SITES_PREFIX, SiteChannel, SiteRecord, site_of};
use meridian_store::tables::Table;
use meridian_store::{Revision, Txn};

pub use super::harness::rss_bytes;
use super::harness::{BoxError, CHANGE_TXN_INTENTS, site_name, write_bootstrap};
use crate::simfleet::agents::{AgentPool, EnrolWindow};
use meridian_testkit::central::{Liveness, config as test_central_config};
use meridian_testkit::fixtures::empty_intent as intent;
use meridian_testkit::wait::wait_until;

/// Options of `bench channel`.
#[derive(Debug, Clone)]
pub struct ChannelBenchOptions {
    /// Simulated agents.
    pub agents: usize,
    /// Agent heartbeat period, ms.
    pub heartbeat_ms: u64,
    /// QUIC endpoints the simulated agents share.
    pub endpoints: usize,
    /// How long to let things settle before measuring idle figures (B4, B7): 3 s by default.
    pub settle: Duration,
    /// How long B7 measures the agent's idle CPU: 5 s by default.
    pub idle_window: Duration,
    /// B7 with servers: emulated servers the agent binary manages (100; 0 skips it).
    pub b7_servers: usize,
    /// B7 with servers: the agent's reconciler resync period (how often a converged server's
    /// BMC is observed again).
    pub b7_resync: Duration,
}

impl ChannelBenchOptions {
    /// `agents` simulated agents, with the defaults of `meridian-sim bench channel`.
    pub fn new(agents: usize) -> Self {
        ChannelBenchOptions {
            agents,
            heartbeat_ms: 5_000,
            endpoints: 16,
            settle: Duration::from_secs(3),
            idle_window: Duration::from_secs(5),
            b7_servers: 100,
            b7_resync: Duration::from_secs(1),
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct ChannelBenchReport {
    pub agents: usize,
    pub enrol_and_connect: Duration,
    pub b2_p50: Duration,
    pub b2_p99: Duration,
    pub b2_max: Duration,
    pub b2_acked: usize,
    pub b3_all_back: Option<Duration>,
    pub b3_raw_rate: f64,
    pub b3_udp_drops: Option<u64>,
    /// UDP datagrams the kernel dropped (full receive buffers) during the B2 fan-out.
    pub b2_udp_drops: Option<u64>,
    /// B2: time until the last transaction of the change was durable.
    pub b2_committed: Duration,
    /// B3: what central's accept loop did during the storm: (handshakes refused at once,
    /// Retry packets sent, half-open handshakes timed out).
    pub b3_admission: (u64, u64, u64),
    pub b4_bytes_per_site: f64,
    pub b7_rss: Option<u64>,
    pub b7_cpu_pct: Option<f64>,
    pub b7_binary: Option<u64>,
    pub b7_binary_stripped: Option<u64>,
    /// B7 with servers: the figures, or why they were not measured.
    pub b7_servers: Option<Result<B7Servers, String>>,
    /// B2: every acknowledgement's time from the start of the change, sorted.
    pub b2_samples: Vec<Duration>,
    /// B3: agents with a session against time since central restarted (a point per change).
    pub b3_curve: Vec<(Duration, usize)>,
    /// B3 baseline: when each raw quinn handshake completed, from the start, sorted.
    pub b3_raw_curve: Vec<Duration>,
}

/// B7 with servers: the agent binary managing emulated servers.
#[derive(Debug, Clone, Default)]
pub struct B7Servers {
    /// Servers it manages.
    pub servers: usize,
    /// From the agent's start until central held all of them inspected and `Available`.
    pub inventoried: Duration,
    /// The highest RSS sampled in the window, bytes.
    pub rss: u64,
    /// CPU over the window, % of a core.
    pub cpu_pct: f64,
    /// The window.
    pub window: Duration,
    /// Redfish requests the BMCs answered in the window.
    pub bmc_requests: usize,
    /// The reconciler's resync period.
    pub resync: Duration,
}

fn kib(b: f64) -> String {
    format!("{:.1} KiB", b / 1024.0)
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0))
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

impl std::fmt::Display for ChannelBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.agents;
        let floor = n as f64 / self.b3_raw_rate.max(1e-9);
        writeln!(
            f,
            "agent channel, N = {n} simulated agents (enrolled and connected in {})",
            ms(self.enrol_and_connect)
        )?;
        writeln!(
            f,
            "  {:<44} {:<34} {:<30} baseline ratio",
            "figure", "measured", "target"
        )?;
        let row = |f: &mut std::fmt::Formatter<'_>, a: &str, b: String, c: &str, d: String| {
            writeln!(f, "  {a:<44} {b:<34} {c:<30} {d}")
        };
        row(
            f,
            "B2 fan-out, persisted + acked by all",
            format!(
                "p50 {} p99 {} max {} ({}/{n}; committed in {}; UDP drops {})",
                ms(self.b2_p50),
                ms(self.b2_p99),
                ms(self.b2_max),
                self.b2_acked,
                ms(self.b2_committed),
                drops_text(self.b2_udp_drops)
            ),
            "p99 <= 2 s (10,000 sites)",
            "etcd watch fan-out: bench etcd".into(),
        )?;
        let (shed, retries, half_open) = self.b3_admission;
        let b3 = self.b3_all_back.map_or("not all back".into(), |d| {
            format!(
                "{} ({:.0}/s), UDP drops {}; refused {shed}, Retry {retries}, half-open timeouts {half_open}",
                ms(d),
                n as f64 / d.as_secs_f64(),
                drops_text(self.b3_udp_drops)
            )
        });
        row(
            f,
            "B3 reconnect storm after central restart",
            b3,
            "<= 10 s; <= 1.5x raw floor",
            self.b3_all_back.map_or("-".into(), |d| {
                format!(
                    "{:.2}x raw quinn ({:.0} handshakes/s, floor {})",
                    d.as_secs_f64() / floor,
                    self.b3_raw_rate,
                    ms(Duration::from_secs_f64(floor))
                )
            }),
        )?;
        row(
            f,
            "B4 central memory per connected idle site",
            kib(self.b4_bytes_per_site),
            "<= 64 KiB",
            format!(
                "{:.2}x quinn's ~37 KiB",
                self.b4_bytes_per_site / (37.0 * 1024.0)
            ),
        )?;
        row(
            f,
            "B7 agent RSS idle (real binary)",
            self.b7_rss.map_or("not measured".into(), mib),
            "<= 20 MiB",
            self.b7_rss.map_or("-".into(), |r| {
                format!("{:.2}x YurtHub's 30 MB", r as f64 / 30e6)
            }),
        )?;
        if let Some(servers) = &self.b7_servers {
            row(
                f,
                "B7 agent RSS with servers reporting",
                match servers {
                    Ok(b) => format!(
                        "{} peak, CPU {:.1} %, {} servers",
                        mib(b.rss),
                        b.cpu_pct,
                        b.servers
                    ),
                    Err(e) => format!("not measured: {e}"),
                },
                "<= 32 MiB",
                "-".into(),
            )?;
        }
        row(
            f,
            "B7 agent idle CPU",
            self.b7_cpu_pct
                .map_or("not measured".into(), |c| format!("{c:.2} % of a core")),
            "<= 0.5 %",
            "-".into(),
        )?;
        row(
            f,
            "B7 agent binary size",
            self.b7_binary.map_or("not found".into(), |b| {
                format!(
                    "{} ({} stripped)",
                    mib(b),
                    self.b7_binary_stripped.map_or("?".into(), mib)
                )
            }),
            "<= 25 MB",
            "-".into(),
        )
    }
}

/// CPU time (user + system) of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer.
fn udp_rcvbuf_errors() -> Option<u64> {
    let snmp = std::fs::read_to_string("/proc/net/snmp").ok()?;
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names: Vec<&str> = udp.next()?.split_whitespace().collect();
    let values: Vec<&str> = udp.next()?.split_whitespace().collect();
    let i = names.iter().position(|n| *n == "RcvbufErrors")?;
    values.get(i)?.parse().ok()
}

/// UDP receive-buffer drops since `before` (a reading of [`udp_rcvbuf_errors`]), where the
/// kernel reports them.
fn udp_drops_since(before: Option<u64>) -> Option<u64> {
    before
        .zip(udp_rcvbuf_errors())
        .map(|(a, b)| b.saturating_sub(a))
}

/// A drop count for the tables, or "unknown" where the kernel did not report one.
pub(crate) fn drops_text(drops: Option<u64>) -> String {
    drops.map_or("unknown".into(), |v| v.to_string())
}

/// Runs the benchmark and returns its figures.
pub async fn run(opts: &ChannelBenchOptions) -> Result<ChannelBenchReport, BoxError> {
    let n = opts.agents;
    let mut report = ChannelBenchReport {
        agents: n,
        ..ChannelBenchReport::default()
    };
    let temp = tempfile::tempdir()?;
    let dir = temp.path();
    let boot_dir = dir.join("boot");
    std::fs::create_dir_all(&boot_dir)?;
    let config = test_central_config(
        &dir.join("central"),
        "127.0.0.1:0".parse()?,
        Liveness::Relaxed,
    );
    let central = Central::open(config.clone()).await?;
    let listen = central.channel().local_addr();
    eprintln!("central on {listen}; creating {n} sites and bootstrap tokens");
    let mut jobs = tokio::task::JoinSet::new();
    let central = Arc::new(central);
    for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(16).max(1)) {
        let central = Arc::clone(&central);
        let chunk = chunk.to_vec();
        let boot_dir = boot_dir.clone();
        jobs.spawn(async move {
            for i in chunk {
                write_bootstrap(&central, &site_name(i), &boot_dir.join(format!("{i}.toml")))
                    .await?;
            }
            Ok::<(), BoxError>(())
        });
    }
    while let Some(r) = jobs.join_next().await {
        r??;
    }

    // B7: the real agent binary, alone, connected and idle.
    let b7_boot = dir.join("b7.toml");
    write_bootstrap(&central, "sim-b7", &b7_boot).await?;
    let agent_bin = std::env::current_exe()?.with_file_name("meridian-agent");
    if agent_bin.exists() {
        report.b7_binary = std::fs::metadata(&agent_bin).ok().map(|m| m.len());
        // Release builds here keep debug info; the shipped binary is stripped.
        let stripped = dir.join("meridian-agent.stripped");
        if Command::new("strip")
            .arg("-o")
            .arg(&stripped)
            .arg(&agent_bin)
            .status()
            .is_ok_and(|s| s.success())
        {
            report.b7_binary_stripped = std::fs::metadata(&stripped).ok().map(|m| m.len());
        }
        let mut child = Command::new(&agent_bin)
            .env("MERIDIAN_AGENT_DATA_DIR", dir.join("b7-agent"))
            .env("MERIDIAN_AGENT_BOOTSTRAP_FILE", &b7_boot)
            .env("MERIDIAN_AGENT_TELEMETRY__FILTER", "warn")
            .env("MERIDIAN_AGENT_METRICS__LISTEN", "127.0.0.1:0")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let up = wait_until(Duration::from_secs(30), || {
            central.channel().connected_sites() == 1
        })
        .await;
        if up.is_some() {
            tokio::time::sleep(opts.settle).await;
            let pid = child.id();
            let t0 = cpu_ticks(pid);
            tokio::time::sleep(opts.idle_window).await;
            let t1 = cpu_ticks(pid);
            report.b7_rss = rss_bytes(&pid.to_string());
            // Clock ticks are 1/100 s on Linux.
            let window = opts.idle_window.as_secs_f64().max(0.01);
            report.b7_cpu_pct = t0
                .zip(t1)
                .map(|(a, b)| (b - a) as f64 / 100.0 / window * 100.0);
        } else {
            eprintln!("B7: the agent binary did not connect");
        }
        let _ = child.kill();
        let _ = child.wait();
        let _ = wait_until(Duration::from_secs(10), || {
            central.channel().connected_sites() == 0
        })
        .await;
    } else {
        eprintln!(
            "B7: {} not found (cargo build --release -p meridian-agent)",
            agent_bin.display()
        );
    }

    // The simulated agents, in their own process.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = rss_bytes("self").unwrap_or(0);
    let started = Instant::now();
    let mut agents = spawn_agents(dir, n, opts)?;
    let connected = wait_until(Duration::from_secs(600), || {
        central.channel().connected_sites() >= n
    })
    .await;
    report.enrol_and_connect = started.elapsed();
    if connected.is_none() {
        let _ = agents.kill();
        return Err(format!(
            "only {} of {n} agents connected",
            central.channel().connected_sites()
        )
        .into());
    }
    eprintln!("{n} agents connected in {}", ms(report.enrol_and_connect));

    // B2: one change touching every site.
    let b2_drops_before = udp_rcvbuf_errors();
    let (b2, acked, committed) = fan_out(&central, n, 1).await?;
    report.b2_committed = committed;
    report.b2_udp_drops = udp_drops_since(b2_drops_before);
    report.b2_acked = acked;
    if !b2.is_empty() {
        report.b2_p50 = super::percentile(&b2, 0.5);
        report.b2_p99 = super::percentile(&b2, 0.99);
        report.b2_max = *b2.last().expect("not empty");
    }
    report.b2_samples = b2;

    // B4: idle, everything cached.
    tokio::time::sleep(opts.settle).await;
    let rss_after = rss_bytes("self").unwrap_or(0);
    report.b4_bytes_per_site = rss_after.saturating_sub(rss_before) as f64 / n as f64;

    // B3: central restarts; time until every agent is back and resynced.
    (report.b3_raw_rate, report.b3_raw_curve) = raw_handshake_rate(n, opts.endpoints).await?;
    let Ok(central) = Arc::try_unwrap(central) else {
        return Err("central still shared".into());
    };
    central.shutdown().await;
    let drops_before = udp_rcvbuf_errors();
    let mut config = config;
    config.channel.listen = listen;
    config.api.listen = "127.0.0.1:0".parse().expect("valid address");
    config.console.listen = "127.0.0.1:0".parse().expect("valid address");
    config.metrics.listen = "127.0.0.1:0".parse().expect("valid address");
    // The old endpoint lets go of the port once its last connection is dropped.
    let reopen = Instant::now();
    let central = loop {
        match Central::open(config.clone()).await {
            Ok(c) => break c,
            Err(e) if reopen.elapsed() < Duration::from_secs(30) => {
                tracing::debug!(error = %e, "central cannot restart yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e.into()),
        }
    };
    // The curve starts, like the B3 figure, when central is open again.
    let opened = Instant::now();
    let mut curve = vec![(Duration::ZERO, central.channel().connected_sites())];
    let back = wait_until(Duration::from_secs(120), || {
        let now = central.channel().connected_sites();
        if curve.last().is_none_or(|(_, last)| *last != now) {
            curve.push((opened.elapsed(), now));
        }
        now >= n
    })
    .await;
    report.b3_all_back = back;
    let counters = &central.channel().counters();
    report.b3_admission = (
        counters.shed.load(std::sync::atomic::Ordering::Relaxed),
        counters.retries.load(std::sync::atomic::Ordering::Relaxed),
        counters
            .handshake_timeouts
            .load(std::sync::atomic::Ordering::Relaxed),
    );
    report.b3_curve = curve;
    report.b3_udp_drops = udp_drops_since(drops_before);

    let _ = agents.kill();
    let _ = agents.wait();

    // B7 with servers, last: run before the simulated agents, the site it leaves behind (100
    // servers, its agent killed) slowed the 10,000 agents' enrolment several-fold.
    if opts.b7_servers > 0 && agent_bin.exists() {
        let r = b7_with_servers(&central, dir, &agent_bin, opts).await;
        if let Err(e) = &r {
            eprintln!("B7 with servers: {e}");
        }
        report.b7_servers =
            Some(r.map_err(|e| meridian_common::telemetry::error_chain(e.as_ref())));
    }
    central.shutdown().await;
    Ok(report)
}

/// A child process killed (and reaped) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// B7 with servers: `opts.b7_servers` BMC emulators, the agent binary managing them; waits
/// until central holds all of them inspected and `Available`, then samples the agent.
async fn b7_with_servers(
    central: &Central,
    dir: &Path,
    agent_bin: &Path,
    opts: &ChannelBenchOptions,
) -> Result<B7Servers, BoxError> {
    use std::fmt::Write as _;

    use meridian_common::model::ServerState;

    use meridian_emulators::redfish::{BmcEmulator, BmcProfile};

    let count = opts.b7_servers;
    let (user, password) = ("bench", "Bench-Bmc-1");
    let mut bmcs = Vec::with_capacity(count);
    for _ in 0..count {
        bmcs.push(
            BmcEmulator::new(BmcProfile::gpu_server(vec!["NVIDIA H100 80GB HBM3"; 8]))
                .credentials(user, password)
                .power_delay(Duration::from_millis(50))
                .start()
                .await?,
        );
    }
    let site = "sim-b7s";
    let boot = dir.join("b7s.toml");
    write_bootstrap(central, site, &boot).await?;
    let data = dir.join("b7s-agent");
    let mut config = format!(
        "data_dir = {:?}\nbootstrap_file = {:?}\n\n[telemetry]\nfilter = \"warn\"\n\n\
         [reconciler]\nresync_ms = {}\npower_poll_ms = 100\n",
        data.display().to_string(),
        boot.display().to_string(),
        opts.b7_resync.as_millis()
    );
    for (i, bmc) in bmcs.iter().enumerate() {
        write!(
            config,
            "\n[[servers]]\nid = \"srv-{i:03}\"\nbmc_url = \"{}\"\nusername = \"{user}\"\n\
             password = \"{password}\"\ngpu_inventory = \"none\"\n",
            bmc.url()
        )?;
    }
    let config_path = dir.join("b7s-agent.toml");
    std::fs::write(&config_path, config)?;
    let started = Instant::now();
    let mut child = KillOnDrop(
        Command::new(agent_bin)
            .arg("--config")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let site_id = SiteId::parse(site)?;
    let servers = central.tables().servers();
    let limit = Duration::from_secs(120);
    let mut available = 0;
    while available < count {
        if let Some(status) = child.0.try_wait()? {
            return Err(format!("the agent exited ({status}) before its inventory was in").into());
        }
        if started.elapsed() > limit {
            return Err(format!(
                "central holds {available}/{count} of the agent's servers Available after {} s",
                limit.as_secs()
            )
            .into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        available = servers
            .list_all(Some(&site_id), 1000)
            .await?
            .iter()
            .filter(|s| s.state == ServerState::Available)
            .count();
    }
    let inventoried = started.elapsed();
    eprintln!("B7: {count} servers inspected and Available at central after {inventoried:?}");

    // The window (at least two resync periods): the resync keeps observing every BMC.
    let pid = child.0.id();
    let span = opts.idle_window.max(2 * opts.b7_resync);
    let requests = || bmcs.iter().map(|b| b.requests().len()).sum::<usize>();
    let (r0, t0, w0) = (requests(), cpu_ticks(pid), Instant::now());
    let mut rss = 0;
    while w0.elapsed() < span {
        tokio::time::sleep(Duration::from_millis(100)).await;
        rss = rss.max(rss_bytes(&pid.to_string()).ok_or("cannot read the agent's RSS")?);
    }
    let window = w0.elapsed();
    let (r1, t1) = (requests(), cpu_ticks(pid));
    let cpu_pct = t0
        .zip(t1)
        .map(|(a, b)| (b - a) as f64 / 100.0 / window.as_secs_f64() * 100.0)
        .ok_or("cannot read the agent's CPU time")?;
    drop(child);
    for bmc in bmcs {
        bmc.shutdown().await;
    }
    Ok(B7Servers {
        servers: count,
        inventoried,
        rss,
        cpu_pct,
        window,
        bmc_requests: r1 - r0,
        resync: opts.b7_resync,
    })
}

fn spawn_agents(dir: &Path, n: usize, opts: &ChannelBenchOptions) -> Result<Child, BoxError> {
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args([
            "bench",
            "channel-agents",
            "--dir",
            &dir.display().to_string(),
            "--count",
            &n.to_string(),
            "--heartbeat-ms",
            &opts.heartbeat_ms.to_string(),
            "--endpoints",
            &opts.endpoints.to_string(),
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    Ok(child)
}

/// Writes generation `generation` for every site and returns, sorted, the time from the start
/// of the change until central stored each agent's `RECEIVED` acknowledgement, how many
/// acknowledged, and when the change's last transaction was durable.
async fn fan_out(
    central: &Arc<Central>,
    n: usize,
    generation: u64,
) -> Result<(Vec<Duration>, usize, Duration), BoxError> {
    let store = Arc::clone(central.store());
    let mut watch = store
        .watch(SITES_PREFIX.as_bytes(), Revision(store.revision().0 + 1))
        .await?;
    let start = Instant::now();
    // The change is written as central's compiler writes one: transactions of
    // CHANGE_TXN_INTENTS intents, one after another; each site's session is woken as soon as
    // the transaction holding its intent commits.
    let tables = central.tables();
    let writer = tokio::spawn(async move {
        let mut txn = Txn::new();
        for i in 0..n {
            let site = SiteId::parse(&site_name(i))?;
            txn = txn.then(Table::<SiteIntent>::put_op(&intent(&site, generation))?);
            if txn.success.len() == CHANGE_TXN_INTENTS || i + 1 == n {
                tables.store().txn(std::mem::take(&mut txn)).await?;
            }
        }
        Ok::<Duration, BoxError>(start.elapsed())
    });
    let mut acked: HashMap<SiteId, Duration> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked.len() < n {
        let Some(left) = deadline.checked_duration_since(Instant::now()) else {
            break;
        };
        let event = match tokio::time::timeout(left, watch.next()).await {
            Ok(Ok(e)) => e,
            _ => break,
        };
        let Some(site) = site_of(&event.kv.key, SITES_PREFIX) else {
            continue;
        };
        if let Ok(ch) = SiteChannel::decode(&event.kv.key, &event.kv.value)
            && ch.received_generation >= Generation::new(generation)
        {
            acked.entry(site).or_insert_with(|| start.elapsed());
        }
    }
    let committed = writer.await??;
    let mut times: Vec<Duration> = acked.into_values().collect();
    times.sort();
    let count = times.len();
    Ok((times, count, committed))
}

/// The raw quinn handshake rate on this machine: `n` connections (TLS 1.3, server
/// certificate only) from `endpoints` client endpoints to one server, all at once.
async fn raw_handshake_rate(n: usize, endpoints: usize) -> Result<(f64, Vec<Duration>), BoxError> {
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = rcgen::generate_simple_self_signed(vec!["raw.invalid".into()])?;
    let cert_der = CertificateDer::from(cert.cert.der().to_vec());
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let mut server_tls = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)?;
    server_tls.alpn_protocols = vec![b"raw".to_vec()];
    let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(server_tls)?,
    ));
    let mut transport = quinn::TransportConfig::default();
    transport.max_idle_timeout(Some(quinn::IdleTimeout::try_from(Duration::from_secs(60))?));
    server_config.transport_config(Arc::new(transport));
    let server = quinn::Endpoint::server(server_config, "127.0.0.1:0".parse()?)?;
    let addr = server.local_addr()?;
    let accepting = tokio::spawn({
        let server = server.clone();
        async move {
            let mut held = Vec::with_capacity(n);
            while held.len() < n {
                let Some(incoming) = server.accept().await else {
                    break;
                };
                if let Ok(c) = incoming.await {
                    held.push(c);
                }
            }
            held
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der)?;
    let mut client_tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    client_tls.alpn_protocols = vec![b"raw".to_vec()];
    let client_config = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(client_tls)?,
    ));
    let clients: Vec<quinn::Endpoint> = (0..endpoints.max(1))
        .map(|_| quinn::Endpoint::client("127.0.0.1:0".parse().expect("valid")))
        .collect::<Result<_, _>>()?;
    let start = Instant::now();
    let mut connects = tokio::task::JoinSet::new();
    for i in 0..n {
        let connecting =
            clients[i % clients.len()].connect_with(client_config.clone(), addr, "raw.invalid")?;
        connects.spawn(connecting);
    }
    let mut ok = 0usize;
    let mut conns = Vec::with_capacity(n);
    let mut done = Vec::with_capacity(n);
    while let Some(r) = connects.join_next().await {
        if let Ok(Ok(c)) = r {
            ok += 1;
            conns.push(c);
            done.push(start.elapsed());
        }
    }
    let elapsed = start.elapsed();
    let held = tokio::time::timeout(Duration::from_secs(10), accepting)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    for c in conns.iter().chain(held.iter()) {
        c.close(0u32.into(), b"done");
    }
    server.close(0u32.into(), b"done");
    for c in &clients {
        c.close(0u32.into(), b"done");
    }
    Ok((ok as f64 / elapsed.as_secs_f64(), done))
}

/// The child of `bench channel`: `count` real agents (in-memory stores) sharing
/// `endpoints` QUIC endpoints ([`AgentPool`]), until stdin closes.
pub async fn run_agents(
    dir: &Path,
    count: usize,
    heartbeat_ms: u64,
    endpoints: usize,
) -> Result<(), BoxError> {
    let pool = AgentPool::open(dir, endpoints)?;
    let mut agents: Vec<meridian_agent::Agent> = Vec::with_capacity(count);
    let mut window = EnrolWindow::default();
    for i in 0..count {
        window.room(i, |j| agents[j].is_connected()).await;
        let config = pool.config(i, heartbeat_ms);
        agents.push(
            pool.start(i, config, Arc::new(RecordingReconciler::default()))
                .await?,
        );
    }
    // Until the parent goes away (stdin closes) or kills this process.
    tokio::task::spawn_blocking(|| {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while stdin
            .lock()
            .read_line(&mut line)
            .map(|n| n > 0)
            .unwrap_or(false)
        {
            line.clear();
        }
    })
    .await?;
    Ok(())
}
