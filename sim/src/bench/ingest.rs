//! B5: report ingest at central, over the real channel path.
//!
//! A real central (sled store, QUIC on 127.0.0.1) and N simulated agents, each enrolled with
//! its own bootstrap token and holding a real mutual-TLS session (`meridian/1`). The agents
//! are a load generator, not `meridian_agent::Agent`s: each speaks the session protocol
//! directly (Hello, then `ReportBatch` frames) so the machine's cores go to central, not to
//! agent-side buffering. Like a real agent, each keeps one batch in flight and sends the next
//! when central's `ReportAck` covers it; central acknowledges a batch only once its reports
//! are durable (one store transaction, group commit), so the ack latency is the durable ack.
//!
//! Two phases on the same sessions:
//! - saturated: every agent sends its next batch as soon as the last is acknowledged; the
//!   reports stored per second is central's ingest capacity (the ack latency here is mostly
//!   queueing behind the other agents' batches, shown for the record);
//! - paced: once every agent's last saturated batch is acknowledged (the queue the saturated
//!   phase built has drained), the agents together offer the target rate (50,000 reports/s),
//!   each on its own schedule; the ack latency is measured from the scheduled send time, so a
//!   late batch counts its lateness (no coordinated omission). This is the B5 latency figure.
//!
//! At the end every agent's acknowledged high-water mark is checked against central's stored
//! channel record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_agent::store::Identity;
use meridian_central::server::Central;
use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::channel::{CENTRAL_SERVER_NAME, frame};
use meridian_common::ids::{Generation, Sequence, SiteId, Timestamp};
use meridian_common::model::{AllocationStatus, ReportBody, Severity, SiteReport};
use meridian_proto::v1 as proto;
use prost::Message;

use super::harness::{BoxError, site_name};
use super::percentile;
use meridian_testkit::central::{Liveness, config as test_central_config};
use meridian_testkit::enrol::enrol_site;

use proto::agent_message::Kind as AgentKind;
use proto::central_message::Kind as CentralKind;

/// How the benchmark reaches central's ingest (printed beside the figures).
pub const METHOD: &str =
    "real channel path: mutual-TLS QUIC sessions, ReportBatch -> durable ReportAck";

/// Options of `meridian-sim bench ingest`.
#[derive(Debug, Clone)]
pub struct IngestBenchOptions {
    /// Simulated agents, each with its own session.
    pub agents: usize,
    /// Reports per batch (a real agent sends up to 256).
    pub batch: usize,
    /// Measured time of each phase.
    pub seconds: f64,
    /// QUIC endpoints the agents share.
    pub endpoints: usize,
    /// Reports per second the agents offer together in the paced phase.
    pub paced_rate: f64,
    /// Central records usage from the reports (`channel.metering`); off only to measure what
    /// accounting costs (B14).
    pub metering: bool,
}

impl IngestBenchOptions {
    /// The defaults: 200 agents (1,000 with `full`), 64 reports a batch, 5 s phases (15 s),
    /// the paced phase at B5's 50,000 reports/s.
    pub fn new(full: bool) -> Self {
        IngestBenchOptions {
            agents: if full { 1_000 } else { 200 },
            batch: 64,
            seconds: if full { 15.0 } else { 5.0 },
            endpoints: 8,
            paced_rate: 50_000.0,
            metering: true,
        }
    }
}

/// The figures of one phase.
#[derive(Debug, Clone, Default)]
pub struct PhaseFigures {
    /// The rate offered (paced phase); none when agents send as fast as acks come back.
    pub offered: Option<f64>,
    /// Length of the phase.
    pub elapsed: Duration,
    /// Reports acknowledged (durable at central).
    pub reports: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Reports acknowledged per second.
    pub per_second: f64,
    pub ack_p50: Duration,
    pub ack_p99: Duration,
    pub ack_max: Duration,
}

