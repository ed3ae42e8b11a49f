//! The HTTP face of the emulator: faults, busy periods, authentication, routing, methods,
//! ETags, and every write operation.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};
use tokio::task::JoinSet;

use super::errors::{RfError, RfResult};
use super::fetch;
use super::metadata;
use super::profile::{DpuMode, Kind, OverrideEnabled, PowerState, ResetType};
use super::resources::{self, Route, allow, described_by, render, uri};
use super::state::{Bmc, LoggedRequest, MediaPhase, ROLES, RequestAuth, TaskState, role_has};
use crate::faults::Faults;
use meridian_common::telemetry::error_chain;

/// Largest request body accepted.
const MAX_BODY: usize = 1 << 20;

/// State shared by the server, its connections, background fetches and the handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub bmc: Mutex<Bmc>,
    pub faults: Faults,
    pub background: Mutex<JoinSet<()>>,
}

impl Shared {
    pub fn lock(&self) -> MutexGuard<'_, Bmc> {
        self.bmc.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let mut set = self.background.lock().unwrap_or_else(|e| e.into_inner());
        while set.try_join_next().is_some() {}
        set.spawn(fut);
    }
}

/// Returned by the service to make hyper close the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
pub(crate) struct Dropped;

pub(crate) type Resp = Response<Full<Bytes>>;

fn set(r: &mut Resp, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        r.headers_mut().insert(name, v);
    }
}

fn json_response(status: StatusCode, body: &Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    set(
        &mut r,
        header::CONTENT_TYPE,
        "application/json; charset=utf-8",
    );
    r
}

fn empty(status: StatusCode) -> Resp {
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn error_response(e: &RfError) -> Resp {
    let mut r = json_response(e.status, &e.body());
    if let Some(secs) = e.retry_after {
        set(&mut r, header::RETRY_AFTER, &secs.to_string());
    }
    if let Some(allow) = &e.allow {
        set(&mut r, header::ALLOW, allow);
    }
    if e.authenticate {
        set(&mut r, header::WWW_AUTHENTICATE, "Basic realm=\"Redfish\"");
    }
    r
}

/// A strong ETag over a resource's JSON: changes whenever the resource does.
pub(crate) fn etag(body: &Value) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.to_string().hash(&mut h);
    format!("\"{:016x}\"", h.finish())
}

/// A GET-style answer for a resource, with its ETag (header and `@odata.etag`), `Link` and
/// `Allow`.
fn resource_response(status: StatusCode, route: &Route, body: &Value) -> Resp {
    let tag = etag(body);
    let mut body = body.clone();
    if let Some(o) = body.as_object_mut() {
        o.insert("@odata.etag".into(), json!(tag));
    }
    let mut r = json_response(status, &body);
    set(&mut r, header::ETAG, &tag);
    set(&mut r, header::ALLOW, allow(route));
    if let Some(link) = described_by(&body) {
        set(&mut r, header::LINK, &link);
    }
    r
}

/// What the request handler must do once the state lock is released.
enum Next {
    Done(Resp),
    /// Fetch an image for a virtual media slot, then answer.
    Insert {
        slot: usize,
        generation: u64,
        url: String,
    },
    /// Answer, and fetch an update image for a task in the background.
    Update {
        resp: Resp,
        task: u32,
        url: String,
    },
}

/// The authenticated caller.
struct Caller {
    user: String,
    role: String,
    session: Option<String>,
}

/// What the request log keeps of a request besides its method and path.
struct Seen {
    auth: Option<RequestAuth>,
    if_match: Option<String>,
    body: Option<Value>,
}

impl Seen {
    fn of(headers: &hyper::HeaderMap, body: Option<&Bytes>) -> Self {
        let auth = if headers.contains_key("x-auth-token") {
            Some(RequestAuth::Session)
        } else {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .filter(|v| v.starts_with("Basic "))
                .map(|_| RequestAuth::Basic)
        };
        Self {
            auth,
            if_match: headers
                .get(header::IF_MATCH)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: body.and_then(|b| serde_json::from_slice(b).ok()),
        }
    }
}

