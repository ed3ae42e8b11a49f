//! TLS and QUIC transport set-up both ends of the channel start from: TLS 1.3 with the ring
//! provider, one error type, and stream windows sized to the largest frame.

use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;

/// The crypto provider used everywhere in Meridian (ring).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Why a TLS or QUIC configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("invalid TLS configuration")]
    Rustls(#[from] rustls::Error),
    #[error("stored certificate or key is not valid PEM")]
    Pem(#[from] rustls_pki_types::pem::Error),
    #[error("cannot build the client certificate verifier")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
    #[error("TLS configuration is not usable for QUIC")]
    Quic(#[from] quinn::crypto::rustls::NoInitialCipherSuite),
}

/// Transport limits both ends share: no unidirectional streams, `bidi_streams` concurrent
/// bidirectional ones the peer may open, receive windows of two frames, and an idle timeout.
pub fn transport(bidi_streams: u32, max_frame: usize, idle: Duration) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(bidi_streams.into());
    t.max_concurrent_uni_streams(0u32.into());
    let window = (max_frame as u64 * 2).min(u32::MAX as u64) as u32;
    t.stream_receive_window(window.into());
    t.receive_window(window.into());
    if let Ok(idle) = quinn::IdleTimeout::try_from(idle) {
        t.max_idle_timeout(Some(idle));
    }
    t
}
