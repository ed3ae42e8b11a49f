//! HTTP fault injection for sim's device emulators: a table of rules matched by method and
//! path pattern, each answering with a status, adding latency or hanging, N times or always.
//!
//! The table is a cheap cloneable handle ([`Faults`]); an emulator consults it first for every
//! request ([`Faults::take`]), before authentication, the way a busy or broken front end (nginx,
//! a BMC web server restarting) fails before the application sees the request.
//!
//! Path patterns: an exact path (`/redfish/v1/Systems/1`), or a glob in which `*` matches
//! within one path segment and `**` matches any run of segments (`/redfish/v1/Systems/*`,
//! `/redfish/v1/UpdateService/**`). A trailing `/` is ignored on both sides, and a pattern
//! ending in `/**` also matches its base (`/redfish/v1/**` matches `/redfish/v1`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper::Method;

/// How long a "hanging" request is held before the connection is dropped anyway (far longer
/// than any client timeout; the emulator's shutdown ends it sooner).
pub const HANG_FOR: Duration = Duration::from_secs(3600);

/// One injected fault: which requests it matches and what it does to them.
///
/// Build one with [`Fault::status`], [`Fault::latency`] or [`Fault::hang`], then narrow it with
/// [`Fault::method`] and [`Fault::times`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The method it matches; `None` matches every method.
    pub method: Option<Method>,
    /// The path pattern it matches (see the module documentation).
    pub path: String,
    /// How many matching requests it affects; `None` means every one, until removed.
    pub times: Option<u32>,
    /// The status to answer with; `None` serves the request normally (after the latency).
    pub status: Option<u16>,
    /// A `Retry-After` value in seconds to send with the status.
    pub retry_after: Option<u32>,
    /// Time added before the request is answered (or served).
    pub latency: Duration,
    /// Never answer: hold the request until the client gives up (or [`HANG_FOR`] passes).
    pub hang: bool,
}

impl Fault {
    /// Answers requests to `path` with `status` (and an error body) instead of serving them.
    pub fn status(path: impl Into<String>, status: u16) -> Self {
        Self {
            method: None,
            path: path.into(),
            times: None,
            status: Some(status),
            retry_after: None,
            latency: Duration::ZERO,
            hang: false,
        }
    }

    /// Serves requests to `path` normally, `latency` later.
    pub fn latency(path: impl Into<String>, latency: Duration) -> Self {
        Self {
            status: None,
            latency,
            ..Self::status(path, 0)
        }
    }

    /// Never answers requests to `path`: the client sees a timeout.
    pub fn hang(path: impl Into<String>) -> Self {
        Self {
            status: None,
            hang: true,
            ..Self::status(path, 0)
        }
    }

    /// Matches only requests with this method.
    #[must_use]
    pub fn method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    /// Affects only the next `n` matching requests.
    #[must_use]
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    /// Sends `Retry-After: secs` with the injected status.
    #[must_use]
    pub fn retry_after(mut self, secs: u32) -> Self {
        self.retry_after = Some(secs);
        self
    }

    /// Adds `latency` before the injected status is answered.
    #[must_use]
    pub fn with_latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }
}

/// Identifies an injected fault, to remove it or count its hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FaultId(u64);

/// What the matching fault does to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultHit {
    /// The fault that matched.
    pub id: FaultId,
    /// Answer with this status instead of serving the request.
    pub status: Option<u16>,
    /// `Retry-After` seconds for that answer.
    pub retry_after: Option<u32>,
    /// Wait this long first.
    pub latency: Duration,
    /// Never answer.
    pub hang: bool,
}

impl FaultHit {
    /// Waits out the latency, or forever (bounded by [`HANG_FOR`]) for a hang. Returns whether
    /// the request should still be answered.
    pub async fn wait(&self) -> bool {
        if self.hang {
            tokio::time::sleep(HANG_FOR).await;
            return false;
        }
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
        true
    }
}

#[derive(Debug)]
struct Rule {
    id: FaultId,
    fault: Fault,
    hits: u32,
}

#[derive(Debug, Default)]
struct Table {
    rules: Vec<Rule>,
    removed_hits: Vec<(FaultId, u32)>,
}

/// A shared, cloneable table of injected faults. The first matching rule with uses left wins.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    table: Arc<Mutex<Table>>,
    next: Arc<AtomicU64>,
}

impl Faults {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a fault after those already there.
    pub fn inject(&self, fault: Fault) -> FaultId {
        let id = FaultId(self.next.fetch_add(1, Ordering::Relaxed));
        self.lock().rules.push(Rule { id, fault, hits: 0 });
        id
    }

