//! A NetApp ONTAP REST API emulator (one SVM, one aggregate) for the site agent's storage
//! driver (`meridian_drivers::storage::OntapArray`).
//!
//! Plain HTTP/1.1 on `127.0.0.1:<ephemeral>`, served by its own thread and runtime, so tests
//! can drive it from synchronous code. What it does, after the ONTAP REST documentation:
//!
//! - HTTP Basic on every request; **401** with `WWW-Authenticate` and an error body otherwise.
//!   Every error answers ONTAP's `{"error": {"message", "code", "target"}}`.
//! - Volumes (`/api/storage/volumes`, `/{uuid}`): `POST` (`name`, `svm.name`,
//!   `aggregates[].name`, `size` bytes (default 20 MiB, at least 20 MiB), `nas.path`,
//!   `nas.export_policy.name`), `PATCH` (`size`, `nas.export_policy.name`, `quota.enabled`) and
//!   `DELETE` are **asynchronous jobs**: the answer is **202** with `job.uuid` and
//!   `job._links.self.href`; `GET /api/cluster/jobs/{uuid}` shows `queued`, then `running` for
//!   the configured job delay, then `success` or `failure` (with `message`, `code` and
//!   `error`). Jobs run one at a time in the order queued. A volume appears only when its
//!   create job succeeds. A create whose name is in use, or that asks for more than the
//!   aggregate has available (volumes are thick: `guarantee.type` volume), fails *in its job*
//!   ([`codes::DUPLICATE_VOLUME_NAME`], [`codes::NO_SPACE`]); so does growing beyond the
//!   available space, or shrinking below the bytes used.
//! - Quota rules (`/api/storage/quota/rules`, `/{uuid}`): tree rules (`svm.name`,
//!   `volume.name`, `type "tree"`, `qtree.name`, `space.hard_limit` bytes); `POST`, `PATCH`
//!   and `DELETE` are jobs as well. A `PATCH` (or create) whose hard limit is below the bytes
//!   the volume already uses is refused at once (400, [`codes::QUOTA_BELOW_USED`]).
//!   [`OntapEmulator::write`] stands for clients writing: refused past the volume's size, and
//!   past the hard limit of its tree rule when the volume's quotas are on.
//! - Export policies (`/api/protocols/nfs/export-policies`, `/{id}`): synchronous (`POST`
//!   201, `PATCH`/`DELETE` 200), with rules (`clients[].match`, `protocols`, `ro_rule`,
//!   `rw_rule`, `superuser`); client matches are checked (code 1704039, or 1704040 for host
//!   bits under the mask). A policy a volume uses cannot be deleted (409, code 1703945). The
//!   SVM has the policy `default`.
//! - Aggregates (`/api/storage/aggregates`): `space.block_storage.size`, `.available`, `.used`.
//! - Collections answer `{"records": [...], "num_records": N}`; queries filter on any field by
//!   dotted name (`svm.name=svm1`, `name=t1_*`; `*` globs, `|` separates alternatives), and
//!   `fields=` selects what each record carries beyond its identity (`uuid`/`id`, `name`).
//!   Unknown uuids answer 404 (code 4, "entry doesn't exist"); bad JSON and bad fields 400
//!   naming the field in `target` (unknown body fields: code 262179, "Unexpected argument").
//! - Faults: [`OntapEmulator::faults`] (the shared [`Faults`] table: a status, latency or a
//!   hang per method and path pattern), [`OntapEmulator::drop_requests`] (connections closed
//!   without an answer), [`OntapEmulator::fail_next_job`] (the next job to run ends
//!   `failure`), [`OntapEmulator::lose_next_create_answer`] (the next volume create is queued
//!   and runs, but its connection is closed before the 202), and
//!   [`OntapEmulator::pause_jobs`] to hold jobs `queued`.
//!
//! Pages followed (docs.netapp.com): `ontap-restapi/post-storage-volumes.html`,
//! `ontap-restapi/get-cluster-jobs-.html`, `ontap-restapi-96/cluster_jobs_endpoint_overview.html`,
//! `ontap-restmap/job.html` (job states), `ontap-restapi-98/ontap/storage_quota_rules_endpoint_overview.html`,
//! `ontap-restapi/delete-protocols-nfs-export-policies-.html` (codes 1703945 and the
//! `entry doesn't exist` example body), `ontap-restapi/delete-protocols-nfs-export-policies-rules-clients-.html`
//! (codes 1703954, 1704039, 1704040). Where those pages give no code (duplicate volume name,
//! no space, quota below use, a refused login), the codes in [`codes`] are the emulator's own;
//! the driver does not depend on them.

