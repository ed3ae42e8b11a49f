//! The emulator's REST routes, request validation with ONTAP error bodies, and the hand-off
//! of volume and quota rule changes to jobs. Records and queries live in [`super::records`],
//! export policies in [`super::policies`].

use hyper::{Method, StatusCode};
use serde_json::{Map, Value, json};

use super::jobs::{self, Op};
use super::policies::{create_policy, delete_policy, patch_policy};
use super::records::{Kind, get_one, list, parse_query};
use super::{MIB, Outcome, Resp, Shared, State, codes, error, respond};

/// The smallest volume ONTAP creates (its documented default size is 20 MB as well).
const MIN_VOLUME: u64 = 20 * MIB;

pub(super) fn route(
    sh: &Shared,
    method: &Method,
    path: &str,
    query: Option<&str>,
    body: &[u8],
) -> Outcome {
    let answer = |r| Outcome::Answer(r);
    let q = parse_query(query);
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let Some(rest) = segs.strip_prefix(&["api"]) else {
        return answer(not_found(&format!("API not found: {path}")).resp());
    };
    let body = match *method {
        Method::POST | Method::PATCH | Method::DELETE => match object(body) {
            Ok(b) => b,
            Err(r) => return answer(r.resp()),
        },
        _ => Map::new(),
    };
    let r = match (rest, method.clone()) {
        (["storage", "volumes"], Method::GET) => list(sh, Kind::Volume, &q),
        (["storage", "volumes"], Method::POST) => return create_volume(sh, &body),
        (["storage", "volumes", id], Method::GET) => get_one(sh, Kind::Volume, id, &q),
        (["storage", "volumes", id], Method::PATCH) => patch_volume(sh, id, &body),
        (["storage", "volumes", id], Method::DELETE) => delete_volume(sh, id),
        (["storage", "quota", "rules"], Method::GET) => list(sh, Kind::Rule, &q),
        (["storage", "quota", "rules"], Method::POST) => create_rule(sh, &body),
        (["storage", "quota", "rules", id], Method::GET) => get_one(sh, Kind::Rule, id, &q),
        (["storage", "quota", "rules", id], Method::PATCH) => patch_rule(sh, id, &body),
        (["storage", "quota", "rules", id], Method::DELETE) => delete_rule(sh, id),
        (["protocols", "nfs", "export-policies"], Method::GET) => list(sh, Kind::Policy, &q),
        (["protocols", "nfs", "export-policies"], Method::POST) => create_policy(sh, &body, &q),
        (["protocols", "nfs", "export-policies", id], Method::GET) => {
            get_one(sh, Kind::Policy, id, &q)
        }
        (["protocols", "nfs", "export-policies", id], Method::PATCH) => patch_policy(sh, id, &body),
        (["protocols", "nfs", "export-policies", id], Method::DELETE) => delete_policy(sh, id),
        (["storage", "aggregates"], Method::GET) => list(sh, Kind::Aggregate, &q),
        (["storage", "aggregates", id], Method::GET) => get_one(sh, Kind::Aggregate, id, &q),
        (["cluster", "jobs", id], Method::GET) => {
            match sh.lock().jobs.iter().find(|j| j.uuid == *id) {
                Some(j) => respond(StatusCode::OK, &jobs::view(j)),
                None => not_found("entry doesn't exist").resp(),
            }
        }
        (
            ["storage", "volumes" | "aggregates", ..]
            | ["storage", "quota", "rules", ..]
            | ["protocols", "nfs", "export-policies", ..]
            | ["cluster", "jobs", ..],
            _,
        ) if rest.len() <= 4 => error(
            StatusCode::METHOD_NOT_ALLOWED,
            codes::UNEXPECTED_ARGUMENT,
            format!("method {method} is not allowed on {path}"),
            None,
        ),
        _ => not_found(&format!("API not found: {path}")).resp(),
    };
    answer(r)
}

/// An error answer, made into a response at the end (small, unlike a response).
#[derive(Debug)]
pub(super) struct Refusal {
    status: StatusCode,
    code: String,
    message: String,
    target: Option<String>,
}

