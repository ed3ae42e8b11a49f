//! The embedded store: sled, one writer thread, group commit.
//!
//! Every write goes through one writer thread. It takes the waiting transactions (up to
//! `max_batch` with group commit, one without), evaluates each in turn (each sees the ones
//! before it and gets its own revision), applies them in atomic sled batches of whole
//! transactions (`ROUND_WRITES` writes or so), then makes them durable with a single `flush`
//! (sled's fsync) before it answers any of them and hands their events to watchers. A flush
//! error poisons the store: the pending writers and every later call get
//! [`StoreError::Fatal`].
//!
//! Readers take a shared lock around sled reads so they never see half of a transaction, and
//! wait until everything applied before their read is durable, so they never return data a
//! crash could take back.

use std::collections::HashMap;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::thread::JoinHandle;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::codec::{self, LOG_PREFIX};
use super::watch::{Hub, Subscription, WatchSource};
use super::{
    Event, EventKind, KeyValue, Op, RangeRequest, RangeResponse, Revision, Store, StoreError, Txn,
    TxnResponse, Watch, check_key, check_txn,
};

/// The `[store]` table of central's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Make concurrent writes durable together with one flush (group commit).
    pub group_commit: bool,
    /// Most transactions made durable by one flush.
    pub max_batch: usize,
    /// Revisions of change history kept for watches.
    pub history: u64,
    /// sled's page cache, in MiB.
    pub cache_mib: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            group_commit: true,
            max_batch: 1024,
            history: 100_000,
            cache_mib: 256,
        }
    }
}

impl StoreConfig {
    /// Names the first out-of-range key, with its allowed range.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if !(1..=65_536).contains(&self.max_batch) {
            return Err(("store.max_batch", "must be between 1 and 65536".into()));
        }
        if self.history < 1_000 {
            return Err(("store.history", "must be at least 1000 revisions".into()));
        }
        if !(8..=1 << 20).contains(&self.cache_mib) {
            return Err(("store.cache_mib", "must be between 8 and 1048576".into()));
        }
        Ok(())
    }
}

/// Log records deleted per compaction pass, once history exceeds its bound by this much.
const COMPACT_CHUNK: u64 = 1024;

struct Request {
    txn: Txn,
    reply: oneshot::Sender<Result<TxnResponse, StoreError>>,
}

struct Shared {
    db: sled::Db,
    path: PathBuf,
    /// Held shared by readers and exclusively while a transaction's batch is applied.
    apply_lock: RwLock<()>,
    /// The newest revision applied to sled (durable or not).
    applied: AtomicU64,
    /// The newest durable revision, for readers to wait on.
    durable: watch::Sender<Revision>,
    /// The oldest revision still in the history log.
    oldest: AtomicU64,
    fatal: AtomicBool,
    fatal_reason: Mutex<String>,
    hub: Hub,
}

/// The sled-backed [`Store`].
pub struct SledStore {
    shared: Arc<Shared>,
    requests: Option<mpsc::Sender<Request>>,
    writer: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.shared.path)
            .field("revision", &self.revision())
            .finish()
    }
}

fn backend(e: sled::Error) -> StoreError {
    StoreError::Backend(std::io::Error::other(e))
}

/// How long [`SledStore::open`] waits for another holder of the directory's lock to let go.
///
/// sled releases its file lock from a background thread after the last handle is dropped, so a
/// store closed and reopened at once (a restart in the same process, a central that just
/// exited) can find the lock still held for some milliseconds.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// sled 0.34 reports a held lock as an `Other` I/O error with this message prefix.
fn is_lock_held(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if io.to_string().starts_with("could not acquire lock"))
}

