//! An NVUE REST API emulator (Cumulus Linux on Spectrum; HBN on BlueField speaks the same API)
//! for the site agent's switch-fabric driver.
//!
//! Plain HTTP/1.1 on `127.0.0.1:<ephemeral>`, served by its own thread and runtime, so tests
//! can drive it from synchronous code. What it does, after the device reference:
//!
//! - HTTP Basic on every request; **401** with `WWW-Authenticate` otherwise.
//! - Revisions: `POST /nvue_v1/revision` makes `changeset/<user>/<date>_<n>` (the id holds `/`,
//!   so it is accepted only URL-encoded: an unencoded id in a path is a 404, in `?rev=` a 400).
//!   A new revision starts as a copy of the applied configuration.
//! - Views: `?rev=applied` (also `operational` and no `rev`), `?rev=startup`, `?rev=pending` (the
//!   newest pending revision) and `?rev=<id>`. `applied` and `startup` change only on a
//!   successful apply (saving is automatic, as since Cumulus 5.9).
//! - `PATCH /nvue_v1/<path>?rev=<id>` merges objects (a `null` unsets), `DELETE` unsets and
//!   answers 204; both only while the revision is `pending`.
//! - Apply (`PATCH /nvue_v1/revision/<id>` with `{"state":"apply"}`) runs asynchronously:
//!   `apply`, then validation (`invalid` with `transition.issue` on unknown keys, an L3 VNI equal
//!   to an L2 VNI, a tenant in the default VRF, an SVI in a VRF that does not exist), then the
//!   are-you-sure prompt: with `"auto-prompt": {"ays": "ays_yes"}` it goes on to `ays_yes`,
//!   otherwise it stops at `ays` until a `{"state":"ays_yes"}` (or `ays_no`, which ends
//!   `ays_fail`); then after the configured apply delay `applied`, or `apply_fail` when a
//!   failure was injected.
//! - Optionally ([`NvueEmulator::with_namespace`]), every apply is realised on the real kernel
//!   inside a network namespace standing for the switch (bridges, VXLAN devices, access ports;
//!   see [`KernelSwitch`]) before the revision becomes `applied`; a realisation that fails
//!   ends the revision `apply_fail` with the error as its issue, and the previous applied
//!   configuration is realised again.
//! - Faults per method and path: a status (with `Retry-After` for 503), a dropped connection or
//!   added latency, N times ([`Fault`]).

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use crate::http_thread::HttpThread;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

mod realise;
mod schema;

pub use realise::{KernelSwitch, Segment, segments};

/// Credentials and timing of an emulated switch.
#[derive(Debug, Clone)]
pub struct NvueEmulatorConfig {
    /// The only user accepted.
    pub username: String,
    /// Its password.
    pub password: String,
    /// Time each intermediate apply state lasts (`apply`, `ays_yes`).
    pub step_delay: Duration,
}

impl Default for NvueEmulatorConfig {
    fn default() -> Self {
        Self {
            username: "cumulus".into(),
            password: "Meridian-1".into(),
            step_delay: Duration::from_millis(20),
        }
    }
}

/// What an injected fault does to a matching request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FaultAction {
    /// Answer with this status (503 carries `Retry-After: 1`).
    Status(u16),
    /// Close the connection without answering.
    Drop,
    /// Wait this long, then serve the request normally.
    Delay(Duration),
}

/// A fault for requests of one method (or all) to one path (the decoded path, no query).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The method, or every method.
    pub method: Option<Method>,
    /// The exact path, e.g. `/nvue_v1/` or `/nvue_v1/revision`.
    pub path: String,
    /// How many matching requests it affects.
    pub times: u32,
    /// What it does.
    pub action: FaultAction,
}

/// One request the emulator saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Its method.
    pub method: Method,
    /// Its decoded path (no query).
    pub path: String,
    /// Its raw query, if any.
    pub query: Option<String>,
}