pub(crate) async fn handle(sh: Arc<Shared>, req: Request<Incoming>) -> Result<Resp, Dropped> {
    let method = req.method().clone();
    let path = percent_decode_str(req.uri().path())
        .decode_utf8_lossy()
        .into_owned();
    let query = req.uri().query().map(str::to_owned);
    let (parts, body) = req.into_parts();
    let body = Limited::new(body, MAX_BODY)
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes);
    let seen = Seen::of(&parts.headers, body.as_ref().ok());
    if let Some(hit) = sh.faults.take(&method, &path) {
        if !hit.wait().await {
            log(&sh, &method, &path, 0, seen);
            return Err(Dropped);
        }
        if let Some(code) = hit.status {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut e = RfError::new(
                status,
                "GeneralError",
                "An injected fault answered this request.",
            );
            e.retry_after = hit.retry_after.map(u64::from);
            log(&sh, &method, &path, code, seen);
            return Ok(finish(error_response(&e)));
        }
    }
    let Ok(body) = body else {
        let e = RfError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "GeneralError",
            "The request body is too large.",
        );
        log(&sh, &method, &path, e.status.as_u16(), seen);
        return Ok(finish(error_response(&e)));
    };
    let next = {
        let mut b = sh.lock();
        b.settle();
        match dispatch(
            &mut b,
            &method,
            &path,
            query.as_deref(),
            &parts.headers,
            &body,
        ) {
            Ok(next) => next,
            Err(e) => Next::Done(error_response(&e)),
        }
    };
    let resp = match next {
        Next::Done(r) => r,
        Next::Update { resp, task, url } => {
            let limit = sh.lock().cfg.fetch_timeout;
            let bg = sh.clone();
            sh.spawn(async move {
                let result = match fetch::open(&url, limit).await {
                    Ok(opened) => opened.drain().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let mut b = bg.lock();
                let now = b.now();
                if let Some(t) = b.tasks.get_mut(&task) {
                    t.fetched = Some((now, result.map_err(|e| error_chain(&e))));
                }
            });
            resp
        }
        Next::Insert {
            slot,
            generation,
            url,
        } => insert_fetch(&sh, slot, generation, &url).await,
    };
    log(&sh, &method, &path, resp.status().as_u16(), seen);
    Ok(finish(if method == Method::HEAD {
        headless(resp)
    } else {
        resp
    }))
}

fn log(sh: &Shared, method: &Method, path: &str, status: u16, seen: Seen) {
    sh.lock().log.push(LoggedRequest {
        method: method.clone(),
        path: path.to_owned(),
        status,
        auth: seen.auth,
        if_match: seen.if_match,
        body: seen.body,
    });
}

fn finish(mut r: Resp) -> Resp {
    set(&mut r, HeaderName::from_static("odata-version"), "4.0");
    set(&mut r, header::CACHE_CONTROL, "no-cache");
    r
}

fn headless(r: Resp) -> Resp {
    let (mut parts, body) = r.into_parts();
    let len = hyper::body::Body::size_hint(&body).exact().unwrap_or(0);
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    Response::from_parts(parts, Full::new(Bytes::new()))
}

async fn insert_fetch(sh: &Arc<Shared>, slot: usize, generation: u64, url: &str) -> Resp {
    let limit = sh.lock().cfg.fetch_timeout;
    match fetch::open(url, limit).await {
        Ok(opened) => {
            let bg = sh.clone();
            sh.spawn(async move {
                let result = opened.drain().await.map_err(|e| error_chain(&e));
                let mut b = bg.lock();
                if let Some(m) = b.media.get_mut(slot)
                    && m.generation == generation
                    && let MediaPhase::Inserting { fetched, .. } = &mut m.phase
                {
                    *fetched = Some(result);
                }
            });
            empty(StatusCode::NO_CONTENT)
        }
        Err(e) => {
            let why = error_chain(&e);
            {
                let mut b = sh.lock();
                if let Some(m) = b.media.get_mut(slot)
                    && m.generation == generation
                {
                    m.phase = MediaPhase::Idle;
                    m.image = None;
                    m.last_error = Some(why.clone());
                }
            }
            error_response(&RfError::bad_request(
                "ResourceAtUriUnauthorized",
                format!("While accessing the resource at {url}, the service received an error: {why}."),
            )
            .resolution("Ensure that the image URI is reachable from the BMC and try again."))
        }
    }
}

/// Paths that need no authentication.
fn open_path(path: &str) -> bool {
    matches!(
        path.trim_end_matches('/'),
        "/redfish" | "/redfish/v1" | "/redfish/v1/odata" | "/redfish/v1/$metadata"
    )
}

const SESSIONS: &str = "/redfish/v1/SessionService/Sessions";