impl PhaseFigures {
    fn of(offered: Option<f64>, elapsed: Duration, reports: u64, mut acks: Vec<Duration>) -> Self {
        acks.sort();
        let at = |q| {
            if acks.is_empty() {
                Duration::ZERO
            } else {
                percentile(&acks, q)
            }
        };
        PhaseFigures {
            offered,
            elapsed,
            reports,
            batches: acks.len() as u64,
            per_second: reports as f64 / elapsed.as_secs_f64().max(1e-9),
            ack_p50: at(0.5),
            ack_p99: at(0.99),
            ack_max: acks.last().copied().unwrap_or_default(),
        }
    }

    /// Whether the phase kept up with the rate it was offered (within 5 %).
    pub fn kept_up(&self) -> bool {
        self.offered.is_none_or(|o| self.per_second >= 0.95 * o)
    }
}

impl std::fmt::Display for PhaseFigures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} reports/s ({} reports in {} batches over {:.1} s); durable ack p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.per_second,
            self.reports,
            self.batches,
            self.elapsed.as_secs_f64(),
            self.ack_p50.as_secs_f64() * 1e3,
            self.ack_p99.as_secs_f64() * 1e3,
            self.ack_max.as_secs_f64() * 1e3
        )
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct IngestBenchReport {
    pub agents: usize,
    pub batch: usize,
    /// Every agent as fast as its acks come back: central's capacity.
    pub saturated: PhaseFigures,
    /// The agents together offering `IngestBenchOptions::paced_rate`.
    pub paced: PhaseFigures,
    /// Agents whose session failed during the run.
    pub failed_agents: usize,
    /// Agents whose acknowledged mark central's stored channel record confirms.
    pub verified_agents: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl IngestBenchReport {
    /// Whether B5 holds: capacity >= 50,000 reports/s, and at 50,000/s offered the durable
    /// ack p99 <= 20 ms with the offered rate kept up.
    pub fn met(&self) -> bool {
        self.saturated.per_second >= 50_000.0
            && self.paced.kept_up()
            && self.paced.ack_p99 <= Duration::from_millis(20)
            && self.failed_agents == 0
            && self.verified_agents == self.agents
    }
}

impl std::fmt::Display for IngestBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "B5 report ingest at central ({METHOD}), {} agents, {} reports a batch, one batch in flight each",
            self.agents, self.batch
        )?;
        writeln!(f, "  saturated: {}", self.saturated)?;
        writeln!(
            f,
            "  paced at {:.0} reports/s offered: {}",
            self.paced.offered.unwrap_or(0.0),
            self.paced
        )?;
        writeln!(
            f,
            "  central's stored high-water marks match {}/{} agents; {} sessions failed{}",
            self.verified_agents,
            self.agents,
            self.failed_agents,
            self.first_error
                .as_ref()
                .map_or(String::new(), |e| format!(" (first: {e})"))
        )?;
        write!(
            f,
            "  target B5: >= 50000 reports/s and durable ack p99 <= 20 ms at 50000/s: {}",
            if self.met() { "met" } else { "NOT met" }
        )
    }
}

/// When each phase runs, the same for every agent.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    saturated_from: Instant,
    saturated_until: Instant,
    /// Time between one agent's batches in the paced phase.
    interval: Duration,
}

/// When the paced phase runs: set once the saturated phase has drained.
#[derive(Debug, Clone, Copy)]
struct PacedWindow {
    from: Instant,
    until: Instant,
}

/// What one simulated agent did.
#[derive(Debug, Default)]
struct AgentRun {
    saturated: Vec<Duration>,
    saturated_reports: u64,
    paced: Vec<Duration>,
    paced_reports: u64,
    acked: u64,
    error: Option<String>,
}

