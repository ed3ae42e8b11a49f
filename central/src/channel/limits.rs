//! Load limits at the edge of the channel: the UDP socket (buffers of several MiB, set before
//! quinn gets the socket), QUIC transport limits (streams, windows, idle timeout), handshake
//! pacing (a rate and a concurrency bound), address validation (Retry) when many handshakes
//! are pending, and a timeout on half-open handshakes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use meridian_common::channel::{ALPN_ENROLL, ALPN_SESSION};
use tokio::sync::Semaphore;

use super::{ChannelConfig, Shared};

pub use meridian_channel::{BufferSizes, bind_udp};

/// Counters of what the accept loop did.
#[derive(Debug, Default)]
pub struct Counters {
    /// Handshakes completed.
    pub handshakes: AtomicU64,
    /// Handshakes that failed or timed out.
    pub handshake_failures: AtomicU64,
    /// Handshakes that timed out (half-open).
    pub handshake_timeouts: AtomicU64,
    /// Retries sent (address validation).
    pub retries: AtomicU64,
    /// Connections refused (over `max_connections`).
    pub refused: AtomicU64,
    /// Handshakes refused because the pace or the concurrency bound was reached (shed load:
    /// the agent backs off with jitter and comes back, rather than waiting in a queue that
    /// would hand central stale handshakes their agents had already given up on).
    pub shed: AtomicU64,
    /// Connections now open.
    pub open: AtomicUsize,
    /// Sessions closed for a protocol violation.
    pub protocol_errors: AtomicU64,
}

/// Transport limits for channel connections: one session stream (or one enrolment stream),
/// and a second so a replacing stream is never blocked, nothing more.
pub fn transport(idle_timeout: Duration, max_frame: usize) -> quinn::TransportConfig {
    let mut t = meridian_channel::tls::transport(2, max_frame, idle_timeout);
    t.send_window((max_frame as u64 * 2).min(u32::MAX as u64));
    t
}

/// The server endpoint on a socket of `config.udp_buffer_bytes` buffers.
pub fn endpoint(
    config: &ChannelConfig,
    crypto: quinn::crypto::rustls::QuicServerConfig,
) -> std::io::Result<(quinn::Endpoint, BufferSizes)> {
    let (socket, sizes) = bind_udp(config.listen, config.udp_buffer_bytes)?;
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    server.transport_config(Arc::new(transport(
        Duration::from_millis(config.idle_timeout_ms),
        config.max_frame_bytes,
    )));
    server.max_incoming(
        config
            .max_concurrent_handshakes
            .saturating_mul(16)
            .max(1024),
    );
    server.incoming_buffer_size(64 * 1024);
    server.incoming_buffer_size_total(64 * 1024 * 1024);
    let endpoint = quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )?;
    Ok((endpoint, sizes))
}

/// A token bucket: at most `rate` starts per second, bursts of `rate / 10` (at least 1).
#[derive(Debug)]
struct Pacer {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: tokio::time::Instant,
}

impl Pacer {
    fn new(rate: u32) -> Self {
        let burst = (rate as f64 / 10.0).max(1.0);
        Pacer {
            rate: rate as f64,
            burst,
            tokens: burst,
            last: tokio::time::Instant::now(),
        }
    }

    /// Takes a token if one is available now.
    fn try_take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let elapsed = now.duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Accepts connections until `stop`, pacing handshakes and bounding how many run at once;
/// excess handshakes are refused immediately (see [`Counters::shed`]).
pub async fn accept_loop(
    shared: Arc<Shared>,
    endpoint: quinn::Endpoint,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let config = shared.config.clone();
    let in_flight = Arc::new(Semaphore::new(config.max_concurrent_handshakes));
    let mut pacer = Pacer::new(config.handshakes_per_second);
    let timeout = Duration::from_millis(config.handshake_timeout_ms);
    let mut validating_until: Option<tokio::time::Instant> = None;
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i { Some(i) => i, None => break },
            _ = stop.changed() => break,
        };
        if shared.counters.open.load(Ordering::Relaxed) >= config.max_connections {
            shared.counters.refused.fetch_add(1, Ordering::Relaxed);
            incoming.refuse();
            continue;
        }
        // Over the concurrency bound or the pace, refuse at once (a stateless close, smaller
        // than the Initial it answers): waiting would queue handshakes whose agents give up
        // before central reaches them. This comes before address validation, so a handshake
        // that is refused anyway costs no Retry round trip.
        let permit = match Arc::clone(&in_flight).try_acquire_owned() {
            Ok(p) if pacer.try_take() => p,
            _ => {
                shared.counters.shed.fetch_add(1, Ordering::Relaxed);
                incoming.refuse();
                continue;
            }
        };
        // Address validation is a mode, not a per-packet choice: once pending handshakes
        // reach the threshold, every unvalidated client gets a Retry until the load has
        // stayed below it for a handshake timeout. Deciding per packet flips: a client's
        // retransmitted first Initial, arriving after its Retry once the load dropped, would
        // be accepted as a second connection that the client, already past the Retry, cannot
        // complete; it stalls until its connect timeout (QUIC WG base-drafts issue 1085).
        let pending = config.max_concurrent_handshakes - in_flight.available_permits();
        let now = tokio::time::Instant::now();
        if pending >= config.retry_above_pending {
            validating_until = Some(now + timeout);
        }
        if !incoming.remote_address_validated() && validating_until.is_some_and(|t| now < t) {
            shared.counters.retries.fetch_add(1, Ordering::Relaxed);
            if incoming.retry().is_err() {
                tracing::debug!("retry not possible for this incoming connection");
            }
            continue;
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let connecting = match incoming.accept() {
                Ok(c) => c,
                Err(e) => {
                    shared
                        .counters
                        .handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "incoming connection failed");
                    return;
                }
            };
            let connection = match tokio::time::timeout(timeout, connecting).await {
                Ok(Ok(c)) => c,
                Ok(Err(e)) => {
                    shared
                        .counters
                        .handshake_failures
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(error = %e, "handshake failed");
                    return;
                }
                Err(_) => {
                    shared
                        .counters
                        .handshake_timeouts
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::debug!("handshake timed out (half-open)");
                    return;
                }
            };
            drop(permit);
            shared.counters.handshakes.fetch_add(1, Ordering::Relaxed);
            shared.counters.open.fetch_add(1, Ordering::Relaxed);
            let alpn = connection
                .handshake_data()
                .and_then(|d| d.downcast::<quinn::crypto::rustls::HandshakeData>().ok())
                .and_then(|d| d.protocol);
            match alpn.as_deref() {
                Some(p) if p == ALPN_SESSION => {
                    super::session::serve(Arc::clone(&shared), connection).await
                }
                Some(p) if p == ALPN_ENROLL => {
                    super::enroll::serve(Arc::clone(&shared), connection).await
                }
                _ => connection.close(
                    meridian_common::channel::close::PROTOCOL.into(),
                    b"unknown ALPN",
                ),
            }
            shared.counters.open.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