fn dispatch(
    b: &mut Bmc,
    method: &Method,
    path: &str,
    query: Option<&str>,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> RfResult<Next> {
    if let Some(secs) = b.busy_left() {
        return Err(RfError::busy(secs, b.busy_why));
    }
    let known = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PATCH,
        Method::PUT,
        Method::DELETE,
    ];
    if !known.contains(method) {
        return Err(RfError::new(
            StatusCode::NOT_IMPLEMENTED,
            "GeneralError",
            format!("The method {method} is not implemented."),
        ));
    }
    if let Some(v) = headers.get("odata-version")
        && v.as_bytes() != b"4.0"
    {
        return Err(RfError::new(
            StatusCode::PRECONDITION_FAILED,
            "HeaderInvalid",
            format!(
                "The header OData-Version: {} is not supported; use 4.0.",
                String::from_utf8_lossy(v.as_bytes())
            ),
        ));
    }
    // POST to a collection's `Members` is the same as POST to the collection.
    let path = match path.trim_end_matches('/').strip_suffix("/Members") {
        Some(collection) if *method == Method::POST => collection,
        _ => path,
    };
    let login = *method == Method::POST && path.trim_end_matches('/') == SESSIONS;
    let caller = if open_path(path) || login {
        authenticate(b, headers).ok()
    } else {
        Some(authenticate(b, headers)?)
    };
    let route = resolve_or_404(b, path)?;
    let allowed = allow(&route);
    if !allowed.split(", ").any(|m| m == method.as_str()) {
        return Err(RfError::method_not_allowed(method.as_str(), allowed));
    }
    if matches!(*method, Method::GET | Method::HEAD) {
        if let Some(q) = query
            && let Some(p) = q.split('&').find(|p| p.starts_with('$'))
        {
            let name = p.split('=').next().unwrap_or(p);
            return Err(RfError::new(
                StatusCode::NOT_IMPLEMENTED,
                "QueryNotSupported",
                format!("Querying with {name} is not supported by the implementation."),
            )
            .resolution("Remove the query parameters and resubmit the request."));
        }
        let resp = get(b, &route);
        let fresh = headers
            .get(header::IF_NONE_MATCH)
            .zip(resp.headers().get(header::ETAG))
            .is_some_and(|(want, have)| want == have);
        if fresh {
            let mut r = empty(StatusCode::NOT_MODIFIED);
            for h in [header::ETAG, header::ALLOW, header::LINK] {
                if let Some(v) = resp.headers().get(&h) {
                    r.headers_mut().insert(h, v.clone());
                }
            }
            return Ok(Next::Done(r));
        }
        return Ok(Next::Done(resp));
    }
    let body: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        serde_json::from_slice(body).map_err(|_| RfError::malformed())?
    };
    let Value::Object(body) = body else {
        return Err(RfError::malformed());
    };
    if login {
        return Ok(Next::Done(create_session(b, &body)?));
    }
    let caller = caller.ok_or_else(RfError::unauthorized)?;
    match *method {
        Method::PATCH => patch(b, &route, &caller, headers, body),
        Method::DELETE => delete(b, &route, &caller),
        _ => post(b, &route, &caller, body),
    }
}

fn resolve_or_404(b: &Bmc, path: &str) -> RfResult<Route> {
    resources::resolve(b, path).ok_or_else(|| RfError::not_found(path))
}

fn authenticate(b: &mut Bmc, headers: &hyper::HeaderMap) -> RfResult<Caller> {
    if let Some(token) = headers.get("x-auth-token").and_then(|v| v.to_str().ok()) {
        let now = b.now();
        let session = b
            .sessions
            .values_mut()
            .find(|s| s.token == token)
            .ok_or_else(RfError::unauthorized)?;
        session.last_used = now;
        let (user, id) = (session.user.clone(), session.id.clone());
        let role = b
            .account_by_user(&user)
            .map(|a| a.role.clone())
            .ok_or_else(RfError::unauthorized)?;
        return Ok(Caller {
            user,
            role,
            session: Some(id),
        });
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| {
            base64::engine::general_purpose::STANDARD
                .decode(b64.trim())
                .ok()
        })
        .and_then(|raw| String::from_utf8(raw).ok())
        .ok_or_else(RfError::unauthorized)?;
    let (user, password) = basic.split_once(':').ok_or_else(RfError::unauthorized)?;
    let account = b
        .check_password(user, password)
        .ok_or_else(RfError::unauthorized)?;
    Ok(Caller {
        user: account.user.clone(),
        role: account.role.clone(),
        session: None,
    })
}

fn require(caller: &Caller, privilege: &str) -> RfResult<()> {
    if role_has(&caller.role, privilege) {
        Ok(())
    } else {
        Err(RfError::forbidden())
    }
}

fn get(b: &Bmc, route: &Route) -> Resp {
    match route {
        Route::Metadata => {
            let mut r = Response::new(Full::new(Bytes::from(metadata::document(b.p.kind))));
            set(
                &mut r,
                header::CONTENT_TYPE,
                "application/xml; charset=utf-8",
            );
            r
        }
        Route::TaskMonitor(id) => task_monitor(b, *id),
        Route::Versions | Route::OData => json_response(StatusCode::OK, &render(b, route)),
        _ => resource_response(StatusCode::OK, route, &render(b, route)),
    }
}

fn task_monitor(b: &Bmc, id: u32) -> Resp {
    let task = render(b, &Route::Task(id));
    let done = b.tasks.get(&id).is_some_and(|t| t.state.is_done());
    if done {
        return json_response(StatusCode::OK, &task);
    }
    let mut r = json_response(StatusCode::ACCEPTED, &task);
    set(&mut r, header::LOCATION, &uri(b, &Route::TaskMonitor(id)));
    set(
        &mut r,
        header::RETRY_AFTER,
        &b.cfg.task_retry_after.to_string(),
    );
    r
}

// ---- PATCH ----------------------------------------------------------------------------------

fn unknown(prop: &str) -> RfError {
    RfError::bad_request(
        "PropertyUnknown",
        format!("The property {prop} is not in the list of valid properties for the resource."),
    )
    .resolution("Remove the unknown property from the request body and resubmit the request if the operation failed.")
}

fn not_writable(prop: &str) -> RfError {
    RfError::bad_request(
        "PropertyNotWritable",
        format!("The property {prop} is a read only property and cannot be assigned a value."),
    )
    .resolution("Remove the property from the request body and resubmit the request if the operation failed.")
}

fn type_error(prop: &str, value: &Value) -> RfError {
    RfError::bad_request(
        "PropertyValueTypeError",
        format!("The value {value} for the property {prop} is not a type that the property can accept."),
    )
    .resolution("Correct the value for the property in the request body and resubmit the request if the operation failed.")
}

