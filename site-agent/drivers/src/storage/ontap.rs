//! [`OntapArray`]: a [`StorageArray`] over the NetApp ONTAP REST API (`/api/...`), one SVM and
//! one aggregate.
//!
//! Per volume `N` the array holds three objects, all named after it:
//!
//! - the volume (`/api/storage/volumes`): `size` bytes, on the configured aggregate, junction
//!   path `/N`, export policy `N`, quotas on (`quota.enabled`);
//! - the export policy `N` (`/api/protocols/nfs/export-policies`): one rule whose `clients` are
//!   exactly the wanted subnets (`{"match": "10.1.0.0/24"}`), `protocols ["nfs"]`, `ro_rule`
//!   and `rw_rule ["sys"]`, `superuser ["none"]` (root is squashed), or no rule at all when no
//!   client is wanted;
//! - a tree quota rule on the volume (`/api/storage/quota/rules`, `type "tree"`,
//!   `qtree.name ""`) whose `space.hard_limit` is the volume's size.
//!
//! Volume create, modify and delete are asynchronous on ONTAP: the answer is **202** with a
//! `job` (`uuid`, `_links.self.href`), which the driver polls (`GET /api/cluster/jobs/{uuid}`,
//! every [`OntapConfig::job_poll`], for at most [`OntapConfig::job_timeout`]) until its `state`
//! is `success` or `failure` (`queued`, `running` and `paused` meanwhile). Any other call that
//! answers with a `job` is awaited the same way, so quota rule calls work whether the array
//! runs them synchronously (200/201) or as jobs. Lists are read with `fields=` (ONTAP returns
//! only identity fields otherwise) and followed through `_links.next` when paged.
//!
//! Errors: a non-2xx answer carries `{"error": {"message", "code"}}` and becomes
//! [`StorageError::Api`] (401/403: [`StorageError::Unauthorized`]); a job that ends `failure`
//! becomes [`StorageError::JobFailed`] with its `message` and `code`. Either becomes
//! [`StorageError::NoSpace`] when the message says the space is insufficient (the check is on
//! the text: the pages below do not list the space error codes). A create that fails because
//! the name is in use (an earlier attempt whose answer was lost created it) is recognised by
//! reading the volume back by name, whatever the error code, and the volume is then converged
//! like any existing one. A create whose *answer* is lost fails with a transient transport
//! error and no read-back (its job may still be running); the caller's retry converges.
//!
//! HTTP Basic on every request, one connection per request ([`HttpEndpoint`]), no retries:
//! see [`StorageError::is_transient`].
//!
//! ONTAP documentation followed (docs.netapp.com):
//!
//! - `ontap-restapi/post-storage-volumes.html`: required `svm.name`, `name`,
//!   `aggregates.name`; `return_timeout` 0 answers 202 with a link to the job; default
//!   `guarantee.type` volume;
//! - `ontap-restapi/get-cluster-jobs-.html` and `ontap-restapi-96/cluster_jobs_endpoint_overview.html`:
//!   the job's `state`, `message`, `code`, `error`, `_links.self.href`;
//! - `ontap-restmap/job.html`: job states `queued`, `running`, `paused`, `success`, `failure`;
//! - `ontap-restapi-98/ontap/storage_quota_rules_endpoint_overview.html`: quota rule records
//!   (`svm`, `volume`, `type`, `qtree`, `space.hard_limit`) and their endpoints;
//! - `ontap-restapi/delete-protocols-nfs-export-policies-.html`: export policy ids, the error
//!   body (`error.code`, `error.message`, `error.target`) and code 1703945 (policy in use);
//! - `ontap-automation/workflows/wf_jobs_get_job.html`: polling a job with HTTP Basic.

use std::fmt;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Method, Request, StatusCode, header};
use meridian_common::model::Ipv4Net;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use rustls_pki_types::CertificateDer;
use serde_json::{Value, json};

use super::{
    ArrayCapacity, ArrayVolume, StorageArray, StorageError, VolumeWant, valid_volume_name,
};
use crate::http_client::{EndpointError, HttpEndpoint, TlsTrust, TransportError};

const MIB: u64 = 1 << 20;

/// Characters escaped in query values: everything but letters, digits, `-`, `_`, `.`, `*`.
const QUERY_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'*');