impl Refusal {
    /// The error response.
    pub(super) fn resp(self) -> Resp {
        error(
            self.status,
            &self.code,
            self.message,
            self.target.as_deref(),
        )
    }
}

pub(super) fn refuse(
    status: StatusCode,
    code: &str,
    message: impl Into<String>,
    target: Option<&str>,
) -> Refusal {
    Refusal {
        status,
        code: code.to_owned(),
        message: message.into(),
        target: target.map(str::to_owned),
    }
}

pub(super) fn not_found(message: &str) -> Refusal {
    refuse(StatusCode::NOT_FOUND, codes::NOT_FOUND, message, None)
}

pub(super) fn bad(code: &str, message: impl Into<String>, target: &str) -> Refusal {
    refuse(StatusCode::BAD_REQUEST, code, message, Some(target))
}

fn accepted(job: Value) -> Resp {
    respond(StatusCode::ACCEPTED, &json!({ "job": job }))
}

// ---------------------------------------------------------------------------------------------
// Volumes

fn create_volume(sh: &Shared, b: &Map<String, Value>) -> Outcome {
    let r = (|| {
        allowed(
            b,
            &[
                "name",
                "svm",
                "aggregates",
                "size",
                "nas",
                "comment",
                "state",
                "type",
                "style",
                "guarantee",
            ],
        )?;
        let name = string(b, "name")?.ok_or_else(|| missing("name"))?;
        if !meridian_drivers::storage::valid_volume_name(&name) {
            return Err(bad(
                codes::INVALID_VALUE,
                format!(
                    "\"{name}\" is an invalid volume name: it must start with a letter or \"_\" and hold only letters, digits and \"_\" (at most 203)."
                ),
                "name",
            ));
        }
        let mut s = sh.lock();
        check_svm(&s, b)?;
        let aggregates = match b.get("aggregates") {
            Some(Value::Array(a)) => a,
            Some(_) => {
                return Err(bad(
                    codes::INVALID_VALUE,
                    "Field \"aggregates\" must be an array.",
                    "aggregates",
                ));
            }
            None => return Err(missing("aggregates.name")),
        };
        let names: Vec<Option<&str>> = aggregates
            .iter()
            .map(|a| a.get("name").and_then(Value::as_str))
            .collect();
        match names.as_slice() {
            [Some(a)] if *a == s.cfg.aggregate => {}
            [Some(a)] => {
                return Err(bad(
                    codes::INVALID_VALUE,
                    format!("Aggregate \"{a}\" does not exist."),
                    "aggregates.name",
                ));
            }
            _ => {
                return Err(bad(
                    codes::INVALID_VALUE,
                    "When creating a flexible volume, exactly one aggregate must be specified via \"aggregates.name\".",
                    "aggregates.name",
                ));
            }
        }
        let size = number(b, "size")?.unwrap_or(MIN_VOLUME);
        if size < MIN_VOLUME {
            return Err(bad(
                codes::INVALID_VALUE,
                format!("Volume size {size} bytes is below the minimum of {MIN_VOLUME} bytes."),
                "size",
            ));
        }
        let path = string(b, "nas.path")?.unwrap_or_default();
        if !path.is_empty() && !path.starts_with('/') {
            return Err(bad(
                codes::INVALID_VALUE,
                format!("Junction path \"{path}\" must start with \"/\"."),
                "nas.path",
            ));
        }
        let policy = string(b, "nas.export_policy.name")?.unwrap_or_else(|| "default".into());
        let op = Op::CreateVolume {
            name: name.clone(),
            size,
            policy,
            path,
        };
        let job = jobs::enqueue(sh, &mut s, op, format!("create volume {name}"));
        let lose = s.lose_next_create > 0;
        if lose {
            s.lose_next_create -= 1;
        }
        Ok((job, lose))
    })();
    match r {
        Ok((_, true)) => Outcome::Lose,
        Ok((job, false)) => Outcome::Answer(accepted(job)),
        Err(refusal) => Outcome::Answer(refusal.resp()),
    }
}