mod api;
mod jobs;
mod policies;
mod records;

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::faults::{Faults, path_matches};
use crate::http_thread::HttpThread;

pub use crate::faults::{Fault, FaultId};

const MIB: u64 = 1 << 20;

/// The error codes the emulator answers with. Those documented by ONTAP say so; the others
/// are the emulator's own choice.
pub mod codes {
    /// "entry doesn't exist" (ONTAP's documented example error body): unknown uuid or id.
    pub const NOT_FOUND: &str = "4";
    /// "Unexpected argument" (ONTAP): a query or body field the endpoint does not know.
    pub const UNEXPECTED_ARGUMENT: &str = "262179";
    /// A field with a value of the wrong type or out of range (the emulator's).
    pub const INVALID_VALUE: &str = "262197";
    /// A required field is missing (the emulator's).
    pub const MISSING_FIELD: &str = "262186";
    /// The credentials were refused (the emulator's).
    pub const UNAUTHORIZED: &str = "6";
    /// An object with that name already exists (the emulator's, synchronous answers).
    pub const DUPLICATE_ENTRY: &str = "1";
    /// Ruleset is in use by a volume (ONTAP, `DELETE /protocols/nfs/export-policies/{id}`).
    pub const POLICY_IN_USE: &str = "1703945";
    /// Export policy does not exist (ONTAP).
    pub const EXPORT_POLICY_DOES_NOT_EXIST: &str = "1703954";
    /// Invalid clientmatch (ONTAP).
    pub const INVALID_CLIENTMATCH: &str = "1704039";
    /// Invalid clientmatch: address bytes masked out by netmask are non-zero (ONTAP).
    pub const CLIENTMATCH_HOST_BITS: &str = "1704040";
    /// Job failure: the volume name is in use (the emulator's; `errno` 17, EEXIST).
    pub const DUPLICATE_VOLUME_NAME: u64 = 17;
    /// Job failure: the aggregate lacks the space (the emulator's).
    pub const NO_SPACE: u64 = 917_505;
    /// Job failure: a shrink below the bytes used (the emulator's).
    pub const SHRINK_BELOW_USED: u64 = 917_506;
    /// A quota hard limit below the bytes used (the emulator's; synchronous and in jobs).
    pub const QUOTA_BELOW_USED: u64 = 5_308_561;
    /// Job failure: a tree rule for that volume and qtree exists (the emulator's).
    pub const DUPLICATE_QUOTA_RULE: u64 = 5_308_568;
    /// Job failure: the export policy named does not exist (ONTAP's 1703954).
    pub const EXPORT_POLICY_MISSING: u64 = 1_703_954;
    /// Job failure: the object went away before the job ran ("entry doesn't exist").
    pub const JOB_ENTRY_GONE: u64 = 4;
    /// Job failure injected by [`super::OntapEmulator::fail_next_job`] (the emulator's).
    pub const INJECTED_JOB_FAILURE: u64 = 1;
}

/// Credentials, names, size and timing of an emulated array.
#[derive(Debug, Clone)]
pub struct OntapEmulatorConfig {
    /// The only user accepted.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The SVM's name.
    pub svm: String,
    /// The aggregate's name.
    pub aggregate: String,
    /// The aggregate's usable size, bytes.
    pub aggregate_size: u64,
    /// How long each job stays `running`.
    pub job_delay: Duration,
}