/// Fields read for a volume.
const VOLUME_FIELDS: &str = "uuid,name,size,nas.path,nas.export_policy.name,quota.enabled";

/// How to reach and use one ONTAP cluster (or SVM management interface).
#[derive(Clone)]
pub struct OntapConfig {
    /// `https://cluster1` on an array, `http://127.0.0.1:<port>` for the emulator. Only the
    /// scheme and authority are used; paths start at `/api`.
    pub url: String,
    /// An ONTAP user allowed to manage volumes, quota rules and export policies of the SVM.
    pub username: String,
    /// Its password.
    pub password: String,
    /// The SVM (vserver) the volumes live in.
    pub svm: String,
    /// The aggregate new volumes are created on.
    pub aggregate: String,
    /// Trust anchors for `https` (the cluster's certificate or its CA), DER.
    pub tls_roots: Vec<CertificateDer<'static>>,
    /// Pause between polls of a job's state.
    pub job_poll: Duration,
    /// How long a job may take to reach `success` or `failure`.
    pub job_timeout: Duration,
    /// Limit for one request (connect, send, whole response).
    pub request_timeout: Duration,
}

impl OntapConfig {
    /// A config with production defaults: jobs polled every 500 ms for up to 120 s, 30 s per
    /// request, no trust anchors.
    pub fn new(
        url: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<String>,
        svm: impl Into<String>,
        aggregate: impl Into<String>,
    ) -> Self {
        Self {
            url: url.into(),
            username: username.into(),
            password: password.into(),
            svm: svm.into(),
            aggregate: aggregate.into(),
            tls_roots: Vec::new(),
            job_poll: Duration::from_millis(500),
            job_timeout: Duration::from_secs(120),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl fmt::Debug for OntapConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OntapConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .field("svm", &self.svm)
            .field("aggregate", &self.aggregate)
            .field("tls_roots", &self.tls_roots.len())
            .field("job_poll", &self.job_poll)
            .field("job_timeout", &self.job_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// A [`StorageArray`] over the ONTAP REST API.
#[derive(Clone)]
pub struct OntapArray {
    cfg: OntapConfig,
    endpoint: HttpEndpoint,
    auth: String,
}

impl fmt::Debug for OntapArray {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OntapArray")
            .field("cfg", &self.cfg)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// A volume as read from the array.
#[derive(Debug, Clone)]
struct VolumeRec {
    uuid: String,
    size: u64,
    policy: Option<String>,
    quota_enabled: bool,
}

/// A tree quota rule as read from the array.
#[derive(Debug, Clone)]
struct RuleRec {
    uuid: String,
    hard_limit: Option<u64>,
}

/// An export policy as read from the array.
#[derive(Debug, Clone)]
struct PolicyRec {
    id: u64,
    rules: Vec<Value>,
}

impl OntapArray {
    /// Checks the configuration (and builds the TLS set-up for `https`). Connects to nothing.
    pub fn new(cfg: OntapConfig) -> Result<Self, StorageError> {
        if cfg.url.starts_with("https:") && cfg.tls_roots.is_empty() {
            return Err(StorageError::Config(format!(
                "ONTAP URL {:?} is https but no trust anchor (tls_roots) was given",
                cfg.url
            )));
        }
        if cfg.svm.is_empty() || cfg.aggregate.is_empty() {
            return Err(StorageError::Config(
                "the SVM and the aggregate must be named".into(),
            ));
        }
        let trust = TlsTrust::Roots(cfg.tls_roots.clone());
        let endpoint = HttpEndpoint::new(&cfg.url, Some(&trust)).map_err(|e| match e {
            EndpointError::Tls { url, source } => StorageError::Tls { url, source },
            EndpointError::Url { url, reason } => {
                StorageError::Config(format!("ONTAP URL {url:?}: {reason}"))
            }
        })?;
        let auth = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", cfg.username, cfg.password))
        );
        Ok(Self {
            cfg,
            endpoint,
            auth,
        })
    }

    /// The configuration it was built with.
    pub fn config(&self) -> &OntapConfig {
        &self.cfg
    }

    fn svm_q(&self) -> String {
        format!("svm.name={}", enc(&self.cfg.svm))
    }

    async fn find_volume(&self, name: &str) -> Result<Option<VolumeRec>, StorageError> {
        let path = format!(
            "/api/storage/volumes?{}&name={}&fields={VOLUME_FIELDS}",
            self.svm_q(),
            enc(name)
        );
        let records = self.list(&path).await?;
        records
            .iter()
            .find(|r| str_at(r, "/name") == Some(name))
            .map(volume_rec)
            .transpose()
    }

    async fn find_rule(&self, volume: &str) -> Result<Option<RuleRec>, StorageError> {
        let path = format!(
            "/api/storage/quota/rules?{}&volume.name={}&type=tree&fields=uuid,volume.name,qtree.name,space.hard_limit",
            self.svm_q(),
            enc(volume)
        );
        let records = self.list(&path).await?;
        records
            .iter()
            .find(|r| str_at(r, "/volume/name") == Some(volume) && default_tree(r))
            .map(rule_rec)
            .transpose()
    }

    async fn find_policy(&self, name: &str) -> Result<Option<PolicyRec>, StorageError> {
        let path = format!(
            "/api/protocols/nfs/export-policies?{}&name={}&fields=id,name,rules",
            self.svm_q(),
            enc(name)
        );
        let records = self.list(&path).await?;
        records
            .iter()
            .find(|r| str_at(r, "/name") == Some(name))
            .map(policy_rec)
            .transpose()
    }

    /// Makes export policy `name` admit exactly `clients`.
    async fn ensure_policy(
        &self,
        name: &str,
        clients: &[Ipv4Net],
        changes: &mut Vec<String>,
    ) -> Result<(), StorageError> {
        let rules = wanted_rules(clients);
        let shown = show_clients(clients);
        match self.find_policy(name).await? {
            None => {
                let body = json!({"name": name, "svm": {"name": self.cfg.svm}, "rules": rules});
                self.change(
                    Method::POST,
                    "/api/protocols/nfs/export-policies",
                    &body,
                    &format!("create export policy {name}"),
                )
                .await?;
                changes.push(format!("create export policy {name} (clients {shown})"));
            }
            Some(p) if !rules_match(&p.rules, clients) => {
                let was = show_clients(&rule_clients(&p.rules));
                self.change(
                    Method::PATCH,
                    &format!("/api/protocols/nfs/export-policies/{}", p.id),
                    &json!({"rules": rules}),
                    &format!("set the rules of export policy {name}"),
                )
                .await?;
                changes.push(format!(
                    "set clients of export policy {name} to {shown} (was {was})"
                ));
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// Creates the volume, or finds it when the create fails because an earlier attempt made
    /// it.
    async fn create_or_adopt(
        &self,
        want: &VolumeWant,
        bytes: u64,
        changes: &mut Vec<String>,
    ) -> Result<VolumeRec, StorageError> {
        let name = &want.name;
        let body = json!({
            "name": name,
            "svm": {"name": self.cfg.svm},
            "aggregates": [{"name": self.cfg.aggregate}],
            "size": bytes,
            "nas": {"path": format!("/{name}"), "export_policy": {"name": name}},
        });
        let what = format!("create volume {name} ({} MiB)", want.size_mib);
        match self
            .change(Method::POST, "/api/storage/volumes", &body, &what)
            .await
        {
            Ok(()) => {
                changes.push(what);
                self.find_volume(name).await?.ok_or_else(|| {
                    StorageError::Protocol(format!(
                        "volume {name} is not listed after its create succeeded"
                    ))
                })
            }
            Err(e @ (StorageError::JobFailed { .. } | StorageError::Api { .. })) => {
                // The name may be in use by the volume an earlier attempt created.
                match self.find_volume(name).await? {
                    Some(v) => {
                        tracing::info!(volume = %name, error = %e, "volume create failed but the volume exists; adopting it");
                        changes.push(format!(
                            "volume {name} already existed (an earlier create): converging it"
                        ));
                        Ok(v)
                    }
                    None => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    async fn ensure_size(
        &self,
        name: &str,
        vol: &VolumeRec,
        bytes: u64,
        changes: &mut Vec<String>,
    ) -> Result<(), StorageError> {
        if vol.size == bytes {
            return Ok(());
        }
        let what = format!(
            "resize volume {name} from {} MiB to {} MiB",
            vol.size / MIB,
            bytes / MIB
        );
        self.change(
            Method::PATCH,
            &format!("/api/storage/volumes/{}", vol.uuid),
            &json!({"size": bytes}),
            &what,
        )
        .await?;
        changes.push(what);
        Ok(())
    }

    async fn ensure_rule(
        &self,
        name: &str,
        bytes: u64,
        changes: &mut Vec<String>,
    ) -> Result<(), StorageError> {
        match self.find_rule(name).await? {
            None => {
                let what = format!(
                    "create quota rule on {name} (hard limit {} MiB)",
                    bytes / MIB
                );
                let body = json!({
                    "svm": {"name": self.cfg.svm},
                    "volume": {"name": name},
                    "type": "tree",
                    "qtree": {"name": ""},
                    "space": {"hard_limit": bytes},
                });
                self.change(Method::POST, "/api/storage/quota/rules", &body, &what)
                    .await?;
                changes.push(what);
            }
            Some(r) if r.hard_limit != Some(bytes) => {
                let was = r
                    .hard_limit
                    .map_or_else(|| "none".to_owned(), |b| format!("{} MiB", b / MIB));
                let what = format!(
                    "set quota hard limit of {name} to {} MiB (was {was})",
                    bytes / MIB
                );
                self.change(
                    Method::PATCH,
                    &format!("/api/storage/quota/rules/{}", r.uuid),
                    &json!({"space": {"hard_limit": bytes}}),
                    &what,
                )
                .await?;
                changes.push(what);
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// A mutating call: waits for its job when it answers with one. Space failures become
    /// [`StorageError::NoSpace`] about `what`.
    async fn change(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        what: &str,
    ) -> Result<(), StorageError> {
        let outcome = async {
            let answer = self.send(method.clone(), path, Some(body)).await?;
            if let Some(job) = answer.get("job").filter(|j| j.is_object()) {
                self.wait_job(job, what).await?;
            }
            Ok(())
        }
        .await;
        outcome.map_err(|e| match e {
            StorageError::Api { code, message, .. }
            | StorageError::JobFailed { code, message, .. }
                if says_no_space(&message) =>
            {
                StorageError::NoSpace {
                    what: what.to_owned(),
                    code,
                    message,
                }
            }
            other => other,
        })
    }

    async fn wait_job(&self, job: &Value, what: &str) -> Result<(), StorageError> {
        let uuid = str_at(job, "/uuid")
            .ok_or_else(|| StorageError::Protocol(format!("a job without a uuid: {job}")))?
            .to_owned();
        let path = match str_at(job, "/_links/self/href") {
            Some(href) if href.starts_with("/api/") => href.to_owned(),
            _ => format!("/api/cluster/jobs/{}", enc(&uuid)),
        };
        let start = Instant::now();
        loop {
            let v = self.send(Method::GET, &path, None).await?;
            let state = str_at(&v, "/state").unwrap_or("").to_owned();
            match state.as_str() {
                "success" => return Ok(()),
                "failure" => {
                    let code = code_text(v.get("code"))
                        .or_else(|| code_text(v.pointer("/error/code")))
                        .unwrap_or_default();
                    let message = str_at(&v, "/message")
                        .or_else(|| str_at(&v, "/error/message"))
                        .unwrap_or("no message")
                        .to_owned();
                    tracing::warn!(job = %uuid, what, code, message, "ONTAP job failed");
                    return Err(StorageError::JobFailed {
                        job: uuid,
                        description: what.to_owned(),
                        code,
                        message,
                    });
                }
                "queued" | "running" | "paused" => {}
                other => {
                    return Err(StorageError::Protocol(format!(
                        "job {uuid} is in unknown state {other:?}: {v}"
                    )));
                }
            }
            let waited = start.elapsed();
            if waited >= self.cfg.job_timeout {
                return Err(StorageError::JobTimeout {
                    job: uuid,
                    description: what.to_owned(),
                    state,
                    waited,
                });
            }
            tokio::time::sleep(self.cfg.job_poll).await;
        }
    }

    /// Every record of a collection, following `_links.next`.
    async fn list(&self, path: &str) -> Result<Vec<Value>, StorageError> {
        let mut out = Vec::new();
        let mut next = Some(path.to_owned());
        let mut pages = 0;
        while let Some(p) = next.take() {
            pages += 1;
            if pages > 1000 {
                return Err(StorageError::Protocol(format!("{path}: over 1000 pages")));
            }
            let v = self.send(Method::GET, &p, None).await?;
            match v.get("records") {
                Some(Value::Array(records)) => out.extend(records.iter().cloned()),
                _ => {
                    return Err(StorageError::Protocol(format!(
                        "GET {p} answered without records: {v}"
                    )));
                }
            }
            next = str_at(&v, "/_links/next/href")
                .filter(|h| h.starts_with("/api/"))
                .map(str::to_owned);
        }
        Ok(out)
    }

    /// One request; the parsed body of a 2xx answer (`null` when empty).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, StorageError> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::AUTHORIZATION, &self.auth)
            .header(header::ACCEPT, "application/json");
        let payload = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(v.to_string())
            }
            None => Bytes::new(),
        };
        let req = req
            .body(Full::new(payload))
            .map_err(|e| StorageError::Protocol(format!("cannot build {method} {path}: {e}")))?;
        let timeout = self.cfg.request_timeout;
        let resp = tokio::time::timeout(timeout, self.endpoint.send(req))
            .await
            .unwrap_or(Err(TransportError::TimedOut(timeout)))
            .map_err(|source| StorageError::Transport {
                method: method.to_string(),
                path: path.to_owned(),
                source,
            })?;
        let status = resp.status();
        let bytes = resp.into_body();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(StorageError::Unauthorized {
                url: self.cfg.url.clone(),
                user: self.cfg.username.clone(),
                status: status.as_u16(),
                message: error_parts(&bytes).1,
            });
        }
        if !status.is_success() {
            let (code, message) = error_parts(&bytes);
            return Err(StorageError::Api {
                method: method.to_string(),
                path: path.to_owned(),
                status: status.as_u16(),
                code,
                message,
            });
        }
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            StorageError::Protocol(format!("{method} {path} answered malformed JSON: {e}"))
        })
    }
}

#[async_trait::async_trait]
impl StorageArray for OntapArray {
    async fn volumes(&self, prefix: &str) -> Result<Vec<ArrayVolume>, StorageError> {
        if !prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(StorageError::Invalid(format!(
                "volume name prefix {prefix:?} has characters no volume name has"
            )));
        }
        let glob = format!("{prefix}*");
        let volumes = self
            .list(&format!(
                "/api/storage/volumes?{}&name={}&fields={VOLUME_FIELDS}",
                self.svm_q(),
                enc(&glob)
            ))
            .await?;
        let rules = self
            .list(&format!(
                "/api/storage/quota/rules?{}&volume.name={}&type=tree&fields=uuid,volume.name,qtree.name,space.hard_limit",
                self.svm_q(),
                enc(&glob)
            ))
            .await?;
        let policies = self
            .list(&format!(
                "/api/protocols/nfs/export-policies?{}&fields=id,name,rules",
                self.svm_q()
            ))
            .await?;
        let mut out = Vec::new();
        for v in &volumes {
            let Some(name) = str_at(v, "/name").filter(|n| n.starts_with(prefix)) else {
                continue;
            };
            let rec = volume_rec(v)?;
            let quota = rules
                .iter()
                .find(|r| str_at(r, "/volume/name") == Some(name) && default_tree(r))
                .map(rule_rec)
                .transpose()?
                .and_then(|r| r.hard_limit)
                .filter(|_| rec.quota_enabled);
            let clients = match rec.policy.as_deref() {
                Some(p) => policies
                    .iter()
                    .find(|x| str_at(x, "/name") == Some(p))
                    .map(|x| match x.get("rules") {
                        Some(Value::Array(rules)) => rule_clients(rules),
                        _ => Vec::new(),
                    })
                    .unwrap_or_default(),
                None => Vec::new(),
            };
            out.push(ArrayVolume {
                name: name.to_owned(),
                uuid: rec.uuid,
                size_mib: rec.size / MIB,
                quota_mib: quota.map(|b| b / MIB),
                clients,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    async fn ensure_volume(&self, want: &VolumeWant) -> Result<Vec<String>, StorageError> {
        let name = &want.name;
        if !valid_volume_name(name) {
            return Err(StorageError::Invalid(format!(
                "{name:?} is not a volume name ([A-Za-z_][A-Za-z0-9_]{{0,202}})"
            )));
        }
        if want.size_mib == 0 {
            return Err(StorageError::Invalid(format!("volume {name}: size 0")));
        }
        let bytes = want.size_mib.checked_mul(MIB).ok_or_else(|| {
            StorageError::Invalid(format!("volume {name}: {} MiB is too large", want.size_mib))
        })?;
        let mut changes = Vec::new();
        // The policy first: the volume names it.
        self.ensure_policy(name, &want.clients, &mut changes)
            .await?;
        let vol = match self.find_volume(name).await? {
            Some(v) => v,
            None => self.create_or_adopt(want, bytes, &mut changes).await?,
        };
        if vol.policy.as_deref() != Some(name.as_str()) {
            let what = format!(
                "set export policy of volume {name} to {name} (was {})",
                vol.policy.as_deref().unwrap_or("none")
            );
            self.change(
                Method::PATCH,
                &format!("/api/storage/volumes/{}", vol.uuid),
                &json!({"nas": {"export_policy": {"name": name}}}),
                &what,
            )
            .await?;
            changes.push(what);
        }
        // Shrinking lowers the quota first (refused while more is in use, leaving the volume
        // as it was); growing grows the volume first.
        if bytes < vol.size {
            self.ensure_rule(name, bytes, &mut changes).await?;
            self.ensure_size(name, &vol, bytes, &mut changes).await?;
        } else {
            self.ensure_size(name, &vol, bytes, &mut changes).await?;
            self.ensure_rule(name, bytes, &mut changes).await?;
        }
        if !vol.quota_enabled {
            let what = format!("enable quotas on volume {name}");
            self.change(
                Method::PATCH,
                &format!("/api/storage/volumes/{}", vol.uuid),
                &json!({"quota": {"enabled": true}}),
                &what,
            )
            .await?;
            changes.push(what);
        }
        if !changes.is_empty() {
            tracing::info!(volume = %name, changes = changes.len(), "ONTAP volume converged");
        }
        Ok(changes)
    }

    async fn delete_volume(&self, name: &str) -> Result<bool, StorageError> {
        if !valid_volume_name(name) {
            return Err(StorageError::Invalid(format!(
                "{name:?} is not a volume name"
            )));
        }
        let mut deleted = false;
        if let Some(r) = self.find_rule(name).await? {
            self.change(
                Method::DELETE,
                &format!("/api/storage/quota/rules/{}", r.uuid),
                &json!({}),
                &format!("delete quota rule of {name}"),
            )
            .await?;
            deleted = true;
        }
        if let Some(v) = self.find_volume(name).await? {
            self.change(
                Method::DELETE,
                &format!("/api/storage/volumes/{}", v.uuid),
                &json!({}),
                &format!("delete volume {name}"),
            )
            .await?;
            deleted = true;
        }
        if let Some(p) = self.find_policy(name).await? {
            self.change(
                Method::DELETE,
                &format!("/api/protocols/nfs/export-policies/{}", p.id),
                &json!({}),
                &format!("delete export policy {name}"),
            )
            .await?;
            deleted = true;
        }
        if deleted {
            tracing::info!(volume = %name, "ONTAP volume deleted");
        }
        Ok(deleted)
    }

    async fn capacity(&self) -> Result<ArrayCapacity, StorageError> {
        let aggr = &self.cfg.aggregate;
        let records = self
            .list(&format!(
                "/api/storage/aggregates?name={}&fields=space",
                enc(aggr)
            ))
            .await?;
        let rec = records
            .iter()
            .find(|r| str_at(r, "/name") == Some(aggr.as_str()))
            .ok_or_else(|| StorageError::Config(format!("no aggregate {aggr:?} on the array")))?;
        let num = |p: &str| {
            rec.pointer(p).and_then(Value::as_u64).ok_or_else(|| {
                StorageError::Protocol(format!("aggregate {aggr} has no {p}: {rec}"))
            })
        };
        Ok(ArrayCapacity {
            total_mib: num("/space/block_storage/size")? / MIB,
            available_mib: num("/space/block_storage/available")? / MIB,
        })
    }
}

fn enc(v: &str) -> String {
    utf8_percent_encode(v, QUERY_ESCAPES).to_string()
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> Option<&'a str> {
    v.pointer(pointer).and_then(Value::as_str)
}

/// An ONTAP code as text: codes are strings in error bodies and integers in jobs.
fn code_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `(error.code, error.message)` of an error body, else the body's text (shortened).
fn error_parts(body: &[u8]) -> (String, String) {
    if let Ok(v) = serde_json::from_slice::<Value>(body)
        && let Some(e) = v.get("error")
    {
        return (
            code_text(e.get("code")).unwrap_or_default(),
            str_at(e, "/message").unwrap_or("").to_owned(),
        );
    }
    (
        String::new(),
        String::from_utf8_lossy(body).chars().take(300).collect(),
    )
}

/// Whether an array message says the aggregate (or volume) lacks the space asked for.
fn says_no_space(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("space")
        && ["insufficient", "not enough", "exceed", "no space", "lack"]
            .iter()
            .any(|w| m.contains(w))
}

fn volume_rec(v: &Value) -> Result<VolumeRec, StorageError> {
    let uuid = str_at(v, "/uuid")
        .ok_or_else(|| StorageError::Protocol(format!("a volume without a uuid: {v}")))?;
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| StorageError::Protocol(format!("volume {uuid} has no size: {v}")))?;
    Ok(VolumeRec {
        uuid: uuid.to_owned(),
        size,
        policy: str_at(v, "/nas/export_policy/name").map(str::to_owned),
        quota_enabled: v
            .pointer("/quota/enabled")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    })
}

/// Whether a tree rule is the volume's own (qtree `""`), not one of a named qtree.
fn default_tree(r: &Value) -> bool {
    matches!(str_at(r, "/qtree/name"), None | Some(""))
}

fn rule_rec(r: &Value) -> Result<RuleRec, StorageError> {
    let uuid = str_at(r, "/uuid")
        .ok_or_else(|| StorageError::Protocol(format!("a quota rule without a uuid: {r}")))?;
    Ok(RuleRec {
        uuid: uuid.to_owned(),
        hard_limit: r.pointer("/space/hard_limit").and_then(Value::as_u64),
    })
}

fn policy_rec(p: &Value) -> Result<PolicyRec, StorageError> {
    let id = p
        .get("id")
        .and_then(Value::as_u64)
        .ok_or_else(|| StorageError::Protocol(format!("an export policy without an id: {p}")))?;
    let rules = match p.get("rules") {
        Some(Value::Array(r)) => r.clone(),
        _ => Vec::new(),
    };
    Ok(PolicyRec { id, rules })
}

/// The export rules for `clients`: one rule admitting them all (none when empty).
fn wanted_rules(clients: &[Ipv4Net]) -> Value {
    let clients = normalised(clients);
    if clients.is_empty() {
        return json!([]);
    }
    let matches: Vec<Value> = clients
        .iter()
        .map(|c| json!({"match": c.to_string()}))
        .collect();
    json!([{
        "clients": matches,
        "protocols": ["nfs"],
        "ro_rule": ["sys"],
        "rw_rule": ["sys"],
        "superuser": ["none"],
    }])
}

fn normalised(clients: &[Ipv4Net]) -> Vec<Ipv4Net> {
    let mut c = clients.to_vec();
    c.sort();
    c.dedup();
    c
}

/// Whether the policy's rules are exactly those [`wanted_rules`] renders for `clients`.
fn rules_match(rules: &[Value], clients: &[Ipv4Net]) -> bool {
    let want = normalised(clients);
    if want.is_empty() {
        return rules.is_empty();
    }
    let [rule] = rules else {
        return false;
    };
    let list = |k: &str| -> Vec<&str> {
        match rule.get(k) {
            Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    };
    let raw: Vec<&str> = match rule.get("clients") {
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|c| c.get("match").and_then(Value::as_str))
            .collect(),
        _ => Vec::new(),
    };
    // Every match must be one of ours, written canonically (a hostname or netgroup is not).
    let wanted_text: Vec<String> = want.iter().map(ToString::to_string).collect();
    let mut have: Vec<&str> = raw.clone();
    have.sort_unstable();
    have.dedup();
    let mut wanted_sorted: Vec<&str> = wanted_text.iter().map(String::as_str).collect();
    wanted_sorted.sort_unstable();
    have == wanted_sorted
        && raw.len() == have.len()
        && list("protocols") == ["nfs"]
        && list("ro_rule") == ["sys"]
        && list("rw_rule") == ["sys"]
        && list("superuser") == ["none"]
}

/// The IPv4 clients the rules admit (a bare address counts as /32; hostnames, netgroups and
/// IPv6 are left out), sorted, without duplicates.
fn rule_clients(rules: &[Value]) -> Vec<Ipv4Net> {
    let mut out = Vec::new();
    for rule in rules {
        let Some(Value::Array(clients)) = rule.get("clients") else {
            continue;
        };
        for c in clients {
            let Some(m) = c.get("match").and_then(Value::as_str) else {
                continue;
            };
            if let Ok(net) = Ipv4Net::parse(m) {
                out.push(net);
            } else if let Ok(ip) = m.parse::<std::net::Ipv4Addr>() {
                out.extend(Ipv4Net::new(ip, 32));
            } else {
                tracing::debug!(
                    client = m,
                    "export rule client is not an IPv4 prefix; ignored"
                );
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

fn show_clients(clients: &[Ipv4Net]) -> String {
    let c = normalised(clients);
    if c.is_empty() {
        return "none".into();
    }
    c.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        Ipv4Net::parse(s).unwrap()
    }

    #[test]
    fn rules_render_and_compare() {
        let clients = [net("10.2.0.0/24"), net("10.1.0.0/24"), net("10.1.0.0/24")];
        let rules = wanted_rules(&clients);
        let rules = rules.as_array().unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            rules[0]["clients"],
            json!([{"match": "10.1.0.0/24"}, {"match": "10.2.0.0/24"}])
        );
        assert!(rules_match(rules, &clients));
        assert!(!rules_match(rules, &[net("10.1.0.0/24")]));
        // The array's extra fields do not matter; a different superuser does.
        let mut with_extras = rules[0].clone();
        with_extras["index"] = json!(1);
        with_extras["anonymous_user"] = json!("65534");
        assert!(rules_match(std::slice::from_ref(&with_extras), &clients));
        with_extras["superuser"] = json!(["sys"]);
        assert!(!rules_match(&[with_extras], &clients));
        assert!(rules_match(&[], &[]));
        assert!(!rules_match(rules, &[]));
    }

    #[test]
    fn clients_are_read_back_as_prefixes() {
        let rules = vec![json!({"clients": [
            {"match": "10.1.0.0/24"}, {"match": "10.9.9.9"}, {"match": "host.example"},
            {"match": "10.1.0.0/24"}
        ]})];
        assert_eq!(
            rule_clients(&rules),
            vec![net("10.1.0.0/24"), net("10.9.9.9/32")]
        );
    }

    #[test]
    fn space_messages_are_recognised() {
        assert!(says_no_space(
            "Insufficient space in aggregate \"aggr1\" to create volume \"v\""
        ));
        assert!(says_no_space("Request exceeds the available space"));
        assert!(!says_no_space("Duplicate volume name v"));
        assert!(!says_no_space("space guarantee changed"));
    }

    #[test]
    fn error_bodies_are_read() {
        let (code, msg) = error_parts(br#"{"error":{"message":"entry doesn't exist","code":"4"}}"#);
        assert_eq!((code.as_str(), msg.as_str()), ("4", "entry doesn't exist"));
        let (code, msg) = error_parts(b"<html>busy</html>");
        assert_eq!((code.as_str(), msg.as_str()), ("", "<html>busy</html>"));
    }

    #[test]
    fn rejects_bad_configuration() {
        let cfg = |url: &str| OntapConfig::new(url, "admin", "pw", "svm1", "aggr1");
        for url in ["ftp://x", "https://cluster1", "not a url"] {
            let err = OntapArray::new(cfg(url)).unwrap_err();
            assert!(matches!(err, StorageError::Config(_)), "{url}: {err}");
        }
        let mut c = cfg("http://127.0.0.1:1");
        c.svm.clear();
        assert!(matches!(
            OntapArray::new(c).unwrap_err(),
            StorageError::Config(_)
        ));
        let shown = format!("{:?}", cfg("http://127.0.0.1:1"));
        assert!(
            !shown.contains("pw") && shown.contains("<redacted>"),
            "{shown}"
        );
    }
}
