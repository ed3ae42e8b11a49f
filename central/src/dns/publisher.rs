//! The publisher: a background task that keeps the zone's endpoint names in step with the
//! sites' intents and applied generations.
//!
//! It reads every intent and every site's channel record once, then follows both prefixes
//! with store watches ([`SitesView`] holds what it needs). Every [`TICK`], when something
//! changed or an update is due again, it computes the wanted names ([`SitesView::desired`]),
//! compares them with what it published (`published`) and sends one signed update per name
//! that differs. The API never waits for it: a DNS server that is down or refuses only delays
//! the names. A name whose update fails is retried with back-off (from [`RETRY_INITIAL`],
//! doubling, at most [`RETRY_MAX`]); a server that cannot be reached holds back the whole
//! round for the same back-off, and the names catch up once it answers.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use meridian_common::ids::Generation;
use meridian_common::model::SiteIntent;
use meridian_store::schema::{INTENTS_PREFIX, SITES_PREFIX, SiteChannel, SiteRecord, site_of};
use meridian_store::tables::{Table, TableError};
use meridian_store::{Event, EventKind, RangeRequest, Revision, Store, StoreError, Tables};
use tokio::sync::watch;
use tokio::time::Instant;

use super::config::DnsSettings;
use super::names::{self, Records, SitesView};
use super::published::{self, Entry, PublishedNames};
use super::update::{UpdateError, Updater};

/// How often the publisher looks for work (a cheap check when nothing changed).
pub const TICK: Duration = Duration::from_millis(250);
/// The first retry of a failed update comes after this ...
pub const RETRY_INITIAL: Duration = Duration::from_millis(250);
/// ... doubling with each further failure up to this.
pub const RETRY_MAX: Duration = Duration::from_secs(10);

/// A running publisher; [`DnsPublisher::shutdown`] stops it.
#[derive(Debug)]
pub struct DnsPublisher {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl DnsPublisher {
    /// Starts publishing the names of `settings.zone` from `tables`.
    pub fn start(tables: Tables, settings: &DnsSettings) -> Result<DnsPublisher, UpdateError> {
        Ok(Self::start_with(tables, settings, Updater::new(settings)?))
    }

    /// Starts with a given updater (a shorter time limit in tests).
    pub fn start_with(tables: Tables, settings: &DnsSettings, updater: Updater) -> DnsPublisher {
        let (stop, stopped) = watch::channel(false);
        let store = Arc::clone(tables.store());
        let state = Publisher {
            names: PublishedNames::new(Arc::clone(&store)),
            store,
            tables,
            zone: settings.zone.clone(),
            updater,
            entries: None,
            view: SitesView::default(),
            desired: Records::new(),
            dirty: true,
            next_change: None,
            pending: true,
            retries: BTreeMap::new(),
            server: None,
        };
        tracing::info!(
            zone = %settings.zone,
            server = %settings.server,
            key = %settings.key_name,
            "publishing endpoint names"
        );
        let task = tokio::spawn(state.run(stopped));
        DnsPublisher { stop, task }
    }

    /// Stops the task at once. An update in flight is abandoned; its name's entry is still
    /// unconfirmed, so the next start sends it again.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// When something failing is tried again.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    until: Instant,
}

impl Backoff {
    /// The back-off after one more failure than `previous`.
    fn after(previous: Option<Backoff>) -> Backoff {
        let failures = previous.map_or(1, |b| b.failures.saturating_add(1));
        Backoff {
            failures,
            until: Instant::now() + delay(failures),
        }
    }
}

/// The wait after `failures` failures in a row.
fn delay(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    RETRY_INITIAL.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// Why the loop has to start over (or stop).
enum Interrupted {
    /// The store is closed: central is stopping.
    Closed,
    /// A watch or read failed; read everything again.
    Reload(String),
}

impl From<StoreError> for Interrupted {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Closed => Interrupted::Closed,
            other => Interrupted::Reload(other.to_string()),
        }
    }
}

impl From<TableError> for Interrupted {
    fn from(e: TableError) -> Self {
        match e {
            TableError::Store(s) => s.into(),
            other => Interrupted::Reload(other.to_string()),
        }
    }
}