/// Opens sled in `path`, retrying for up to `wait` while its lock is held elsewhere.
fn open_db(
    path: &Path,
    config: &StoreConfig,
    wait: std::time::Duration,
) -> Result<sled::Db, StoreError> {
    let started = std::time::Instant::now();
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(config.cache_mib * 1024 * 1024)
            .flush_every_ms(None)
            .open();
        match opened {
            Ok(db) => return Ok(db),
            Err(e) if is_lock_held(&e) => {
                if started.elapsed() >= wait {
                    return Err(StoreError::InUse {
                        path: path.to_owned(),
                        waited_ms: started.elapsed().as_millis() as u64,
                    });
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

impl SledStore {
    /// Opens (or creates) the store in directory `path`, waiting up to [`LOCK_WAIT`] for a
    /// previous holder of the directory to let go.
    pub fn open(path: &Path, config: &StoreConfig) -> Result<SledStore, StoreError> {
        SledStore::open_waiting(path, config, LOCK_WAIT)
    }

    /// [`SledStore::open`] with its own bound on the wait for the directory's lock; fails with
    /// [`StoreError::InUse`] once `lock_wait` has passed.
    pub fn open_waiting(
        path: &Path,
        config: &StoreConfig,
        lock_wait: std::time::Duration,
    ) -> Result<SledStore, StoreError> {
        let db = open_db(path, config, lock_wait)?;
        let mut log = db.scan_prefix([LOG_PREFIX]);
        let newest = match log.next_back() {
            Some(entry) => codec::log_key_revision(&entry.map_err(backend)?.0)?,
            None => Revision(0),
        };
        let oldest = match log.next() {
            Some(entry) => codec::log_key_revision(&entry.map_err(backend)?.0)?,
            None => newest,
        };
        let (durable, _) = watch::channel(newest);
        let shared = Arc::new(Shared {
            db,
            path: path.to_owned(),
            apply_lock: RwLock::new(()),
            applied: AtomicU64::new(newest.0),
            durable,
            oldest: AtomicU64::new(oldest.0.max(1)),
            fatal: AtomicBool::new(false),
            fatal_reason: Mutex::new(String::new()),
            hub: Hub::new(newest),
        });
        let (requests, receiver) = mpsc::channel(config.max_batch.max(64) * 4);
        let writer_shared = Arc::clone(&shared);
        let writer_config = config.clone();
        let writer = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run_writer(&writer_shared, receiver, &writer_config, newest))
            .map_err(StoreError::Backend)?;
        Ok(SledStore {
            shared,
            requests: Some(requests),
            writer: Some(writer),
        })
    }

    /// The directory the store lives in.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Live watch subscribers (for tests and metrics).
    pub fn watchers(&self) -> usize {
        self.shared.hub.subscribers()
    }

    /// The oldest revision still available to watches.
    pub fn oldest_revision(&self) -> Revision {
        Revision(self.shared.oldest.load(Ordering::Acquire))
    }
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.requests.take();
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

impl Shared {
    fn check_open(&self) -> Result<(), StoreError> {
        if self.fatal.load(Ordering::Acquire) {
            let reason = self
                .fatal_reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            return Err(StoreError::Fatal(std::io::Error::other(reason)));
        }
        Ok(())
    }

    fn poison(&self, reason: String) {
        tracing::error!(%reason, path = %self.path.display(), "store flush failed; refusing all further calls");
        *self.fatal_reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
        self.fatal.store(true, Ordering::Release);
    }

    fn read_lock(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.apply_lock.read().unwrap_or_else(|p| p.into_inner())
    }

    fn entry(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        match self.db.get(codec::kv_key(key)).map_err(backend)? {
            Some(raw) => codec::decode_entry(key, &raw).map(Some),
            None => Ok(None),
        }
    }

    /// Waits until everything applied up to `rev` is durable.
    async fn wait_durable(&self, rev: Revision) -> Result<(), StoreError> {
        let mut durable = self.durable.subscribe();
        loop {
            self.check_open()?;
            if *durable.borrow_and_update() >= rev {
                return Ok(());
            }
            // The writer publishes every flush; a closed channel means the store is gone.
            if durable.changed().await.is_err() {
                return Err(StoreError::Closed);
            }
        }
    }

    /// Log records in `[from, to]`, checked to be contiguous (a gap means compaction won).
    fn read_log(
        &self,
        prefix: &[u8],
        from: Revision,
        to: Revision,
    ) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        if from > to {
            return Ok(events);
        }
        let mut expected = from;
        for entry in self.db.range(codec::log_key(from)..=codec::log_key(to)) {
            let (key, raw) = entry.map_err(backend)?;
            let rev = codec::log_key_revision(&key)?;
            if rev != expected {
                break;
            }
            events.extend(
                codec::decode_events(rev, &raw)?
                    .into_iter()
                    .filter(|e| e.kv.key.starts_with(prefix)),
            );
            expected = Revision(rev.0 + 1);
        }
        if expected <= to {
            return Err(StoreError::Compacted {
                requested: from,
                oldest: Revision(self.oldest.load(Ordering::Acquire)),
            });
        }
        Ok(events)
    }
}

impl WatchSource for Shared {
    fn subscribe(&self, prefix: &[u8], from: Revision) -> Result<Subscription, StoreError> {
        self.check_open()?;
        let published = self.hub.published();
        let from = if from.0 == 0 {
            Revision(published.0 + 1)
        } else {
            from
        };
        let oldest = Revision(self.oldest.load(Ordering::Acquire));
        if from < oldest && from <= published {
            return Err(StoreError::Compacted {
                requested: from,
                oldest,
            });
        }
        let mut backlog = self.read_log(prefix, from, published)?;
        let through = published.max(Revision(from.0.saturating_sub(1)));
        let (tail, receiver) = self
            .hub
            .register(prefix, through, |a, b| self.read_log(prefix, a, b))?;
        backlog.extend(tail);
        Ok(Subscription {
            from,
            backlog,
            receiver,
        })
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        let shared = &self.shared;
        shared.check_open()?;
        check_key(key)?;
        let (found, applied) = {
            let _guard = shared.read_lock();
            (shared.entry(key)?, shared.applied.load(Ordering::Acquire))
        };
        shared.wait_durable(Revision(applied)).await?;
        Ok(found)
    }

    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, StoreError> {
        let shared = &self.shared;
        shared.check_open()?;
        let start = match &request.start_after {
            Some(after) if after.as_slice() >= request.prefix.as_slice() => {
                Bound::Excluded(codec::kv_key(after))
            }
            _ => Bound::Included(codec::kv_key(&request.prefix)),
        };
        let limit = if request.limit == 0 {
            usize::MAX
        } else {
            request.limit
        };
        let (kvs, more, applied) = {
            let _guard = shared.read_lock();
            let mut kvs = Vec::new();
            let mut more = false;
            let full_prefix = codec::kv_key(&request.prefix);
            for entry in shared.db.range::<Vec<u8>, _>((start, Bound::Unbounded)) {
                let (raw_key, raw) = entry.map_err(backend)?;
                if !raw_key.starts_with(&full_prefix) {
                    break;
                }
                if kvs.len() == limit {
                    more = true;
                    break;
                }
                kvs.push(codec::decode_entry(&raw_key[1..], &raw)?);
            }
            (kvs, more, shared.applied.load(Ordering::Acquire))
        };
        shared.wait_durable(Revision(applied)).await?;
        Ok(RangeResponse {
            kvs,
            more,
            revision: Revision(applied),
        })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError> {
        self.shared.check_open()?;
        check_txn(&txn)?;
        let requests = self.requests.as_ref().ok_or(StoreError::Closed)?;
        let (reply, answer) = oneshot::channel();
        requests
            .send(Request { txn, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    async fn watch(&self, prefix: &[u8], from: Revision) -> Result<Watch, StoreError> {
        let source: Weak<dyn WatchSource> = {
            let strong: Arc<dyn WatchSource> = self.shared.clone();
            Arc::downgrade(&strong)
        };
        Watch::start(source, prefix, from)
    }

    fn revision(&self) -> Revision {
        *self.shared.durable.borrow()
    }
}

/// The writer thread: batches, applies, flushes, answers, publishes.
fn run_writer(
    shared: &Shared,
    mut requests: mpsc::Receiver<Request>,
    config: &StoreConfig,
    mut revision: Revision,
) {
    let max_batch = if config.group_commit {
        config.max_batch
    } else {
        1
    };
    while let Some(first) = requests.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match requests.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut answers = Vec::with_capacity(batch.len());
        let mut published = Vec::new();
        let mut failure = None;
        let mut round = Round::default();
        for request in batch {
            if failure.is_some() || shared.check_open().is_err() {
                answers.push((request.reply, None));
                continue;
            }
            match evaluate(shared, &mut round, &mut revision, &request.txn) {
                Ok((response, events)) => {
                    if !events.is_empty() {
                        published.push((revision, events));
                    }
                    answers.push((request.reply, Some(Ok(response))));
                    if round.writes >= ROUND_WRITES {
                        round.hand_over(shared, revision, &mut failure);
                    }
                }
                Err(StoreError::Backend(e)) => {
                    failure = Some(e.to_string());
                    answers.push((request.reply, None));
                }
                Err(other) => answers.push((request.reply, Some(Err(other)))),
            }
        }
        if failure.is_none() {
            round.hand_over(shared, revision, &mut failure);
        }
        if failure.is_none()
            && !published.is_empty()
            && let Err(e) = shared.db.flush()
        {
            failure = Some(format!("flush of {} failed: {e}", shared.path.display()));
        }
        if let Some(reason) = failure {
            shared.poison(reason);
        }
        let fatal = shared.check_open().err().map(|e| e.to_string());
        if fatal.is_none() {
            shared.durable.send_replace(revision);
            shared.hub.publish(&published);
        }
        for (reply, answer) in answers {
            let answer = match (&fatal, answer) {
                (Some(reason), _) => Err(StoreError::Fatal(std::io::Error::other(reason.clone()))),
                (None, Some(answer)) => answer,
                (None, None) => Err(StoreError::Closed),
            };
            let _ = reply.send(answer);
        }
        if fatal.is_none() {
            compact(shared, revision, config.history);
        }
    }
}

/// A round's writes are handed to sled in batches of about this many, always at a
/// transaction's end (readers still never see half of one). Small transactions (an
/// acknowledgement, a status: two writes with the history record) share a batch; a large one
/// (64 reports, 512 intents) gets its own, as before. One batch per whole round was as fast
/// for small writes (B6) but made report ingest (1,024 transactions of 66 writes a round)
/// erratic: 53,794-63,117 reports/s saturated against 65,020-81,340 with one batch per
/// transaction, in alternating runs.
const ROUND_WRITES: usize = 64;

/// The writes of one round of the writer not yet handed to sled: consecutive transactions of a
/// group commit share one sled batch (sled's cost per applied batch, 50-100 us, was paid per
/// transaction before). Later transactions see earlier ones through `pending`.
#[derive(Default)]
struct Round {
    batch: sled::Batch,
    /// Entries and history records in `batch`.
    writes: usize,
    /// Keys written this round, with their new entries (`None`: deleted).
    pending: HashMap<Vec<u8>, Option<KeyValue>>,
}

impl Round {
    fn entry(&self, shared: &Shared, key: &[u8]) -> Result<Option<KeyValue>, StoreError> {
        match self.pending.get(key) {
            Some(written) => Ok(written.clone()),
            None => shared.entry(key),
        }
    }

    /// Applies the writes gathered so far as one atomic sled batch (readers see all of it or
    /// none), marks everything up to `newest` applied and starts an empty batch; a sled error
    /// goes into `failure`. Durable only after the writer's flush.
    fn hand_over(&mut self, shared: &Shared, newest: Revision, failure: &mut Option<String>) {
        if self.writes == 0 {
            return;
        }
        let Round { batch, .. } = std::mem::take(self);
        let _guard = shared.apply_lock.write().unwrap_or_else(|p| p.into_inner());
        match shared.db.apply_batch(batch) {
            Ok(()) => shared.applied.store(newest.0, Ordering::Release),
            Err(e) => *failure = Some(e.to_string()),
        }
    }
}

/// Evaluates one transaction against the store as the round has left it, adds its writes (and
/// its history record) to the round and returns its response and events. A transaction that
/// fails adds nothing.
fn evaluate(
    shared: &Shared,
    round: &mut Round,
    revision: &mut Revision,
    txn: &Txn,
) -> Result<(TxnResponse, Vec<Event>), StoreError> {
    let mut succeeded = true;
    for compare in &txn.compares {
        if !compare.holds(round.entry(shared, compare.key())?.as_ref()) {
            succeeded = false;
            break;
        }
    }
    let ops = if succeeded {
        &txn.success
    } else {
        &txn.failure
    };
    let next = Revision(revision.0 + 1);
    let mut events = Vec::with_capacity(ops.len());
    for op in ops {
        let previous = round.entry(shared, op.key())?;
        match (op, previous) {
            (Op::Put { key, value }, previous) => events.push(Event {
                kind: EventKind::Put,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: previous.as_ref().map_or(next, |p| p.create_revision),
                    mod_revision: next,
                    version: previous.as_ref().map_or(1, |p| p.version + 1),
                },
            }),
            (Op::Delete { key }, Some(_)) => events.push(Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: key.clone(),
                    value: Vec::new(),
                    create_revision: Revision(0),
                    mod_revision: next,
                    version: 0,
                },
            }),
            (Op::Delete { .. }, None) => {}
        }
    }
    if events.is_empty() {
        return Ok((
            TxnResponse {
                succeeded,
                revision: *revision,
            },
            events,
        ));
    }
    for event in &events {
        let key = &event.kv.key;
        match event.kind {
            EventKind::Put => {
                round
                    .batch
                    .insert(codec::kv_key(key), codec::encode_entry(&event.kv));
                round.writes += 1;
                round.pending.insert(key.clone(), Some(event.kv.clone()));
            }
            EventKind::Delete => {
                round.batch.remove(codec::kv_key(key));
                round.writes += 1;
                round.pending.insert(key.clone(), None);
            }
        }
    }
    round
        .batch
        .insert(&codec::log_key(next)[..], codec::encode_events(&events));
    round.writes += 1;
    *revision = next;
    Ok((
        TxnResponse {
            succeeded,
            revision: next,
        },
        events,
    ))
}

/// Drops history older than `history` revisions, a chunk at a time. Not flushed on its own:
/// losing a compaction in a crash only keeps more history.
fn compact(shared: &Shared, newest: Revision, history: u64) {
    let oldest = shared.oldest.load(Ordering::Acquire);
    let keep_from = newest.0.saturating_sub(history).max(1);
    if keep_from < oldest + COMPACT_CHUNK {
        return;
    }
    let mut batch = sled::Batch::default();
    for rev in oldest..keep_from {
        batch.remove(&codec::log_key(Revision(rev))[..]);
    }
    // Raise the bound first, so a subscriber never reads a half-compacted range as complete.
    shared.oldest.store(keep_from, Ordering::Release);
    if let Err(e) = shared.db.apply_batch(batch) {
        tracing::warn!(error = %e, "store history compaction failed; will retry");
        shared.oldest.store(oldest, Ordering::Release);
    }
}
