//! The distributor: watches `intents/` and wakes the session of every site whose intent
//! changed. The session reads the newest intent when it wakes, so any number of generations
//! written while it was busy (or while the site was away) collapse into one snapshot of the
//! newest. A site without a session gets its newest intent when it connects.
//!
//! Each write also starts the site's fan-out clock ([`crate::metrics::FanOut`]), before the
//! session is woken, so the session's acknowledgement always finds it.

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use meridian_store::schema::site_of;
use meridian_store::{EventKind, Revision, StoreError};
use prost::Message;

/// The table prefix the distributor watches.
use meridian_store::schema::INTENTS_PREFIX;

/// Only the generation of a stored intent (tag 2 of `SiteIntent`): the rest is skipped.
#[derive(Clone, PartialEq, prost::Message)]
struct IntentGeneration {
    #[prost(uint64, tag = "2")]
    generation: u64,
}

/// Starts (or, for a deleted intent, drops) `site`'s fan-out clock.
fn clock_write(
    shared: &Shared,
    site: &meridian_common::ids::SiteId,
    event: &meridian_store::Event,
) {
    let fanout = shared.metrics.fanout();
    match event.kind {
        EventKind::Put => {
            if let Ok(g) = IntentGeneration::decode(event.kv.value.as_slice()) {
                fanout.written(
                    site,
                    meridian_common::ids::Generation::new(g.generation),
                    std::time::Instant::now(),
                );
            }
        }
        EventKind::Delete => fanout.forget(site),
    }
}

/// Runs until `stop`.
pub async fn run(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let store = Arc::clone(shared.tables.store());
    let mut from = Revision(store.revision().0 + 1);
    loop {
        let mut watch = match store.watch(INTENTS_PREFIX.as_bytes(), from).await {
            Ok(w) => w,
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "intent watch failed; waking every session");
                from = Revision(store.revision().0 + 1);
                shared.registry.wake_all();
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        loop {
            let event = tokio::select! {
                e = watch.next() => e,
                _ = stop.changed() => return,
            };
            match event {
                Ok(event) => {
                    if let Some(site) = site_of(&event.kv.key, INTENTS_PREFIX) {
                        clock_write(&shared, &site, &event);
                        shared.registry.wake(&site);
                    }
                }
                Err(StoreError::Closed) => return,
                Err(e) => {
                    // Fell behind the history: re-watch from now and let every session
                    // re-read its newest intent.
                    tracing::warn!(error = %e, "intent watch lost; waking every session");
                    from = Revision(store.revision().0 + 1);
                    shared.registry.wake_all();
                    break;
                }
            }
        }
    }
}
