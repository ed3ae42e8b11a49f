//! B8: offline resync. A real agent (`meridian_agent::Agent`, its own journal) holds a
//! session to a real central through the fault proxy; the proxy cuts it off, central writes
//! 1,000 new generations of its intent, and the proxy heals the link.
//!
//! Measured after the heal:
//! - round trips: intent pushes the agent received (each answers its Hello or a change; the
//!   agent asks for nothing else), and the sessions it opened; as a cross-check the proxy
//!   delays every packet so one round trip takes a known time, and the time from the agent's
//!   Hello to the newest generation persisted is expressed in those round trips;
//! - bytes: what the pushes carried on the session stream (frame header included) against the
//!   protobuf size of one snapshot of the newest intent; and, for the record, every byte the
//!   proxy forwarded to the agent (QUIC handshake with certificates, acks, heartbeats).

use std::sync::Arc;
use std::time::{Duration, Instant};

use meridian_agent::Agent;
use meridian_agent::config::AgentConfig;
use meridian_agent::reconciler::RecordingReconciler;
use meridian_central::server::Central;
use meridian_common::ids::{Generation, SiteId};
use meridian_proto::v1 as proto;
use prost::Message;

use super::harness::BoxError;
use meridian_emulators::proxy::FaultProxy;
use meridian_testkit::central::{Liveness, config as test_central_config};
use meridian_testkit::enrol::enrol_site;
use meridian_testkit::fixtures::intent_with_networks;
use meridian_testkit::wait::wait_until;

/// Options of `meridian-sim bench resync`.
#[derive(Debug, Clone)]
pub struct ResyncBenchOptions {
    /// Generations written while the agent is offline.
    pub generations: u64,
    /// Tenant networks in each intent (its size).
    pub networks: usize,
    /// One-way delay the proxy adds after the heal, to express time in round trips.
    pub one_way_delay: Duration,
}

impl Default for ResyncBenchOptions {
    fn default() -> Self {
        ResyncBenchOptions {
            generations: 1_000,
            networks: 200,
            one_way_delay: Duration::from_millis(25),
        }
    }
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct ResyncBenchReport {
    pub generations: u64,
    /// Time central took to write the generations while the agent was away.
    pub write_time: Duration,
    /// Protobuf size of one snapshot of the newest intent.
    pub snapshot_bytes: u64,
    /// Intent pushes the agent received after the heal.
    pub pushes: u64,
    /// Sessions the agent opened after the heal.
    pub sessions: u64,
    /// Bytes of those pushes on the session stream, frame headers included.
    pub push_bytes: u64,
    /// Every byte the proxy forwarded to the agent after the heal.
    pub wire_to_agent_bytes: u64,
    /// Packets the proxy forwarded to the agent after the heal.
    pub wire_to_agent_packets: u64,
    /// Round trip the proxy imposed after the heal.
    pub rtt: Duration,
    /// From the agent's Hello to the newest generation persisted.
    pub hello_to_held: Option<Duration>,
    /// From the heal to the newest generation persisted (includes reconnect backoff).
    pub heal_to_held: Option<Duration>,
    /// The generation the agent held at the end, and the newest written.
    pub held: u64,
    pub newest: u64,
}

impl ResyncBenchReport {
    /// Application round trips of the resync: one per push received (every push answers
    /// the agent's Hello or a change), and at least one per session opened.
    pub fn round_trips(&self) -> u64 {
        self.pushes.max(self.sessions)
    }

    /// The Hello-to-persisted time in imposed round trips.
    pub fn timed_round_trips(&self) -> Option<f64> {
        self.hello_to_held
            .map(|d| d.as_secs_f64() / self.rtt.as_secs_f64().max(1e-9))
    }

    /// Whether the B8 target holds: one round trip, one snapshot, bytes within snapshot +
    /// 1 KiB, and the agent holds the newest generation.
    pub fn met(&self) -> bool {
        self.round_trips() == 1
            && self.pushes == 1
            && self.push_bytes <= self.snapshot_bytes + 1024
            && self.held == self.newest
    }
}

impl std::fmt::Display for ResyncBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "B8 offline resync: {} generations written in {:.2} s while the agent was cut off",
            self.generations,
            self.write_time.as_secs_f64()
        )?;
        writeln!(
            f,
            "  after the heal: {} session(s), {} push(es) = {} round trip(s); held {} of newest {}",
            self.sessions,
            self.pushes,
            self.round_trips(),
            self.held,
            self.newest
        )?;
        writeln!(
            f,
            "  {} B received on the session for a {} B snapshot (+{} B); {} B in {} packets on the wire (QUIC handshake, acks, heartbeats included)",
            self.push_bytes,
            self.snapshot_bytes,
            self.push_bytes as i64 - self.snapshot_bytes as i64,
            self.wire_to_agent_bytes,
            self.wire_to_agent_packets
        )?;
        if let (Some(d), Some(r)) = (self.hello_to_held, self.timed_round_trips()) {
            writeln!(
                f,
                "  Hello to snapshot persisted: {:.1} ms = {:.2} round trips of {:.0} ms (central's and the agent's durable writes included)",
                d.as_secs_f64() * 1e3,
                r,
                self.rtt.as_secs_f64() * 1e3
            )?;
        }
        write!(
            f,
            "  target B8: one round trip, one snapshot, bytes <= snapshot + 1 KiB: {}",
            if self.met() { "met" } else { "NOT met" }
        )
    }
}

