//! Enrolment, agent side (`meridian-enroll/1`): generate a key pair, send the bootstrap token
//! and a CSR to central (pinned by its CA fingerprint), receive a site certificate.

use std::time::Duration;

use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::channel::{CENTRAL_SERVER_NAME, frame};
use meridian_proto::v1 as proto;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::store::Identity;
use meridian_channel::read_frame;
use meridian_channel::tls::TlsError;

use crate::tls;

/// How long one enrolment attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why enrolment failed.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// Central refused; the message says what to do.
    #[error("central refused enrolment ({code:?}): {message}")]
    Refused {
        code: proto::EnrollErrorCode,
        message: String,
    },
    #[error("cannot set up TLS")]
    Tls(#[from] TlsError),
    #[error("cannot generate the key pair or CSR")]
    Key(#[from] rcgen::Error),
    #[error("no central address could be reached: {0}")]
    Unreachable(String),
    #[error("enrolment exchange failed")]
    Exchange(#[source] std::io::Error),
    #[error("central's answer does not decode")]
    Decode(#[from] prost::DecodeError),
    #[error("central's CA does not match the pinned fingerprint")]
    CaMismatch,
    #[error("central's answer is empty")]
    Empty,
}

impl EnrollError {
    /// Whether trying again with the same bootstrap file can help.
    pub fn is_retryable(&self) -> bool {
        matches!(self, EnrollError::Unreachable(_) | EnrollError::Exchange(_))
    }
}

/// Resolves `host:port`.
pub async fn resolve(addr: &str) -> Option<std::net::SocketAddr> {
    tokio::net::lookup_host(addr).await.ok()?.next()
}

/// Enrols with the bootstrap file; returns the identity to store.
pub async fn enroll(
    endpoint: &quinn::Endpoint,
    bootstrap: &BootstrapFile,
    max_frame: usize,
    now_ms: i64,
) -> Result<Identity, EnrollError> {
    enroll_with_patience(endpoint, bootstrap, max_frame, now_ms, 0).await
}

/// [`enroll`], waiting `2^patience` times longer for each attempt (patience is capped at 3):
/// the session loop raises it with every consecutive failure, so when thousands of agents
/// enrol at once and central paces its handshakes, attempts get more patient instead of
/// timing out and retrying in a storm.
pub async fn enroll_with_patience(
    endpoint: &quinn::Endpoint,
    bootstrap: &BootstrapFile,
    max_frame: usize,
    now_ms: i64,
    patience: u32,
) -> Result<Identity, EnrollError> {
    let scale = 1u32 << patience.min(3);
    let key = rcgen::KeyPair::generate()?;
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())?
        .serialize_request(&key)?
        .pem()?;
    let config = tls::enroll_config(
        bootstrap.ca_fingerprint,
        Duration::from_secs(5) * scale,
        max_frame,
    )?;
    let request = proto::EnrollRequest {
        site: bootstrap.site.as_str().to_owned(),
        token: bootstrap.token.clone(),
        csr_pem: csr,
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    };
    let mut failures = Vec::new();
    for addr in &bootstrap.central_addresses {
        let Some(remote) = resolve(addr).await else {
            failures.push(format!("{addr}: does not resolve"));
            continue;
        };
        let attempt = async {
            let connection = endpoint
                .connect_with(config.clone(), remote, CENTRAL_SERVER_NAME)
                .map_err(|e| EnrollError::Unreachable(e.to_string()))?
                .await
                .map_err(|e| EnrollError::Unreachable(e.to_string()))?;
            let (mut send, mut recv) = connection
                .open_bi()
                .await
                .map_err(|e| EnrollError::Exchange(std::io::Error::other(e)))?;
            let bytes = frame::encode_message(&request, max_frame)
                .map_err(|e| EnrollError::Exchange(std::io::Error::other(e)))?;
            send.write_all(&bytes)
                .await
                .map_err(|e| EnrollError::Exchange(std::io::Error::other(e)))?;
            let _ = send.finish();
            let body = read_frame(&mut recv, max_frame)
                .await
                .map_err(EnrollError::Exchange)?
                .ok_or(EnrollError::Empty)?;
            connection.close(0u32.into(), b"enrolled");
            Ok::<_, EnrollError>(proto::EnrollResponse::decode(body.as_slice())?)
        };
        let response = match tokio::time::timeout(ATTEMPT_TIMEOUT * scale, attempt).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) if e.is_retryable() => {
                failures.push(format!("{addr}: {e}"));
                continue;
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                failures.push(format!("{addr}: timed out"));
                continue;
            }
        };
        return match response.outcome {
            Some(proto::enroll_response::Outcome::Success(ok)) => {
                if tls::pem_fingerprint(&ok.ca_pem) != Some(bootstrap.ca_fingerprint) {
                    return Err(EnrollError::CaMismatch);
                }
                Ok(Identity {
                    site: bootstrap.site.clone(),
                    key_pem: key.serialize_pem(),
                    cert_pem: ok.certificate_chain_pem,
                    ca_pem: ok.ca_pem,
                    issued_at_ms: now_ms,
                    not_after_ms: ok.not_after,
                    central_addresses: bootstrap.central_addresses.clone(),
                    token_sha256: token_hash(&bootstrap.token),
                })
            }
            Some(proto::enroll_response::Outcome::Error(e)) => Err(EnrollError::Refused {
                code: proto::EnrollErrorCode::try_from(e.code)
                    .unwrap_or(proto::EnrollErrorCode::Unspecified),
                message: e.message,
            }),
            None => Err(EnrollError::Empty),
        };
    }
    Err(EnrollError::Unreachable(failures.join("; ")))
}

/// SHA-256 (hex) of a token, to notice a new bootstrap file without keeping the secret.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