fn no_operation() -> RfError {
    RfError::bad_request(
        "NoOperation",
        "The request body submitted contain no data to act upon and no changes to the resource took place.",
    )
    .resolution("Add properties in the JSON object and resubmit the request.")
}

fn str_prop<'a>(prop: &str, v: &'a Value) -> RfResult<&'a str> {
    v.as_str().ok_or_else(|| type_error(prop, v))
}

fn bool_prop(prop: &str, v: &Value) -> RfResult<bool> {
    v.as_bool().ok_or_else(|| type_error(prop, v))
}

/// Drops `@odata.*` annotations; an empty remainder is a `NoOperation`.
fn strip_annotations(mut body: Map<String, Value>) -> RfResult<Map<String, Value>> {
    body.retain(|k, _| !k.starts_with("@odata."));
    if body.is_empty() {
        return Err(no_operation());
    }
    Ok(body)
}

fn check_if_match(b: &Bmc, route: &Route, headers: &hyper::HeaderMap) -> RfResult<()> {
    let current = etag(&render(b, route));
    match headers.get(header::IF_MATCH).and_then(|v| v.to_str().ok()) {
        None if b.cfg.require_if_match => Err(RfError::new(
            StatusCode::PRECONDITION_REQUIRED,
            "PreconditionRequired",
            "A precondition header or annotation is required to change this resource.",
        )
        .resolution("Try the request again with an If-Match header carrying the resource's ETag.")),
        None => Ok(()),
        Some(list) => {
            let ok = list.split(',').map(str::trim).any(|t| {
                t == "*" || t == current || t.strip_prefix("W/") == Some(current.as_str())
            });
            if ok {
                Ok(())
            } else {
                Err(RfError::new(
                    StatusCode::PRECONDITION_FAILED,
                    "PreconditionFailed",
                    "The ETag supplied did not match the ETag required to change this resource.",
                )
                .resolution("Try the operation again using the appropriate ETag."))
            }
        }
    }
}

fn patch(
    b: &mut Bmc,
    route: &Route,
    caller: &Caller,
    headers: &hyper::HeaderMap,
    body: Map<String, Value>,
) -> RfResult<Next> {
    match route {
        Route::System | Route::BfManagerOem => require(caller, "ConfigureComponents")?,
        Route::SessionService => require(caller, "ConfigureManager")?,
        Route::Account(id) => {
            let own = b.accounts.get(id).is_some_and(|a| a.user == caller.user);
            let only_password = body.keys().all(|k| k == "Password" || k.starts_with('@'));
            if !(own && only_password) {
                require(caller, "ConfigureUsers")?;
            }
        }
        _ => {}
    }
    if *route == Route::System && b.raced_patches > 0 {
        // Another client's write lands between this client's read and its PATCH.
        b.raced_patches -= 1;
        b.foreign_writes += 1;
        b.asset_tag = format!("written by another client (write {})", b.foreign_writes);
    }
    check_if_match(b, route, headers)?;
    let body = strip_annotations(body)?;
    match route {
        Route::System => patch_system(b, &body)?,
        Route::Account(id) => patch_account(b, id, &body)?,
        Route::SessionService => {
            for (k, v) in &body {
                match k.as_str() {
                    "SessionTimeout" => {
                        let secs = v.as_u64().ok_or_else(|| type_error(k, v))?;
                        if !(30..=86_400).contains(&secs) {
                            return Err(RfError::bad_request(
                                "PropertyValueOutOfRange",
                                format!(
                                    "The value {v} for the property SessionTimeout is not in the supported range of acceptable values."
                                ),
                            ));
                        }
                    }
                    "ServiceEnabled" | "Id" | "Name" | "Sessions" | "Status" => {
                        return Err(not_writable(k));
                    }
                    _ => return Err(unknown(k)),
                }
            }
            if let Some(secs) = body.get("SessionTimeout").and_then(Value::as_u64) {
                b.cfg.session_timeout = std::time::Duration::from_secs(secs);
            }
        }
        Route::BfManagerOem => {
            let want = match body.get("BmcRShim") {
                Some(Value::Object(o)) if o.len() == 1 => bool_prop(
                    "BmcRShimEnabled",
                    o.get("BmcRShimEnabled")
                        .ok_or_else(|| unknown("BmcRShim"))?,
                )?,
                Some(_) => return Err(unknown("BmcRShim")),
                None => return Err(unknown(body.keys().next().map_or("", String::as_str))),
            };
            if let Some(k) = body.keys().find(|k| *k != "BmcRShim") {
                return Err(unknown(k));
            }
            let d = b.dpu.as_mut().expect("BlueField route");
            if want {
                // The BMC's rshim attaches only when the host has released it.
                if !d.host_rshim {
                    d.bmc_rshim = true;
                }
            } else {
                d.bmc_rshim = false;
            }
        }
        _ => return Err(RfError::method_not_allowed("PATCH", allow(route))),
    }
    Ok(Next::Done(resource_response(
        StatusCode::OK,
        route,
        &render(b, route),
    )))
}