/// Runs B8 and returns its figures.
pub async fn run(opts: &ResyncBenchOptions) -> Result<ResyncBenchReport, BoxError> {
    let temp = tempfile::tempdir()?;
    let dir = temp.path();
    let mut config = test_central_config(
        &dir.join("central"),
        "127.0.0.1:0".parse()?,
        Liveness::Relaxed,
    );
    // The old connection must be gone before the heal, so everything after it is the resync.
    config.channel.idle_timeout_ms = 1_500;
    config.channel.disconnect_after_ms = 1_500;
    let central = Central::open(config).await?;
    let proxy = FaultProxy::new(central.channel().local_addr(), 8);
    let site = "resync-1";
    let site_id = SiteId::parse(site)?;
    let port = proxy.add_site(site).await?;
    let boot = enrol_site(&central, site, vec![port.to_string()]).await?;
    let boot_path = dir.join("boot.toml");
    std::fs::write(&boot_path, boot.render())?;
    let heartbeat_ms = 300;
    let agent = Agent::start(
        AgentConfig {
            data_dir: dir.join("agent"),
            bootstrap_file: boot_path,
            bind: "127.0.0.1:0".parse()?,
            heartbeat_interval_ms: heartbeat_ms,
            backoff_initial_ms: 50,
            backoff_max_ms: 150,
            ..AgentConfig::default()
        },
        Arc::new(RecordingReconciler::default()),
    )
    .await?;
    let result = measure(&central, &proxy, &agent, &site_id, opts).await;
    agent.shutdown().await;
    proxy.shutdown().await;
    central.shutdown().await;
    result
}

async fn measure(
    central: &Central,
    proxy: &FaultProxy,
    agent: &Agent,
    site: &SiteId,
    opts: &ResyncBenchOptions,
) -> Result<ResyncBenchReport, BoxError> {
    let limit = Duration::from_secs(60);
    let intents = central.tables().intents();
    let intent = |g: u64| {
        Ok::<_, BoxError>(intent_with_networks(
            site,
            g,
            opts.networks + (g % 50) as usize,
        ))
    };
    intents.upsert(&intent(1)?).await?;
    let held = |g: u64| {
        agent
            .status()
            .is_ok_and(|s| s.held >= Generation::new(g) && s.connected)
    };
    wait_until(limit, || held(1))
        .await
        .ok_or("B8: the agent never held generation 1")?;

    proxy.cut_site(site.as_str(), Duration::from_secs(3600));
    wait_until(limit, || {
        agent.status().is_ok_and(|s| !s.connected) && central.channel().connected_sites() == 0
    })
    .await
    .ok_or("B8: the link did not go down on both ends")?;

    let newest = 1 + opts.generations.max(1);
    let started = Instant::now();
    for g in 2..=newest {
        intents.upsert(&intent(g)?).await?;
    }
    let write_time = started.elapsed();
    let stored = intents
        .get(site)
        .await?
        .ok_or("B8: central lost the intent")?
        .record;
    let snapshot_bytes = proto::SiteIntent::from(stored).encoded_len() as u64;

    let before = agent.status()?;
    proxy.set_delay(opts.one_way_delay);
    proxy.reset_stats(site.as_str());
    proxy.heal_site(site.as_str());
    let healed = Instant::now();
    // The agent marks itself connected once its Hello is written; time from there.
    let hello = wait_until(limit, || agent.status().is_ok_and(|s| s.connected))
        .await
        .map(|_| Instant::now());
    let held_at = wait_until(limit, || {
        agent
            .status()
            .is_ok_and(|s| s.held >= Generation::new(newest))
    })
    .await
    .map(|_| Instant::now());
    // Anything else that might still come (a second push would show here).
    tokio::time::sleep(opts.one_way_delay * 8 + Duration::from_millis(300)).await;
    let after = agent.status()?;
    let wire = proxy.stats(site.as_str());
    proxy.set_delay(Duration::ZERO);
    Ok(ResyncBenchReport {
        generations: opts.generations.max(1),
        write_time,
        snapshot_bytes,
        pushes: after.pushes_received - before.pushes_received,
        sessions: after.sessions - before.sessions,
        push_bytes: after.push_bytes_received - before.push_bytes_received,
        wire_to_agent_bytes: wire.to_agent_bytes,
        wire_to_agent_packets: wire.to_agent_packets,
        rtt: opts.one_way_delay * 2,
        hello_to_held: hello.zip(held_at).map(|(h, d)| d.duration_since(h)),
        heal_to_held: held_at.map(|d| d.duration_since(healed)),
        held: after.held.get(),
        newest,
    })
}