impl Default for OntapEmulatorConfig {
    fn default() -> Self {
        Self {
            username: "admin".into(),
            password: "Meridian-1".into(),
            svm: "svm1".into(),
            aggregate: "aggr1".into(),
            aggregate_size: 1 << 40,
            job_delay: Duration::from_millis(20),
        }
    }
}

/// One request the emulator saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggedRequest {
    /// Its method.
    pub method: Method,
    /// Its path (no query).
    pub path: String,
    /// Its raw query, if any.
    pub query: Option<String>,
    /// The status answered (0: the connection was closed without an answer).
    pub status: u16,
}

/// One job, as the emulator keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRecord {
    /// Its uuid.
    pub uuid: String,
    /// What it does (`POST /api/storage/volumes t1_data`).
    pub description: String,
    /// `queued`, `running`, `success` or `failure`.
    pub state: String,
    /// Every state it has been in, in order.
    pub history: Vec<String>,
    /// Its code (0 unless it failed).
    pub code: u64,
    /// Its message (the error text when it failed).
    pub message: String,
}

impl JobRecord {
    fn set(&mut self, state: &str, message: &str, code: u64) {
        self.state = state.to_owned();
        self.history.push(state.to_owned());
        self.message = message.to_owned();
        self.code = code;
    }
}

/// A volume as the emulator holds it, with what concerns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmulatedVolume {
    /// Its name.
    pub name: String,
    /// Its uuid.
    pub uuid: String,
    /// Its size, bytes.
    pub size: u64,
    /// Bytes written to it ([`OntapEmulator::write`]).
    pub used: u64,
    /// The hard limit of its tree quota rule (qtree `""`), bytes.
    pub quota_hard_limit: Option<u64>,
    /// Whether its quotas are on.
    pub quota_enabled: bool,
    /// Its junction path.
    pub path: String,
    /// Its export policy's name.
    pub export_policy: String,
    /// Every client match of its export policy's rules, in order.
    pub clients: Vec<String>,
}

/// Why an emulated write was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteError {
    /// No volume has that name.
    #[error("no volume {0}")]
    NoVolume(String),
    /// The write would pass the hard limit of the volume's tree quota.
    #[error("disk quota exceeded on {volume}: {used} + {bytes} bytes > hard limit {limit}")]
    QuotaExceeded {
        /// The volume.
        volume: String,
        /// Bytes in use.
        used: u64,
        /// Bytes asked for.
        bytes: u64,
        /// The hard limit.
        limit: u64,
    },
    /// The write would pass the volume's size.
    #[error("no space left on {volume}: {used} + {bytes} bytes > size {size}")]
    VolumeFull {
        /// The volume.
        volume: String,
        /// Bytes in use.
        used: u64,
        /// Bytes asked for.
        bytes: u64,
        /// The volume's size.
        size: u64,
    },
}

#[derive(Debug, Clone)]
struct Volume {
    uuid: String,
    name: String,
    size: u64,
    used: u64,
    path: String,
    policy: String,
    quota_enabled: bool,
}

#[derive(Debug, Clone)]
struct QuotaRule {
    uuid: String,
    /// The volume's name.
    volume: String,
    qtree: String,
    hard_limit: Option<u64>,
}

#[derive(Debug, Clone)]
struct ExportPolicy {
    id: u64,
    name: String,
    /// Normalised rules, each with its `index`.
    rules: Vec<Value>,
}

#[derive(Debug, Clone)]
struct DropRule {
    method: Option<Method>,
    path: String,
    times: u32,
}

