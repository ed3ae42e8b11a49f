//! The agent channel, central side: a QUIC endpoint (quinn, rustls, TLS 1.3) serving
//! enrolment (`meridian-enroll/1`) and sessions (`meridian/1`, mutual TLS) on one UDP port.
//!
//! - [`enroll`]: token + CSR in, site certificate out; the site becomes `Enrolled`.
//! - [`session`]: one session per site (a newer one replaces the older), intent pushes,
//!   acknowledgements, report ingest, certificate renewal, liveness.
//! - [`distributor`]: watches `intents/` and wakes the session of each changed site, which
//!   sends only the newest generation.
//! - [`ingest`]: deduplicates reports on (site, sequence), stores them, acknowledges a
//!   high-water mark.
//! - [`limits`]: the UDP socket (buffers of several MiB), transport limits, handshake pacing,
//!   address validation under load, half-open handshake timeouts.
//!
//! The protocol is documented in `docs/agent-channel.md`.

mod action_reports;
mod distributor;
mod enroll;
mod ingest;
mod limits;
pub(crate) mod rtts;
mod session;
mod state;
mod tls;
pub mod utilisation;

pub use enroll::EnrollError;
pub use limits::{BufferSizes, Counters};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use meridian_common::config::ConfigError;
use meridian_common::ids::SiteId;
use serde::Deserialize;
use tokio::task::JoinSet;

use crate::audit::Auditor;
use crate::ca::CertificateAuthority;
use crate::clock::Clock;
use crate::tokens::Tokens;
use meridian_store::StoreError;
use meridian_store::Tables;
use meridian_store::schema::SiteChannel;
use meridian_store::tables::TableError;
use session::Registry;
use state::AuthCache;

/// The `[channel]` table of central's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChannelConfig {
    /// UDP address the QUIC endpoint binds (port 0: any free port).
    pub listen: SocketAddr,
    /// `host:port` addresses agents use to reach central, written into bootstrap files.
    /// Empty: the listen address (with 127.0.0.1 for an unspecified IP).
    pub advertise: Vec<String>,
    /// Lifetime of a site certificate, seconds.
    pub site_cert_lifetime_s: u64,
    /// Default lifetime of a bootstrap token, seconds.
    pub token_ttl_s: u64,
    /// A site silent for this long is marked `Disconnected` (nothing is torn down).
    pub disconnect_after_ms: u64,
    /// QUIC idle timeout: a connection with no packets for this long is closed.
    pub idle_timeout_ms: u64,
    /// A handshake not finished within this is dropped (half-open handshakes).
    pub handshake_timeout_ms: u64,
    /// Most handshakes started per second (pacing).
    pub handshakes_per_second: u32,
    /// Most handshakes in progress at once.
    pub max_concurrent_handshakes: usize,
    /// With more handshakes than this pending, unvalidated clients get a Retry (address
    /// validation) first. 0: always.
    pub retry_above_pending: usize,
    /// Largest frame (one message), bytes.
    pub max_frame_bytes: usize,
    /// Most connections at once; more are refused.
    pub max_connections: usize,
    /// UDP receive and send buffer asked of the kernel, bytes.
    pub udp_buffer_bytes: usize,
    /// Most intent pushes sent and not yet acknowledged, over all sites: a change touching
    /// every site goes out in a window instead of one burst that overflows the socket.
    pub max_pushes_in_flight: usize,
    /// A push unacknowledged this long stops counting against the window.
    pub push_ack_timeout_ms: u64,
    /// Record usage (metering) from the sites' reports. Off only to measure what it costs
    /// ingest (benchmark B14): with it off, nothing is billed.
    pub metering: bool,
}

impl Default for ChannelConfig {
    fn default() -> Self {
        ChannelConfig {
            listen: "0.0.0.0:7443".parse().expect("valid"),
            advertise: Vec::new(),
            site_cert_lifetime_s: 24 * 3600,
            token_ttl_s: 7 * 24 * 3600,
            disconnect_after_ms: 15_000,
            idle_timeout_ms: 30_000,
            handshake_timeout_ms: 10_000,
            handshakes_per_second: 5_000,
            max_concurrent_handshakes: 1_024,
            retry_above_pending: 256,
            max_frame_bytes: meridian_common::channel::frame::DEFAULT_MAX_FRAME,
            max_connections: 50_000,
            udp_buffer_bytes: 8 * 1024 * 1024,
            max_pushes_in_flight: 512,
            push_ack_timeout_ms: 2_000,
            metering: true,
        }
    }
}