/// A revision as the emulator holds it.
#[derive(Debug, Clone)]
pub struct RevisionRecord {
    /// The revision id (not encoded).
    pub id: String,
    /// Its current state.
    pub state: String,
    /// Every state it has been in, in order.
    pub history: Vec<String>,
    /// `transition.issue`.
    pub issue: Map<String, Value>,
    tree: Value,
    auto_yes: bool,
}

impl RevisionRecord {
    fn set_state(&mut self, state: &str) {
        self.state = state.to_owned();
        self.history.push(state.to_owned());
    }

    fn view(&self) -> Value {
        json!({"state": self.state, "transition": {"issue": self.issue, "progress": ""}})
    }
}

#[derive(Debug)]
struct State {
    cfg: NvueEmulatorConfig,
    applied: Value,
    startup: Value,
    revisions: BTreeMap<String, RevisionRecord>,
    created: usize,
    log: Vec<LoggedRequest>,
    faults: Vec<Fault>,
    apply_delay: Duration,
    /// Issues the next applies end `apply_fail` with, one per apply.
    fail_next: std::collections::VecDeque<String>,
    kernel: Option<Arc<KernelSwitch>>,
    realisations: Vec<meridian_drivers::ChangeReport>,
}

type Shared = Arc<Mutex<State>>;

fn lock(s: &Shared) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running NVUE emulator; stopped when dropped.
#[derive(Debug)]
pub struct NvueEmulator {
    http: HttpThread,
    state: Shared,
}

impl NvueEmulator {
    /// Starts an emulated switch with an empty configuration on `127.0.0.1:0`.
    pub fn start(cfg: NvueEmulatorConfig) -> std::io::Result<Self> {
        let state: Shared = Arc::new(Mutex::new(State {
            cfg,
            applied: json!({}),
            startup: json!({}),
            revisions: BTreeMap::new(),
            created: 0,
            log: Vec::new(),
            faults: Vec::new(),
            apply_delay: Duration::ZERO,
            fail_next: std::collections::VecDeque::new(),
            kernel: None,
            realisations: Vec::new(),
        }));
        let http = HttpThread::start("nvue-emulator", state.clone(), |_| async {}, handle)?;
        Ok(Self { http, state })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http.addr())
    }

    /// The applied configuration.
    pub fn applied(&self) -> Value {
        lock(&self.state).applied.clone()
    }

    /// The startup configuration.
    pub fn startup(&self) -> Value {
        lock(&self.state).startup.clone()
    }

    /// How many revisions have been created.
    pub fn revisions_created(&self) -> usize {
        lock(&self.state).created
    }

    /// Every revision, oldest first.
    pub fn revisions(&self) -> Vec<RevisionRecord> {
        let st = lock(&self.state);
        let mut out: Vec<RevisionRecord> = st.revisions.values().cloned().collect();
        out.sort_by_key(|r| r.id.rsplit('_').next().map(str::to_owned));
        out
    }

    /// Every request seen, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        lock(&self.state).log.clone()
    }

    /// How many requests of `method` to `path` were seen.
    pub fn count(&self, method: &Method, path: &str) -> usize {
        lock(&self.state)
            .log
            .iter()
            .filter(|r| r.method == *method && r.path == path)
            .count()
    }

    /// Adds a fault.
    pub fn inject(&self, fault: Fault) {
        lock(&self.state).faults.push(fault);
    }

    /// Makes every apply take `delay` longer in its `ays_yes` stage.
    pub fn set_apply_delay(&self, delay: Duration) {
        lock(&self.state).apply_delay = delay;
    }

    /// Realises every later apply on the kernel inside network namespace `netns` (which must
    /// exist), with `local_vtep` as the VXLAN source and `peers` as the flood list when the
    /// applied tree has no `nve.vxlan.flooding.head-end-replication`.
    pub fn with_namespace(
        self,
        netns: impl Into<String>,
        local_vtep: Ipv4Addr,
        peers: &[Ipv4Addr],
    ) -> Self {
        lock(&self.state).kernel = Some(Arc::new(KernelSwitch::new(netns, local_vtep, peers)));
        self
    }

    /// The change reports of the kernel realisations so far, oldest first.
    pub fn realisations(&self) -> Vec<meridian_drivers::ChangeReport> {
        lock(&self.state).realisations.clone()
    }

    /// Makes the next apply that passes validation end `apply_fail` with `issue` (calls
    /// queue up: each fails one more apply).
    pub fn fail_next_apply(&self, issue: impl Into<String>) {
        lock(&self.state).fail_next.push_back(issue.into());
    }
}

