//! Records as the REST API shows them, collection queries (filters on dotted fields with `*`
//! globs, `|` alternatives and `!` negation) and `fields=` projection.

use hyper::StatusCode;
use percent_encoding::percent_decode_str;
use serde_json::{Map, Value, json};

use super::api::not_found;
use super::{Resp, Shared, State, respond};

/// Query parameters that are not record filters.
const CONTROL: &[&str] = &[
    "fields",
    "return_records",
    "return_timeout",
    "max_records",
    "order_by",
];

/// A request's decoded query parameters, in order.
pub(super) type Query = Vec<(String, String)>;

/// The kinds of record the API serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Volume,
    Rule,
    Policy,
    Aggregate,
}

impl Kind {
    /// The fields every record carries whatever `fields=` asks.
    fn identity(self) -> &'static [&'static str] {
        match self {
            Kind::Volume | Kind::Aggregate => &["uuid", "name", "_links"],
            Kind::Rule => &["uuid", "_links"],
            Kind::Policy => &["id", "name", "_links"],
        }
    }

    fn key(self, record: &Value) -> String {
        match self {
            Kind::Policy => record["id"].to_string(),
            _ => record["uuid"].as_str().unwrap_or("").to_owned(),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Records, queries and projection

pub(super) fn records(s: &State, kind: Kind) -> Vec<Value> {
    let svm = json!({"name": s.cfg.svm, "uuid": s.svm_uuid});
    match kind {
        Kind::Volume => s
            .volumes
            .values()
            .map(|v| {
                let policy_id = s.policies.values().find(|p| p.name == v.policy).map(|p| p.id);
                json!({
                    "uuid": v.uuid,
                    "name": v.name,
                    "size": v.size,
                    "state": "online",
                    "type": "rw",
                    "style": "flexvol",
                    "svm": svm,
                    "aggregates": [{"name": s.cfg.aggregate, "uuid": s.aggr_uuid}],
                    "guarantee": {"type": "volume"},
                    "nas": {"path": v.path, "export_policy": {"name": v.policy, "id": policy_id}},
                    "space": {"size": v.size, "used": v.used, "available": v.size - v.used},
                    "quota": {"enabled": v.quota_enabled, "state": if v.quota_enabled { "on" } else { "off" }},
                    "_links": {"self": {"href": format!("/api/storage/volumes/{}", v.uuid)}},
                })
            })
            .collect(),
        Kind::Rule => s
            .rules
            .values()
            .map(|r| {
                let vol_uuid = s.volume_by_name(&r.volume).map(|v| v.uuid.clone());
                let mut v = json!({
                    "uuid": r.uuid,
                    "svm": svm,
                    "volume": {"name": r.volume, "uuid": vol_uuid},
                    "type": "tree",
                    "qtree": {"name": r.qtree},
                    "space": {},
                    "_links": {"self": {"href": format!("/api/storage/quota/rules/{}", r.uuid)}},
                });
                if let Some(h) = r.hard_limit {
                    v["space"]["hard_limit"] = json!(h);
                }
                v
            })
            .collect(),
        Kind::Policy => s
            .policies
            .values()
            .map(|p| {
                json!({
                    "id": p.id,
                    "name": p.name,
                    "svm": svm,
                    "rules": p.rules,
                    "_links": {"self": {"href": format!("/api/protocols/nfs/export-policies/{}", p.id)}},
                })
            })
            .collect(),
        Kind::Aggregate => {
            let used = s.aggregate_used();
            vec![json!({
                "uuid": s.aggr_uuid,
                "name": s.cfg.aggregate,
                "state": "online",
                "space": {"block_storage": {
                    "size": s.cfg.aggregate_size,
                    "available": s.aggregate_available(),
                    "used": used,
                }},
                "_links": {"self": {"href": format!("/api/storage/aggregates/{}", s.aggr_uuid)}},
            })]
        }
    }
}

pub(super) fn list(sh: &Shared, kind: Kind, q: &Query) -> Resp {
    let s = sh.lock();
    let fields = fields(q);
    let out: Vec<Value> = records(&s, kind)
        .iter()
        .filter(|r| {
            q.iter()
                .filter(|(k, _)| !CONTROL.contains(&k.as_str()))
                .all(|(k, v)| matches_filter(r, k, v))
        })
        .map(|r| project(r, kind, fields.as_deref()))
        .collect();
    respond(
        StatusCode::OK,
        &json!({"records": out, "num_records": out.len()}),
    )
}

pub(super) fn get_one(sh: &Shared, kind: Kind, id: &str, q: &Query) -> Resp {
    let s = sh.lock();
    match records(&s, kind).iter().find(|r| kind.key(r) == id) {
        Some(r) => respond(StatusCode::OK, &project(r, kind, fields(q).as_deref())),
        None => not_found("entry doesn't exist").resp(),
    }
}

pub(super) fn parse_query(query: Option<&str>) -> Query {
    query
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let dec = |x: &str| percent_decode_str(x).decode_utf8_lossy().into_owned();
            (dec(k), dec(v))
        })
        .collect()
}

