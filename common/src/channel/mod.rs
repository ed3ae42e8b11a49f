//! The sans-IO pieces of the agent channel: framing, sequence and acknowledgement bookkeeping,
//! reconnect backoff, the bootstrap file and the session state machines of both ends
//! ([`session`]). No sockets and no clock reads live here: time and
//! randomness are arguments, so every piece is tested (and fuzzable) without a network.
//!
//! The protocol itself is described in `docs/agent-channel.md`.

pub mod backoff;
pub mod bootstrap;
pub mod frame;
pub mod seq;
pub mod session;

/// Most reports in one `ReportBatch` central accepts (each is one write of one store
/// transaction); a larger batch is a protocol violation.
pub const MAX_REPORTS_PER_BATCH: usize = 512;

/// ALPN of the enrolment protocol: one `EnrollRequest`, one `EnrollResponse`, no client
/// certificate.
pub const ALPN_ENROLL: &[u8] = b"meridian-enroll/1";
/// ALPN of a session: mutual TLS, `AgentMessage` / `CentralMessage` frames on one stream.
pub const ALPN_SESSION: &[u8] = b"meridian/1";
/// The DNS name in central's server certificate; agents verify central against it (and
/// against the pinned CA), whatever address they dialled.
pub const CENTRAL_SERVER_NAME: &str = "central.meridian.invalid";
/// URI SAN prefix naming the site in a site certificate: `urn:meridian:site:{site}`.
pub const SITE_SAN_PREFIX: &str = "urn:meridian:site:";
/// URI SAN prefix naming the site's certificate epoch: `urn:meridian:cert-epoch:{n}`.
/// Revoking a site bumps its epoch; certificates of an older epoch are refused.
pub const EPOCH_SAN_PREFIX: &str = "urn:meridian:cert-epoch:";

/// QUIC application close codes central and the agent use (carried in CONNECTION_CLOSE).
pub mod close {
    /// Normal shutdown.
    pub const NORMAL: u32 = 0;
    /// A newer session for the same site replaced this one.
    pub const REPLACED: u32 = 1;
    /// The site was revoked.
    pub const REVOKED: u32 = 2;
    /// The peer broke the protocol (bad frame, wrong first message, unknown message).
    pub const PROTOCOL: u32 = 3;
    /// A session connection came without a client certificate.
    pub const NO_CERTIFICATE: u32 = 4;
    /// Central is shutting down.
    pub const SHUTDOWN: u32 = 5;
    /// Central could not serve the request (store failure).
    pub const INTERNAL: u32 = 6;
}