fn patch_system(b: &mut Bmc, body: &Map<String, Value>) -> RfResult<()> {
    let mut boot = b.boot.clone();
    let mut asset = b.asset_tag.clone();
    for (k, v) in body {
        match k.as_str() {
            "AssetTag" => asset = str_prop(k, v)?.to_owned(),
            "Boot" => {
                let Value::Object(o) = v else {
                    return Err(type_error(k, v));
                };
                for (bk, bv) in o {
                    match bk.as_str() {
                        "BootSourceOverrideTarget" => {
                            let t = str_prop(bk, bv)?;
                            if !b.p.boot_targets.iter().any(|x| x == t) {
                                return Err(RfError::value_not_in_list(bk, bv));
                            }
                            boot.target = t.to_owned();
                        }
                        "BootSourceOverrideEnabled" => {
                            boot.enabled = OverrideEnabled::parse(str_prop(bk, bv)?)
                                .ok_or_else(|| RfError::value_not_in_list(bk, bv))?;
                        }
                        "BootSourceOverrideMode" => {
                            let m = str_prop(bk, bv)?;
                            if !b.p.boot_modes.iter().any(|x| x == m) {
                                return Err(RfError::value_not_in_list(bk, bv));
                            }
                            boot.mode = m.to_owned();
                        }
                        p if p.contains('@') => return Err(not_writable(p)),
                        p => return Err(unknown(p)),
                    }
                }
            }
            "Id" | "Name" | "PowerState" | "UUID" | "SystemType" | "Manufacturer" | "Model"
            | "SerialNumber" | "Status" | "ProcessorSummary" | "MemorySummary" | "Links"
            | "Actions" | "Processors" | "Memory" | "VirtualMedia" => {
                return Err(not_writable(k));
            }
            _ => return Err(unknown(k)),
        }
    }
    b.boot = boot;
    b.asset_tag = asset;
    Ok(())
}

fn patch_account(b: &mut Bmc, id: &str, body: &Map<String, Value>) -> RfResult<()> {
    let mut a = b.accounts[id].clone();
    for (k, v) in body {
        match k.as_str() {
            "UserName" => {
                let u = str_prop(k, v)?;
                if b.accounts.values().any(|o| o.id != id && o.user == u) {
                    return Err(RfError::bad_request(
                        "ResourceAlreadyExists",
                        format!(
                            "The requested resource of type ManagerAccount with the property UserName with the value {u} already exists."
                        ),
                    ));
                }
                a.user = u.to_owned();
            }
            "Password" => a.password = valid_password(str_prop(k, v)?)?,
            "RoleId" => a.role = valid_role(v)?,
            "Enabled" => a.enabled = bool_prop(k, v)?,
            "Locked" => {
                if bool_prop(k, v)? {
                    return Err(RfError::value_not_in_list(k, v));
                }
            }
            "Id" | "Name" | "AccountTypes" | "Links" => return Err(not_writable(k)),
            _ => return Err(unknown(k)),
        }
    }
    if id == "1" && (a.role != "Administrator" || !a.enabled || a.user != b.accounts[id].user) {
        return Err(RfError::bad_request(
            "PropertyValueConflict",
            "The built-in administrator account keeps its name, role and enabled state.",
        ));
    }
    if a.user != b.accounts[id].user || !a.enabled {
        let old = b.accounts[id].user.clone();
        b.sessions.retain(|_, s| s.user != old);
    }
    b.accounts.insert(id.to_owned(), a);
    Ok(())
}

fn valid_password(p: &str) -> RfResult<String> {
    if (8..=32).contains(&p.chars().count()) {
        Ok(p.to_owned())
    } else {
        Err(RfError::bad_request(
            "PropertyValueFormatError",
            "The value provided for the property Password is not in a format that the property can accept (8 to 32 characters).",
        ))
    }
}

fn valid_role(v: &Value) -> RfResult<String> {
    let r = v.as_str().ok_or_else(|| type_error("RoleId", v))?;
    ROLES
        .iter()
        .find(|(n, _)| *n == r)
        .map(|(n, _)| (*n).to_owned())
        .ok_or_else(|| RfError::value_not_in_list("RoleId", v))
}

// ---- DELETE ---------------------------------------------------------------------------------

fn delete(b: &mut Bmc, route: &Route, caller: &Caller) -> RfResult<Next> {
    match route {
        Route::Session(id) => {
            let own = b.sessions.get(id).is_some_and(|s| s.user == caller.user);
            if !own && caller.session.as_deref() != Some(id.as_str()) {
                require(caller, "ConfigureManager")?;
            }
            b.sessions.remove(id);
        }
        Route::Account(id) => {
            require(caller, "ConfigureUsers")?;
            if id == "1" {
                return Err(RfError::bad_request(
                    "ResourceCannotBeDeleted",
                    "The delete request failed because the built-in administrator account cannot be deleted.",
                ));
            }
            if let Some(a) = b.accounts.remove(id) {
                b.sessions.retain(|_, s| s.user != a.user);
            }
        }
        _ => return Err(RfError::method_not_allowed("DELETE", allow(route))),
    }
    Ok(Next::Done(empty(StatusCode::NO_CONTENT)))
}

// ---- POST -----------------------------------------------------------------------------------

