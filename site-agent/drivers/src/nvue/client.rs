//! The NVUE REST client: [`NvueClient`] implements [`SwitchFabric`] with NVUE's revision
//! workflow.
//!
//! Apply reads the applied view (`GET /nvue_v1/?rev=applied&filled=false`) and compares it with
//! the desired tree ([`drift`]); when nothing differs it sends nothing else and reports no
//! change. Otherwise it creates a revision (`POST /nvue_v1/revision`), replaces the revision's
//! whole tree (`DELETE /nvue_v1/?rev=<id>` with `{}`, then one root `PATCH` of the desired tree;
//! the id is URL-encoded, `/` as `%2F`), applies it (`PATCH /nvue_v1/revision/<id>` with
//! `{"state":"apply","auto-prompt":{"ays":"ays_yes"}}`) and polls the revision until it is
//! `applied`. `invalid` and every `*_fail` state are errors carrying `transition.issue`.
//!
//! Every request uses HTTP Basic, its own connection (a handful of calls per apply: no pool),
//! a timeout, and up to `attempts` tries when the connection fails, times out or the switch
//! answers 502/503/504. 401 and 403 are never retried. `https` URLs use rustls with the trust
//! anchors given in [`NvueConfig::tls_roots`] (a switch's self-signed certificate must be
//! issued by one of them).
//!
//! Every call is `async` and runs on the caller's runtime.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode, header};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};

use crate::http_client::{EndpointError, HttpEndpoint, TlsTrust};

use super::{FabricError, FabricSpec, drift, render};
use crate::{ChangeReport, SwitchFabric};

/// Characters escaped in a revision id: everything but RFC 3986's unreserved ones.
const ID_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// URL-encodes a revision id for a path segment or the `rev` query (`/` becomes `%2F`).
pub fn encode_revision_id(id: &str) -> String {
    utf8_percent_encode(id, ID_ESCAPES).to_string()
}

/// How to reach and drive one switch's NVUE API.
#[derive(Clone)]
pub struct NvueConfig {
    /// `https://leaf1:8765` on a switch, `http://127.0.0.1:<port>` for the emulator. Only the
    /// scheme and authority are used; paths start at `/nvue_v1`.
    pub url: String,
    /// A Linux user of the switch in group `nvapply`.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Trust anchors for `https` (the switch's certificate or its CA), DER.
    pub tls_roots: Vec<CertificateDer<'static>>,
    /// The switch's own configuration that is not about tenants (`system`, management
    /// interface, ...): merged under the rendering, so that replacing the whole tree keeps it.
    pub base: Value,
    /// Limit for one request (connect, send, whole response).
    pub request_timeout: Duration,
    /// Tries per request for connection errors, timeouts and 502/503/504 (at least 1).
    pub attempts: u32,
    /// Pause before the first retry; doubled for each further one.
    pub retry_backoff: Duration,
    /// How long a revision may take to reach `applied`.
    pub apply_timeout: Duration,
    /// Pause between polls of the revision's state.
    pub poll_interval: Duration,
}

impl NvueConfig {
    /// A config with production defaults: 10 s per request, 4 attempts from 250 ms backoff,
    /// 180 s to apply, polled every 500 ms, no base tree.
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            username: username.into(),
            password: password.into(),
            tls_roots: Vec::new(),
            base: json!({}),
            request_timeout: Duration::from_secs(10),
            attempts: 4,
            retry_backoff: Duration::from_millis(250),
            apply_timeout: Duration::from_secs(180),
            poll_interval: Duration::from_millis(500),
        }
    }
}

impl fmt::Debug for NvueConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvueConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("tls_roots", &self.tls_roots.len())
            .field("request_timeout", &self.request_timeout)
            .field("attempts", &self.attempts)
            .field("retry_backoff", &self.retry_backoff)
            .field("apply_timeout", &self.apply_timeout)
            .field("poll_interval", &self.poll_interval)
            .finish_non_exhaustive()
    }
}

pub use crate::http_client::TransportError;

/// A [`SwitchFabric`] over one switch's NVUE REST API.
#[derive(Clone)]
pub struct NvueClient {
    cfg: NvueConfig,
    endpoint: HttpEndpoint,
    auth: String,
}

