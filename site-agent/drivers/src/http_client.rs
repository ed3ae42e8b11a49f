//! HTTP/1.1 plumbing shared by the device REST clients (NVUE on switches, Redfish on BMCs):
//! one URL's endpoint, its TLS set-up, and one request over a fresh connection.
//!
//! Device APIs see a handful of calls per operation, so there is no pool: every request opens
//! its own TCP (and, for `https`, rustls) connection and closes it after the answer. Retries,
//! timeouts and authentication are the callers' business, because their policies differ
//! (NVUE retries 502/503/504; Redfish honours `Retry-After` and logs in again on 401).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, Uri};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::net::TcpStream;

/// Whom an `https` endpoint's certificate must be issued by.
#[derive(Clone)]
pub enum TlsTrust {
    /// Trust anchors (the device's own certificate or its CA), DER.
    Roots(Vec<CertificateDer<'static>>),
    /// Accept any certificate. Only for lab devices with factory self-signed certificates,
    /// and only when an operator asked for it explicitly: the connection is encrypted but the
    /// peer is not authenticated.
    InsecureAcceptAny,
}

impl fmt::Debug for TlsTrust {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TlsTrust::Roots(r) => write!(f, "Roots({} certificate(s))", r.len()),
            TlsTrust::InsecureAcceptAny => f.write_str("InsecureAcceptAny"),
        }
    }
}

/// Why one HTTP exchange failed below the HTTP status level.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// The TCP connection could not be made.
    #[error("connect failed")]
    Connect(#[source] std::io::Error),
    /// The TLS handshake failed (certificate not trusted, protocol mismatch).
    #[error("TLS handshake failed")]
    Tls(#[source] std::io::Error),
    /// The HTTP exchange failed (connection closed, malformed response).
    #[error("HTTP exchange failed")]
    Http(#[source] hyper::Error),
    /// No complete response within the request timeout.
    #[error("no response within {0:?}")]
    TimedOut(Duration),
}

impl TransportError {
    /// Whether trying again may help. A TLS failure is a trust problem, not a transient one.
    pub fn retryable(&self) -> bool {
        !matches!(self, TransportError::Tls(_))
    }

    /// Whether the request certainly never reached the peer (so even a non-idempotent
    /// request may be sent again).
    pub fn never_sent(&self) -> bool {
        matches!(self, TransportError::Connect(_))
    }
}

/// Why an endpoint could not be set up from its URL.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// The URL is malformed, has no host, or a scheme other than `http`/`https`.
    #[error("URL {url:?}: {reason}")]
    Url { url: String, reason: String },
    /// The TLS configuration could not be built (a bad trust anchor).
    #[error("TLS set-up for {url:?} failed")]
    Tls {
        url: String,
        #[source]
        source: rustls::Error,
    },
}

/// One device's HTTP endpoint: where to connect, and how to secure the connection.
#[derive(Clone)]
pub struct HttpEndpoint {
    host: String,
    port: u16,
    authority: String,
    scheme: &'static str,
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl fmt::Debug for HttpEndpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpEndpoint")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .finish_non_exhaustive()
    }
}

impl HttpEndpoint {
    /// Parses `url` (`http://host:port` or `https://host:port`; a path is ignored). An `https`
    /// URL needs `trust`; an `http` one ignores it. Connects to nothing.
    pub fn new(url: &str, trust: Option<&TlsTrust>) -> Result<Self, EndpointError> {
        let bad = |reason: String| EndpointError::Url {
            url: url.to_owned(),
            reason,
        };
        let uri: Uri = url.parse().map_err(|e| bad(format!("{e}")))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            other => return Err(bad(format!("scheme {other:?} is neither http nor https"))),
        };
        let host = uri
            .host()
            .ok_or_else(|| bad("no host".to_owned()))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        let authority = uri
            .authority()
            .map(|a| a.as_str().to_owned())
            .unwrap_or_else(|| host.clone());
        let tls = if https {
            let trust = trust.ok_or_else(|| {
                bad("https needs trust anchors or an explicit insecure opt-in".to_owned())
            })?;
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
                .with_safe_default_protocol_versions()
                .map_err(|source| EndpointError::Tls {
                    url: url.to_owned(),
                    source,
                })?;
            let config = match trust {
                TlsTrust::Roots(certs) => {
                    if certs.is_empty() {
                        return Err(bad("https with an empty list of trust anchors".to_owned()));
                    }
                    let mut roots = rustls::RootCertStore::empty();
                    for cert in certs {
                        roots
                            .add(cert.clone())
                            .map_err(|source| EndpointError::Tls {
                                url: url.to_owned(),
                                source,
                            })?;
                    }
                    builder.with_root_certificates(roots).with_no_client_auth()
                }
                TlsTrust::InsecureAcceptAny => builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
                    .with_no_client_auth(),
            };
            let name = ServerName::try_from(host.clone())
                .map_err(|e| bad(format!("host {host:?} is not a TLS server name: {e}")))?;
            Some((tokio_rustls::TlsConnector::from(Arc::new(config)), name))
        } else {
            None
        };
        Ok(Self {
            host,
            port,
            authority,
            scheme: if https { "https" } else { "http" },
            tls,
        })
    }

    /// `host:port` as written in the URL (the `Host` header).
    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// `scheme://authority`, to name URLs in errors.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme, self.authority)
    }

    /// Sends `req` (its URI is the path and query) over a new connection and reads the whole
    /// answer. Sets the `Host` header. No timeout: wrap the call in one.
    pub async fn send(
        &self,
        mut req: Request<Full<Bytes>>,
    ) -> Result<Response<Bytes>, TransportError> {
        req.headers_mut().insert(
            hyper::header::HOST,
            hyper::header::HeaderValue::from_str(&self.authority)
                .expect("the authority came from a parsed URI"),
        );
        let tcp = TcpStream::connect((self.host.as_str(), self.port))
            .await
            .map_err(TransportError::Connect)?;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            Some((connector, name)) => {
                let tls = connector
                    .connect(name.clone(), tcp)
                    .await
                    .map_err(TransportError::Tls)?;
                exchange(TokioIo::new(tls), req).await
            }
            None => exchange(TokioIo::new(tcp), req).await,
        }
    }
}

async fn exchange<I>(io: I, req: Request<Full<Bytes>>) -> Result<Response<Bytes>, TransportError>
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(TransportError::Http)?;
    let driver = tokio::spawn(conn);
    let result = async {
        let resp = sender.send_request(req).await?;
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await?.to_bytes();
        Ok(Response::from_parts(parts, bytes))
    }
    .await
    .map_err(TransportError::Http);
    driver.abort();
    result
}

/// The verifier behind [`TlsTrust::InsecureAcceptAny`]: any certificate chain is accepted,
/// but the handshake signatures are still checked (so the peer holds the key it presented).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
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
            &self.0.signature_verification_algorithms,
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
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let e = HttpEndpoint::new("http://127.0.0.1:8000/redfish/v1", None).unwrap();
        assert_eq!(e.authority(), "127.0.0.1:8000");
        assert_eq!(e.origin(), "http://127.0.0.1:8000");
        let e = HttpEndpoint::new("https://bmc1", Some(&TlsTrust::InsecureAcceptAny)).unwrap();
        assert_eq!((e.port, e.origin().as_str()), (443, "https://bmc1"));
        for url in ["ftp://x", "not a url", "https://bmc1"] {
            assert!(HttpEndpoint::new(url, None).is_err(), "{url}");
        }
        assert!(HttpEndpoint::new("https://bmc1", Some(&TlsTrust::Roots(Vec::new()))).is_err());
    }
}