fn create_session(b: &mut Bmc, body: &Map<String, Value>) -> RfResult<Resp> {
    let field = |k: &str| -> RfResult<String> {
        match body.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(type_error(k, v)),
            None => Err(RfError::bad_request(
                "PropertyMissing",
                format!(
                    "The property {k} is a required property and must be included in the request."
                ),
            )),
        }
    };
    let user = field("UserName")?;
    let password = field("Password")?;
    if b.check_password(&user, &password).is_none() {
        let mut e = RfError::new(
            StatusCode::UNAUTHORIZED,
            "ResourceAtUriUnauthorized",
            "The login was refused: invalid credentials.",
        );
        e.authenticate = true;
        return Err(e);
    }
    let Some(s) = b.add_session(&user) else {
        let status = if b.p.session_limit_forbidden {
            StatusCode::FORBIDDEN
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        return Err(RfError::new(
            status,
            "SessionLimitExceeded",
            "The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.",
        )
        .resolution("Reduce the number of other sessions before trying to establish the session or increase the limit of simultaneous sessions (if supported)."));
    };
    let route = Route::Session(s.id.clone());
    let mut r = resource_response(StatusCode::CREATED, &route, &render(b, &route));
    set(&mut r, HeaderName::from_static("x-auth-token"), &s.token);
    set(&mut r, header::LOCATION, &uri(b, &route));
    Ok(r)
}

fn param<'a>(body: &'a Map<String, Value>, name: &str, action: &str) -> RfResult<&'a Value> {
    body.get(name)
        .ok_or_else(|| RfError::param_missing(name, action))
}

fn check_params(body: &Map<String, Value>, known: &[&str], action: &str) -> RfResult<()> {
    match body.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(RfError::bad_request(
            "ActionParameterUnknown",
            format!("The action {action} was submitted with the invalid parameter {k}."),
        )
        .resolution(
            "Correct the invalid parameter and resubmit the request if the operation failed.",
        )),
        None => Ok(()),
    }
}

fn post(b: &mut Bmc, route: &Route, caller: &Caller, body: Map<String, Value>) -> RfResult<Next> {
    match route {
        Route::Accounts => {
            require(caller, "ConfigureUsers")?;
            create_account(b, &body).map(Next::Done)
        }
        Route::SystemReset => {
            require(caller, "ConfigureComponents")?;
            system_reset(b, &body).map(Next::Done)
        }
        Route::InsertMedia(i) => {
            require(caller, "ConfigureComponents")?;
            insert_media(b, *i, &body)
        }
        Route::EjectMedia(i) => {
            require(caller, "ConfigureComponents")?;
            check_params(&body, &[], "VirtualMedia.EjectMedia")?;
            let lag = b.p.eject_lag;
            let now = b.now();
            let m = &mut b.media[*i];
            let was_in = m.inserted;
            m.generation += 1;
            m.inserted = false;
            m.image = None;
            m.transfer_protocol = None;
            m.phase = match lag {
                Some(lag) if was_in => MediaPhase::Ejecting { until: now + lag },
                _ => MediaPhase::Idle,
            };
            Ok(Next::Done(empty(StatusCode::NO_CONTENT)))
        }
        Route::SimpleUpdate => {
            require(caller, "ConfigureComponents")?;
            simple_update(b, &body)
        }
        Route::ManagerReset => {
            require(caller, "ConfigureManager")?;
            check_params(&body, &["ResetType"], "Manager.Reset")?;
            if let Some(v) = body.get("ResetType")
                && !matches!(v.as_str(), Some("GracefulRestart" | "ForceRestart"))
            {
                return Err(RfError::param_not_in_list("ResetType", "Manager.Reset", v));
            }
            b.bmc_reset();
            Ok(Next::Done(empty(StatusCode::NO_CONTENT)))
        }
        Route::BfModeSet => {
            require(caller, "ConfigureComponents")?;
            check_params(&body, &["Mode"], "Mode.Set")?;
            let v = param(&body, "Mode", "Mode.Set")?;
            let mode = v
                .as_str()
                .and_then(DpuMode::parse)
                .ok_or_else(|| RfError::param_not_in_list("Mode", "Mode.Set", v))?;
            let d = b.dpu.as_mut().expect("BlueField route");
            d.pending = (mode != d.mode).then_some(mode);
            d.arm_reset_since_set = false;
            Ok(Next::Done(empty(StatusCode::NO_CONTENT)))
        }
        Route::BfHostRshimSet => {
            require(caller, "ConfigureComponents")?;
            check_params(&body, &["HostRshim"], "HostRshim.Set")?;
            let v = param(&body, "HostRshim", "HostRshim.Set")?;
            let enable = match v.as_str() {
                Some("Enabled") => true,
                Some("Disabled") => false,
                _ => return Err(RfError::param_not_in_list("HostRshim", "HostRshim.Set", v)),
            };
            let d = b.dpu.as_mut().expect("BlueField route");
            // The host attaches only when the BMC does not hold RShim, and cannot be made to
            // let go while its rshim driver keeps the device open.
            d.host_rshim = d.host_keeps_rshim || (enable && !d.bmc_rshim);
            Ok(Next::Done(empty(StatusCode::NO_CONTENT)))
        }
        _ => Err(RfError::method_not_allowed("POST", allow(route))),
    }
}

