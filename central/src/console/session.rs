//! Console sessions, held in central's memory (a restart logs everybody out).
//!
//! A session is created only by a successful login, under a fresh random ID: an ID presented
//! before login is never carried over (no fixation). The cookie holds the ID; the table is
//! keyed by its SHA-256, so a dump of the table names no live cookie. Every session carries
//! its own CSRF token, which each form repeats. Logout removes the session, so its cookie
//! stops working at once. A session ends `session_idle_s` after its last use and
//! `session_ttl_s` after login, whichever comes first.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::services::Caller;

/// The session cookie's name (`__Host-`: Secure, path `/`, no domain, so no subdomain or
/// plain-HTTP page can set or read it).
pub const SESSION_COOKIE: &str = "__Host-meridian-session";
/// The login form's cookie, holding the CSRF token of the form (double submit).
pub const LOGIN_COOKIE: &str = "__Host-meridian-login";

/// How a session's user logged in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// With a password.
    Password,
    /// With an API token: its secret, presented again on every request so that revoking or
    /// expiring the token ends the session.
    Token(String),
}

/// One live session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who is logged in.
    pub caller: Caller,
    /// How.
    pub credential: Credential,
    /// The token every form of this session carries.
    pub csrf: String,
    /// When the user logged in (central's clock).
    pub logged_in: meridian_common::ids::Timestamp,
    created: Instant,
    used: Instant,
}

/// Every live session.
#[derive(Debug)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
    ttl: Duration,
    idle: Duration,
    max: usize,
}

/// 32 random bytes as 64 hex digits.
pub fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

/// Compares two secrets in time that depends only on their lengths.
pub fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

impl Sessions {
    /// An empty table.
    pub fn new(ttl: Duration, idle: Duration, max: usize) -> Self {
        Sessions {
            map: Mutex::new(HashMap::new()),
            ttl,
            idle,
            max: max.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `caller`; returns the cookie value (the session ID).
    pub fn create(
        &self,
        caller: Caller,
        credential: Credential,
        logged_in: meridian_common::ids::Timestamp,
    ) -> String {
        let id = random_token();
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| self.live(s, now));
        if map.len() >= self.max
            && let Some(oldest) = map.iter().min_by_key(|(_, s)| s.used).map(|(k, _)| *k)
        {
            map.remove(&oldest);
        }
        map.insert(
            key(&id),
            Session {
                caller,
                credential,
                csrf: random_token(),
                logged_in,
                created: now,
                used: now,
            },
        );
        id
    }

    fn live(&self, s: &Session, now: Instant) -> bool {
        now.duration_since(s.created) < self.ttl && now.duration_since(s.used) < self.idle
    }

    /// The live session with cookie value `id` (marking it used), if any.
    pub fn get(&self, id: &str) -> Option<Session> {
        let now = Instant::now();
        let mut map = self.lock();
        let k = key(id);
        let live = map.get(&k).map(|s| self.live(s, now))?;
        if !live {
            map.remove(&k);
            return None;
        }
        let s = map.get_mut(&k)?;
        s.used = now;
        Some(s.clone())
    }

    /// Ends the session with cookie value `id`; whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        self.lock().remove(&key(id)).is_some()
    }

    /// Live sessions.
    pub fn len(&self) -> usize {
        let now = Instant::now();
        self.lock().values().filter(|s| self.live(s, now)).count()
    }

    /// Whether no session is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::ids::{TokenId, UserId};

    fn caller() -> Caller {
        Caller {
            user: UserId::parse("ops").unwrap(),
            token: TokenId::parse("tok-1").unwrap(),
            tenant: None,
            role: crate::services::Role::Viewer,
        }
    }

    #[test]
    fn ids_are_fresh_and_removal_is_final() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60), 10);
        let a = s.create(
            caller(),
            Credential::Password,
            meridian_common::ids::Timestamp::from_millis(1),
        );
        let b = s.create(
            caller(),
            Credential::Password,
            meridian_common::ids::Timestamp::from_millis(1),
        );
        assert_ne!(a, b);
        assert_ne!(s.get(&a).unwrap().csrf, s.get(&b).unwrap().csrf);
        assert!(s.remove(&a));
        assert!(s.get(&a).is_none());
        assert!(s.get("not-a-session").is_none());
        assert!(s.get(&b).is_some());
    }

    #[test]
    fn idle_sessions_end_and_the_oldest_makes_room() {
        let s = Sessions::new(Duration::from_secs(60), Duration::from_millis(1), 10);
        let a = s.create(
            caller(),
            Credential::Password,
            meridian_common::ids::Timestamp::from_millis(1),
        );
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get(&a).is_none());
        let s = Sessions::new(Duration::from_secs(60), Duration::from_secs(60), 2);
        let a = s.create(
            caller(),
            Credential::Password,
            meridian_common::ids::Timestamp::from_millis(1),
        );
        std::thread::sleep(Duration::from_millis(2));
        let b = s.create(
            caller(),
            Credential::Password,
            meridian_common::ids::Timestamp::from_millis(1),
        );
        let c = s.create(
            caller(),
            Credential::Password,
            meridian_common::ids::Timestamp::from_millis(1),
        );
        assert!(s.get(&a).is_none());
        assert!(s.get(&b).is_some() && s.get(&c).is_some());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
    }
}
