//! Live updates: one watch on the sites table for the whole console, fanned out to every open
//! stream (server-sent events). A stream gets only changes, never the whole fleet again; one
//! that falls behind by more than [`BACKLOG`] changes is told to reload.

use std::sync::Arc;
use std::time::Duration;

use meridian_common::model::Site;
use meridian_store::tables::Record;
use meridian_store::{EventKind, Revision, StoreError, Tables};
use serde::Serialize;
use tokio::sync::broadcast;

/// Changes a slow stream may be behind before it is told to reload.
pub const BACKLOG: usize = 16_384;

/// One site's change, as sent to browsers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SiteChange {
    pub id: String,
    /// The new state (`removed` for a deleted site).
    pub state: String,
    pub tier: String,
    pub lat: f64,
    pub lon: f64,
    /// The store revision of the change.
    pub revision: u64,
}

/// The console's feed of site changes.
#[derive(Debug, Clone)]
pub struct SiteEvents {
    tx: broadcast::Sender<Arc<SiteChange>>,
}

impl SiteEvents {
    /// A feed with nobody writing to it yet.
    pub fn new() -> Self {
        SiteEvents {
            tx: broadcast::channel(BACKLOG).0,
        }
    }

    /// A new subscriber (gets changes from now on).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SiteChange>> {
        self.tx.subscribe()
    }

    /// Sends a change to every subscriber (the benchmark and tests publish directly).
    pub fn publish(&self, change: SiteChange) {
        let _ = self.tx.send(Arc::new(change));
    }

    /// Watches the sites table from the store's next revision until `stop`.
    pub async fn watch(self, tables: Tables, mut stop: tokio::sync::watch::Receiver<bool>) {
        let store = Arc::clone(tables.store());
        let prefix = format!("{}/", <Site as Record>::TABLE);
        let mut from = Revision(store.revision().0 + 1);
        loop {
            let mut watch = match store.watch(prefix.as_bytes(), from).await {
                Ok(w) => w,
                Err(StoreError::Closed) => return,
                Err(e) => {
                    tracing::warn!(error = %e, "console site watch failed; retrying");
                    from = Revision(store.revision().0 + 1);
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => continue,
                    }
                }
            };
            loop {
                let event = tokio::select! {
                    _ = stop.changed() => return,
                    event = watch.next() => event,
                };
                match event {
                    Ok(event) => {
                        from = Revision(event.kv.mod_revision.0 + 1);
                        let id =
                            String::from_utf8_lossy(&event.kv.key[prefix.len()..]).into_owned();
                        let change = match event.kind {
                            EventKind::Delete => SiteChange {
                                id,
                                state: "removed".into(),
                                tier: String::new(),
                                lat: 0.0,
                                lon: 0.0,
                                revision: event.kv.mod_revision.0,
                            },
                            EventKind::Put => match <Site as Record>::decode(&event.kv.value) {
                                Ok(site) => SiteChange {
                                    id,
                                    state: super::names::name(&site.state),
                                    tier: super::names::name(&site.tier),
                                    lat: site.location.lat,
                                    lon: site.location.lon,
                                    revision: event.kv.mod_revision.0,
                                },
                                Err(_) => continue,
                            },
                        };
                        self.publish(change);
                    }
                    Err(StoreError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, "console site watch lost; resuming");
                        break;
                    }
                }
            }
        }
    }
}

impl Default for SiteEvents {
    fn default() -> Self {
        Self::new()
    }
}
