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
//! Figures: reports stored per second over all agents, and the ack latency (batch sent to
//! `ReportAck` received) p50 / p99 / max. At the end every agent's acknowledged high-water
//! mark is checked against central's stored channel record.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_agent::store::Identity;
use meridian_central::server::Central;
use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::channel::{CENTRAL_SERVER_NAME, frame};
use meridian_common::ids::{Generation, Sequence, SiteId, Timestamp};
use meridian_common::model::{ReportBody, Severity, SiteReport};
use meridian_proto::v1 as proto;
use prost::Message;

use super::harness::{BoxError, central_config, enrol_site, site_name};
use super::percentile;

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
    /// Measured time.
    pub seconds: f64,
    /// QUIC endpoints the agents share.
    pub endpoints: usize,
}

impl IngestBenchOptions {
    /// The defaults: 200 agents (1,000 with `full`), 64 reports a batch, 5 s (15 s).
    pub fn new(full: bool) -> Self {
        IngestBenchOptions {
            agents: if full { 1_000 } else { 200 },
            batch: 64,
            seconds: if full { 15.0 } else { 5.0 },
            endpoints: 8,
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct IngestBenchReport {
    pub agents: usize,
    pub batch: usize,
    /// Time the load ran.
    pub elapsed: Duration,
    /// Reports acknowledged (durable at central).
    pub reports: u64,
    /// Batches acknowledged.
    pub batches: u64,
    /// Reports per second.
    pub per_second: f64,
    pub ack_p50: Duration,
    pub ack_p99: Duration,
    pub ack_max: Duration,
    /// Agents whose session failed during the run.
    pub failed_agents: usize,
    /// Agents whose acknowledged mark central's stored channel record confirms.
    pub verified_agents: usize,
    /// The first failure, if any.
    pub first_error: Option<String>,
}

impl std::fmt::Display for IngestBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "B5 report ingest at central ({METHOD}), {} agents, {} reports a batch, one batch in flight each",
            self.agents, self.batch
        )?;
        writeln!(
            f,
            "  {:.0} reports/s ({} reports in {} batches over {:.1} s); durable ack p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.per_second,
            self.reports,
            self.batches,
            self.elapsed.as_secs_f64(),
            self.ack_p50.as_secs_f64() * 1e3,
            self.ack_p99.as_secs_f64() * 1e3,
            self.ack_max.as_secs_f64() * 1e3
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
        let met = self.per_second >= 50_000.0 && self.ack_p99 <= Duration::from_millis(20);
        write!(
            f,
            "  target B5: >= 50000 reports/s and durable ack p99 <= 20 ms: {}",
            if met { "met" } else { "NOT met" }
        )
    }
}

/// What one simulated agent did.
#[derive(Debug, Default)]
struct AgentRun {
    latencies: Vec<Duration>,
    reports: u64,
    acked: u64,
    error: Option<String>,
}

/// Runs B5 and returns its figures.
pub async fn run(opts: &IngestBenchOptions) -> Result<IngestBenchReport, BoxError> {
    let n = opts.agents.max(1);
    let temp = tempfile::tempdir()?;
    let config = central_config(&temp.path().join("central"), "127.0.0.1:0".parse()?);
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
                files.push(file);
            }
            Ok::<_, BoxError>(files)
        });
    }
    let mut bootstraps = Vec::with_capacity(n);
    while let Some(r) = jobs.join_next().await {
        bootstraps.extend(r??);
    }

    // The load generator runs on its own runtime (its own threads), like a separate process.
    let load_opts = opts.clone();
    let runs = std::thread::spawn(move || {
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
    let (elapsed, runs) = runs;
    report.elapsed = elapsed;
    let mut all = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        report.reports += run.acked;
        report.batches += run.latencies.len() as u64;
        all.extend_from_slice(&run.latencies);
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
    all.sort();
    if !all.is_empty() {
        report.ack_p50 = percentile(&all, 0.5);
        report.ack_p99 = percentile(&all, 0.99);
        report.ack_max = *all.last().expect("not empty");
    }
    report.per_second = report.reports as f64 / elapsed.as_secs_f64().max(1e-9);
    let Ok(central) = Arc::try_unwrap(central) else {
        return Err("central still shared".into());
    };
    central.shutdown().await;
    Ok(report)
}

/// Enrols every agent, opens their sessions, then runs the load for `opts.seconds`.
async fn load(
    bootstraps: Vec<BootstrapFile>,
    central: SocketAddr,
    opts: &IngestBenchOptions,
) -> Result<(Duration, Vec<AgentRun>), BoxError> {
    let endpoints: Vec<quinn::Endpoint> = (0..opts.endpoints.max(1))
        .map(|_| meridian_agent::Agent::shared_endpoint("127.0.0.1:0".parse().expect("valid")))
        .collect::<Result<_, _>>()?;
    eprintln!("B5: enrolling and connecting {} agents", bootstraps.len());
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Instant>);
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(bootstraps.len().max(1));
    let mut agents = Vec::with_capacity(bootstraps.len());
    // Enrolment signs a CSR per agent: a few at a time, so central's handshake pacing is not
    // what this benchmark measures.
    let gate = Arc::new(tokio::sync::Semaphore::new(32));
    let n = bootstraps.len();
    for (i, bootstrap) in bootstraps.into_iter().enumerate() {
        let endpoint = endpoints[i % endpoints.len()].clone();
        let (go, ready, gate) = (go_rx.clone(), ready_tx.clone(), Arc::clone(&gate));
        let batch = opts
            .batch
            .clamp(1, meridian_central::channel::ingest::MAX_BATCH);
        agents.push(tokio::spawn(async move {
            let session = {
                let _permit = gate.acquire().await;
                open_session(&endpoint, &bootstrap, central).await
            };
            let _ = ready.send(()).await;
            match session {
                Ok((identity, connection, send, recv)) => {
                    report_loop(identity, &connection, send, recv, batch, go).await
                }
                Err(e) => AgentRun {
                    error: Some(meridian_common::telemetry::error_chain(e.as_ref())),
                    ..AgentRun::default()
                },
            }
        }));
    }
    drop(ready_tx);
    for _ in 0..n {
        if ready_rx.recv().await.is_none() {
            break;
        }
    }
    let seconds = Duration::from_secs_f64(opts.seconds.max(0.1));
    eprintln!("B5: {n} sessions open; reporting for {seconds:?}");
    let started = Instant::now();
    go_tx.send(Some(started + seconds))?;
    let mut runs = Vec::with_capacity(agents.len());
    for a in agents {
        runs.push(a.await.unwrap_or_else(|e| AgentRun {
            error: Some(format!("agent task: {e}")),
            ..AgentRun::default()
        }));
    }
    let elapsed = started.elapsed();
    for e in &endpoints {
        e.close(0u32.into(), b"done");
    }
    Ok((elapsed, runs))
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

/// A realistic mix: mostly metrics and events, some RTT measurements.
fn report_template(site: &SiteId, i: u64) -> proto::SiteReport {
    let body = match i % 4 {
        0 => ReportBody::Event {
            severity: Severity::Info,
            resource: format!("server/srv-{}", i % 4),
            message: "allocation applied".into(),
        },
        1 => ReportBody::Rtt {
            region: meridian_common::ids::RegionId::parse("eu-frankfurt").expect("valid"),
            rtt_ms: 12,
        },
        _ => ReportBody::Metrics {
            gpu_utilisation_pct: 73.5,
            power_watts: 5_600.0,
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

async fn report_loop(
    identity: Identity,
    connection: &quinn::Connection,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    batch: usize,
    mut go: tokio::sync::watch::Receiver<Option<Instant>>,
) -> AgentRun {
    let mut run = AgentRun::default();
    let deadline = match go.wait_for(Option::is_some).await {
        Ok(d) => d.expect("checked"),
        Err(_) => return run,
    };
    let max = frame::DEFAULT_MAX_FRAME;
    let mut reports: Vec<proto::SiteReport> = (0..batch as u64)
        .map(|i| report_template(&identity.site, i))
        .collect();
    let mut next = 1u64;
    let result: Result<(), BoxError> = async {
        while Instant::now() < deadline {
            for (k, r) in reports.iter_mut().enumerate() {
                r.sequence = next + k as u64;
            }
            let last = next + batch as u64 - 1;
            let msg = proto::AgentMessage {
                kind: Some(AgentKind::ReportBatch(proto::ReportBatch {
                    first_sequence: next,
                    reports: reports.clone(),
                    dropped: 0,
                })),
            };
            let bytes = frame::encode_message(&msg, max)?;
            let sent = Instant::now();
            send.write_all(&bytes).await?;
            run.reports += batch as u64;
            loop {
                let body = meridian_agent::enroll::read_frame(&mut recv, max)
                    .await?
                    .ok_or("central ended the session")?;
                if let Some(CentralKind::ReportAck(ack)) =
                    proto::CentralMessage::decode(body.as_slice())?.kind
                    && ack.high_water_sequence >= last
                {
                    run.acked = ack.high_water_sequence;
                    break;
                }
            }
            run.latencies.push(sent.elapsed());
            next = last + 1;
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        run.error = Some(meridian_common::telemetry::error_chain(e.as_ref()));
    }
    connection.close(0u32.into(), b"done");
    run
}