fn create_account(b: &mut Bmc, body: &Map<String, Value>) -> RfResult<Resp> {
    let required = |k: &str| -> RfResult<&Value> {
        body.get(k).ok_or_else(|| {
            RfError::bad_request(
                "PropertyMissing",
                format!(
                    "The property {k} is a required property and must be included in the request."
                ),
            )
        })
    };
    let user = str_prop("UserName", required("UserName")?)?.to_owned();
    let password = valid_password(str_prop("Password", required("Password")?)?)?;
    let role = valid_role(required("RoleId")?)?;
    for k in body.keys() {
        if !matches!(k.as_str(), "UserName" | "Password" | "RoleId" | "Enabled")
            && !k.starts_with("@odata.")
        {
            return Err(unknown(k));
        }
    }
    if b.account_by_user(&user).is_some() {
        return Err(RfError::bad_request(
            "ResourceAlreadyExists",
            format!(
                "The requested resource of type ManagerAccount with the property UserName with the value {user} already exists."
            ),
        ));
    }
    let id = b.add_account(user, password, role);
    if let Some(enabled) = body.get("Enabled") {
        let e = bool_prop("Enabled", enabled)?;
        if let Some(a) = b.accounts.get_mut(&id) {
            a.enabled = e;
        }
    }
    let route = Route::Account(id);
    let mut r = resource_response(StatusCode::CREATED, &route, &render(b, &route));
    set(&mut r, header::LOCATION, &uri(b, &route));
    Ok(r)
}

fn system_reset(b: &mut Bmc, body: &Map<String, Value>) -> RfResult<Resp> {
    const ACTION: &str = "ComputerSystem.Reset";
    check_params(body, &["ResetType"], ACTION)?;
    let v = param(body, "ResetType", ACTION)?;
    let reset = v
        .as_str()
        .and_then(ResetType::parse)
        .filter(|r| b.p.reset_types.contains(r))
        .ok_or_else(|| RfError::param_not_in_list("ResetType", ACTION, v))?;
    if let Some(t) = b.running_update() {
        let id = t.id;
        return Err(RfError::busy(
            b.cfg.task_retry_after,
            &format!("update task {id} is running"),
        ));
    }
    use PowerState::{Off, On, PoweringOff, PoweringOn};
    let on = matches!(b.power, On | PoweringOn);
    let warm = [(PoweringOff, PoweringOn, false), (PoweringOn, On, false)];
    let cycle = [(PoweringOff, Off, true), (PoweringOn, On, false)];
    match reset {
        ResetType::On | ResetType::ForceOn if on => {
            if b.p.redundant_on_conflict {
                return Err(RfError::conflict(
                    "ResourceInStandby",
                    "The system is already powered on.",
                ));
            }
        }
        ResetType::On | ResetType::ForceOn => b.transition(&[(PoweringOn, On, false)]),
        ResetType::ForceOff | ResetType::GracefulShutdown => {
            if on {
                b.transition(&[(PoweringOff, Off, true)]);
            }
        }
        ResetType::PushPowerButton => {
            if on {
                b.transition(&[(PoweringOff, Off, true)]);
            } else {
                b.transition(&[(PoweringOn, On, false)]);
            }
        }
        ResetType::GracefulRestart | ResetType::ForceRestart | ResetType::Nmi if !on => {
            return Err(RfError::conflict(
                "OperationNotAllowed",
                format!(
                    "{} needs the system to be on; it is {}.",
                    reset.as_str(),
                    b.power
                ),
            ));
        }
        ResetType::Nmi => {}
        ResetType::GracefulRestart | ResetType::ForceRestart => {
            if let Some(d) = b.dpu.as_mut()
                && d.pending.is_some()
            {
                d.arm_reset_since_set = true;
            }
            b.transition(&warm);
        }
        ResetType::PowerCycle => {
            if on {
                b.transition(&cycle);
            } else {
                b.transition(&[(PoweringOn, On, false)]);
            }
        }
    }
    Ok(empty(StatusCode::NO_CONTENT))
}

