//! Export policies: synchronous create (201), modify and delete (200), with their rules and
//! client matches checked as ONTAP does.

use hyper::{StatusCode, header};
use serde_json::{Map, Value, json};

use super::api::{Refusal, allowed, bad, check_svm, missing, not_found, refuse, string};
use super::records::Query;
use super::{ExportPolicy, Resp, Shared, State, codes, error, respond};

/// A fresh export policy id (ONTAP's are large integers).
pub(super) fn new_policy_id(s: &mut State) -> u64 {
    s.next += 1;
    8_589_934_592 + s.next
}

/// Every client match of `rules`, in order.
pub(super) fn policy_clients(rules: &[Value]) -> Vec<String> {
    rules
        .iter()
        .filter_map(|r| r.get("clients").and_then(Value::as_array))
        .flatten()
        .filter_map(|c| c.get("match").and_then(Value::as_str))
        .map(str::to_owned)
        .collect()
}

pub(super) fn create_policy(sh: &Shared, b: &Map<String, Value>, q: &Query) -> Resp {
    let r = (|| {
        allowed(b, &["name", "svm", "rules"])?;
        let name = string(b, "name")?.ok_or_else(|| missing("name"))?;
        check_policy_name(&name)?;
        let rules = match b.get("rules") {
            Some(v) => normalise_rules(v)?,
            None => Vec::new(),
        };
        let mut s = sh.lock();
        check_svm(&s, b)?;
        if s.policies.values().any(|p| p.name == name) {
            return Err(refuse(
                StatusCode::CONFLICT,
                codes::DUPLICATE_ENTRY,
                format!(
                    "Export policy \"{name}\" already exists in SVM \"{}\".",
                    s.cfg.svm
                ),
                Some("name"),
            ));
        }
        let id = new_policy_id(&mut s);
        s.policies.insert(
            id,
            ExportPolicy {
                id,
                name: name.clone(),
                rules,
            },
        );
        Ok((id, name))
    })();
    match r {
        Ok((id, name)) => {
            let body = if q.iter().any(|(k, v)| k == "return_records" && v == "true") {
                json!({"num_records": 1, "records": [{"id": id, "name": name}]})
            } else {
                json!({})
            };
            let mut resp = respond(StatusCode::CREATED, &body);
            if let Ok(loc) =
                header::HeaderValue::from_str(&format!("/api/protocols/nfs/export-policies/{id}"))
            {
                resp.headers_mut().insert(header::LOCATION, loc);
            }
            resp
        }
        Err(e) => e.resp(),
    }
}

pub(super) fn patch_policy(sh: &Shared, id: &str, b: &Map<String, Value>) -> Resp {
    let r = (|| {
        allowed(b, &["name", "rules"])?;
        let rename = string(b, "name")?;
        if let Some(n) = &rename {
            check_policy_name(n)?;
        }
        let rules = b.get("rules").map(normalise_rules).transpose()?;
        let mut s = sh.lock();
        let Some(id) = id
            .parse::<u64>()
            .ok()
            .filter(|i| s.policies.contains_key(i))
        else {
            return Err(not_found("entry doesn't exist"));
        };
        let old = s.policies[&id].name.clone();
        if let Some(n) = &rename
            && *n != old
        {
            if s.policies.values().any(|p| &p.name == n) {
                return Err(refuse(
                    StatusCode::CONFLICT,
                    codes::DUPLICATE_ENTRY,
                    format!("Export policy \"{n}\" already exists."),
                    Some("name"),
                ));
            }
            for v in s.volumes.values_mut().filter(|v| v.policy == old) {
                v.policy = n.clone();
            }
        }
        let p = s.policies.get_mut(&id).expect("checked above");
        if let Some(n) = rename {
            p.name = n;
        }
        if let Some(r) = rules {
            p.rules = r;
        }
        Ok(())
    })();
    r.map_or_else(Refusal::resp, |()| respond(StatusCode::OK, &json!({})))
}

pub(super) fn delete_policy(sh: &Shared, id: &str) -> Resp {
    let mut s = sh.lock();
    let Some(id) = id
        .parse::<u64>()
        .ok()
        .filter(|i| s.policies.contains_key(i))
    else {
        return not_found("entry doesn't exist").resp();
    };
    let name = s.policies[&id].name.clone();
    if name == "default" {
        return bad(
            "1703947",
            "Cannot delete default ruleset. This ruleset will be deleted when the owning Vserver is deleted",
            "id",
        )
        .resp();
    }
    if s.volumes.values().any(|v| v.policy == name) {
        return error(
            StatusCode::CONFLICT,
            codes::POLICY_IN_USE,
            "Ruleset is in use by a volume. It cannot be deleted until all volumes that refer to it are first deleted",
            Some("id"),
        );
    }
    s.policies.remove(&id);
    respond(StatusCode::OK, &json!({}))
}