fn patch_volume(sh: &Shared, uuid: &str, b: &Map<String, Value>) -> Resp {
    let r = (|| {
        allowed(b, &["size", "nas", "quota", "comment"])?;
        let size = number(b, "size")?;
        if let Some(size) = size
            && size < MIN_VOLUME
        {
            return Err(bad(
                codes::INVALID_VALUE,
                format!("Volume size {size} bytes is below the minimum of {MIN_VOLUME} bytes."),
                "size",
            ));
        }
        let policy = string(b, "nas.export_policy.name")?;
        let quota_enabled = boolean(b, "quota.enabled")?;
        let mut s = sh.lock();
        let name = match s.volumes.get(uuid) {
            Some(v) => v.name.clone(),
            None => return Err(not_found("entry doesn't exist")),
        };
        let op = Op::PatchVolume {
            uuid: uuid.to_owned(),
            size,
            policy,
            quota_enabled,
        };
        Ok(jobs::enqueue(
            sh,
            &mut s,
            op,
            format!("modify volume {name}"),
        ))
    })();
    r.map_or_else(Refusal::resp, accepted)
}

fn delete_volume(sh: &Shared, uuid: &str) -> Resp {
    let mut s = sh.lock();
    let Some(name) = s.volumes.get(uuid).map(|v| v.name.clone()) else {
        return not_found("entry doesn't exist").resp();
    };
    let op = Op::DeleteVolume {
        uuid: uuid.to_owned(),
    };
    accepted(jobs::enqueue(
        sh,
        &mut s,
        op,
        format!("delete volume {name}"),
    ))
}

// ---------------------------------------------------------------------------------------------
// Quota rules

fn create_rule(sh: &Shared, b: &Map<String, Value>) -> Resp {
    let r = (|| {
        allowed(
            b,
            &[
                "svm", "volume", "type", "qtree", "space", "files", "user", "group",
            ],
        )?;
        let volume = string(b, "volume.name")?.ok_or_else(|| missing("volume.name"))?;
        let kind = string(b, "type")?.ok_or_else(|| missing("type"))?;
        if kind != "tree" {
            return Err(bad(
                codes::INVALID_VALUE,
                format!("Quota rule type \"{kind}\" is not emulated; only \"tree\" is."),
                "type",
            ));
        }
        let qtree = string(b, "qtree.name")?.unwrap_or_default();
        let hard_limit = number(b, "space.hard_limit")?;
        let mut s = sh.lock();
        check_svm(&s, b)?;
        let Some(used) = s.volume_by_name(&volume).map(|v| v.used) else {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                codes::NOT_FOUND,
                format!(
                    "Volume \"{volume}\" does not exist in SVM \"{}\".",
                    s.cfg.svm
                ),
                Some("volume.name"),
            ));
        };
        if !qtree.is_empty() {
            return Err(bad(
                codes::INVALID_VALUE,
                format!("Qtree \"{qtree}\" does not exist in volume \"{volume}\"."),
                "qtree.name",
            ));
        }
        if s.rules
            .values()
            .any(|r| r.volume == volume && r.qtree == qtree)
        {
            return Err(refuse(
                StatusCode::CONFLICT,
                codes::DUPLICATE_ENTRY,
                format!("A tree quota rule for volume \"{volume}\" already exists."),
                None,
            ));
        }
        if let Some(limit) = hard_limit
            && limit < used
        {
            let (code, message) = jobs::below_used(&volume, limit, used);
            return Err(bad(&code.to_string(), message, "space.hard_limit"));
        }
        let op = Op::CreateRule {
            volume: volume.clone(),
            qtree,
            hard_limit,
        };
        Ok(jobs::enqueue(
            sh,
            &mut s,
            op,
            format!("create quota rule on {volume}"),
        ))
    })();
    r.map_or_else(Refusal::resp, accepted)
}

