//! [`RedfishBmc`]: the [`Bmc`] trait over DMTF Redfish.
//!
//! **Discovery** starts at `/redfish/v1/` and follows `@odata.id` links only; the host system
//! is the configured one (matched by `Id`, `UUID`, `Name` or URI) or else the only one (NVIDIA
//! `HGX_*` baseboard systems are never the host).
//!
//! **Authentication**: a session (`POST` to the root's `Links.Sessions`, `X-Auth-Token` on every
//! later request, `DELETE` of its `Location` on [`Bmc::logout`]); when the root links no session
//! service or the login is refused, HTTP Basic. A `401` logs in again once and repeats the
//! request; a second `401` is [`BmcError::Unauthorized`].
//!
//! **Requests**: each has a timeout and its own connection. `503` is retried after
//! `Retry-After` (capped by [`RedfishConfig::max_retry_after`]) or the exponential back-off,
//! up to [`RedfishConfig::attempts`] tries. GET, PATCH and DELETE are also retried on 502/504,
//! timeouts and dropped connections; a POST (an action, not idempotent) only when the BMC
//! answered 503 or the connection was never made.
//!
//! **Changes**: every PATCH carries `If-Match` with the ETag of a GET just before (header, else
//! `@odata.etag`, else `*` when the BMC has none). On `412` the resource is read again, the
//! change recomputed from what it now says (it may no longer be needed), and sent once more; a
//! second `412` is [`BmcError::PreconditionFailed`].
//!
//! **Long operations**: a `202` (or a `2xx` with a `Location`) is followed to its task monitor,
//! polled after `Retry-After` until the monitor stops answering 202 or the Task reaches a
//! terminal `TaskState`; `Exception`, `Killed` and `Cancelled` are [`BmcError::TaskFailed`].

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderMap};
use hyper::{Method, Request, StatusCode};
use serde_json::{Value, json};

use super::quirks::{self, Quirks, Vendor};
use super::{
    Bmc, BmcError, BootMode, BootOverride, BootOverrideEnabled, BootTarget, Dimm, Discovery,
    FirmwareEntry, HardwareInventory, ManagerSummary, MediaPolicy, MediaStatus, PowerAction,
    PowerState, Processor, ProcessorKind, ResourcePath, SimpleUpdate, SystemSummary, TaskOutcome,
    TaskState,
};
use crate::http_client::{EndpointError, HttpEndpoint, TlsTrust, TransportError};

const SERVICE_ROOT: &str = "/redfish/v1/";

/// How the driver authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    /// A Redfish session when the BMC offers one, else HTTP Basic (the default).
    SessionThenBasic,
    /// HTTP Basic on every request.
    Basic,
}

/// How to reach and drive one BMC.
#[derive(Clone)]
pub struct RedfishConfig {
    /// `https://bmc1.site` for a BMC, `http://127.0.0.1:<port>` for an emulator. Only the
    /// scheme and authority are used; paths come from the BMC's links.
    pub url: String,
    pub username: String,
    pub password: String,
    /// Required for `https`: the BMC's CA (or certificate), or the explicit insecure opt-in
    /// for lab BMCs with factory certificates.
    pub tls: Option<TlsTrust>,
    pub auth: AuthMode,
    /// Which system is the host (`Id`, `UUID`, `Name` or `@odata.id`); `None`: the only one.
    pub system: Option<String>,
    /// Limit for one request (connect, send, whole answer).
    pub request_timeout: Duration,
    /// Tries per request for 503 (and, for idempotent requests, 502/504 and transport
    /// errors). At least 1.
    pub attempts: u32,
    /// Pause before the first retry when the BMC gives no `Retry-After`; doubled each time.
    pub retry_backoff: Duration,
    /// Longest `Retry-After` honoured (a larger one is cut to this).
    pub max_retry_after: Duration,
    /// Pause between polls of power state, media state and tasks without `Retry-After`.
    pub poll_interval: Duration,
    /// How long a power transition may take.
    pub power_timeout: Duration,
    /// After a restart, how long `On` may read back before the reset is taken as done even
    /// though no other state was seen (some BMCs reset faster than one poll).
    pub restart_grace: Duration,
    /// How long inserting or ejecting media may take (the BMC fetches the image).
    pub media_timeout: Duration,
    /// How long a task (firmware update, BFB install) may run.
    pub task_timeout: Duration,
}

impl RedfishConfig {
    /// A config with production defaults: sessions with Basic fallback, 15 s per request,
    /// 4 attempts from 1 s back-off, `Retry-After` up to 60 s, polls every 2 s, 5 min for power
    /// and media, 60 min for tasks.
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            username: username.into(),
            password: password.into(),
            tls: None,
            auth: AuthMode::SessionThenBasic,
            system: None,
            request_timeout: Duration::from_secs(15),
            attempts: 4,
            retry_backoff: Duration::from_secs(1),
            max_retry_after: Duration::from_secs(60),
            poll_interval: Duration::from_secs(2),
            power_timeout: Duration::from_secs(300),
            restart_grace: Duration::from_secs(10),
            media_timeout: Duration::from_secs(300),
            task_timeout: Duration::from_secs(3600),
        }
    }
}

impl fmt::Debug for RedfishConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("tls", &self.tls)
            .field("auth", &self.auth)
            .field("system", &self.system)
            .field("request_timeout", &self.request_timeout)
            .field("attempts", &self.attempts)
            .finish_non_exhaustive()
    }
}

/// Credentials in force.
#[derive(Clone, PartialEq, Eq)]
enum Auth {
    None,
    Session {
        token: String,
        location: Option<String>,
    },
    Basic,
}

/// What discovery established, kept for later operations.
#[derive(Debug)]
struct Context {
    root: Value,
    system: ResourcePath,
    quirks: Quirks,
    discovery: Discovery,
}

/// A resource as read: its URI, ETag and body.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub(crate) path: ResourcePath,
    pub(crate) etag: Option<String>,
    pub(crate) body: Value,
}

/// One HTTP answer.
#[derive(Debug)]
pub(crate) struct Reply {
    method: Method,
    url: String,
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl Reply {
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    fn header(&self, name: header::HeaderName) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    }

    fn json(&self) -> Result<Option<Value>, BmcError> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return Ok(None);
        }
        serde_json::from_slice(&self.body)
            .map(Some)
            .map_err(|source| BmcError::Json {
                url: self.url.clone(),
                source,
            })
    }

    fn retry_after(&self) -> Option<Duration> {
        retry_after(&self.headers)
    }

    fn into_error(self, attempts: u32) -> BmcError {
        let (message, message_id) = redfish_message(&self.body);
        BmcError::Http {
            method: self.method.to_string(),
            url: self.url,
            status: self.status.as_u16(),
            message,
            message_id,
            attempts,
        }
    }
}

