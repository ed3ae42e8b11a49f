//! The channel's auth records held in memory ([`AuthCache`]), fed by a watch, because the TLS
//! handshake checks them synchronously. The records themselves (`channel/auth/{site}`,
//! `channel/sites/{site}`, `reports/{site}/{seq}`) are in `meridian_store::schema`.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use meridian_common::ids::SiteId;
use meridian_store::schema::{self, AUTH_PREFIX, SiteAuth, SiteRecord, site_of};
use meridian_store::{EventKind, Revision, Store, StoreError};

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
        let (auths, from) = schema::site_auths(store).await?;
        for (site, auth) in auths {
            self.set(site, Some(auth));
        }
        Ok(from)
    }

    /// Applies one watched change; returns the site and its new record.
    pub fn apply(&self, event: &meridian_store::Event) -> Option<(SiteId, Option<SiteAuth>)> {
        let site = site_of(&event.kv.key, AUTH_PREFIX)?;
        let auth = match event.kind {
            EventKind::Put => SiteAuth::decode(&event.kv.key, &event.kv.value).ok(),
            EventKind::Delete => None,
        };
        self.set(site.clone(), auth);
        Some((site, auth))
    }
}