fn check_policy_name(name: &str) -> Result<(), Refusal> {
    if name.is_empty() || name.contains(char::is_whitespace) {
        return Err(bad(
            "1703952",
            "Invalid ruleset name provided. No spaces are allowed in a ruleset name",
            "name",
        ));
    }
    if name.len() > 256 {
        return Err(bad(
            "1704047",
            "The export policy name cannot be longer than 256 characters",
            "name",
        ));
    }
    Ok(())
}

const AUTH_FLAVOURS: &[&str] = &[
    "any", "none", "never", "krb5", "krb5i", "krb5p", "ntlm", "sys",
];
const PROTOCOLS: &[&str] = &["any", "nfs", "nfs3", "nfs4", "nfs41", "cifs", "flexcache"];

/// Checks export rules and fills in ONTAP's defaults and each rule's `index`.
fn normalise_rules(v: &Value) -> Result<Vec<Value>, Refusal> {
    let Value::Array(rules) = v else {
        return Err(bad(
            codes::INVALID_VALUE,
            "Field \"rules\" must be an array.",
            "rules",
        ));
    };
    let mut out = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let Value::Object(m) = r else {
            return Err(bad(
                codes::INVALID_VALUE,
                "Each rule must be an object.",
                "rules",
            ));
        };
        for k in m.keys() {
            if ![
                "clients",
                "protocols",
                "ro_rule",
                "rw_rule",
                "superuser",
                "anonymous_user",
                "allow_suid",
                "allow_device_creation",
                "index",
            ]
            .contains(&k.as_str())
            {
                return Err(bad(
                    codes::UNEXPECTED_ARGUMENT,
                    format!("Unexpected argument \"rules.{k}\"."),
                    &format!("rules.{k}"),
                ));
            }
        }
        let clients = match m.get("clients") {
            Some(Value::Array(c)) if !c.is_empty() => c,
            _ => return Err(missing("rules.clients")),
        };
        let mut matches = Vec::new();
        for c in clients {
            let Some(mt) = c.get("match").and_then(Value::as_str) else {
                return Err(missing("rules.clients.match"));
            };
            check_clientmatch(mt)?;
            matches.push(json!({"match": mt}));
        }
        let list = |k: &str, allowed: &[&str], default: Option<&str>| -> Result<Value, Refusal> {
            let target = format!("rules.{k}");
            match m.get(k) {
                None => default.map(|d| json!([d])).ok_or_else(|| missing(&target)),
                Some(Value::Array(a))
                    if !a.is_empty()
                        && a.iter()
                            .all(|x| x.as_str().is_some_and(|s| allowed.contains(&s))) =>
                {
                    Ok(Value::Array(a.clone()))
                }
                Some(other) => Err(bad(
                    codes::INVALID_VALUE,
                    format!("Field \"{target}\" has an invalid value {other}."),
                    &target,
                )),
            }
        };
        out.push(json!({
            "index": i + 1,
            "clients": matches,
            "protocols": list("protocols", PROTOCOLS, Some("any"))?,
            "ro_rule": list("ro_rule", AUTH_FLAVOURS, None)?,
            "rw_rule": list("rw_rule", AUTH_FLAVOURS, None)?,
            "superuser": list("superuser", AUTH_FLAVOURS, Some("none"))?,
            "anonymous_user": m.get("anonymous_user").cloned().unwrap_or(json!("65534")),
            "allow_suid": m.get("allow_suid").cloned().unwrap_or(json!(true)),
        }));
    }
    Ok(out)
}

/// An export client match: an IPv4 address or prefix (no host bits), a host or domain name, a
/// netgroup (`@name`).
fn check_clientmatch(m: &str) -> Result<(), Refusal> {
    let invalid = |code: &str, why: &str| {
        Err(bad(
            code,
            format!("Invalid clientmatch{why}: \"{m}\""),
            "rules.clients.match",
        ))
    };
    if let Some((addr, len)) = m.split_once('/') {
        let Ok(addr) = addr.parse::<std::net::Ipv4Addr>() else {
            return invalid(codes::INVALID_CLIENTMATCH, "");
        };
        let Ok(len) = len.parse::<u8>() else {
            return invalid(codes::INVALID_CLIENTMATCH, "");
        };
        if len > 32 {
            return invalid("1704042", ": too many bits in netmask");
        }
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        if u32::from(addr) & !mask != 0 {
            return invalid(
                codes::CLIENTMATCH_HOST_BITS,
                ": address bytes masked out by netmask are non-zero",
            );
        }
        return Ok(());
    }
    let name = m.strip_prefix('@').unwrap_or(m);
    if !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
    {
        return Ok(());
    }
    invalid(codes::INVALID_CLIENTMATCH, "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clientmatches_are_checked() {
        for ok in [
            "10.1.0.0/24",
            "10.1.0.5",
            "host.example",
            "@netgroup",
            "0.0.0.0/0",
        ] {
            assert!(check_clientmatch(ok).is_ok(), "{ok}");
        }
        for bad in ["10.1.0.1/24", "10.1.0.0/33", "a b", "10.1.0/x", ""] {
            assert!(check_clientmatch(bad).is_err(), "{bad}");
        }
    }
}