impl ChannelConfig {
    /// Semantic checks; errors name the key under `channel.`.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |k: &str, m: &str| Err(ConfigError::invalid(format!("channel.{k}"), m));
        if !(5..=365 * 24 * 3600).contains(&self.site_cert_lifetime_s) {
            return bad("site_cert_lifetime_s", "must be 5 s to 1 year");
        }
        if self.token_ttl_s == 0 || self.token_ttl_s > crate::tokens::MAX_TTL.as_secs() {
            return bad("token_ttl_s", "must be 1 s to 90 days");
        }
        if self.disconnect_after_ms < 100 {
            return bad("disconnect_after_ms", "must be at least 100 ms");
        }
        if !(100..=600_000).contains(&self.idle_timeout_ms) {
            return bad("idle_timeout_ms", "must be 100 ms to 10 min");
        }
        if !(100..=120_000).contains(&self.handshake_timeout_ms) {
            return bad("handshake_timeout_ms", "must be 100 ms to 2 min");
        }
        if self.handshakes_per_second == 0 {
            return bad("handshakes_per_second", "must be at least 1");
        }
        if self.max_concurrent_handshakes == 0 {
            return bad("max_concurrent_handshakes", "must be at least 1");
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return bad("max_frame_bytes", "must be 64 KiB to 64 MiB");
        }
        if self.max_connections == 0 {
            return bad("max_connections", "must be at least 1");
        }
        if !(64 * 1024..=1024 * 1024 * 1024).contains(&self.udp_buffer_bytes) {
            return bad("udp_buffer_bytes", "must be 64 KiB to 1 GiB");
        }
        if self.max_pushes_in_flight == 0 {
            return bad("max_pushes_in_flight", "must be at least 1");
        }
        if !(10..=600_000).contains(&self.push_ack_timeout_ms) {
            return bad("push_ack_timeout_ms", "must be 10 ms to 10 min");
        }
        for a in &self.advertise {
            if a.rsplit_once(':')
                .and_then(|(_, p)| p.parse::<u16>().ok())
                .is_none_or(|p| p == 0)
            {
                return bad("advertise", "each entry must be host:port");
            }
        }
        Ok(())
    }

    /// The site certificate lifetime.
    pub fn site_cert_lifetime(&self) -> Duration {
        Duration::from_secs(self.site_cert_lifetime_s)
    }

    /// How long an unacknowledged push holds its slot in the push window.
    pub fn push_ack_timeout(&self) -> Duration {
        Duration::from_millis(self.push_ack_timeout_ms)
    }

    /// The addresses for bootstrap files, given the address actually bound.
    pub fn advertised(&self, bound: SocketAddr) -> Vec<String> {
        if !self.advertise.is_empty() {
            return self.advertise.clone();
        }
        let ip = if bound.ip().is_unspecified() {
            "127.0.0.1".parse().expect("valid")
        } else {
            bound.ip()
        };
        vec![SocketAddr::new(ip, bound.port()).to_string()]
    }
}