/// Runs B5 and returns its figures.
pub async fn run(opts: &IngestBenchOptions) -> Result<IngestBenchReport, BoxError> {
    let n = opts.agents.max(1);
    let temp = tempfile::tempdir()?;
    let mut config = test_central_config(
        &temp.path().join("central"),
        "127.0.0.1:0".parse()?,
        Liveness::Relaxed,
    );
    config.channel.metering = opts.metering;
    let central = Arc::new(Central::open(config).await?);
    let addr = central.channel().local_addr();
    eprintln!("B5: central on {addr}; creating {n} sites and bootstrap tokens");
    let mut jobs = tokio::task::JoinSet::new();
    for chunk in (0..n).collect::<Vec<_>>().chunks(n.div_ceil(16).max(1)) {
        let central = Arc::clone(&central);
        let chunk = chunk.to_vec();
        jobs.spawn(async move {
            let mut files = Vec::with_capacity(chunk.len());
            for i in chunk {
                let file =
                    enrol_site(&central, &site_name(i), central.channel().advertised()).await?;
                files.push((i, file));
            }
            Ok::<_, BoxError>(files)
        });
    }
    let mut bootstraps = Vec::with_capacity(n);
    while let Some(r) = jobs.join_next().await {
        bootstraps.extend(r??);
    }
    bootstraps.sort_by_key(|(i, _)| *i);
    let bootstraps: Vec<BootstrapFile> = bootstraps.into_iter().map(|(_, b)| b).collect();

    // The load generator runs on its own runtime (its own threads), like a separate process.
    let load_opts = opts.clone();
    let (schedule, window, runs) = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        runtime.block_on(load(bootstraps, addr, &load_opts))
    })
    .join()
    .map_err(|_| "B5 load generator panicked")??;

    let mut report = IngestBenchReport {
        agents: n,
        batch: opts.batch,
        ..IngestBenchReport::default()
    };
    let (mut saturated, mut paced) = (Vec::new(), Vec::new());
    let (mut saturated_reports, mut paced_reports) = (0, 0);
    for (i, run) in runs.iter().enumerate() {
        saturated.extend_from_slice(&run.saturated);
        paced.extend_from_slice(&run.paced);
        saturated_reports += run.saturated_reports;
        paced_reports += run.paced_reports;
        if let Some(e) = &run.error {
            report.failed_agents += 1;
            report.first_error.get_or_insert_with(|| e.clone());
        }
        let stored = central
            .channel()
            .site_channel(&SiteId::parse(&site_name(i))?)
            .await?;
        if stored.report_high_water.get() == run.acked {
            report.verified_agents += 1;
        }
    }
    report.saturated = PhaseFigures::of(
        None,
        schedule.saturated_until - schedule.saturated_from,
        saturated_reports,
        saturated,
    );
    report.paced = PhaseFigures::of(
        Some(opts.paced_rate),
        window.until - window.from,
        paced_reports,
        paced,
    );
    let Ok(central) = Arc::try_unwrap(central) else {
        return Err("central still shared".into());
    };
    central.shutdown().await;
    Ok(report)
}