#[derive(Debug)]
struct State {
    cfg: OntapEmulatorConfig,
    svm_uuid: String,
    aggr_uuid: String,
    volumes: BTreeMap<String, Volume>,
    rules: BTreeMap<String, QuotaRule>,
    policies: BTreeMap<u64, ExportPolicy>,
    jobs: Vec<JobRecord>,
    queue: VecDeque<(String, jobs::Op)>,
    next: u64,
    log: Vec<LoggedRequest>,
    fail_next: VecDeque<String>,
    lose_next_create: u32,
    drops: Vec<DropRule>,
    paused: bool,
}

impl State {
    /// A fresh uuid-shaped identifier, `kind` telling objects apart when read.
    fn new_uuid(&mut self, kind: u32) -> String {
        self.next += 1;
        format!("{kind:08x}-0000-4000-8000-{:012x}", self.next)
    }

    fn job_mut(&mut self, uuid: &str) -> Option<&mut JobRecord> {
        self.jobs.iter_mut().find(|j| j.uuid == uuid)
    }

    fn volume_by_name(&self, name: &str) -> Option<&Volume> {
        self.volumes.values().find(|v| v.name == name)
    }

    fn aggregate_used(&self) -> u64 {
        self.volumes.values().map(|v| v.size).sum()
    }

    fn aggregate_available(&self) -> u64 {
        self.cfg
            .aggregate_size
            .saturating_sub(self.aggregate_used())
    }

    fn tree_limit(&self, volume: &str) -> Option<u64> {
        self.rules
            .values()
            .find(|r| r.volume == volume && r.qtree.is_empty())
            .and_then(|r| r.hard_limit)
    }
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    wake: Notify,
    faults: Faults,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running ONTAP emulator; stopped when dropped.
#[derive(Debug)]
pub struct OntapEmulator {
    http: HttpThread,
    shared: Arc<Shared>,
}

impl OntapEmulator {
    /// Starts an emulated array with no volumes on `127.0.0.1:0`.
    pub fn start(cfg: OntapEmulatorConfig) -> std::io::Result<Self> {
        let mut state = State {
            cfg,
            svm_uuid: String::new(),
            aggr_uuid: String::new(),
            volumes: BTreeMap::new(),
            rules: BTreeMap::new(),
            policies: BTreeMap::new(),
            jobs: Vec::new(),
            queue: VecDeque::new(),
            next: 0,
            log: Vec::new(),
            fail_next: VecDeque::new(),
            lose_next_create: 0,
            drops: Vec::new(),
            paused: false,
        };
        state.svm_uuid = state.new_uuid(0x5f0);
        state.aggr_uuid = state.new_uuid(0xa66);
        let id = policies::new_policy_id(&mut state);
        state.policies.insert(
            id,
            ExportPolicy {
                id,
                name: "default".into(),
                rules: Vec::new(),
            },
        );
        let shared = Arc::new(Shared {
            state: Mutex::new(state),
            wake: Notify::new(),
            faults: Faults::new(),
        });
        let http = HttpThread::start("ontap-emulator", shared.clone(), jobs::worker, handle)?;
        Ok(Self { http, shared })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.http.addr()
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.http.addr())
    }

    /// The configuration it runs with.
    pub fn config(&self) -> OntapEmulatorConfig {
        self.shared.lock().cfg.clone()
    }

