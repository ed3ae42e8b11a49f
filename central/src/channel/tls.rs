//! TLS for the channel: one rustls server configuration for both ALPNs.
//!
//! Client certificates are requested but optional at the TLS layer, because enrolling agents
//! have none yet; a presented certificate is fully verified at the handshake (chain to our CA,
//! validity period, site SAN, and the site's revocation state and epoch from [`AuthCache`]),
//! so a revoked or stale certificate never completes a handshake. A `meridian/1` connection
//! without a certificate is closed before any message is read (see `session`).

use std::sync::Arc;

use meridian_common::channel::{ALPN_ENROLL, ALPN_SESSION};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

use meridian_channel::tls::{TlsError, provider};

use super::state::AuthCache;
use crate::ca::site_identity;

/// Verifies site certificates: the chain, then the site's auth record.
#[derive(Debug)]
struct SiteVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    auth: AuthCache,
}

impl ClientCertVerifier for SiteVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let identity = site_identity(end_entity).map_err(|_| {
            rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure)
        })?;
        match self.auth.get(&identity.site) {
            Some(auth) if !auth.revoked && identity.epoch >= auth.epoch => {
                Ok(ClientCertVerified::assertion())
            }
            Some(_) => {
                tracing::info!(site = %identity.site, "refused revoked site certificate at handshake");
                Err(rustls::Error::InvalidCertificate(CertificateError::Revoked))
            }
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// The QUIC server crypto: TLS 1.3 only, both ALPNs, site certificates verified as above.
pub fn server_crypto(
    ca_cert: &CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    auth: AuthCache,
) -> Result<quinn::crypto::rustls::QuicServerConfig, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    roots.add(ca_cert.clone())?;
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()?;
    let verifier = Arc::new(SiteVerifier { inner, auth });
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![ALPN_SESSION.to_vec(), ALPN_ENROLL.to_vec()];
    config.max_early_data_size = 0;
    Ok(quinn::crypto::rustls::QuicServerConfig::try_from(config)?)
}