fn insert_media(b: &mut Bmc, i: usize, body: &Map<String, Value>) -> RfResult<Next> {
    const ACTION: &str = "VirtualMedia.InsertMedia";
    check_params(
        body,
        &[
            "Image",
            "Inserted",
            "WriteProtected",
            "TransferProtocolType",
            "TransferMethod",
            "UserName",
            "Password",
        ],
        ACTION,
    )?;
    let image = param(body, "Image", ACTION)?;
    let url = image
        .as_str()
        .ok_or_else(|| type_error("Image", image))?
        .to_owned();
    if body
        .get("Inserted")
        .is_some_and(|v| v != &Value::Bool(true))
    {
        return Err(RfError::param_not_in_list(
            "Inserted",
            ACTION,
            &body["Inserted"],
        ));
    }
    let write_protected = match body.get("WriteProtected") {
        None => true,
        Some(v) => bool_prop("WriteProtected", v)?,
    };
    if body.contains_key("UserName") != body.contains_key("Password") {
        let missing = if body.contains_key("UserName") {
            "Password"
        } else {
            "UserName"
        };
        return Err(RfError::param_missing(missing, ACTION));
    }
    let protocol = match body.get("TransferProtocolType") {
        None => None,
        Some(v) => {
            let p = str_prop("TransferProtocolType", v)?;
            if !matches!(p, "HTTP" | "HTTPS") {
                return Err(RfError::param_not_in_list(
                    "TransferProtocolType",
                    ACTION,
                    v,
                ));
            }
            Some(p.to_owned())
        }
    };
    let now = b.now();
    let m = &mut b.media[i];
    match m.phase {
        MediaPhase::Ejecting { .. } => {
            return Err(RfError::internal(
                "The previous eject of this virtual media device is still in progress.",
            ));
        }
        MediaPhase::Inserting { .. } => {
            return Err(RfError::conflict(
                "ResourceInUse",
                "An image is already being inserted into this virtual media device.",
            ));
        }
        MediaPhase::Idle if m.inserted => {
            return Err(RfError::conflict(
                "ResourceInUse",
                "Virtual media is already inserted in this device; eject it first.",
            ));
        }
        MediaPhase::Idle => {}
    }
    m.generation += 1;
    m.image = Some(url.clone());
    m.write_protected = write_protected;
    m.transfer_protocol = protocol.or_else(|| {
        Some(
            if url.starts_with("https:") {
                "HTTPS"
            } else {
                "HTTP"
            }
            .into(),
        )
    });
    m.last_error = None;
    m.phase = MediaPhase::Inserting {
        since: now,
        fetched: None,
    };
    Ok(Next::Insert {
        slot: i,
        generation: m.generation,
        url,
    })
}

fn simple_update(b: &mut Bmc, body: &Map<String, Value>) -> RfResult<Next> {
    const ACTION: &str = "UpdateService.SimpleUpdate";
    check_params(
        body,
        &[
            "ImageURI",
            "TransferProtocol",
            "Targets",
            "Username",
            "Password",
            "@Redfish.OperationApplyTime",
        ],
        ACTION,
    )?;
    let image = param(body, "ImageURI", ACTION)?;
    let image = image
        .as_str()
        .ok_or_else(|| type_error("ImageURI", image))?
        .to_owned();
    if let Some(v) = body.get("TransferProtocol")
        && v.as_str() != Some("HTTP")
    {
        return Err(RfError::param_not_in_list("TransferProtocol", ACTION, v));
    }
    let bf = b.p.kind == Kind::Bluefield3;
    let targets: Vec<String> = match body.get("Targets") {
        None if bf => return Err(RfError::param_missing("Targets", ACTION)),
        None => vec!["BIOS".to_owned()],
        Some(Value::Array(list)) if !list.is_empty() => {
            let mut out = Vec::new();
            for t in list {
                let s = t.as_str().ok_or_else(|| type_error("Targets", t))?;
                let id = s
                    .trim_start_matches('/')
                    .strip_prefix("redfish/v1/UpdateService/FirmwareInventory/")
                    .filter(|id| b.firmware.iter().any(|f| f.id == *id && f.updateable))
                    .ok_or_else(|| RfError::param_not_in_list("Targets", ACTION, t))?;
                out.push(id.to_owned());
            }
            out
        }
        Some(v) => return Err(type_error("Targets", v)),
    };
    if let Some(t) = b.running_update() {
        let id = t.id;
        if bf {
            return Err(RfError::conflict(
                "ResourceInUse",
                format!("Another firmware install (task {id}) is in progress."),
            ));
        }
        return Err(RfError::busy(
            b.cfg.task_retry_after,
            &format!("update task {id} is running"),
        ));
    }
    if bf && targets.iter().any(|t| t == "DPU_OS") && !b.dpu.as_ref().is_some_and(|d| d.bmc_rshim) {
        return Err(RfError::bad_request(
            "OperationNotAllowed",
            "Installing DPU_OS needs the BMC to own RShim: release it on the host, then set \
             Oem/Nvidia BmcRShim.BmcRShimEnabled on the manager.",
        ));
    }
    let url = if image.contains("://") {
        image.clone()
    } else {
        format!("http://{image}")
    };
    let version = url
        .rsplit('/')
        .next()
        .map(|f| f.rsplit_once('.').map_or(f, |p| p.0))
        .filter(|v| !v.is_empty())
        .unwrap_or("unknown")
        .to_owned();
    let name = format!("Update of {}", targets.join(", "));
    let id = b.add_task(name, targets, version);
    let route = Route::Task(id);
    let mut resp = json_response(StatusCode::ACCEPTED, &render(b, &route));
    set(
        &mut resp,
        header::LOCATION,
        &uri(b, &Route::TaskMonitor(id)),
    );
    set(
        &mut resp,
        header::RETRY_AFTER,
        &b.cfg.task_retry_after.to_string(),
    );
    Ok(Next::Update {
        resp,
        task: id,
        url,
    })
}

/// `TaskState` of a task, for the handle.
pub(crate) fn task_state(b: &Bmc, id: u32) -> Option<TaskState> {
    b.tasks.get(&id).map(|t| t.state)
}