fn fields(q: &Query) -> Option<Vec<String>> {
    let f: Vec<String> = q
        .iter()
        .filter(|(k, _)| k == "fields")
        .flat_map(|(_, v)| v.split(','))
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect();
    (!f.is_empty()).then_some(f)
}

/// Whether any value at dotted `path` (through arrays) matches one of `pattern`'s
/// `|`-separated alternatives (`*` globs; a leading `!` negates).
fn matches_filter(record: &Value, path: &str, pattern: &str) -> bool {
    let (negate, pattern) = match pattern.strip_prefix('!') {
        Some(p) => (true, p),
        None => (false, pattern),
    };
    let mut values = Vec::new();
    collect(record, &path.split('.').collect::<Vec<_>>(), &mut values);
    let hit = values.iter().any(|v| {
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(_) | Value::Bool(_) => v.to_string(),
            _ => return false,
        };
        pattern.split('|').any(|alt| glob(alt, &text))
    });
    hit != negate
}

fn collect<'a>(v: &'a Value, path: &[&str], out: &mut Vec<&'a Value>) {
    match (v, path.split_first()) {
        (Value::Array(a), _) => a.iter().for_each(|x| collect(x, path, out)),
        (_, None) => out.push(v),
        (Value::Object(m), Some((k, rest))) => {
            if let Some(x) = m.get(*k) {
                collect(x, rest, out);
            }
        }
        _ => {}
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    match pattern.split_once('*') {
        None => pattern == text,
        Some((head, tail)) => {
            let Some(rest) = text.strip_prefix(head) else {
                return false;
            };
            (0..=rest.len())
                .filter(|&i| rest.is_char_boundary(i))
                .any(|i| glob(tail, &rest[i..]))
        }
    }
}

/// The record with only its identity and the `fields` asked for (`*`/`**`: everything).
fn project(full: &Value, kind: Kind, fields: Option<&[String]>) -> Value {
    if fields.is_some_and(|f| f.iter().any(|x| x == "*" || x == "**")) {
        return full.clone();
    }
    let mut out = Value::Object(Map::new());
    for k in kind.identity() {
        copy(full, &mut out, &[k]);
    }
    for f in fields.unwrap_or_default() {
        copy(full, &mut out, &f.split('.').collect::<Vec<_>>());
    }
    out
}

/// Copies the value at `path` from `src` into `dst` (whole arrays when the path crosses one).
fn copy(src: &Value, dst: &mut Value, path: &[&str]) {
    let Some((k, rest)) = path.split_first() else {
        return;
    };
    let Some(x) = src.get(*k) else {
        return;
    };
    let Some(d) = dst.as_object_mut() else {
        return;
    };
    if rest.is_empty() || !x.is_object() {
        d.insert((*k).to_owned(), x.clone());
        return;
    }
    let slot = d
        .entry((*k).to_owned())
        .or_insert_with(|| Value::Object(Map::new()));
    copy(x, slot, rest);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_glob_alternate_and_negate() {
        let r = json!({"name": "t1_data", "svm": {"name": "svm1"}, "size": 5,
                       "aggregates": [{"name": "aggr1"}]});
        assert!(matches_filter(&r, "name", "t1_*"));
        assert!(matches_filter(&r, "name", "x|t1_data"));
        assert!(!matches_filter(&r, "name", "t2_*"));
        assert!(matches_filter(&r, "name", "!t2_*"));
        assert!(matches_filter(&r, "svm.name", "svm1"));
        assert!(matches_filter(&r, "size", "5"));
        assert!(matches_filter(&r, "aggregates.name", "aggr1"));
        assert!(!matches_filter(&r, "nas.path", "*"));
    }

    #[test]
    fn projection_keeps_identity_and_asked_fields() {
        let r = json!({"uuid": "u", "name": "n", "size": 1, "nas": {"path": "/n",
                       "export_policy": {"name": "n", "id": 7}}, "_links": {}});
        assert_eq!(
            project(&r, Kind::Volume, None),
            json!({"uuid": "u", "name": "n", "_links": {}})
        );
        let f = vec!["size".to_owned(), "nas.export_policy.name".to_owned()];
        assert_eq!(
            project(&r, Kind::Volume, Some(&f)),
            json!({"uuid": "u", "name": "n", "_links": {}, "size": 1,
                   "nas": {"export_policy": {"name": "n"}}})
        );
    }
}