/// Returned by the service to make hyper close the connection without an answer (only an
/// error from the service does that).
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct Dropped;

type Resp = Response<Full<Bytes>>;

fn respond(status: StatusCode, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    r
}

fn problem(status: StatusCode, detail: impl Into<String>) -> Resp {
    respond(
        status,
        &json!({"status": status.as_u16(),
            "title": status.canonical_reason().unwrap_or(""),
            "detail": detail.into()}),
    )
}

fn no_content() -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::NO_CONTENT;
    r
}

async fn handle(st: Shared, req: Request<Incoming>) -> Result<Resp, Dropped> {
    let method = req.method().clone();
    let raw_path = req.uri().path().to_owned();
    let raw_query = req.uri().query().map(str::to_owned);
    let decoded = percent_decode_str(&raw_path)
        .decode_utf8_lossy()
        .into_owned();
    // Faults first: they stand for the nginx in front of nvued being busy or gone.
    let action = {
        let mut s = lock(&st);
        s.log.push(LoggedRequest {
            method: method.clone(),
            path: decoded.clone(),
            query: raw_query.clone(),
        });
        let hit = s.faults.iter_mut().find(|f| {
            f.times > 0 && f.path == decoded && f.method.as_ref().is_none_or(|m| m == method)
        });
        hit.map(|f| {
            f.times -= 1;
            f.action.clone()
        })
    };
    match action {
        Some(FaultAction::Drop) => return Err(Dropped),
        Some(FaultAction::Status(code)) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = problem(status, "injected fault");
            if status == StatusCode::SERVICE_UNAVAILABLE {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            }
            return Ok(r);
        }
        Some(FaultAction::Delay(d)) => tokio::time::sleep(d).await,
        None => {}
    }
    if !authorized(&st, &req) {
        let mut r = problem(StatusCode::UNAUTHORIZED, "bad or missing credentials");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"nvue\""),
        );
        return Ok(r);
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return Err(Dropped),
    };
    Ok(route(&st, &method, &raw_path, raw_query.as_deref(), &body))
}

fn authorized(st: &Shared, req: &Request<Incoming>) -> bool {
    let (user, pass) = {
        let s = lock(st);
        (s.cfg.username.clone(), s.cfg.password.clone())
    };
    let Some(value) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let Some(b64) = value.strip_prefix("Basic ") else {
        return false;
    };
    let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(b64.trim()) else {
        return false;
    };
    raw == format!("{user}:{pass}").as_bytes()
}