/// Why the channel could not start.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    #[error("cannot bind the channel's UDP socket {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot issue central's server certificate")]
    Ca(#[from] crate::ca::CaError),
    #[error("cannot set up TLS")]
    Tls(#[from] meridian_channel::tls::TlsError),
    #[error("store error")]
    Store(#[from] StoreError),
    #[error("store error")]
    Table(#[from] TableError),
}

/// What the channel is built from (handed in by central's composition root).
#[derive(Debug)]
pub struct ChannelParts {
    pub config: ChannelConfig,
    pub tables: Tables,
    pub ca: Arc<CertificateAuthority>,
    pub tokens: Tokens,
    pub audit: Auditor,
    pub clock: Arc<dyn Clock>,
    /// Where the fan-out clock and the report ingest latency are recorded.
    pub metrics: crate::metrics::Metrics,
}

/// What the channel's own tasks (accept loop, sessions, distributor, sweeper) share. Nothing
/// outside the channel holds it.
#[derive(Debug)]
pub(crate) struct Shared {
    pub config: ChannelConfig,
    pub tables: Tables,
    pub ca: Arc<CertificateAuthority>,
    pub tokens: Tokens,
    pub audit: Auditor,
    pub clock: Arc<dyn Clock>,
    pub auth: AuthCache,
    pub registry: Registry,
    pub counters: limits::Counters,
    /// Permits for intent pushes in flight (`max_pushes_in_flight`).
    pub push_window: Arc<tokio::sync::Semaphore>,
    pub metrics: crate::metrics::Metrics,
}

/// A running channel endpoint.
#[derive(Debug)]
pub struct Channel {
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    local_addr: SocketAddr,
    buffers: limits::BufferSizes,
    stop: tokio::sync::watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Channel {
    /// Binds the endpoint and starts accepting, distributing and sweeping.
    pub async fn start(parts: ChannelParts) -> Result<Channel, ChannelError> {
        let ChannelParts {
            config,
            tables,
            ca,
            tokens,
            audit,
            clock,
            metrics,
        } = parts;
        let auth = AuthCache::default();
        let auth_from = auth.load(tables.store().as_ref()).await?;
        let (chain, key) = ca.issue_server_cert(clock.now())?;
        let crypto = tls::server_crypto(ca.cert_der(), chain, key, auth.clone())?;
        let (endpoint, buffers) =
            limits::endpoint(&config, crypto).map_err(|source| ChannelError::Bind {
                addr: config.listen,
                source,
            })?;
        let local_addr = endpoint.local_addr().map_err(|source| ChannelError::Bind {
            addr: config.listen,
            source,
        })?;
        tracing::info!(
            %local_addr,
            udp_recv_buffer = buffers.recv,
            udp_send_buffer = buffers.send,
            asked = config.udp_buffer_bytes,
            "agent channel listening"
        );
        if buffers.recv < config.udp_buffer_bytes {
            tracing::warn!(
                got = buffers.recv,
                asked = config.udp_buffer_bytes,
                "the kernel capped the UDP receive buffer; raise net.core.rmem_max"
            );
        }
        let shared = Arc::new(Shared {
            tables,
            ca,
            tokens,
            audit,
            clock,
            auth,
            registry: Registry::default(),
            counters: limits::Counters::default(),
            push_window: Arc::new(tokio::sync::Semaphore::new(config.max_pushes_in_flight)),
            metrics,
            config,
        });
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = JoinSet::new();
        tasks.spawn(limits::accept_loop(
            Arc::clone(&shared),
            endpoint.clone(),
            stop_rx.clone(),
        ));
        tasks.spawn(distributor::run(Arc::clone(&shared), stop_rx.clone()));
        tasks.spawn(session::watch_auth(
            Arc::clone(&shared),
            auth_from,
            stop_rx.clone(),
        ));
        tasks.spawn(session::sweep_silent(Arc::clone(&shared), stop_rx));
        Ok(Channel {
            shared,
            endpoint,
            local_addr,
            buffers,
            stop,
            tasks,
        })
    }

    /// The UDP address the endpoint is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP buffer sizes the kernel granted.
    pub fn buffer_sizes(&self) -> limits::BufferSizes {
        self.buffers
    }

    /// The addresses for bootstrap files.
    pub fn advertised(&self) -> Vec<String> {
        self.shared.config.advertised(self.local_addr)
    }

    /// Token operations.
    pub fn tokens(&self) -> &Tokens {
        &self.shared.tokens
    }

    /// The channel's admission and error counters.
    pub fn counters(&self) -> &limits::Counters {
        &self.shared.counters
    }

    /// Sends `push` as it is on the live session of `site` (see
    /// [`Registry::inject_push`]); test builds only.
    #[cfg(feature = "test-hooks")]
    pub fn inject_push(&self, site: &SiteId, push: meridian_proto::v1::IntentPush) -> bool {
        self.shared.registry.inject_push(site, push)
    }

    /// Sites with a live session.
    pub fn connected_sites(&self) -> usize {
        self.shared.registry.len()
    }

    /// [`Channel::connected_sites`] as a reader that does not borrow the channel (for
    /// `/metrics`).
    pub fn sessions_reader(&self) -> impl Fn() -> usize + Send + Sync + 'static {
        let shared = Arc::clone(&self.shared);
        move || shared.registry.len()
    }

    /// Intent pushes sent and not yet acknowledged (nor timed out): the push window's use.
    pub fn pushes_in_flight(&self) -> usize {
        self.shared.config.max_pushes_in_flight - self.shared.push_window.available_permits()
    }

    /// The channel's stored view of a site (acked/applied generations, report high-water).
    pub async fn site_channel(&self, site: &SiteId) -> Result<SiteChannel, StoreError> {
        meridian_store::schema::site_channel(self.shared.tables.store().as_ref(), site).await
    }

    /// Stops accepting, closes every session and waits (bounded) for the endpoint to drain.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        self.endpoint.close(
            meridian_common::channel::close::SHUTDOWN.into(),
            b"central shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
    }
}
