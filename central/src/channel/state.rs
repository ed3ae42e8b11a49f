//! What the channel keeps in central's store, under its own prefixes:
//!
//! | key | value | written by |
//! |---|---|---|
//! | `channel/auth/{site}` | [`SiteAuth`] (JSON): certificate epoch, revoked | enrolment, `site revoke` |
//! | `channel/sites/{site}` | [`SiteChannel`] (JSON): acked/applied generation, report high-water, last seen | sessions |
//! | `reports/{site}/{seq:020}` | `meridian.v1.SiteReport` | ingest |
//!
//! The auth records are also held in memory ([`AuthCache`]), fed by a watch, because the TLS
//! handshake checks them synchronously.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use meridian_common::ids::{Generation, Sequence, SiteId};
use serde::{Deserialize, Serialize};

use crate::store::{EventKind, RangeRequest, Revision, Store, StoreError};

/// Prefix of the auth records.
pub const AUTH_PREFIX: &str = "channel/auth/";
/// Prefix of the per-site channel records.
pub const SITES_PREFIX: &str = "channel/sites/";
/// Prefix of stored reports.
pub const REPORTS_PREFIX: &str = "reports/";

/// Whether a site may hold a session, and with which certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SiteAuth {
    /// Certificates of a lower epoch are refused. Revocation bumps it.
    pub epoch: u64,
    /// Revoked: refused at the handshake until it enrols again with a new token.
    pub revoked: bool,
}

/// The channel's view of one site.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SiteChannel {
    /// Highest generation the agent acknowledged as persisted.
    pub received_generation: Generation,
    /// Highest generation the agent reported applied.
    pub applied_generation: Generation,
    /// Highest generation the agent reported failed, with the reason.
    pub failed_generation: Generation,
    #[serde(default)]
    pub failed_reason: String,
    /// Every report with a sequence up to this is stored.
    pub report_high_water: Sequence,
    /// Reports the agent's buffer dropped (cumulative, as the agent reports it).
    pub reports_dropped: u64,
    /// When central last wrote this record on hearing from the site, unix millis.
    pub last_seen_ms: i64,
    /// Expiry of the certificate the site last presented, unix millis.
    pub cert_not_after_ms: i64,
}

/// Key of a site's auth record.
pub fn auth_key(site: &SiteId) -> Vec<u8> {
    format!("{AUTH_PREFIX}{site}").into_bytes()
}

/// Key of a site's channel record.
pub fn site_key(site: &SiteId) -> Vec<u8> {
    format!("{SITES_PREFIX}{site}").into_bytes()
}

/// Key of one stored report.
pub fn report_key(site: &SiteId, seq: Sequence) -> Vec<u8> {
    format!("{REPORTS_PREFIX}{site}/{:020}", seq.get()).into_bytes()
}

/// Prefix of one site's stored reports.
pub fn reports_prefix(site: &SiteId) -> Vec<u8> {
    format!("{REPORTS_PREFIX}{site}/").into_bytes()
}

fn corrupt(key: &[u8], e: serde_json::Error) -> StoreError {
    StoreError::Corrupt {
        key: crate::store::display_key(key),
        reason: e.to_string(),
    }
}

/// Reads a JSON record with its revision.
pub async fn read_json<T: for<'de> Deserialize<'de>>(
    store: &dyn Store,
    key: &[u8],
) -> Result<Option<(T, Revision)>, StoreError> {
    match store.get(key).await? {
        Some(kv) => Ok(Some((
            serde_json::from_slice(&kv.value).map_err(|e| corrupt(key, e))?,
            kv.mod_revision,
        ))),
        None => Ok(None),
    }
}

/// Encodes a JSON record.
pub fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("plain records serialise")
}

/// The auth records in memory, for the handshake.
#[derive(Debug, Clone, Default)]
pub struct AuthCache {
    inner: Arc<RwLock<HashMap<SiteId, SiteAuth>>>,
}

impl AuthCache {
    /// The record of `site`, if it ever enrolled.
    pub fn get(&self, site: &SiteId) -> Option<SiteAuth> {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .copied()
    }

    /// Sets (or with `None` removes) a record.
    pub fn set(&self, site: SiteId, auth: Option<SiteAuth>) {
        let mut map = self.inner.write().unwrap_or_else(|p| p.into_inner());
        match auth {
            Some(a) => {
                map.insert(site, a);
            }
            None => {
                map.remove(&site);
            }
        }
    }

    /// Loads every record; returns the revision to watch from.
    pub async fn load(&self, store: &dyn Store) -> Result<Revision, StoreError> {
        let response = store.range(RangeRequest::prefix(AUTH_PREFIX)).await?;
        for kv in &response.kvs {
            if let Some(site) = site_of(&kv.key, AUTH_PREFIX) {
                let auth: SiteAuth =
                    serde_json::from_slice(&kv.value).map_err(|e| corrupt(&kv.key, e))?;
                self.set(site, Some(auth));
            }
        }
        Ok(Revision(response.revision.0 + 1))
    }

    /// Applies one watched change; returns the site and its new record.
    pub fn apply(&self, event: &crate::store::Event) -> Option<(SiteId, Option<SiteAuth>)> {
        let site = site_of(&event.kv.key, AUTH_PREFIX)?;
        let auth = match event.kind {
            EventKind::Put => serde_json::from_slice(&event.kv.value).ok(),
            EventKind::Delete => None,
        };
        self.set(site.clone(), auth);
        Some((site, auth))
    }
}

/// The site id after `prefix` in a key.
pub fn site_of(key: &[u8], prefix: &str) -> Option<SiteId> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    SiteId::parse(rest.split('/').next()?).ok()
}