fn patch_rule(sh: &Shared, uuid: &str, b: &Map<String, Value>) -> Resp {
    let r = (|| {
        allowed(b, &["space", "files"])?;
        let hard_limit = number(b, "space.hard_limit")?;
        let mut s = sh.lock();
        let Some(volume) = s.rules.get(uuid).map(|r| r.volume.clone()) else {
            return Err(not_found("entry doesn't exist"));
        };
        let used = s.volume_by_name(&volume).map_or(0, |v| v.used);
        if let Some(limit) = hard_limit
            && limit < used
        {
            let (code, message) = jobs::below_used(&volume, limit, used);
            return Err(bad(&code.to_string(), message, "space.hard_limit"));
        }
        let op = Op::PatchRule {
            uuid: uuid.to_owned(),
            hard_limit,
        };
        Ok(jobs::enqueue(
            sh,
            &mut s,
            op,
            format!("modify quota rule on {volume}"),
        ))
    })();
    r.map_or_else(Refusal::resp, accepted)
}

fn delete_rule(sh: &Shared, uuid: &str) -> Resp {
    let mut s = sh.lock();
    let Some(volume) = s.rules.get(uuid).map(|r| r.volume.clone()) else {
        return not_found("entry doesn't exist").resp();
    };
    let op = Op::DeleteRule {
        uuid: uuid.to_owned(),
    };
    accepted(jobs::enqueue(
        sh,
        &mut s,
        op,
        format!("delete quota rule on {volume}"),
    ))
}

// ---------------------------------------------------------------------------------------------
// Request bodies

fn object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(bad(
            codes::INVALID_VALUE,
            "The request body must be a JSON object.",
            "body",
        )),
        Err(e) => Err(bad(
            codes::INVALID_VALUE,
            format!("The request body is not valid JSON: {e}"),
            "body",
        )),
    }
}

pub(super) fn allowed(b: &Map<String, Value>, keys: &[&str]) -> Result<(), Refusal> {
    match b.keys().find(|k| !keys.contains(&k.as_str())) {
        Some(k) => Err(bad(
            codes::UNEXPECTED_ARGUMENT,
            format!("Unexpected argument \"{k}\"."),
            k,
        )),
        None => Ok(()),
    }
}

pub(super) fn missing(field: &str) -> Refusal {
    bad(
        codes::MISSING_FIELD,
        format!("Missing value for required field \"{field}\"."),
        field,
    )
}

fn at<'a>(b: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut v = b.get(parts.next()?)?;
    for p in parts {
        v = v.get(p)?;
    }
    Some(v)
}

fn invalid_type(path: &str, what: &str, got: &Value) -> Refusal {
    bad(
        codes::INVALID_VALUE,
        format!("Field \"{path}\" must be {what}, not {got}."),
        path,
    )
}

pub(super) fn string(b: &Map<String, Value>, path: &str) -> Result<Option<String>, Refusal> {
    match at(b, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid_type(path, "a string", other)),
    }
}

fn number(b: &Map<String, Value>, path: &str) -> Result<Option<u64>, Refusal> {
    match at(b, path) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| invalid_type(path, "a non-negative integer", v)),
    }
}

fn boolean(b: &Map<String, Value>, path: &str) -> Result<Option<bool>, Refusal> {
    match at(b, path) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(x)) => Ok(Some(*x)),
        Some(other) => Err(invalid_type(path, "true or false", other)),
    }
}

/// The body's `svm.name` (or `svm.uuid`) must be the emulated SVM.
pub(super) fn check_svm(s: &State, b: &Map<String, Value>) -> Result<(), Refusal> {
    let name = string(b, "svm.name")?;
    let uuid = string(b, "svm.uuid")?;
    match (name, uuid) {
        (None, None) => Err(missing("svm.name")),
        (Some(n), _) if n != s.cfg.svm => Err(bad(
            codes::INVALID_VALUE,
            format!("SVM \"{n}\" does not exist."),
            "svm.name",
        )),
        (_, Some(u)) if u != s.svm_uuid => Err(bad(
            codes::INVALID_VALUE,
            format!("SVM \"{u}\" does not exist."),
            "svm.uuid",
        )),
        _ => Ok(()),
    }
}
