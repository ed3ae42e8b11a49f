//! TLS for the agent's side of the channel.
//!
//! - Enrolment: the agent has no CA yet, only its SHA-256 fingerprint from the bootstrap
//!   file. [`PinnedCa`] accepts central only if the chain central presents contains a
//!   certificate with that fingerprint and the server certificate verifies against it as the
//!   sole root (name [`CENTRAL_SERVER_NAME`]).
//! - Sessions: central's CA (received at enrolment, checked against the pin) is the sole
//!   root, and the agent presents its site certificate.

use std::sync::Arc;
use std::time::Duration;

use meridian_common::channel::{ALPN_ENROLL, ALPN_SESSION};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

pub use meridian_channel::tls::{TlsError, provider};

/// Accepts central's certificate only under the pinned CA.
#[derive(Debug)]
pub struct PinnedCa {
    fingerprint: [u8; 32],
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl PinnedCa {
    /// Pins the CA with this SHA-256 fingerprint.
    pub fn new(fingerprint: [u8; 32]) -> Self {
        PinnedCa {
            fingerprint,
            provider: provider(),
        }
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .find(|c| Sha256::digest(c.as_ref()).as_slice() == self.fingerprint)
            .ok_or(rustls::Error::InvalidCertificate(
                CertificateError::UnknownIssuer,
            ))?;
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        inner.verify_server_cert(end_entity, &[], server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// SHA-256 of the first certificate in a PEM text.
pub fn pem_fingerprint(pem: &str) -> Option<[u8; 32]> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).ok()?;
    Some(Sha256::digest(der.as_ref()).into())
}

/// How long one connection attempt may take before the agent gives up on it and backs off:
/// one heartbeat period (at least 1 s), doubled for each consecutive failed attempt up to 8
/// periods (at most 60 s). The first attempt after a healed partition is short, which with a
/// short initial RTT estimate (lost handshake packets are resent quickly) bounds how long an
/// agent stays away; an overloaded central (a reconnect storm of thousands of agents) gets
/// ever more patient attempts instead of a retry storm.
pub fn connect_timeout(heartbeat: Duration, failures: u32) -> Duration {
    let base = heartbeat.max(Duration::from_secs(1));
    (base * (1u32 << failures.min(3))).min(Duration::from_secs(60).max(base))
}

fn transport(heartbeat: Duration, max_frame: usize) -> quinn::TransportConfig {
    // The agent opens the session stream; central opens none.
    let mut t = meridian_channel::tls::transport(0, max_frame, heartbeat * 3);
    // Resend lost handshake packets sooner than quinn's 333 ms default estimate would.
    t.initial_rtt((heartbeat / 10).clamp(Duration::from_millis(50), Duration::from_millis(333)));
    t
}

/// Client configuration for enrolment: pinned CA, no client certificate.
pub fn enroll_config(
    fingerprint: [u8; 32],
    heartbeat: Duration,
    max_frame: usize,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PinnedCa::new(fingerprint)))
        .with_no_client_auth();
    tls.alpn_protocols = vec![ALPN_ENROLL.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport(
        heartbeat.max(Duration::from_secs(5)),
        max_frame,
    )));
    Ok(config)
}

/// Client configuration for sessions: central's CA as the root, the site certificate as the
/// client certificate.
pub fn session_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    heartbeat: Duration,
    max_frame: usize,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_slice(ca_pem.as_bytes())?)?;
    let chain = vec![CertificateDer::from_pem_slice(cert_pem.as_bytes())?];
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())?;
    let mut tls = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    tls.alpn_protocols = vec![ALPN_SESSION.to_vec()];
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport(heartbeat, max_frame)));
    Ok(config)
}

/// A client endpoint on `bind` with UDP buffers of `buffer` bytes (granted sizes logged).
/// Simulated agents may share one endpoint (see [`crate::Agent::start_on_endpoint`]).
pub fn client_endpoint(
    bind: std::net::SocketAddr,
    buffer: usize,
) -> std::io::Result<quinn::Endpoint> {
    let (socket, sizes) = meridian_channel::bind_udp(bind, buffer)?;
    tracing::debug!(
        udp_recv_buffer = sizes.recv,
        udp_send_buffer = sizes.send,
        asked = buffer,
        "agent UDP socket"
    );
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        None,
        socket,
        Arc::new(quinn::TokioRuntime),
    )
}

#[cfg(test)]
mod tests {
    use super::connect_timeout;
    use std::time::Duration;

    #[test]
    fn attempts_grow_more_patient_after_failures_and_stay_bounded() {
        let hb = Duration::from_secs(5);
        let got: Vec<u64> = (0..6).map(|f| connect_timeout(hb, f).as_secs()).collect();
        assert_eq!(got, [5, 10, 20, 40, 40, 40]);
        assert_eq!(
            connect_timeout(Duration::from_millis(200), 0),
            Duration::from_secs(1)
        );
        assert_eq!(
            connect_timeout(Duration::from_secs(30), 3),
            Duration::from_secs(60)
        );
        assert_eq!(
            connect_timeout(Duration::from_secs(90), 0),
            Duration::from_secs(90)
        );
    }
}