    /// Every volume, by name.
    pub fn volumes(&self) -> Vec<EmulatedVolume> {
        let s = self.shared.lock();
        let mut out: Vec<EmulatedVolume> = s
            .volumes
            .values()
            .map(|v| EmulatedVolume {
                name: v.name.clone(),
                uuid: v.uuid.clone(),
                size: v.size,
                used: v.used,
                quota_hard_limit: s.tree_limit(&v.name),
                quota_enabled: v.quota_enabled,
                path: v.path.clone(),
                export_policy: v.policy.clone(),
                clients: s
                    .policies
                    .values()
                    .find(|p| p.name == v.policy)
                    .map(|p| policies::policy_clients(&p.rules))
                    .unwrap_or_default(),
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The volume named `name`.
    pub fn volume(&self, name: &str) -> Option<EmulatedVolume> {
        self.volumes().into_iter().find(|v| v.name == name)
    }

    /// Every export policy: its name and the client matches of its rules.
    pub fn export_policies(&self) -> Vec<(String, Vec<String>)> {
        let s = self.shared.lock();
        let mut out: Vec<(String, Vec<String>)> = s
            .policies
            .values()
            .map(|p| (p.name.clone(), policies::policy_clients(&p.rules)))
            .collect();
        out.sort();
        out
    }

    /// Every quota rule: volume name, qtree name, hard limit in bytes.
    pub fn quota_rules(&self) -> Vec<(String, String, Option<u64>)> {
        let s = self.shared.lock();
        let mut out: Vec<(String, String, Option<u64>)> = s
            .rules
            .values()
            .map(|r| (r.volume.clone(), r.qtree.clone(), r.hard_limit))
            .collect();
        out.sort();
        out
    }

    /// Every job so far, oldest first (its length is the number of jobs created).
    pub fn jobs(&self) -> Vec<JobRecord> {
        self.shared.lock().jobs.clone()
    }

    /// Every request seen, in order.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.shared.lock().log.clone()
    }

    /// How many requests of `method` to `path` were seen.
    pub fn count(&self, method: &Method, path: &str) -> usize {
        self.shared
            .lock()
            .log
            .iter()
            .filter(|r| r.method == *method && r.path == path)
            .count()
    }

    /// The injected HTTP faults (status, latency, hang per method and path pattern), consulted
    /// first for every request.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Adds an HTTP fault; shorthand for `faults().inject(fault)`.
    pub fn inject(&self, fault: Fault) -> FaultId {
        self.shared.faults.inject(fault)
    }

    /// Closes the connection of the next `times` requests of `method` (or any) whose path
    /// matches `path` (a [`crate::faults`] pattern) without answering and without serving them.
    pub fn drop_requests(&self, method: Option<Method>, path: impl Into<String>, times: u32) {
        self.shared.lock().drops.push(DropRule {
            method,
            path: path.into(),
            times,
        });
    }

    /// Makes the next job to run end `failure` with `message`, changing nothing (calls queue
    /// up: each fails one more job).
    pub fn fail_next_job(&self, message: impl Into<String>) {
        self.shared.lock().fail_next.push_back(message.into());
    }

    /// Makes the next volume create that passes validation queue its job (which runs and
    /// creates the volume) and then close the connection instead of answering 202.
    pub fn lose_next_create_answer(&self) {
        self.shared.lock().lose_next_create += 1;
    }

    /// Holds every job `queued` until [`resume_jobs`](Self::resume_jobs).
    pub fn pause_jobs(&self) {
        self.shared.lock().paused = true;
    }

    /// Runs held jobs (in the order queued) and later ones again.
    pub fn resume_jobs(&self) {
        self.shared.lock().paused = false;
        self.shared.wake.notify_one();
    }

    /// Changes how long each later job stays `running`.
    pub fn set_job_delay(&self, delay: Duration) {
        self.shared.lock().cfg.job_delay = delay;
    }

    /// A client writes `bytes` to `volume`: refused past its size, and past its tree quota's
    /// hard limit when its quotas are on. Returns the bytes now used.
    pub fn write(&self, volume: &str, bytes: u64) -> Result<u64, WriteError> {
        let mut s = self.shared.lock();
        let limit = s.tree_limit(volume);
        let v = s
            .volumes
            .values_mut()
            .find(|v| v.name == volume)
            .ok_or_else(|| WriteError::NoVolume(volume.to_owned()))?;
        let after = v.used.saturating_add(bytes);
        if v.quota_enabled
            && let Some(limit) = limit
            && after > limit
        {
            return Err(WriteError::QuotaExceeded {
                volume: volume.to_owned(),
                used: v.used,
                bytes,
                limit,
            });
        }
        if after > v.size {
            return Err(WriteError::VolumeFull {
                volume: volume.to_owned(),
                used: v.used,
                bytes,
                size: v.size,
            });
        }
        v.used = after;
        Ok(after)
    }
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by the emulator")]
struct Dropped;

type Resp = Response<Full<Bytes>>;

/// What the router decided.
enum Outcome {
    /// Answer this.
    Answer(Resp),
    /// Close the connection without answering (the work was done).
    Lose,
}

fn respond(status: StatusCode, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/hal+json"),
    );
    r
}

/// ONTAP's error body.
fn error(status: StatusCode, code: &str, message: impl Into<String>, target: Option<&str>) -> Resp {
    let mut e = json!({"message": message.into(), "code": code});
    if let Some(t) = target {
        e["target"] = json!(t);
    }
    respond(status, &json!({ "error": e }))
}

async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Dropped> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let log = |status: u16| {
        sh.lock().log.push(LoggedRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            status,
        });
    };
    let dropped = {
        let mut s = sh.lock();
        let hit = s.drops.iter_mut().find(|d| {
            d.times > 0
                && d.method.as_ref().is_none_or(|m| *m == method)
                && path_matches(&d.path, &path)
        });
        hit.map(|d| d.times -= 1).is_some()
    };
    if dropped {
        log(0);
        return Err(Dropped);
    }
    if let Some(hit) = sh.faults.take(&method, &path) {
        if !hit.wait().await {
            log(0);
            return Err(Dropped);
        }
        if let Some(code) = hit.status {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut r = error(status, "0", "injected fault", None);
            if let Some(secs) = hit.retry_after {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from(secs));
            }
            log(code);
            return Ok(r);
        }
    }
    if !authorized(&sh, &req) {
        let mut r = error(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            "not authorized: bad or missing credentials",
            None,
        );
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"ONTAP\""),
        );
        log(401);
        return Ok(r);
    }
    let Ok(body) = req.into_body().collect().await.map(|b| b.to_bytes()) else {
        log(0);
        return Err(Dropped);
    };
    match api::route(&sh, &method, &path, query.as_deref(), &body) {
        Outcome::Answer(r) => {
            log(r.status().as_u16());
            Ok(r)
        }
        Outcome::Lose => {
            log(0);
            Err(Dropped)
        }
    }
}