/// Enrols every agent, opens their sessions, then runs both phases.
async fn load(
    bootstraps: Vec<BootstrapFile>,
    central: SocketAddr,
    opts: &IngestBenchOptions,
) -> Result<(Schedule, PacedWindow, Vec<AgentRun>), BoxError> {
    let endpoints: Vec<quinn::Endpoint> = (0..opts.endpoints.max(1))
        .map(|_| meridian_agent::Agent::shared_endpoint("127.0.0.1:0".parse().expect("valid")))
        .collect::<Result<_, _>>()?;
    let n = bootstraps.len();
    eprintln!("B5: enrolling and connecting {n} agents");
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Schedule>);
    let (paced_tx, paced_rx) = tokio::sync::watch::channel(None::<PacedWindow>);
    let (drained_tx, mut drained_rx) = tokio::sync::mpsc::channel::<()>(n.max(1));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n.max(1));
    let mut agents = Vec::with_capacity(n);
    // Enrolment signs a CSR per agent: a few at a time, so central's handshake pacing is not
    // what this benchmark measures.
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let batch = opts
        .batch
        .clamp(1, meridian_common::channel::MAX_REPORTS_PER_BATCH);
    for (i, bootstrap) in bootstraps.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let (go, ready, gate) = (go_rx.clone(), ready_tx.clone(), Arc::clone(&gate));
        let (paced, drained) = (paced_rx.clone(), drained_tx.clone());
        // Agents start their paced schedules spread over one interval.
        let stagger = (i as f64 / n as f64).clamp(0.0, 1.0);
        agents.push(tokio::spawn(async move {
            let session = {
                let _permit = gate.acquire().await;
                open_session(&endpoint, &bootstrap, central).await
            };
            let _ = ready.send(()).await;
            match session {
                Ok((identity, connection, send, recv)) => {
                    let mut agent = SimAgent {
                        identity,
                        send,
                        recv,
                        batch,
                        next: 1,
                    };
                    let run = agent.run(go, paced, drained, stagger).await;
                    connection.close(0u32.into(), b"done");
                    run
                }
                Err(e) => AgentRun {
                    error: Some(meridian_common::telemetry::error_chain(e.as_ref())),
                    ..AgentRun::default()
                },
            }
        }));
    }
    drop((ready_tx, drained_tx));
    for _ in 0..n {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    let phase = Duration::from_secs_f64(opts.seconds.max(0.1));
    let start = Instant::now() + Duration::from_millis(50);
    let schedule = Schedule {
        saturated_from: start,
        saturated_until: start + phase,
        interval: Duration::from_secs_f64(n as f64 * batch as f64 / opts.paced_rate.max(1.0)),
    };
    eprintln!(
        "B5: {n} sessions open; {phase:?} saturated, then {phase:?} at {:.0} reports/s (a batch per agent every {:?})",
        opts.paced_rate, schedule.interval
    );
    go_tx.send(Some(schedule))?;
    // The paced phase starts once every agent has its last saturated batch acknowledged (or
    // has failed): a fixed gap let the saturated phase's queue (about a second deep at 1,000
    // agents) spill into the paced figures, which then measured the drain, not the rate.
    for _ in 0..n {
        if drained_rx.recv().await.is_none() {
            break;
        }
    }
    let settle = Duration::from_millis(200);
    let from = Instant::now() + settle;
    let window = PacedWindow {
        from,
        until: from + phase,
    };
    eprintln!(
        "B5: saturated phase drained {:.2} s after it ended",
        (Instant::now() - schedule.saturated_until).as_secs_f64()
    );
    paced_tx.send(Some(window))?;
    let mut runs = Vec::with_capacity(agents.len());
    for a in agents {
        runs.push(a.await.unwrap_or_else(|e| AgentRun {
            error: Some(format!("agent task: {e}")),
            ..AgentRun::default()
        }));
    }
    for e in &endpoints {
        e.close(0u32.into(), b"done");
    }
    Ok((schedule, window, runs))
}

type Session = (
    Identity,
    quinn::Connection,
    quinn::SendStream,
    quinn::RecvStream,
);