impl fmt::Debug for NvueClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NvueClient")
            .field("cfg", &self.cfg)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl NvueClient {
    /// Checks the URL (and builds the TLS configuration for `https`). Connects to nothing.
    pub fn new(cfg: NvueConfig) -> Result<Self, FabricError> {
        if cfg.url.starts_with("https:") && cfg.tls_roots.is_empty() {
            return Err(FabricError::Config(format!(
                "NVUE URL {:?} is https but no trust anchor (tls_roots) was given",
                cfg.url
            )));
        }
        let trust = TlsTrust::Roots(cfg.tls_roots.clone());
        let endpoint = HttpEndpoint::new(&cfg.url, Some(&trust)).map_err(|e| match e {
            EndpointError::Tls { url, source } => FabricError::Tls { url, source },
            EndpointError::Url { url, reason } => {
                FabricError::Config(format!("NVUE URL {url:?}: {reason}"))
            }
        })?;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", cfg.username, cfg.password))
        );
        Ok(Self {
            endpoint,
            auth,
            cfg,
        })
    }

    /// The full desired tree for `spec`: the base configuration with the rendering over it.
    pub fn desired(&self, spec: &FabricSpec) -> Result<Value, FabricError> {
        let mut tree = self.cfg.base.clone();
        merge(&mut tree, render(spec)?);
        Ok(tree)
    }

    /// The switch's applied configuration (`?rev=applied&filled=false`).
    pub async fn applied(&self) -> Result<Value, FabricError> {
        let body = self
            .call(Method::GET, "/nvue_v1/?rev=applied&filled=false", None)
            .await?;
        parse(&body, "applied configuration")
    }

    /// Converges the switch to an already rendered `desired` tree (no local validation: the
    /// switch's own checks decide). Sends nothing when the applied view already matches.
    pub async fn apply_tree(&self, desired: &Value) -> Result<ChangeReport, FabricError> {
        let applied = self.applied().await?;
        let differences = drift(desired, &applied);
        let mut report = ChangeReport::default();
        if differences.is_empty() {
            return Ok(report);
        }
        let id = self.create_revision().await?;
        let enc = encode_revision_id(&id);
        let tree = format!("/nvue_v1/?rev={enc}");
        self.call(Method::DELETE, &tree, Some(&json!({}))).await?;
        self.call(Method::PATCH, &tree, Some(desired)).await?;
        self.call(
            Method::PATCH,
            &format!("/nvue_v1/revision/{enc}"),
            Some(&json!({"state": "apply", "auto-prompt": {"ays": "ays_yes"}})),
        )
        .await?;
        self.wait_applied(&id, &enc).await?;
        tracing::info!(revision = %id, changes = differences.len(), "NVUE revision applied");
        for d in differences {
            report.push(d);
        }
        report.push(format!("applied revision {id}"));
        Ok(report)
    }

    async fn create_revision(&self) -> Result<String, FabricError> {
        let body = self.call(Method::POST, "/nvue_v1/revision", None).await?;
        let v = parse(&body, "new revision")?;
        // `{"<id>": {"state": "pending", ...}}`: the only key is the id.
        v.as_object()
            .and_then(|m| {
                m.iter()
                    .find(|(_, r)| r.is_object())
                    .map(|(k, _)| k.clone())
            })
            .ok_or_else(|| FabricError::Protocol(format!("POST /nvue_v1/revision answered {v}")))
    }

    async fn wait_applied(&self, id: &str, enc: &str) -> Result<(), FabricError> {
        let path = format!("/nvue_v1/revision/{enc}");
        let start = Instant::now();
        let mut confirmed = false;
        loop {
            let body = self.call(Method::GET, &path, None).await?;
            let v = parse(&body, "revision")?;
            // The revision itself, or (some releases) wrapped under its id.
            let rev = match v.get("state") {
                Some(_) => &v,
                None => v.get(id).unwrap_or(&v),
            };
            let state = rev
                .get("state")
                .and_then(Value::as_str)
                .ok_or_else(|| FabricError::Protocol(format!("revision {id} has no state: {v}")))?
                .to_owned();
            match state.as_str() {
                "applied" | "applied_and_saved" => return Ok(()),
                s if s == "invalid" || s.ends_with("_fail") => {
                    return Err(FabricError::Rejected {
                        revision: id.to_owned(),
                        state,
                        issue: issue_text(&rev["transition"]["issue"]),
                    });
                }
                // Stopped at the are-you-sure prompt despite the auto-prompt: confirm once.
                "ays" if !confirmed => {
                    confirmed = true;
                    self.call(Method::PATCH, &path, Some(&json!({"state": "ays_yes"})))
                        .await?;
                }
                _ => {}
            }
            let waited = start.elapsed();
            if waited >= self.cfg.apply_timeout {
                return Err(FabricError::ApplyTimeout {
                    revision: id.to_owned(),
                    state,
                    waited,
                });
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
    }

    /// One request with retries; the body of a 2xx answer.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Bytes, FabricError> {
        let attempts = self.cfg.attempts.max(1);
        let payload = match body {
            Some(v) => Some(Bytes::from(serde_json::to_vec(v).map_err(|source| {
                FabricError::Json {
                    what: format!("{method} {path} body"),
                    source,
                }
            })?)),
            None => None,
        };
        let mut backoff = self.cfg.retry_backoff;
        for attempt in 1..=attempts {
            let outcome = tokio::time::timeout(
                self.cfg.request_timeout,
                self.once(&method, path, payload.clone()),
            )
            .await
            .unwrap_or(Err(TransportError::TimedOut(self.cfg.request_timeout)));
            let last = attempt == attempts;
            match outcome {
                Ok((status, bytes)) if status.is_success() => return Ok(bytes),
                Ok((status, bytes))
                    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN =>
                {
                    return Err(FabricError::Auth {
                        url: self.cfg.url.clone(),
                        user: self.cfg.username.clone(),
                        status: status.as_u16(),
                        message: message(&bytes),
                    });
                }
                Ok((status, bytes)) => {
                    let transient = matches!(
                        status,
                        StatusCode::BAD_GATEWAY
                            | StatusCode::SERVICE_UNAVAILABLE
                            | StatusCode::GATEWAY_TIMEOUT
                    );
                    if !transient || last {
                        return Err(FabricError::Http {
                            method: method.to_string(),
                            path: path.to_owned(),
                            status: status.as_u16(),
                            attempts: attempt,
                            message: message(&bytes),
                        });
                    }
                    tracing::warn!(%method, path, %status, attempt, "NVUE busy; retrying");
                }
                Err(source) => {
                    if !source.retryable() || last {
                        return Err(FabricError::Transport {
                            method: method.to_string(),
                            path: path.to_owned(),
                            attempts: attempt,
                            source,
                        });
                    }
                    tracing::warn!(%method, path, attempt, error = %source, "NVUE unreachable; retrying");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = backoff.saturating_mul(2);
        }
        unreachable!("the last attempt returns")
    }

    async fn once(
        &self,
        method: &Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::AUTHORIZATION, &self.auth)
            .header(header::ACCEPT, "application/json");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req
            .body(Full::new(body.unwrap_or_default()))
            .expect("method, path and headers are valid");
        let resp = self.endpoint.send(req).await?;
        Ok((resp.status(), resp.into_body()))
    }
}

#[async_trait::async_trait]
impl SwitchFabric for NvueClient {
    async fn apply(&self, desired: &FabricSpec) -> Result<ChangeReport, FabricError> {
        let tree = self.desired(desired)?;
        self.apply_tree(&tree).await
    }

    async fn drift(&self, desired: &FabricSpec) -> Result<Vec<String>, FabricError> {
        let tree = self.desired(desired)?;
        Ok(drift(&tree, &self.applied().await?))
    }
}

fn parse(body: &[u8], what: &str) -> Result<Value, FabricError> {
    serde_json::from_slice(body).map_err(|source| FabricError::Json {
        what: what.to_owned(),
        source,
    })
}

/// Deep merge of `over` into `base` (objects merge, anything else replaces).
fn merge(base: &mut Value, over: Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (slot, v) => *slot = v,
    }
}