fn route(st: &Shared, method: &Method, raw_path: &str, query: Option<&str>, body: &[u8]) -> Resp {
    let Some(rest) = raw_path.strip_prefix("/nvue_v1") else {
        return problem(StatusCode::NOT_FOUND, format!("no resource {raw_path}"));
    };
    let mut segments = Vec::new();
    for raw in rest.split('/').filter(|s| !s.is_empty()) {
        match percent_decode_str(raw).decode_utf8() {
            Ok(s) => segments.push(s.into_owned()),
            Err(_) => return problem(StatusCode::BAD_REQUEST, "path is not UTF-8"),
        }
    }
    let mut rev = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == "rev" {
            if v.contains('/') {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("revision id {v:?} must be URL-encoded"),
                );
            }
            rev = Some(percent_decode_str(v).decode_utf8_lossy().into_owned());
        }
    }
    let body: Option<Value> = if body.is_empty() {
        None
    } else {
        match serde_json::from_slice(body) {
            Ok(v) => Some(v),
            Err(e) => return problem(StatusCode::BAD_REQUEST, format!("body is not JSON: {e}")),
        }
    };
    if segments.first().map(String::as_str) == Some("revision") {
        return match (segments.len(), method) {
            (1, &Method::POST) => create_revision(st),
            (1, &Method::GET) => {
                let s = lock(st);
                let all: Map<String, Value> = s
                    .revisions
                    .values()
                    .map(|r| (r.id.clone(), r.view()))
                    .collect();
                respond(StatusCode::OK, &Value::Object(all))
            }
            (2, &Method::GET) => match lock(st).revisions.get(&segments[1]) {
                Some(r) => respond(StatusCode::OK, &r.view()),
                None => problem(StatusCode::NOT_FOUND, "no such revision"),
            },
            (2, &Method::PATCH) => change_revision(st, &segments[1], body.unwrap_or(Value::Null)),
            (1 | 2, _) => problem(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
            // What an id with unencoded `/` looks like.
            _ => problem(StatusCode::NOT_FOUND, "no such revision"),
        };
    }
    match *method {
        Method::GET => {
            let s = lock(st);
            let tree = match rev.as_deref().unwrap_or("operational") {
                "applied" | "operational" => &s.applied,
                "startup" => &s.startup,
                "pending" => s
                    .revisions
                    .values()
                    .filter(|r| r.state == "pending")
                    .max_by_key(|r| r.id.rsplit('_').next().map(str::to_owned))
                    .map(|r| &r.tree)
                    .unwrap_or(&s.applied),
                id => match s.revisions.get(id) {
                    Some(r) => &r.tree,
                    None => return problem(StatusCode::NOT_FOUND, "no such revision"),
                },
            };
            match at(tree, &segments) {
                Some(v) => respond(StatusCode::OK, v),
                None => problem(StatusCode::NOT_FOUND, format!("no such object {raw_path}")),
            }
        }
        Method::PATCH | Method::DELETE => {
            let Some(id) = rev else {
                return problem(StatusCode::BAD_REQUEST, "a change needs ?rev=<revision>");
            };
            let mut s = lock(st);
            let Some(r) = s.revisions.get_mut(&id) else {
                return problem(StatusCode::NOT_FOUND, "no such revision");
            };
            if r.state != "pending" {
                return problem(
                    StatusCode::BAD_REQUEST,
                    format!("revision {id} is {}, not pending", r.state),
                );
            }
            if *method == Method::DELETE {
                unset(&mut r.tree, &segments);
                return no_content();
            }
            let Some(patch @ Value::Object(_)) = body else {
                return problem(StatusCode::BAD_REQUEST, "PATCH needs a JSON object");
            };
            let slot = slot(&mut r.tree, &segments);
            merge(slot, patch);
            respond(StatusCode::OK, slot)
        }
        _ => problem(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
    }
}

fn create_revision(st: &Shared) -> Resp {
    let mut s = lock(st);
    s.created += 1;
    let id = format!(
        "changeset/{}/2026-11-21_10.02.03_{:04X}",
        s.cfg.username, s.created
    );
    let rec = RevisionRecord {
        id: id.clone(),
        state: "pending".into(),
        history: vec!["pending".into()],
        issue: Map::new(),
        tree: s.applied.clone(),
        auto_yes: false,
    };
    let view = rec.view();
    s.revisions.insert(id.clone(), rec);
    respond(StatusCode::OK, &json!({ id: view }))
}

fn change_revision(st: &Shared, id: &str, body: Value) -> Resp {
    let want = body.get("state").and_then(Value::as_str).unwrap_or("");
    let mut s = lock(st);
    if id == "applied" && want == "save" {
        s.startup = s.applied.clone();
        return respond(StatusCode::OK, &json!({"state": "saved"}));
    }
    let step = s.cfg.step_delay;
    let Some(r) = s.revisions.get_mut(id) else {
        return problem(StatusCode::NOT_FOUND, "no such revision");
    };
    match (r.state.as_str(), want) {
        ("pending", "apply") => {
            r.auto_yes = body
                .pointer("/auto-prompt/ays")
                .and_then(Value::as_str)
                .is_some_and(|a| a == "ays_yes");
            r.set_state("apply");
            let view = r.view();
            tokio::spawn(run_apply(st.clone(), id.to_owned(), step));
            respond(StatusCode::OK, &view)
        }
        ("ays", "ays_yes") => {
            r.set_state("ays_yes");
            let view = r.view();
            tokio::spawn(finish_apply(st.clone(), id.to_owned(), step));
            respond(StatusCode::OK, &view)
        }
        ("ays", "ays_no") => {
            r.set_state("ays_fail");
            r.issue = issues(&["apply declined at the are-you-sure prompt".into()]);
            respond(StatusCode::OK, &r.view())
        }
        (from, to) => problem(
            StatusCode::BAD_REQUEST,
            format!("revision {id} cannot go from {from} to {to:?}"),
        ),
    }
}

fn issues(messages: &[String]) -> Map<String, Value> {
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            (
                (i + 1).to_string(),
                json!({"message": m, "severity": "error"}),
            )
        })
        .collect()
}