fn authorized(sh: &Shared, req: &Request<Incoming>) -> bool {
    let expected = {
        let s = sh.lock();
        format!("{}:{}", s.cfg.username, s.cfg.password)
    };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .is_some_and(|raw| raw == expected.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_stop_at_the_quota_only_when_quotas_are_on() {
        let emu = OntapEmulator::start(OntapEmulatorConfig::default()).unwrap();
        {
            let mut s = emu.shared.lock();
            let uuid = s.new_uuid(1);
            s.volumes.insert(
                uuid.clone(),
                Volume {
                    uuid,
                    name: "v".into(),
                    size: 100 * MIB,
                    used: 0,
                    path: "/v".into(),
                    policy: "default".into(),
                    quota_enabled: false,
                },
            );
            let r = s.new_uuid(2);
            s.rules.insert(
                r.clone(),
                QuotaRule {
                    uuid: r,
                    volume: "v".into(),
                    qtree: String::new(),
                    hard_limit: Some(10 * MIB),
                },
            );
        }
        assert_eq!(emu.write("v", 20 * MIB), Ok(20 * MIB));
        assert!(matches!(
            emu.write("v", 81 * MIB),
            Err(WriteError::VolumeFull { .. })
        ));
        emu.shared
            .lock()
            .volumes
            .values_mut()
            .for_each(|v| v.quota_enabled = true);
        assert!(matches!(
            emu.write("v", 1),
            Err(WriteError::QuotaExceeded { limit, .. }) if limit == 10 * MIB
        ));
        assert_eq!(
            emu.write("nope", 1),
            Err(WriteError::NoVolume("nope".into()))
        );
        assert_eq!(emu.volume("v").unwrap().used, 20 * MIB);
    }
}