async fn open_session(
    endpoint: &quinn::Endpoint,
    bootstrap: &BootstrapFile,
    central: SocketAddr,
) -> Result<Session, BoxError> {
    let max = frame::DEFAULT_MAX_FRAME;
    let identity =
        meridian_agent::enroll::enroll(endpoint, bootstrap, max, meridian_agent::now_ms()).await?;
    let config = meridian_agent::tls::session_config(
        &identity.ca_pem,
        &identity.cert_pem,
        &identity.key_pem,
        Duration::from_secs(30),
        max,
    )?;
    let connection = endpoint
        .connect_with(config, central, CENTRAL_SERVER_NAME)?
        .await?;
    let (mut send, recv) = connection.open_bi().await?;
    let hello = proto::AgentMessage {
        kind: Some(AgentKind::Hello(proto::Hello {
            site: identity.site.as_str().to_owned(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            applied_generation: 0,
            last_acked_sequence: 0,
            held_generation: 0,
        })),
    };
    send.write_all(&frame::encode_message(&hello, max)?).await?;
    Ok((identity, connection, send, recv))
}

/// A realistic mix: mostly metrics and events, some RTT measurements, and one allocation
/// starting and one ending in every 16 reports (what metering reads).
fn report_template(site: &SiteId, i: u64) -> proto::SiteReport {
    let allocation = |state| ReportBody::AllocationState {
        workload: meridian_common::ids::WorkloadId::parse(&format!("wl-{:012x}", i / 16))
            .expect("valid"),
        server: meridian_common::ids::ServerId::parse("srv-0001").expect("valid"),
        state,
    };
    let body = match i % 16 {
        4 => allocation(AllocationStatus::Applied),
        12 => allocation(AllocationStatus::Ended),
        k if k % 4 == 0 => ReportBody::Event {
            severity: Severity::Info,
            resource: format!("server/srv-{}", i % 4),
            message: "allocation applied".into(),
        },
        k if k % 4 == 1 => ReportBody::Rtt {
            region: meridian_common::ids::RegionId::parse("eu-frankfurt").expect("valid"),
            rtt_ms: 12,
        },
        _ => ReportBody::Metrics {
            gpu_utilisation_pct: 73.5,
            power_watts: 5_600.0,
            period: None,
        },
    };
    SiteReport {
        site: site.clone(),
        sequence: Sequence::new(1),
        generation: Generation::new(1),
        at: Timestamp::from_millis(meridian_agent::now_ms()),
        body,
    }
    .into()
}

/// One simulated agent's session.
struct SimAgent {
    identity: Identity,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    batch: usize,
    /// Sequence of the next report.
    next: u64,
}

impl SimAgent {
    async fn run(
        &mut self,
        mut go: tokio::sync::watch::Receiver<Option<Schedule>>,
        mut paced: tokio::sync::watch::Receiver<Option<PacedWindow>>,
        drained: tokio::sync::mpsc::Sender<()>,
        stagger: f64,
    ) -> AgentRun {
        let mut run = AgentRun::default();
        let schedule = match go.wait_for(Option::is_some).await {
            Ok(s) => s.expect("checked"),
            Err(_) => return run,
        };
        let mut reports: Vec<proto::SiteReport> = (0..self.batch as u64)
            .map(|i| report_template(&self.identity.site, i))
            .collect();
        let mut drained = Some(drained);
        let result: Result<(), BoxError> = async {
            tokio::time::sleep_until(schedule.saturated_from.into()).await;
            while Instant::now() < schedule.saturated_until {
                let sent = Instant::now();
                run.acked = self.send_batch(&mut reports).await?;
                run.saturated.push(sent.elapsed());
                run.saturated_reports += self.batch as u64;
            }
            if let Some(d) = drained.take() {
                let _ = d.send(()).await;
            }
            let window = match paced.wait_for(Option::is_some).await {
                Ok(w) => w.expect("checked"),
                Err(_) => return Ok(()),
            };
            let mut due = window.from + schedule.interval.mul_f64(stagger);
            while due < window.until {
                tokio::time::sleep_until(due.into()).await;
                run.acked = self.send_batch(&mut reports).await?;
                // From when the batch was due, so lateness counts.
                run.paced.push(due.elapsed());
                run.paced_reports += self.batch as u64;
                due += schedule.interval;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            run.error = Some(meridian_common::telemetry::error_chain(e.as_ref()));
        }
        run
    }

    /// Sends the next batch and waits for the ack that covers it; returns the acked mark.
    async fn send_batch(&mut self, reports: &mut [proto::SiteReport]) -> Result<u64, BoxError> {
        let max = frame::DEFAULT_MAX_FRAME;
        for (k, r) in reports.iter_mut().enumerate() {
            r.sequence = self.next + k as u64;
        }
        let last = self.next + reports.len() as u64 - 1;
        let msg = proto::AgentMessage {
            kind: Some(AgentKind::ReportBatch(proto::ReportBatch {
                first_sequence: self.next,
                reports: reports.to_vec(),
                dropped: 0,
            })),
        };
        self.send
            .write_all(&frame::encode_message(&msg, max)?)
            .await?;
        loop {
            let body = meridian_channel::read_frame(&mut self.recv, max)
                .await?
                .ok_or("central ended the session")?;
            if let Some(CentralKind::ReportAck(ack)) =
                proto::CentralMessage::decode(body.as_slice())?.kind
                && ack.high_water_sequence >= last
            {
                self.next = last + 1;
                return Ok(ack.high_water_sequence);
            }
        }
    }
}
