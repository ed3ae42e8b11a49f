//! Watches: ordered delivery of every change under a prefix.
//!
//! A backend keeps a [`Hub`] of subscribers and calls [`Hub::publish`] with each durable
//! revision's events, in revision order. A subscriber's channel holds a bounded number of
//! revisions; a subscriber that falls that far behind is dropped, and its [`Watch`] quietly
//! re-subscribes from the first revision it has not delivered, reading the backend's history.
//! So a slow reader costs memory only up to the bound and still sees every change once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;

use super::{Event, Revision, StoreError};

/// Revisions buffered per subscriber before it is dropped and must catch up from history.
pub(crate) const SUBSCRIBER_BUFFER: usize = 256;

/// The events of one revision that match one subscriber's prefix.
type RevisionEvents = (Revision, Arc<[Event]>);

/// Something a [`Watch`] can (re)subscribe to.
pub(crate) trait WatchSource: Send + Sync {
    /// History from `from` up to the newest published revision, plus a live channel that
    /// continues exactly after it.
    fn subscribe(&self, prefix: &[u8], from: Revision) -> Result<Subscription, StoreError>;
}

/// What [`WatchSource::subscribe`] returns.
pub(crate) struct Subscription {
    /// The first revision this subscription covers (`from`, or the next one for `from = 0`).
    pub from: Revision,
    pub backlog: Vec<Event>,
    pub receiver: mpsc::Receiver<RevisionEvents>,
}

struct Subscriber {
    prefix: Vec<u8>,
    sender: mpsc::Sender<RevisionEvents>,
}

struct HubState {
    subscribers: Vec<Subscriber>,
    published: Revision,
}

/// The live side of watches: subscribers and the newest revision handed to them.
pub(crate) struct Hub {
    state: Mutex<HubState>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Hub")
            .field("subscribers", &state.subscribers.len())
            .field("published", &state.published)
            .finish()
    }
}

impl Hub {
    pub fn new(published: Revision) -> Self {
        Hub {
            state: Mutex::new(HubState {
                subscribers: Vec::new(),
                published,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HubState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The newest revision delivered to subscribers.
    pub fn published(&self) -> Revision {
        self.lock().published
    }

    /// Registers a subscriber whose history has been read up to `through`. `read_tail` is
    /// called under the hub lock to read any revisions published after `through`, so nothing
    /// falls between the history and the live channel.
    pub fn register(
        &self,
        prefix: &[u8],
        through: Revision,
        read_tail: impl FnOnce(Revision, Revision) -> Result<Vec<Event>, StoreError>,
    ) -> Result<(Vec<Event>, mpsc::Receiver<RevisionEvents>), StoreError> {
        let mut state = self.lock();
        let tail = if state.published > through {
            read_tail(Revision(through.0 + 1), state.published)?
        } else {
            Vec::new()
        };
        let (sender, receiver) = mpsc::channel(SUBSCRIBER_BUFFER);
        state.subscribers.push(Subscriber {
            prefix: prefix.to_vec(),
            sender,
        });
        Ok((tail, receiver))
    }

    /// Hands revisions, in order, to every subscriber whose prefix they touch.
    pub fn publish(&self, revisions: &[(Revision, Vec<Event>)]) {
        let Some((last, _)) = revisions.last() else {
            return;
        };
        let mut state = self.lock();
        for (rev, events) in revisions {
            state.subscribers.retain(|sub| {
                let matching: Vec<Event> = events
                    .iter()
                    .filter(|e| e.kv.key.starts_with(&sub.prefix))
                    .cloned()
                    .collect();
                // A full or closed channel drops the subscriber; a lagging Watch re-subscribes.
                matching.is_empty() || sub.sender.try_send((*rev, matching.into())).is_ok()
            });
        }
        state.published = *last;
    }

    /// Number of live subscribers (for tests and metrics).
    pub fn subscribers(&self) -> usize {
        self.lock().subscribers.len()
    }
}

/// A stream of every change under a prefix, in revision order.
pub struct Watch {
    source: Weak<dyn WatchSource>,
    prefix: Vec<u8>,
    buffer: VecDeque<Event>,
    receiver: mpsc::Receiver<RevisionEvents>,
    /// The first revision not yet fully moved into `buffer`.
    next_revision: Revision,
}

impl std::fmt::Debug for Watch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("prefix", &super::display_key(&self.prefix))
            .field("next_revision", &self.next_revision)
            .field("buffered", &self.buffer.len())
            .finish()
    }
}

impl Watch {
    /// Subscribes to `source` from revision `from`.
    pub(crate) fn start(
        source: Weak<dyn WatchSource>,
        prefix: &[u8],
        from: Revision,
    ) -> Result<Watch, StoreError> {
        let strong = source.upgrade().ok_or(StoreError::Closed)?;
        let Subscription {
            from,
            backlog,
            receiver,
        } = strong.subscribe(prefix, from)?;
        let next_revision = backlog
            .last()
            .map_or(from, |e| Revision(e.kv.mod_revision.0 + 1));
        Ok(Watch {
            source,
            prefix: prefix.to_vec(),
            buffer: backlog.into(),
            receiver,
            next_revision,
        })
    }

    /// The next change. Fails with [`StoreError::Closed`] when the store shuts down, and with
    /// [`StoreError::Compacted`] when this watch fell behind the retained history.
    pub async fn next(&mut self) -> Result<Event, StoreError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Ok(event);
            }
            match self.receiver.recv().await {
                Some((rev, events)) => {
                    self.buffer.extend(events.iter().cloned());
                    self.next_revision = Revision(rev.0 + 1);
                }
                None => {
                    // Dropped for lagging, or the store closed.
                    let source = self.source.upgrade().ok_or(StoreError::Closed)?;
                    let Subscription {
                        backlog, receiver, ..
                    } = source.subscribe(&self.prefix, self.next_revision)?;
                    if let Some(last) = backlog.last() {
                        self.next_revision = Revision(last.kv.mod_revision.0 + 1);
                    }
                    self.buffer.extend(backlog);
                    self.receiver = receiver;
                }
            }
        }
    }

    /// The next change if one arrives within `timeout`.
    pub async fn next_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<Event>, StoreError> {
        match tokio::time::timeout(timeout, self.next()).await {
            Ok(result) => result.map(Some),
            Err(_) => Ok(None),
        }
    }
}