async fn run_apply(st: Shared, id: String, step: Duration) {
    tokio::time::sleep(step).await;
    {
        let mut s = lock(&st);
        let Some(r) = s.revisions.get_mut(&id) else {
            return;
        };
        let problems = schema::validate(&r.tree);
        if !problems.is_empty() {
            r.issue = issues(&problems);
            r.set_state("invalid");
            return;
        }
        if !r.auto_yes {
            r.set_state("ays");
            return;
        }
        r.set_state("ays_yes");
    }
    finish_apply(st, id, step).await;
}

async fn finish_apply(st: Shared, id: String, step: Duration) {
    let extra = lock(&st).apply_delay;
    tokio::time::sleep(step + extra).await;
    let (tree, previous, kernel) = {
        let mut s = lock(&st);
        let fail = s.fail_next.pop_front();
        let previous = s.applied.clone();
        let kernel = s.kernel.clone();
        let Some(r) = s.revisions.get_mut(&id) else {
            return;
        };
        if let Some(issue) = fail {
            r.issue = issues(&[issue]);
            r.set_state("apply_fail");
            return;
        }
        (r.tree.clone(), previous, kernel)
    };
    if let Some(k) = kernel {
        let wanted = tree.clone();
        let done = k.realise(&wanted).await;
        if done.is_err() {
            // Roll the kernel back, as a switch does when an apply fails.
            let _ = k.realise(&previous).await;
        }
        let mut s = lock(&st);
        match done {
            Ok(report) => s.realisations.push(report),
            Err(issue) => {
                if let Some(r) = s.revisions.get_mut(&id) {
                    r.issue = issues(&[format!("realising on the kernel failed: {issue}")]);
                    r.set_state("apply_fail");
                }
                return;
            }
        }
    }
    let mut s = lock(&st);
    let Some(r) = s.revisions.get_mut(&id) else {
        return;
    };
    r.set_state("applied");
    s.applied = tree.clone();
    s.startup = tree;
}

fn at<'a>(tree: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(tree, |v, k| v.get(k))
}

fn slot<'a>(tree: &'a mut Value, path: &[String]) -> &'a mut Value {
    let mut v = tree;
    for k in path {
        if !v.is_object() {
            *v = json!({});
        }
        v = v
            .as_object_mut()
            .expect("made an object above")
            .entry(k.clone())
            .or_insert_with(|| json!({}));
    }
    if !v.is_object() {
        *v = json!({});
    }
    v
}

fn unset(tree: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        *tree = json!({});
        return;
    };
    let mut v = tree;
    for k in parents {
        match v.get_mut(k) {
            Some(next) => v = next,
            None => return,
        }
    }
    if let Some(m) = v.as_object_mut() {
        m.remove(last);
    }
}

/// NVUE's PATCH: objects merge key by key, `null` unsets, anything else replaces.
fn merge(base: &mut Value, patch: Value) {
    match patch {
        Value::Object(p) => {
            if !base.is_object() {
                *base = json!({});
            }
            let b = base.as_object_mut().expect("made an object above");
            for (k, v) in p {
                if v.is_null() {
                    b.remove(&k);
                } else {
                    merge(b.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *base = other,
    }
}