/// A [`Bmc`] over one BMC's Redfish service.
pub struct RedfishBmc {
    cfg: RedfishConfig,
    endpoint: HttpEndpoint,
    basic: String,
    auth: tokio::sync::Mutex<Auth>,
    context: tokio::sync::Mutex<Option<Arc<Context>>>,
}

impl fmt::Debug for RedfishBmc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedfishBmc")
            .field("cfg", &self.cfg)
            .finish_non_exhaustive()
    }
}

impl RedfishBmc {
    /// Checks the configuration and sets up TLS. Connects to nothing.
    pub fn new(cfg: RedfishConfig) -> Result<Self, BmcError> {
        let endpoint = HttpEndpoint::new(&cfg.url, cfg.tls.as_ref()).map_err(|e| match e {
            EndpointError::Url { url, reason } => {
                BmcError::Config(format!("BMC URL {url:?}: {reason}"))
            }
            EndpointError::Tls { url, source } => {
                BmcError::Config(format!("BMC URL {url:?}: TLS set-up failed: {source}"))
            }
        })?;
        if cfg.attempts == 0 {
            return Err(BmcError::Config("attempts must be at least 1".to_owned()));
        }
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", cfg.username, cfg.password))
        );
        Ok(Self {
            cfg,
            endpoint,
            basic,
            auth: tokio::sync::Mutex::new(Auth::None),
            context: tokio::sync::Mutex::new(None),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &RedfishConfig {
        &self.cfg
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{}", self.endpoint.origin(), path)
        }
    }

    // ---- HTTP with authentication, retries and back-off -----------------------------------

    async fn send(
        &self,
        method: &Method,
        path: &str,
        body: Option<&Bytes>,
        if_match: Option<&str>,
        auth: &Auth,
    ) -> Result<hyper::Response<Bytes>, TransportError> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(request_target(path))
            .header(header::ACCEPT, "application/json")
            .header("OData-Version", "4.0");
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        if let Some(tag) = if_match {
            req = req.header(header::IF_MATCH, tag);
        }
        match auth {
            Auth::Session { token, .. } => req = req.header("X-Auth-Token", token),
            Auth::Basic => req = req.header(header::AUTHORIZATION, &self.basic),
            Auth::None => {}
        }
        let req = req
            .body(Full::new(body.cloned().unwrap_or_default()))
            .map_err(|_| {
                TransportError::Connect(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("cannot build a request for {path:?}"),
                ))
            })?;
        match tokio::time::timeout(self.cfg.request_timeout, self.endpoint.send(req)).await {
            Ok(r) => r,
            Err(_) => Err(TransportError::TimedOut(self.cfg.request_timeout)),
        }
    }

    /// One request with the retry policy of the module documentation. Returns every answer
    /// that is not retried (the caller decides what a non-2xx means), except 401 after a
    /// second login and 503 after the last attempt, which are errors.
    async fn request_inner(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
        authenticated: bool,
    ) -> Result<Reply, BmcError> {
        let url = self.url(path);
        let payload = match body {
            Some(v) => Some(Bytes::from(serde_json::to_vec(v).map_err(|source| {
                BmcError::Json {
                    url: url.clone(),
                    source,
                }
            })?)),
            None => None,
        };
        let idempotent = method != Method::POST;
        let mut relogged = false;
        let mut attempt = 0;
        let mut backoff = self.cfg.retry_backoff;
        loop {
            attempt += 1;
            let last = attempt >= self.cfg.attempts;
            let auth = if authenticated {
                self.credentials().await?
            } else {
                Auth::None
            };
            match self
                .send(&method, path, payload.as_ref(), if_match, &auth)
                .await
            {
                Ok(resp) => {
                    let (parts, bytes) = resp.into_parts();
                    let reply = Reply {
                        method: method.clone(),
                        url: url.clone(),
                        status: parts.status,
                        headers: parts.headers,
                        body: bytes,
                    };
                    let status = reply.status;
                    if status == StatusCode::UNAUTHORIZED && authenticated {
                        if relogged {
                            let (message, _) = redfish_message(&reply.body);
                            return Err(BmcError::Unauthorized {
                                url,
                                user: self.cfg.username.clone(),
                                message,
                            });
                        }
                        tracing::info!(%url, "BMC answered 401; logging in again");
                        relogged = true;
                        attempt -= 1;
                        self.relogin(&auth).await?;
                        continue;
                    }
                    let transient = status == StatusCode::SERVICE_UNAVAILABLE
                        || (idempotent
                            && matches!(
                                status,
                                StatusCode::BAD_GATEWAY | StatusCode::GATEWAY_TIMEOUT
                            ));
                    if !transient {
                        return Ok(reply);
                    }
                    if last {
                        return Err(reply.into_error(attempt));
                    }
                    let wait = reply
                        .retry_after()
                        .map_or(backoff, |d| d.min(self.cfg.max_retry_after));
                    tracing::warn!(%url, %status, attempt, ?wait, "BMC busy; retrying");
                    tokio::time::sleep(wait).await;
                }
                Err(source) => {
                    let may_retry =
                        source.retryable() && (idempotent || source.never_sent()) && !last;
                    if !may_retry {
                        return Err(BmcError::Transport {
                            method: method.to_string(),
                            url,
                            attempts: attempt,
                            source,
                        });
                    }
                    tracing::warn!(%url, attempt, error = %source, "BMC unreachable; retrying");
                    tokio::time::sleep(backoff).await;
                }
            }
            backoff = backoff.saturating_mul(2);
        }
    }

    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        if_match: Option<&str>,
    ) -> Result<Reply, BmcError> {
        self.request_inner(method, path, body, if_match, true).await
    }

    async fn credentials(&self) -> Result<Auth, BmcError> {
        let mut auth = self.auth.lock().await;
        if *auth == Auth::None {
            *auth = self.login().await?;
        }
        Ok(auth.clone())
    }

    /// Logs in again unless another request already did since `failed` was used.
    async fn relogin(&self, failed: &Auth) -> Result<(), BmcError> {
        let mut auth = self.auth.lock().await;
        if *auth == *failed || *auth == Auth::None {
            *auth = self.login().await?;
        }
        Ok(())
    }

    /// Logs in (boxed: logging in sends requests, which may log in).
    fn login(&self) -> Pin<Box<dyn Future<Output = Result<Auth, BmcError>> + Send + '_>> {
        Box::pin(self.login_now())
    }

    async fn login_now(&self) -> Result<Auth, BmcError> {
        if self.cfg.auth == AuthMode::Basic {
            return Ok(Auth::Basic);
        }
        let root = self
            .request_inner(Method::GET, SERVICE_ROOT, None, None, false)
            .await?;
        let root = match root.status.is_success() {
            true => root.json()?.unwrap_or(Value::Null),
            false => Value::Null,
        };
        let Some(sessions) = link(&root["Links"]["Sessions"]) else {
            tracing::debug!(url = %self.cfg.url, "no session service linked; using HTTP Basic");
            return Ok(Auth::Basic);
        };
        let reply = self
            .request_inner(
                Method::POST,
                &sessions,
                Some(&json!({"UserName": self.cfg.username, "Password": self.cfg.password})),
                None,
                false,
            )
            .await?;
        match reply.header(header::HeaderName::from_static("x-auth-token")) {
            Some(token) if reply.status.is_success() => {
                let location = reply
                    .header(header::LOCATION)
                    .or_else(|| link(&reply.json().ok().flatten().unwrap_or_default()));
                tracing::debug!(url = %self.cfg.url, "Redfish session opened");
                Ok(Auth::Session { token, location })
            }
            _ => {
                tracing::info!(url = %reply.url, status = %reply.status,
                    "session login refused; using HTTP Basic");
                Ok(Auth::Basic)
            }
        }
    }

    /// A 2xx answer, or the error naming its URL, status and Redfish message.
    pub(crate) fn check(reply: Reply) -> Result<Reply, BmcError> {
        if reply.status.is_success() {
            Ok(reply)
        } else {
            Err(reply.into_error(1))
        }
    }

    /// GETs a resource (200 expected).
    pub(crate) async fn get(&self, path: &str) -> Result<Resource, BmcError> {
        let reply = Self::check(self.request(Method::GET, path, None, None).await?)?;
        let body = reply.json()?.ok_or_else(|| BmcError::Protocol {
            url: reply.url.clone(),
            detail: "empty body".to_owned(),
        })?;
        let etag = reply
            .header(header::ETAG)
            .or_else(|| body["@odata.etag"].as_str().map(str::to_owned));
        Ok(Resource {
            path: ResourcePath::new(path),
            etag,
            body,
        })
    }

    /// GETs a resource the BMC may not implement: `None` for 404, 405 and 501.
    pub(crate) async fn get_optional(&self, path: &str) -> Result<Option<Resource>, BmcError> {
        match self.get(path).await {
            Ok(r) => Ok(Some(r)),
            Err(BmcError::Http {
                status: 404 | 405 | 501,
                ..
            }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The member URIs of a collection.
    pub(crate) async fn members(&self, collection: &str) -> Result<Vec<ResourcePath>, BmcError> {
        let c = self.get(collection).await?;
        Ok(member_paths(&c.body))
    }

    /// POSTs an action; a 2xx answer (202 and task-monitor answers are for the caller).
    pub(crate) async fn post(&self, target: &str, body: &Value) -> Result<Reply, BmcError> {
        Self::check(self.request(Method::POST, target, Some(body), None).await?)
    }

    /// PATCHes `path` with the change `change` computes from the resource's current body
    /// (`None`: nothing to change), with `If-Match`, re-reading and recomputing once on 412.
    /// Returns whether a PATCH was accepted.
    pub(crate) async fn patch_with<F>(
        &self,
        path: &str,
        current: Option<Resource>,
        change: F,
    ) -> Result<bool, BmcError>
    where
        F: Fn(&Value) -> Option<Value> + Send + Sync,
    {
        let mut res = match current {
            Some(r) => r,
            None => self.get(path).await?,
        };
        for round in 0..2 {
            let Some(body) = change(&res.body) else {
                return Ok(round > 0);
            };
            let tag = res.etag.clone().unwrap_or_else(|| "*".to_owned());
            let reply = self
                .request(Method::PATCH, path, Some(&body), Some(&tag))
                .await?;
            if reply.status == StatusCode::PRECONDITION_FAILED {
                if round == 0 {
                    tracing::info!(url = %reply.url, "PATCH got 412; re-reading the resource");
                    res = self.get(path).await?;
                    continue;
                }
                return Err(BmcError::PreconditionFailed { url: reply.url });
            }
            let reply = Self::check(reply)?;
            if reply.status == StatusCode::ACCEPTED {
                self.finish_task(reply).await?;
            }
            return Ok(true);
        }
        unreachable!("the second round returns")
    }

    /// Follows a long operation's answer to its end (see the module documentation).
    pub(crate) async fn finish_task(&self, reply: Reply) -> Result<TaskOutcome, BmcError> {
        let first = reply.json().ok().flatten();
        let mut task_uri = first
            .as_ref()
            .filter(|b| b.get("TaskState").is_some())
            .and_then(link);
        let location = reply.header(header::LOCATION);
        if reply.status != StatusCode::ACCEPTED {
            if let Some(body) = first.as_ref().filter(|b| b.get("TaskState").is_some()) {
                let outcome = task_outcome(body, task_uri.clone().map(ResourcePath::new));
                if outcome.state.is_terminal() {
                    return settle(outcome, &reply.url);
                }
            } else if location.is_none() {
                return Ok(TaskOutcome {
                    task: None,
                    state: TaskState::Completed,
                    status: None,
                    percent_complete: None,
                    messages: Vec::new(),
                });
            }
        }
        let mut monitor =
            location
                .or_else(|| task_uri.clone())
                .ok_or_else(|| BmcError::Protocol {
                    url: reply.url.clone(),
                    detail: "202 Accepted without a Location (task monitor)".to_owned(),
                })?;
        let mut wait = self.poll_wait(reply.retry_after());
        let mut last = "accepted".to_owned();
        let start = Instant::now();
        loop {
            if start.elapsed() >= self.cfg.task_timeout {
                return Err(BmcError::Timeout {
                    url: self.url(&monitor),
                    what: "task completion".to_owned(),
                    waited: start.elapsed(),
                    last,
                });
            }
            tokio::time::sleep(wait).await;
            let r = self.request(Method::GET, &monitor, None, None).await?;
            wait = self.poll_wait(r.retry_after());
            let body = r.json().ok().flatten();
            if let Some(b) = body.as_ref().filter(|b| b.get("TaskState").is_some()) {
                if task_uri.is_none() {
                    task_uri = link(b);
                }
                let outcome = task_outcome(b, Some(ResourcePath::new(monitor.clone())));
                last = format!(
                    "{} {}%",
                    outcome.state,
                    outcome.percent_complete.unwrap_or(0)
                );
                if r.status.is_success() && outcome.state.is_terminal() {
                    return settle(outcome, &r.url);
                }
                if r.status.is_success() || r.status == StatusCode::ACCEPTED {
                    continue;
                }
            }
            match r.status {
                StatusCode::ACCEPTED => continue,
                s if s.is_success() => {
                    // The monitor answered with the operation's result: done.
                    return Ok(TaskOutcome {
                        task: Some(ResourcePath::new(monitor)),
                        state: TaskState::Completed,
                        status: None,
                        percent_complete: Some(100),
                        messages: Vec::new(),
                    });
                }
                StatusCode::NOT_FOUND | StatusCode::GONE
                    if task_uri.as_deref().is_some_and(|t| t != monitor) =>
                {
                    // The monitor is gone; the Task resource remains.
                    monitor = task_uri.clone().unwrap_or_default();
                }
                _ => return Err(r.into_error(1)),
            }
        }
    }

    fn poll_wait(&self, retry_after: Option<Duration>) -> Duration {
        retry_after.map_or(self.cfg.poll_interval, |d| d.min(self.cfg.max_retry_after))
    }

    // ---- discovery -------------------------------------------------------------------------

    async fn context(&self) -> Result<Arc<Context>, BmcError> {
        let mut ctx = self.context.lock().await;
        if let Some(c) = ctx.as_ref() {
            return Ok(Arc::clone(c));
        }
        let c = Arc::new(self.discover_now().await?);
        *ctx = Some(Arc::clone(&c));
        Ok(c)
    }

    /// The quirks of this BMC (discovering it first if needed).
    pub(crate) async fn quirks(&self) -> Result<Quirks, BmcError> {
        Ok(self.context().await?.quirks)
    }

    /// The host system's URI (discovering it first if needed).
    pub(crate) async fn host_system(&self) -> Result<ResourcePath, BmcError> {
        Ok(self.context().await?.system.clone())
    }

    /// The host system's Manager (`Links.ManagedBy`, else the only Manager).
    pub(crate) async fn host_manager(&self) -> Result<ResourcePath, BmcError> {
        let ctx = self.context().await?;
        let sys = self.get(ctx.system.as_str()).await?;
        if let Some(m) = sys.body["Links"]["ManagedBy"]
            .as_array()
            .and_then(|a| a.iter().find_map(link))
        {
            return Ok(ResourcePath::new(m));
        }
        match ctx.discovery.managers.as_slice() {
            [only] => Ok(only.path.clone()),
            _ => Err(BmcError::Protocol {
                url: self.url(ctx.system.as_str()),
                detail: "the system links no manager (Links.ManagedBy)".to_owned(),
            }),
        }
    }

    /// The service root's `UpdateService`.
    async fn update_service(&self) -> Result<Resource, BmcError> {
        let ctx = self.context().await?;
        let path = link(&ctx.root["UpdateService"]).ok_or_else(|| BmcError::Unsupported {
            url: self.url(SERVICE_ROOT),
            what: "UpdateService".to_owned(),
            offered: Vec::new(),
        })?;
        self.get(&path).await
    }

    async fn discover_now(&self) -> Result<Context, BmcError> {
        let root_reply = Self::check(self.request(Method::GET, SERVICE_ROOT, None, None).await?)?;
        let root = root_reply.json()?.unwrap_or_default();
        let systems_path = link(&root["Systems"]).ok_or_else(|| BmcError::Protocol {
            url: self.url(SERVICE_ROOT),
            detail: "the service root links no Systems collection".to_owned(),
        })?;
        let mut systems = Vec::new();
        let mut first_manufacturer = None;
        for path in self.members(&systems_path).await? {
            let s = self.get(path.as_str()).await?;
            if first_manufacturer.is_none() {
                first_manufacturer = s.body["Manufacturer"].as_str().map(str::to_owned);
            }
            systems.push(system_summary(&s));
        }
        let mut managers = Vec::new();
        if let Some(p) = link(&root["Managers"]) {
            for path in self.members(&p).await? {
                if let Some(m) = self.get_optional(path.as_str()).await? {
                    managers.push(ManagerSummary {
                        path: m.path.clone(),
                        id: text(&m.body["Id"]).unwrap_or_else(|| path.last_segment().to_owned()),
                        model: text(&m.body["Model"]),
                        firmware_version: text(&m.body["FirmwareVersion"]),
                    });
                }
            }
        }
        let chassis = match link(&root["Chassis"]) {
            Some(p) => self.members(&p).await?,
            None => Vec::new(),
        };
        let system = self.select_system(&systems)?;
        let vendor = Vendor::detect(&root, first_manufacturer.as_deref());
        let quirks = vendor.quirks();
        let session_auth = matches!(*self.auth.lock().await, Auth::Session { .. });
        let discovery = Discovery {
            redfish_version: text(&root["RedfishVersion"]),
            vendor,
            systems,
            managers,
            chassis,
            host_system: system.clone(),
            sessions: link(&root["Links"]["Sessions"]).is_some(),
            session_auth,
            update_service: link(&root["UpdateService"]).map(ResourcePath::new),
            task_service: link(&root["Tasks"])
                .or_else(|| link(&root["TaskService"]))
                .map(ResourcePath::new),
        };
        tracing::debug!(url = %self.cfg.url, ?discovery.vendor, host = %system, "BMC discovered");
        Ok(Context {
            root,
            system,
            quirks,
            discovery,
        })
    }

    fn select_system(&self, systems: &[SystemSummary]) -> Result<ResourcePath, BmcError> {
        let found = match &self.cfg.system {
            Some(want) => systems.iter().find(|s| {
                s.id == *want
                    || s.uuid.as_deref() == Some(want.as_str())
                    || s.name.as_deref() == Some(want.as_str())
                    || s.path.as_str() == want
            }),
            None => {
                let hosts: Vec<_> = systems
                    .iter()
                    .filter(|s| !quirks::is_gpu_baseboard_system(&s.id))
                    .collect();
                match hosts.as_slice() {
                    [only] => Some(*only),
                    _ => None,
                }
            }
        };
        found
            .map(|s| s.path.clone())
            .ok_or_else(|| BmcError::Unsupported {
                url: self.url(SERVICE_ROOT),
                what: match &self.cfg.system {
                    Some(w) => format!("system {w:?}"),
                    None => "a single host system (configure which one)".to_owned(),
                },
                offered: systems.iter().map(|s| s.id.clone()).collect(),
            })
    }

    // ---- power -----------------------------------------------------------------------------

    async fn reset_types(&self, reset: &Value) -> Result<Vec<String>, BmcError> {
        let listed = strings(&reset["ResetType@Redfish.AllowableValues"]);
        if !listed.is_empty() {
            return Ok(listed);
        }
        if let Some(info) = reset["@Redfish.ActionInfo"].as_str()
            && let Some(info) = self.get_optional(info).await?
        {
            let params = info.body["Parameters"].as_array().cloned();
            if let Some(p) = params
                .unwrap_or_default()
                .iter()
                .find(|p| p["Name"] == "ResetType")
            {
                return Ok(strings(&p["AllowableValues"]));
            }
        }
        Ok(Vec::new())
    }

    async fn wait_power(
        &self,
        system: &ResourcePath,
        want: PowerState,
        restart: bool,
    ) -> Result<PowerState, BmcError> {
        let start = Instant::now();
        let mut seen_other = !restart;
        loop {
            let sys = self.get(system.as_str()).await?;
            let now = power_of(&sys.body);
            if now != want {
                seen_other = true;
            } else if seen_other || start.elapsed() >= self.cfg.restart_grace {
                return Ok(now);
            }
            if start.elapsed() >= self.cfg.power_timeout {
                return Err(BmcError::Timeout {
                    url: self.url(system.as_str()),
                    what: format!("power state {want}"),
                    waited: start.elapsed(),
                    last: now.to_string(),
                });
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
    }

    // ---- virtual media ---------------------------------------------------------------------

    /// The first CD/DVD slot with an InsertMedia action: the System's first, then its
    /// Managers'.
    async fn cd_slot(&self) -> Result<Resource, BmcError> {
        let ctx = self.context().await?;
        let sys = self.get(ctx.system.as_str()).await?;
        let mut collections: Vec<String> = link(&sys.body["VirtualMedia"]).into_iter().collect();
        let mut managers: Vec<String> = sys.body["Links"]["ManagedBy"]
            .as_array()
            .map(|a| a.iter().filter_map(link).collect())
            .unwrap_or_default();
        if managers.is_empty() {
            managers = ctx
                .discovery
                .managers
                .iter()
                .map(|m| m.path.as_str().to_owned())
                .collect();
        }
        for m in managers {
            if let Some(m) = self.get_optional(&m).await?
                && let Some(c) = link(&m.body["VirtualMedia"])
                && !collections.contains(&c)
            {
                collections.push(c);
            }
        }
        let mut offered = Vec::new();
        for c in collections {
            let Some(coll) = self.get_optional(&c).await? else {
                continue;
            };
            for member in member_paths(&coll.body) {
                let Some(slot) = self.get_optional(member.as_str()).await? else {
                    continue;
                };
                let types = strings(&slot.body["MediaTypes"]);
                offered.push(format!("{} ({})", member.last_segment(), types.join("/")));
                let cd = types.iter().any(|t| t == "CD" || t == "DVD");
                if cd && insert_target(&slot.body).is_some() {
                    return Ok(slot);
                }
            }
        }
        Err(BmcError::Unsupported {
            url: self.url(ctx.system.as_str()),
            what: "a CD/DVD virtual media slot with InsertMedia".to_owned(),
            offered,
        })
    }

    async fn eject_slot(&self, slot: &Resource) -> Result<MediaStatus, BmcError> {
        let status = media_of(slot);
        if !status.inserted {
            return Ok(status);
        }
        let target = slot.body["Actions"]["#VirtualMedia.EjectMedia"]["target"]
            .as_str()
            .ok_or_else(|| BmcError::Unsupported {
                url: self.url(slot.path.as_str()),
                what: "VirtualMedia.EjectMedia".to_owned(),
                offered: Vec::new(),
            })?;
        let reply = self.post(target, &json!({})).await?;
        if reply.status == StatusCode::ACCEPTED {
            self.finish_task(reply).await?;
        }
        self.wait_media(&slot.path, None).await
    }

    /// Waits until the slot holds `image` (`None`: until it is empty).
    async fn wait_media(
        &self,
        slot: &ResourcePath,
        image: Option<&str>,
    ) -> Result<MediaStatus, BmcError> {
        let start = Instant::now();
        loop {
            let status = media_of(&self.get(slot.as_str()).await?);
            let done = match image {
                Some(i) => status.inserted && same_image(status.image.as_deref(), i),
                None => !status.inserted,
            };
            if done {
                return Ok(status);
            }
            if start.elapsed() >= self.cfg.media_timeout {
                return Err(BmcError::Timeout {
                    url: self.url(slot.as_str()),
                    what: match image {
                        Some(i) => format!("media {i:?} inserted"),
                        None => "media ejected".to_owned(),
                    },
                    waited: start.elapsed(),
                    last: format!("inserted={} image={:?}", status.inserted, status.image),
                });
            }
            tokio::time::sleep(self.cfg.poll_interval).await;
        }
    }

    async fn processors(
        &self,
        system: &Value,
        inv: &mut HardwareInventory,
        gpus_only: bool,
    ) -> Result<(), BmcError> {
        let Some(coll) = link(&system["Processors"]) else {
            if !gpus_only {
                inv.unavailable.push("Processors".to_owned());
            }
            return Ok(());
        };
        let Some(c) = self.get_optional(&coll).await? else {
            inv.unavailable.push("Processors".to_owned());
            return Ok(());
        };
        for p in member_paths(&c.body) {
            let Some(r) = self.get_optional(p.as_str()).await? else {
                continue;
            };
            let kind = match r.body["ProcessorType"].as_str() {
                Some("CPU") => ProcessorKind::Cpu,
                Some("GPU") => ProcessorKind::Gpu,
                Some(o) => ProcessorKind::Other(o.to_owned()),
                None => ProcessorKind::Other(String::new()),
            };
            let proc = Processor {
                path: r.path.clone(),
                kind: kind.clone(),
                model: text(&r.body["Model"]),
                manufacturer: text(&r.body["Manufacturer"]),
                cores: r.body["TotalCores"].as_u64().map(|c| c as u32),
            };
            match kind {
                ProcessorKind::Gpu => inv.gpus.push(proc),
                ProcessorKind::Cpu if !gpus_only => inv.cpus.push(proc),
                _ if !gpus_only => inv.other_processors.push(proc),
                _ => {}
            }
        }
        Ok(())
    }
}

#[async_trait]
impl Bmc for RedfishBmc {
    async fn discover(&self) -> Result<Discovery, BmcError> {
        *self.context.lock().await = None;
        Ok(self.context().await?.discovery.clone())
    }

    async fn power_state(&self) -> Result<PowerState, BmcError> {
        let ctx = self.context().await?;
        Ok(power_of(&self.get(ctx.system.as_str()).await?.body))
    }

    async fn power(&self, action: PowerAction) -> Result<PowerState, BmcError> {
        let ctx = self.context().await?;
        let sys = self.get(ctx.system.as_str()).await?;
        let now = power_of(&sys.body);
        let want = action.final_state();
        // A restart of a system that is off is a power-on.
        let effective = if action.is_restart() && now != PowerState::On {
            PowerAction::On
        } else {
            action
        };
        if !effective.is_restart() && now == want {
            return Ok(now);
        }
        let reset = &sys.body["Actions"]["#ComputerSystem.Reset"];
        let target = reset["target"]
            .as_str()
            .ok_or_else(|| BmcError::Unsupported {
                url: self.url(ctx.system.as_str()),
                what: "ComputerSystem.Reset".to_owned(),
                offered: Vec::new(),
            })?
            .to_owned();
        let allowed = self.reset_types(reset).await?;
        let advertised = |t: &&str| allowed.iter().any(|a| a == t);
        if effective == PowerAction::PowerCycle
            && !allowed.is_empty()
            && !effective.reset_types().iter().any(advertised)
        {
            // No power-cycle reset type: the same by its parts.
            self.power(PowerAction::ForceOff).await?;
            return self.power(PowerAction::On).await;
        }
        let reset_type = if allowed.is_empty() {
            // Nothing advertised: the first (most standard) value.
            effective.reset_types()[0]
        } else {
            effective
                .reset_types()
                .iter()
                .copied()
                .find(|t| advertised(t))
                .ok_or_else(|| BmcError::Unsupported {
                    url: self.url(&target),
                    what: format!("a ResetType for {effective:?}"),
                    offered: allowed.clone(),
                })?
        };
        tracing::info!(system = %ctx.system, reset_type, "resetting");
        let reply = self
            .post(&target, &json!({ "ResetType": reset_type }))
            .await?;
        if reply.status == StatusCode::ACCEPTED {
            self.finish_task(reply).await?;
        }
        self.wait_power(&ctx.system, want, effective.is_restart())
            .await
    }

    async fn boot_override(&self) -> Result<BootOverride, BmcError> {
        let ctx = self.context().await?;
        let sys = self.get(ctx.system.as_str()).await?;
        boot_of(&sys.body, &self.url(ctx.system.as_str()))
    }

    async fn set_boot_override(&self, wanted: &BootOverride) -> Result<BootOverride, BmcError> {
        let ctx = self.context().await?;
        let url = self.url(ctx.system.as_str());
        let sys = self.get(ctx.system.as_str()).await?;
        let allowed =
            strings(&sys.body["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]);
        if !allowed.is_empty() && !allowed.iter().any(|a| a == wanted.target.as_str()) {
            return Err(BmcError::Unsupported {
                url,
                what: format!("boot target {}", wanted.target.as_str()),
                offered: allowed,
            });
        }
        let separate_mode = ctx.quirks.boot_mode_in_separate_patch;
        let mut boot = json!({
            "BootSourceOverrideTarget": wanted.target.as_str(),
            "BootSourceOverrideEnabled": wanted.enabled.as_str(),
        });
        if let (Some(mode), false) = (wanted.mode, separate_mode) {
            boot["BootSourceOverrideMode"] = json!(mode.as_str());
        }
        let fields = boot.clone();
        self.patch_with(ctx.system.as_str(), Some(sys), move |cur| {
            let cur = &cur["Boot"];
            let same = fields
                .as_object()
                .is_some_and(|m| m.iter().all(|(k, v)| cur[k] == *v));
            (!same).then(|| json!({ "Boot": fields.clone() }))
        })
        .await?;
        if let (Some(mode), true) = (wanted.mode, separate_mode) {
            let m = mode.as_str();
            let r = self
                .patch_with(ctx.system.as_str(), None, move |cur| {
                    (cur["Boot"]["BootSourceOverrideMode"] != m)
                        .then(|| json!({"Boot": {"BootSourceOverrideMode": m}}))
                })
                .await;
            if let Err(e) = r {
                tracing::warn!(error = %e, "boot mode refused; kept the BMC's (known quirk)");
            }
        }
        let observed = boot_of(&self.get(ctx.system.as_str()).await?.body, &url)?;
        if observed.target != wanted.target {
            return Err(BmcError::NotApplied {
                url,
                what: "BootSourceOverrideTarget".to_owned(),
                expected: wanted.target.as_str().to_owned(),
                observed: observed.target.as_str().to_owned(),
            });
        }
        if observed.enabled != wanted.enabled {
            if !ctx.quirks.boot_enabled_ignored {
                return Err(BmcError::NotApplied {
                    url,
                    what: "BootSourceOverrideEnabled".to_owned(),
                    expected: wanted.enabled.as_str().to_owned(),
                    observed: observed.enabled.as_str().to_owned(),
                });
            }
            tracing::warn!(%url, wanted = wanted.enabled.as_str(),
                observed = observed.enabled.as_str(),
                "BMC ignores BootSourceOverrideEnabled (known quirk)");
        }
        Ok(observed)
    }

    async fn media(&self) -> Result<MediaStatus, BmcError> {
        Ok(media_of(&self.cd_slot().await?))
    }

    async fn insert_media(
        &self,
        image: &str,
        policy: MediaPolicy,
    ) -> Result<MediaStatus, BmcError> {
        let mut slot = self.cd_slot().await?;
        let status = media_of(&slot);
        if status.inserted && same_image(status.image.as_deref(), image) {
            return Ok(status);
        }
        let mut ejected = false;
        if status.inserted {
            match policy {
                MediaPolicy::Fail => {
                    return Err(BmcError::MediaPresent {
                        url: self.url(slot.path.as_str()),
                        image: status.image.unwrap_or_default(),
                    });
                }
                MediaPolicy::EjectFirst => {
                    self.eject_slot(&slot).await?;
                    ejected = true;
                }
            }
        }
        let target = insert_target(&slot.body)
            .expect("cd_slot returns slots with InsertMedia")
            .to_owned();
        let protocol = if image.starts_with("https:") {
            "HTTPS"
        } else {
            "HTTP"
        };
        let body = json!({
            "Image": image,
            "Inserted": true,
            "WriteProtected": true,
            "TransferProtocolType": protocol,
        });
        let mut tries = 0;
        loop {
            tries += 1;
            let reply = self
                .request(Method::POST, &target, Some(&body), None)
                .await?;
            match reply.status {
                s if s.is_success() => {
                    if s == StatusCode::ACCEPTED {
                        self.finish_task(reply).await?;
                    }
                    break;
                }
                StatusCode::CONFLICT if policy == MediaPolicy::EjectFirst && !ejected => {
                    // The BMC knows of media we did not see: eject and insert once more.
                    slot = self.get(slot.path.as_str()).await?;
                    if !media_of(&slot).inserted {
                        return Err(reply.into_error(tries));
                    }
                    self.eject_slot(&slot).await?;
                    ejected = true;
                }
                StatusCode::CONFLICT => {
                    let now = media_of(&self.get(slot.path.as_str()).await?);
                    return Err(BmcError::MediaPresent {
                        url: self.url(slot.path.as_str()),
                        image: now.image.unwrap_or_default(),
                    });
                }
                StatusCode::INTERNAL_SERVER_ERROR
                | StatusCode::BAD_GATEWAY
                | StatusCode::GATEWAY_TIMEOUT
                    if ejected && tries < self.cfg.attempts =>
                {
                    // An eject may still be finishing (Dell): wait and try again.
                    tracing::warn!(url = %reply.url, status = %reply.status,
                        "insert after eject failed; retrying");
                    tokio::time::sleep(self.cfg.retry_backoff * tries).await;
                }
                _ => return Err(reply.into_error(tries)),
            }
        }
        self.wait_media(&slot.path, Some(image)).await
    }

    async fn eject_media(&self) -> Result<MediaStatus, BmcError> {
        let slot = self.cd_slot().await?;
        self.eject_slot(&slot).await
    }

    async fn inventory(&self) -> Result<HardwareInventory, BmcError> {
        let ctx = self.context().await?;
        let sys = self.get(ctx.system.as_str()).await?;
        let b = &sys.body;
        let mut inv = HardwareInventory {
            system: ctx.system.clone(),
            manufacturer: text(&b["Manufacturer"]),
            model: text(&b["Model"]),
            serial_number: text(&b["SerialNumber"]),
            uuid: text(&b["UUID"]),
            cpus: Vec::new(),
            gpus: Vec::new(),
            other_processors: Vec::new(),
            dimms: Vec::new(),
            total_memory_gib: b["MemorySummary"]["TotalSystemMemoryGiB"].as_f64(),
            unavailable: Vec::new(),
        };
        self.processors(b, &mut inv, false).await?;
        for other in &ctx.discovery.systems {
            if other.path != ctx.system && quirks::is_gpu_baseboard_system(&other.id) {
                let s = self.get(other.path.as_str()).await?;
                self.processors(&s.body, &mut inv, true).await?;
            }
        }
        match link(&b["Memory"]) {
            None => inv.unavailable.push("Memory".to_owned()),
            Some(m) => match self.get_optional(&m).await? {
                None => inv.unavailable.push("Memory".to_owned()),
                Some(c) => {
                    for d in member_paths(&c.body) {
                        if let Some(r) = self.get_optional(d.as_str()).await? {
                            inv.dimms.push(Dimm {
                                path: r.path.clone(),
                                capacity_mib: r.body["CapacityMiB"].as_u64(),
                            });
                        }
                    }
                }
            },
        }
        Ok(inv)
    }

    async fn firmware(&self) -> Result<Vec<FirmwareEntry>, BmcError> {
        let us = self.update_service().await?;
        let inv = link(&us.body["FirmwareInventory"]).ok_or_else(|| BmcError::Unsupported {
            url: self.url(us.path.as_str()),
            what: "FirmwareInventory".to_owned(),
            offered: Vec::new(),
        })?;
        let mut out = Vec::new();
        for p in self.members(&inv).await? {
            let r = self.get(p.as_str()).await?;
            out.push(FirmwareEntry {
                id: text(&r.body["Id"]).unwrap_or_else(|| p.last_segment().to_owned()),
                path: r.path,
                name: text(&r.body["Name"]),
                version: text(&r.body["Version"]),
                updateable: r.body["Updateable"].as_bool(),
            });
        }
        Ok(out)
    }

    async fn simple_update(&self, update: &SimpleUpdate) -> Result<TaskOutcome, BmcError> {
        let quirks = self.quirks().await?;
        let us = self.update_service().await?;
        let target = us.body["Actions"]["#UpdateService.SimpleUpdate"]["target"]
            .as_str()
            .ok_or_else(|| BmcError::Unsupported {
                url: self.url(us.path.as_str()),
                what: "UpdateService.SimpleUpdate".to_owned(),
                offered: Vec::new(),
            })?
            .to_owned();
        let mut body = json!({ "ImageURI": quirks::image_uri(&quirks, &update.image_uri) });
        if let Some(p) = &update.transfer_protocol {
            body["TransferProtocol"] = json!(p);
        }
        if !update.targets.is_empty() {
            body["Targets"] = json!(
                update
                    .targets
                    .iter()
                    .map(ResourcePath::as_str)
                    .collect::<Vec<_>>()
            );
        }
        if let Some((user, password)) = &update.credentials {
            body["Username"] = json!(user);
            body["Password"] = json!(password);
        }
        let reply = self.post(&target, &body).await?;
        self.finish_task(reply).await
    }

    async fn logout(&self) -> Result<(), BmcError> {
        let current = self.auth.lock().await.clone();
        if let Auth::Session {
            location: Some(location),
            ..
        } = &current
        {
            let r = self.request(Method::DELETE, location, None, None).await;
            match r {
                Ok(reply) if reply.status.is_success() || reply.status == StatusCode::NOT_FOUND => {
                }
                Ok(reply) => return Err(reply.into_error(1)),
                Err(e) => return Err(e),
            }
        }
        *self.auth.lock().await = Auth::None;
        Ok(())
    }
}

// ---- JSON helpers ----------------------------------------------------------------------------

/// The path (and query) to put in the request line: absolute URIs are cut to their path.
fn request_target(uri: &str) -> String {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = uri.strip_prefix(scheme) {
            return rest
                .find('/')
                .map_or_else(|| "/".to_owned(), |i| rest[i..].to_owned());
        }
    }
    uri.to_owned()
}

/// `{"@odata.id": "..."}` -> the URI.
pub(crate) fn link(v: &Value) -> Option<String> {
    v["@odata.id"].as_str().map(str::to_owned)
}

pub(crate) fn text(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_owned)
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn member_paths(collection: &Value) -> Vec<ResourcePath> {
    collection["Members"]
        .as_array()
        .map(|a| a.iter().filter_map(link).map(ResourcePath::new).collect())
        .unwrap_or_default()
}

fn system_summary(s: &Resource) -> SystemSummary {
    let b = &s.body;
    SystemSummary {
        path: s.path.clone(),
        id: text(&b["Id"]).unwrap_or_else(|| s.path.last_segment().to_owned()),
        name: text(&b["Name"]),
        uuid: text(&b["UUID"]),
        power_state: b["PowerState"].as_str().map(PowerState::parse),
        reset_types: strings(
            &b["Actions"]["#ComputerSystem.Reset"]["ResetType@Redfish.AllowableValues"],
        ),
        boot_targets: strings(&b["Boot"]["BootSourceOverrideTarget@Redfish.AllowableValues"]),
    }
}

fn power_of(system: &Value) -> PowerState {
    system["PowerState"]
        .as_str()
        .map_or(PowerState::Other("absent".to_owned()), PowerState::parse)
}

fn boot_of(system: &Value, url: &str) -> Result<BootOverride, BmcError> {
    let boot = &system["Boot"];
    let target = boot["BootSourceOverrideTarget"]
        .as_str()
        .ok_or_else(|| BmcError::Protocol {
            url: url.to_owned(),
            detail: "no Boot.BootSourceOverrideTarget".to_owned(),
        })?;
    Ok(BootOverride {
        target: BootTarget::parse(target),
        enabled: boot["BootSourceOverrideEnabled"]
            .as_str()
            .and_then(BootOverrideEnabled::parse)
            .unwrap_or(BootOverrideEnabled::Disabled),
        mode: boot["BootSourceOverrideMode"]
            .as_str()
            .and_then(BootMode::parse),
    })
}

fn insert_target(slot: &Value) -> Option<&str> {
    slot["Actions"]["#VirtualMedia.InsertMedia"]["target"].as_str()
}

fn media_of(slot: &Resource) -> MediaStatus {
    let image = text(&slot.body["Image"]);
    MediaStatus {
        slot: slot.path.clone(),
        inserted: slot.body["Inserted"].as_bool().unwrap_or(image.is_some()),
        image,
    }
}

/// Whether the slot's `Image` is `wanted` (some BMCs report only the file name).
fn same_image(reported: Option<&str>, wanted: &str) -> bool {
    match reported {
        Some(r) => r == wanted || wanted.rsplit('/').next() == Some(r),
        None => false,
    }
}

fn task_outcome(task: &Value, path: Option<ResourcePath>) -> TaskOutcome {
    TaskOutcome {
        task: path,
        state: task["TaskState"]
            .as_str()
            .map_or(TaskState::Other("absent".to_owned()), TaskState::parse),
        status: text(&task["TaskStatus"]),
        percent_complete: task["PercentComplete"].as_u64().map(|p| p as u32),
        messages: task["Messages"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|m| m["Message"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

fn settle(outcome: TaskOutcome, url: &str) -> Result<TaskOutcome, BmcError> {
    if outcome.state == TaskState::Completed {
        Ok(outcome)
    } else {
        Err(BmcError::TaskFailed {
            url: url.to_owned(),
            state: outcome.state,
            messages: outcome.messages,
        })
    }
}

/// `Retry-After` in seconds (an HTTP-date is not honoured: the back-off applies instead).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The Redfish error's human text (`@Message.ExtendedInfo[].Message`, else `error.message`,
/// else the raw body, shortened) and its first `MessageId`.
pub(crate) fn redfish_message(body: &[u8]) -> (Option<String>, Option<String>) {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let t = String::from_utf8_lossy(body);
        let t: String = t.trim().chars().take(300).collect();
        return ((!t.is_empty()).then_some(t), None);
    };
    let err = &v["error"];
    let infos: Vec<&Value> = err["@Message.ExtendedInfo"]
        .as_array()
        .or_else(|| v["@Message.ExtendedInfo"].as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let messages: Vec<&str> = infos.iter().filter_map(|i| i["Message"].as_str()).collect();
    let message = if messages.is_empty() {
        err["message"].as_str().map(str::to_owned)
    } else {
        Some(messages.join("; "))
    };
    let id = infos
        .iter()
        .find_map(|i| i["MessageId"].as_str())
        .or_else(|| err["code"].as_str())
        .map(str::to_owned);
    (message, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extended_info_is_the_message() {
        let body = br#"{"error":{"code":"Base.1.8.GeneralError","message":"A general error",
            "@Message.ExtendedInfo":[{"MessageId":"Base.1.8.PropertyValueNotInList",
            "Message":"The value Floppy for BootSourceOverrideTarget is not in the list"}]}}"#;
        let (m, id) = redfish_message(body);
        assert_eq!(
            m.as_deref(),
            Some("The value Floppy for BootSourceOverrideTarget is not in the list")
        );
        assert_eq!(id.as_deref(), Some("Base.1.8.PropertyValueNotInList"));
        let (m, id) = redfish_message(br#"{"error":{"code":"X","message":"plain"}}"#);
        assert_eq!((m.as_deref(), id.as_deref()), (Some("plain"), Some("X")));
        assert_eq!(redfish_message(b"oops").0.as_deref(), Some("oops"));
        assert_eq!(redfish_message(b"").0, None);
    }

    #[test]
    fn request_targets_are_paths() {
        assert_eq!(
            request_target("https://bmc/redfish/v1/Systems/1"),
            "/redfish/v1/Systems/1"
        );
        assert_eq!(request_target("/redfish/v1/"), "/redfish/v1/");
        assert_eq!(request_target("http://bmc"), "/");
    }

    #[test]
    fn images_match_by_url_or_file_name() {
        assert!(same_image(Some("http://h/a.iso"), "http://h/a.iso"));
        assert!(same_image(Some("a.iso"), "http://h/a.iso"));
        assert!(!same_image(Some("b.iso"), "http://h/a.iso"));
        assert!(!same_image(None, "http://h/a.iso"));
    }

    #[test]
    fn task_states() {
        let t = json!({"TaskState": "Exception", "Messages": [{"Message": "flash failed"}]});
        let o = task_outcome(&t, None);
        let e = settle(o, "http://bmc/t/1").unwrap_err();
        assert!(e.to_string().contains("flash failed"), "{e}");
        assert!(TaskState::Completed.is_terminal() && !TaskState::Running.is_terminal());
    }
}