struct Publisher {
    store: Arc<dyn Store>,
    tables: Tables,
    zone: String,
    names: PublishedNames,
    updater: Updater,
    /// What is in DNS (or being put there), by name; loaded at the first (re)load.
    entries: Option<BTreeMap<String, Entry>>,
    view: SitesView,
    /// The names wanted, as of the last computation.
    desired: Records,
    /// The view changed since `desired` was computed.
    dirty: bool,
    /// When a window next opens or ends (the records change then by themselves).
    next_change: Option<meridian_common::ids::Timestamp>,
    /// The last round left work undone (a failure, a back-off).
    pending: bool,
    /// Names whose last update failed.
    retries: BTreeMap<String, Backoff>,
    /// Set while the server cannot be reached.
    server: Option<Backoff>,
}

impl Publisher {
    async fn run(mut self, mut stop: watch::Receiver<bool>) {
        loop {
            let result = tokio::select! {
                r = self.follow() => r,
                _ = stop.changed() => return,
            };
            match result {
                Interrupted::Closed => return,
                Interrupted::Reload(why) => {
                    tracing::warn!(error = %why, "endpoint names: store read lost; reading again");
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        _ = stop.changed() => return,
                    }
                }
            }
        }
    }

    /// Reads everything, then follows the store and publishes until interrupted.
    async fn follow(&mut self) -> Interrupted {
        let from = Revision(self.store.revision().0 + 1);
        let mut intents = match self.store.watch(INTENTS_PREFIX.as_bytes(), from).await {
            Ok(w) => w,
            Err(e) => return e.into(),
        };
        let mut channels = match self.store.watch(SITES_PREFIX.as_bytes(), from).await {
            Ok(w) => w,
            Err(e) => return e.into(),
        };
        if let Err(e) = self.load().await {
            return e;
        }
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        enum Next {
            Tick,
            Intent(Result<Event, StoreError>),
            Channel(Result<Event, StoreError>),
        }
        loop {
            let next = tokio::select! {
                biased;
                _ = tick.tick() => Next::Tick,
                e = intents.next() => Next::Intent(e),
                e = channels.next() => Next::Channel(e),
            };
            let result = match next {
                Next::Tick => self.round().await,
                Next::Intent(e) => e
                    .map_err(Interrupted::from)
                    .and_then(|e| self.intent_event(&e)),
                Next::Channel(e) => e.map_err(Interrupted::from).map(|e| self.channel_event(&e)),
            };
            if let Err(interrupted) = result {
                return interrupted;
            }
        }
    }

    /// Every intent and channel record, and (the first time) the published names.
    async fn load(&mut self) -> Result<(), Interrupted> {
        let mut view = SitesView::default();
        for intent in self.tables.intents().list_all(None, 512).await? {
            view.set_intent(&intent);
        }
        let channels = self.store.range(RangeRequest::prefix(SITES_PREFIX)).await?;
        for kv in &channels.kvs {
            if let Some(site) = site_of(&kv.key, SITES_PREFIX) {
                let c = SiteChannel::decode(&kv.key, &kv.value)?;
                view.set_applied(&site, c.applied_generation);
            }
        }
        if self.entries.is_none() {
            let mut entries = self.names.load().await?;
            let suffix = format!(".{}", self.zone);
            let foreign: Vec<String> = entries
                .keys()
                .filter(|n| !n.ends_with(&suffix))
                .cloned()
                .collect();
            for name in foreign {
                tracing::warn!(
                    %name,
                    zone = %self.zone,
                    "endpoint name published in another zone; central no longer manages it (remove it by hand)"
                );
                self.names.remove(&name).await?;
                entries.remove(&name);
            }
            self.entries = Some(entries);
        }
        let entries = self.entries.as_ref().expect("just loaded");
        view.recall(&self.zone, &published::confirmed(entries));
        self.view = view;
        self.dirty = true;
        self.pending = true;
        Ok(())
    }

    fn intent_event(&mut self, event: &Event) -> Result<(), Interrupted> {
        let Some(site) = site_of(&event.kv.key, INTENTS_PREFIX) else {
            return Ok(());
        };
        match event.kind {
            EventKind::Put => {
                let path = String::from_utf8_lossy(&event.kv.key[INTENTS_PREFIX.len()..]);
                let intent = Table::<SiteIntent>::decode(&path, &event.kv.value)?;
                self.view.set_intent(&intent);
            }
            EventKind::Delete => self.view.remove_intent(&site),
        }
        self.dirty = true;
        Ok(())
    }

    fn channel_event(&mut self, event: &Event) {
        let Some(site) = site_of(&event.kv.key, SITES_PREFIX) else {
            return;
        };
        let applied = match event.kind {
            EventKind::Put => match SiteChannel::decode(&event.kv.key, &event.kv.value) {
                Ok(c) => c.applied_generation,
                Err(e) => {
                    tracing::warn!(%site, error = %e, "endpoint names: unreadable channel record");
                    return;
                }
            },
            EventKind::Delete => Generation::new(0),
        };
        if self.view.applied(&site) != applied {
            self.view.set_applied(&site, applied);
            self.dirty = true;
        }
    }

    /// One pass: send the update of every name that differs and is not backing off.
    async fn round(&mut self) -> Result<(), Interrupted> {
        // A window opened or ended since the records were computed.
        if self.next_change.is_some_and(|t| crate::clock::now() >= t) {
            self.dirty = true;
        }
        if !(self.dirty || self.pending) {
            return Ok(());
        }
        let now = Instant::now();
        if self.server.is_some_and(|b| now < b.until) {
            return Ok(());
        }
        let wall = crate::clock::now();
        if self.dirty {
            self.desired = self.view.desired(&self.zone, wall);
            self.next_change = self.view.next_change(wall);
            self.dirty = false;
        }
        let entries = self
            .entries
            .as_ref()
            .expect("loaded before the first round");
        let mut todo = names::changes(&self.desired, &published::confirmed(entries));
        for (name, entry) in entries {
            // Sent but never confirmed: send again whatever it should hold now.
            if !entry.confirmed && !todo.contains_key(name) {
                let want = self.desired.get(name).cloned().unwrap_or_default();
                todo.insert(name.clone(), want);
            }
        }
        self.retries.retain(|name, _| todo.contains_key(name));
        self.pending = false;
        for (name, want) in todo {
            if self.retries.get(&name).is_some_and(|b| now < b.until) {
                self.pending = true;
                continue;
            }
            match self.publish(&name, &want).await? {
                Ok(()) => {
                    self.retries.remove(&name);
                    if let Some(b) = self.server.take() {
                        tracing::info!(
                            server = %self.updater.server(),
                            failures = b.failures,
                            "DNS server answers again; endpoint names catching up"
                        );
                    }
                }
                Err(e) if e.is_unreachable() => {
                    let b = Backoff::after(self.server);
                    tracing::warn!(
                        error = %e,
                        failures = b.failures,
                        retry_in_ms = delay(b.failures).as_millis() as u64,
                        "endpoint names not published: DNS server unreachable"
                    );
                    self.server = Some(b);
                    self.pending = true;
                    return Ok(());
                }
                Err(e) => {
                    let b = Backoff::after(self.retries.get(&name).copied());
                    tracing::warn!(
                        error = %e,
                        %name,
                        failures = b.failures,
                        retry_in_ms = delay(b.failures).as_millis() as u64,
                        "endpoint name not published"
                    );
                    self.retries.insert(name, b);
                    self.pending = true;
                }
            }
        }
        Ok(())
    }

    /// Records the intent in the store, sends the update, records the outcome. The outer
    /// error is the store's; the inner one the DNS server's.
    async fn publish(
        &mut self,
        name: &str,
        want: &BTreeSet<Ipv4Addr>,
    ) -> Result<Result<(), UpdateError>, Interrupted> {
        let entries = self
            .entries
            .as_mut()
            .expect("loaded before the first round");
        if !want.is_empty() {
            let sending = Entry {
                addresses: want.clone(),
                confirmed: false,
            };
            if entries.get(name) != Some(&sending) {
                self.names.put(name, &sending).await?;
                entries.insert(name.to_owned(), sending);
            }
        }
        if let Err(e) = self.updater.replace(name, want).await {
            return Ok(Err(e));
        }
        if want.is_empty() {
            self.names.remove(name).await?;
            entries.remove(name);
            tracing::info!(%name, "endpoint name withdrawn");
        } else {
            let done = Entry {
                addresses: want.clone(),
                confirmed: true,
            };
            self.names.put(name, &done).await?;
            entries.insert(name.to_owned(), done);
            let addresses: Vec<String> = want.iter().map(Ipv4Addr::to_string).collect();
            tracing::info!(%name, addresses = %addresses.join(","), "endpoint name published");
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn back_off_doubles_up_to_the_cap() {
        assert_eq!(delay(1), RETRY_INITIAL);
        assert_eq!(delay(2), RETRY_INITIAL * 2);
        assert_eq!(delay(3), RETRY_INITIAL * 4);
        assert_eq!(delay(7), RETRY_MAX);
        assert_eq!(delay(u32::MAX), RETRY_MAX);
        let b = Backoff::after(None);
        assert_eq!(b.failures, 1);
        assert_eq!(Backoff::after(Some(b)).failures, 2);
    }
}