/// The human text of an error body: NVUE's `detail`/`title`, else the raw body (shortened).
fn message(body: &[u8]) -> String {
    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(body) {
        let parts: Vec<&str> = ["title", "detail", "message"]
            .iter()
            .filter_map(|k| m.get(*k).and_then(Value::as_str))
            .collect();
        if !parts.is_empty() {
            return parts.join(": ");
        }
    }
    let text = String::from_utf8_lossy(body);
    text.chars().take(300).collect()
}

/// `transition.issue` as text: every `message` in it, else the JSON itself.
fn issue_text(issue: &Value) -> String {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    match x {
                        Value::String(s) if k == "message" => out.push(s.clone()),
                        _ => walk(x, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(issue, &mut out);
    if out.is_empty() {
        match issue {
            Value::Null => "no issue given".to_owned(),
            Value::Object(m) if m.is_empty() => "no issue given".to_owned(),
            other => other.to_string(),
        }
    } else {
        out.join("; ")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn encodes_revision_ids() {
        assert_eq!(
            encode_revision_id("changeset/cumulus/2026-11-21_10.02.03_AB12"),
            "changeset%2Fcumulus%2F2026-11-21_10.02.03_AB12"
        );
        assert_eq!(encode_revision_id("1"), "1");
    }

    #[test]
    fn issue_text_collects_messages() {
        let issue = json!({"1": {"message": "L3 VNI clash", "severity": "error"},
                           "2": {"message": "second", "severity": "error"}});
        assert_eq!(issue_text(&issue), "L3 VNI clash; second");
        assert_eq!(issue_text(&json!({})), "no issue given");
    }

    #[test]
    fn base_is_kept_under_the_rendering() {
        let mut base =
            json!({"system": {"hostname": "leaf1"}, "interface": {"eth0": {"type": "eth"}}});
        merge(&mut base, json!({"interface": {"swp51": {"type": "swp"}}}));
        assert_eq!(base["system"]["hostname"], "leaf1");
        assert_eq!(base["interface"]["eth0"]["type"], "eth");
        assert_eq!(base["interface"]["swp51"]["type"], "swp");
    }

    #[test]
    fn rejects_bad_urls() {
        for url in ["ftp://x", "https://leaf1:8765", "not a url"] {
            let err = NvueClient::new(NvueConfig::new(url, "u", "p")).unwrap_err();
            assert!(matches!(err, FabricError::Config(_)), "{url}: {err}");
        }
    }

    /// A one-shot HTTPS server answering every request with `body`.
    fn tls_server(
        cert: CertificateDer<'static>,
        key: Vec<u8>,
        body: &'static str,
    ) -> (u16, std::thread::JoinHandle<()>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.into()),
        )
        .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let t = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                let (tcp, _) = listener.accept().await.unwrap();
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 1024];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = tls.read(&mut chunk).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                }
                let resp = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                tls.write_all(resp.as_bytes()).await.unwrap();
                let _ = tls.shutdown().await;
            });
        });
        (port, t)
    }

    fn ca_and_leaf() -> (CertificateDer<'static>, CertificateDer<'static>, Vec<u8>) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let ca_der = ca.der().clone();
        let issuer = rcgen::Issuer::from_ca_cert_der(&ca_der, ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&leaf_key, &issuer)
            .unwrap();
        (ca_der, leaf.der().clone(), leaf_key.serialize_der())
    }

    #[tokio::test]
    async fn https_with_a_trusted_ca_reads_the_applied_view() {
        let (ca, leaf, key) = ca_and_leaf();
        let (port, server) = tls_server(leaf, key, r#"{"evpn":{"enable":"on"}}"#);
        let mut cfg = NvueConfig::new(format!("https://localhost:{port}"), "cumulus", "pw");
        cfg.tls_roots = vec![ca];
        cfg.attempts = 1;
        let applied = NvueClient::new(cfg).unwrap().applied().await.unwrap();
        assert_eq!(applied, json!({"evpn": {"enable": "on"}}));
        server.join().unwrap();
    }

    #[tokio::test]
    async fn https_with_an_untrusted_certificate_fails_without_retrying() {
        let (_, leaf, key) = ca_and_leaf();
        let (other_ca, _, _) = ca_and_leaf();
        let (port, server) = tls_server(leaf, key, "{}");
        let mut cfg = NvueConfig::new(format!("https://localhost:{port}"), "cumulus", "pw");
        cfg.tls_roots = vec![other_ca];
        cfg.attempts = 3;
        let err = NvueClient::new(cfg).unwrap().applied().await.unwrap_err();
        assert!(
            matches!(
                err,
                FabricError::Transport {
                    attempts: 1,
                    source: TransportError::Tls(_),
                    ..
                }
            ),
            "{err}"
        );
        server.join().unwrap();
    }
}