    /// Removes a fault; its hit count stays readable.
    pub fn remove(&self, id: FaultId) {
        let mut t = self.lock();
        if let Some(pos) = t.rules.iter().position(|r| r.id == id) {
            let rule = t.rules.remove(pos);
            t.removed_hits.push((id, rule.hits));
        }
    }

    /// Removes every fault.
    pub fn clear(&self) {
        let mut t = self.lock();
        let gone: Vec<(FaultId, u32)> = t.rules.drain(..).map(|r| (r.id, r.hits)).collect();
        t.removed_hits.extend(gone);
    }

    /// How many requests the fault has affected so far.
    pub fn hits(&self, id: FaultId) -> u32 {
        let t = self.lock();
        t.rules
            .iter()
            .find(|r| r.id == id)
            .map(|r| r.hits)
            .or_else(|| t.removed_hits.iter().find(|(i, _)| *i == id).map(|p| p.1))
            .unwrap_or(0)
    }

    /// Finds the fault for a request and uses it up once. `path` is the request's path without
    /// its query.
    pub fn take(&self, method: &Method, path: &str) -> Option<FaultHit> {
        let mut t = self.lock();
        let rule = t.rules.iter_mut().find(|r| {
            r.fault.times != Some(0)
                && r.fault.method.as_ref().is_none_or(|m| m == method)
                && path_matches(&r.fault.path, path)
        })?;
        rule.hits += 1;
        if let Some(n) = rule.fault.times.as_mut() {
            *n -= 1;
        }
        Some(FaultHit {
            id: rule.id,
            status: rule.fault.status,
            retry_after: rule.fault.retry_after,
            latency: rule.fault.latency,
            hang: rule.fault.hang,
        })
    }
}

/// Whether `path` matches `pattern` (see the module documentation).
pub fn path_matches(pattern: &str, path: &str) -> bool {
    let pat: Vec<&str> = split(pattern);
    let segs: Vec<&str> = split(path);
    match_segments(&pat, &segs)
}

fn split(p: &str) -> Vec<&str> {
    p.split('/').filter(|s| !s.is_empty()).collect()
}

fn match_segments(pat: &[&str], segs: &[&str]) -> bool {
    match pat.split_first() {
        None => segs.is_empty(),
        Some((&"**", rest)) => (0..=segs.len()).any(|skip| match_segments(rest, &segs[skip..])),
        Some((p, rest)) => match segs.split_first() {
            Some((s, more)) => glob_segment(p, s) && match_segments(rest, more),
            None => false,
        },
    }
}

/// `*` matches any run of characters within one segment.
fn glob_segment(pat: &str, seg: &str) -> bool {
    let Some((head, tail)) = pat.split_once('*') else {
        return pat == seg;
    };
    let Some(rest) = seg.strip_prefix(head) else {
        return false;
    };
    (0..=rest.len())
        .filter(|&i| rest.is_char_boundary(i))
        .any(|i| glob_segment(tail, &rest[i..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_segment_and_deep_globs() {
        assert!(path_matches(
            "/redfish/v1/Systems/1",
            "/redfish/v1/Systems/1/"
        ));
        assert!(!path_matches(
            "/redfish/v1/Systems/1",
            "/redfish/v1/Systems/12"
        ));
        assert!(path_matches(
            "/redfish/v1/Systems/*",
            "/redfish/v1/Systems/1"
        ));
        assert!(!path_matches(
            "/redfish/v1/Systems/*",
            "/redfish/v1/Systems/1/Bios"
        ));
        assert!(path_matches("/redfish/v1/**", "/redfish/v1"));
        assert!(path_matches("/redfish/v1/**", "/redfish/v1/Systems/1/Bios"));
        assert!(path_matches(
            "/redfish/v1/*/Actions/*.Reset",
            "/redfish/v1/x/Actions/ComputerSystem.Reset"
        ));
        assert!(!path_matches(
            "/redfish/v1/Systems/*",
            "/redfish/v1/Managers/1"
        ));
    }

    #[test]
    fn a_counted_fault_runs_out_and_method_narrows() {
        let f = Faults::new();
        let id = f.inject(Fault::status("/a", 503).method(Method::POST).times(2));
        assert!(f.take(&Method::GET, "/a").is_none());
        assert_eq!(f.take(&Method::POST, "/a").unwrap().status, Some(503));
        assert!(f.take(&Method::POST, "/a").is_some());
        assert!(f.take(&Method::POST, "/a").is_none());
        assert_eq!(f.hits(id), 2);
        f.remove(id);
        assert_eq!(f.hits(id), 2);
    }
}
