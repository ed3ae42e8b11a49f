//! Central's durable state, behind a `Store` trait shaped like etcd's key-value API.
//!
//! Keys are bytes; every write (a put, a delete or a whole transaction) gets the next store
//! revision. Reads can range over a prefix; watches deliver every change under a prefix in
//! revision order, starting from any revision still in the history.
//!
//! Guarantees every implementation gives (checked by [`conformance`]):
//! - a write is acknowledged only after it is durable; a durability failure is fatal: the
//!   store refuses every later call with [`StoreError::Fatal`];
//! - a transaction's compares and writes are atomic: readers, watchers and a restart after a
//!   crash see all of it or none of it;
//! - revisions only grow, also across restarts;
//! - reads never return data that is not yet durable;
//! - a watch delivers every change under its prefix exactly once and in order, or ends with
//!   [`StoreError::Compacted`] if it falls behind the retained history.
//!
//! The embedded default is [`SledStore`]; [`tables`] adds typed accessors on top, and
//! [`schema`] says what every stored record is, where it lives and how it is encoded.
//!
//! This crate depends on `meridian-common` and `meridian-proto` only among Meridian's crates:
//! it knows records, never the services that write them, and never depends on central, the
//! planner, RPC (tonic) or QUIC.

mod codec;
pub mod commit_rate;
pub mod conformance;
pub mod schema;
mod sled_store;
pub mod tables;
mod watch;

use std::fmt;

pub use schema::Tables;
pub use sled_store::{SledStore, StoreConfig};
pub use watch::Watch;

/// A store revision: the count of writes ever committed. Only grows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision(pub u64);

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Largest key the store accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 4096;
/// Largest value the store accepts, in bytes.
pub const MAX_VALUE_BYTES: usize = 4 * 1024 * 1024;
/// Most compares plus writes in one transaction.
pub const MAX_TXN_OPS: usize = 1024;

/// A key with its value and its bookkeeping revisions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Revision of the write that created this key (since its last deletion).
    pub create_revision: Revision,
    /// Revision of the last write to this key.
    pub mod_revision: Revision,
    /// Number of writes since creation; 1 after the first put.
    pub version: u64,
}

/// What a put or delete expects to find, for compare-and-swap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No condition.
    Any,
    /// The key must not exist.
    Absent,
    /// The key must exist with exactly this modification revision.
    ModRevision(Revision),
}

/// One condition of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compare {
    /// The key exists.
    Exists(Vec<u8>),
    /// The key does not exist.
    Absent(Vec<u8>),
    /// The key exists and was last modified at this revision.
    ModRevision(Vec<u8>, Revision),
    /// The key exists with this version.
    Version(Vec<u8>, u64),
    /// The key exists with this value.
    Value(Vec<u8>, Vec<u8>),
}

impl Compare {
    /// The key the condition looks at.
    pub fn key(&self) -> &[u8] {
        match self {
            Compare::Exists(k)
            | Compare::Absent(k)
            | Compare::ModRevision(k, _)
            | Compare::Version(k, _)
            | Compare::Value(k, _) => k,
        }
    }

    /// Whether the condition holds for the current entry of its key.
    pub fn holds(&self, current: Option<&KeyValue>) -> bool {
        match (self, current) {
            (Compare::Exists(_), found) => found.is_some(),
            (Compare::Absent(_), found) => found.is_none(),
            (Compare::ModRevision(_, rev), Some(kv)) => kv.mod_revision == *rev,
            (Compare::Version(_, v), Some(kv)) => kv.version == *v,
            (Compare::Value(_, value), Some(kv)) => kv.value == *value,
            (_, None) => false,
        }
    }
}

/// One write of a transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Put { key: Vec<u8>, value: Vec<u8> },
    Delete { key: Vec<u8> },
}

impl Op {
    /// The key the write touches.
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// If every compare holds, apply `success`, else apply `failure`; atomically, as one revision.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Txn {
    pub compares: Vec<Compare>,
    pub success: Vec<Op>,
    pub failure: Vec<Op>,
}

impl Txn {
    /// An empty transaction.
    pub fn new() -> Self {
        Txn::default()
    }
    /// Adds a condition.
    pub fn when(mut self, compare: Compare) -> Self {
        self.compares.push(compare);
        self
    }
    /// Adds a write for the success branch.
    pub fn then(mut self, op: Op) -> Self {
        self.success.push(op);
        self
    }
    /// Adds a write for the failure branch.
    pub fn otherwise(mut self, op: Op) -> Self {
        self.failure.push(op);
        self
    }
}

/// The outcome of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxnResponse {
    /// Whether every compare held (and so `success` was applied).
    pub succeeded: bool,
    /// The store revision after the transaction: its own revision if it wrote anything.
    pub revision: Revision,
}

/// A prefix read, in key order, with optional pagination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeRequest {
    pub prefix: Vec<u8>,
    /// Only keys strictly after this one (the last key of the previous page).
    pub start_after: Option<Vec<u8>>,
    /// At most this many entries; 0 means no limit.
    pub limit: usize,
}

impl RangeRequest {
    /// Every key under `prefix`.
    pub fn prefix(prefix: impl Into<Vec<u8>>) -> Self {
        RangeRequest {
            prefix: prefix.into(),
            ..Default::default()
        }
    }
}

/// The entries of a range read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RangeResponse {
    pub kvs: Vec<KeyValue>,
    /// More entries follow the last one returned.
    pub more: bool,
    /// The store revision when the read started.
    pub revision: Revision,
}

/// Whether a change wrote or removed its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    Put,
    Delete,
}

/// One change delivered by a watch. For a delete, `kv.value` is empty, `kv.version` is 0 and
/// `kv.mod_revision` is the deleting revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub kind: EventKind,
    pub kv: KeyValue,
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A put or delete's expectation did not hold.
    #[error("conflict on key {key}: expected {expected:?}, found revision {found:?}")]
    Conflict {
        key: String,
        expected: Expect,
        found: Option<Revision>,
    },
    /// The request breaks a limit or is malformed; the message says which.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// A watch asked for history that has been compacted away.
    #[error("revision {requested} is compacted; the oldest retained revision is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    /// Stored bytes do not decode; the store is damaged or was written by a newer version.
    #[error("corrupt entry at {key}: {reason}")]
    Corrupt { key: String, reason: String },
    /// The store could not make writes durable and refuses every further call.
    #[error("store failed and must be restarted")]
    Fatal(#[source] std::io::Error),
    /// The store was shut down.
    #[error("store is closed")]
    Closed,
    /// Another process (or a handle in this one) holds the store directory's lock.
    #[error(
        "store directory {} is in use by another process (its lock was still held after {waited_ms} ms); stop the other central or choose another data directory",
        path.display()
    )]
    InUse {
        path: std::path::PathBuf,
        waited_ms: u64,
    },
    /// The backend reported an error.
    #[error("store backend error")]
    Backend(#[source] std::io::Error),
}

/// A key rendered for messages: UTF-8 where possible, escaped otherwise, cut at 128 bytes.
pub fn display_key(key: &[u8]) -> String {
    let cut = &key[..key.len().min(128)];
    let mut s = String::from_utf8_lossy(cut).into_owned();
    if key.len() > 128 {
        s.push_str("...");
    }
    s
}

/// The etcd-shaped store every central component writes through.
#[async_trait::async_trait]
pub trait Store: Send + Sync + fmt::Debug {
    /// The entry at `key`, if any.
    async fn get(&self, key: &[u8]) -> Result<Option<KeyValue>, StoreError>;

    /// Entries under a prefix, in key order.
    async fn range(&self, request: RangeRequest) -> Result<RangeResponse, StoreError>;

    /// Writes `value` at `key` if `expect` holds; returns the write's revision.
    async fn put(&self, key: &[u8], value: &[u8], expect: Expect) -> Result<Revision, StoreError> {
        let mut txn = Txn::new().then(Op::Put {
            key: key.to_vec(),
            value: value.to_vec(),
        });
        if let Some(compare) = expect_compare(key, expect) {
            txn = txn.when(compare);
        }
        let response = self.txn(txn).await?;
        if response.succeeded {
            return Ok(response.revision);
        }
        let found = self.get(key).await?.map(|kv| kv.mod_revision);
        Err(StoreError::Conflict {
            key: display_key(key),
            expected: expect,
            found,
        })
    }

    /// Removes `key` if `expect` holds; returns the deletion's revision, or `None` when there
    /// was nothing to delete (no revision is used then).
    async fn delete(&self, key: &[u8], expect: Expect) -> Result<Option<Revision>, StoreError> {
        let existing = match expect {
            Expect::Absent => return Ok(None),
            _ => Compare::Exists(key.to_vec()),
        };
        let mut txn = Txn::new()
            .when(existing)
            .then(Op::Delete { key: key.to_vec() });
        if let Some(compare) = expect_compare(key, expect) {
            txn = txn.when(compare);
        }
        let response = self.txn(txn).await?;
        if response.succeeded {
            return Ok(Some(response.revision));
        }
        if expect == Expect::Any {
            // The only compare was "exists": there was nothing to delete.
            return Ok(None);
        }
        let found = self.get(key).await?.map(|kv| kv.mod_revision);
        Err(StoreError::Conflict {
            key: display_key(key),
            expected: expect,
            found,
        })
    }

    /// Applies a transaction atomically.
    async fn txn(&self, txn: Txn) -> Result<TxnResponse, StoreError>;

    /// Every change under `prefix` from revision `from` on (0 or 1: from the oldest retained).
    async fn watch(&self, prefix: &[u8], from: Revision) -> Result<Watch, StoreError>;

    /// The newest durable revision.
    fn revision(&self) -> Revision;
}

fn expect_compare(key: &[u8], expect: Expect) -> Option<Compare> {
    match expect {
        Expect::Any => None,
        Expect::Absent => Some(Compare::Absent(key.to_vec())),
        Expect::ModRevision(rev) => Some(Compare::ModRevision(key.to_vec(), rev)),
    }
}

/// Checks a transaction against the limits every backend enforces.
pub fn check_txn(txn: &Txn) -> Result<(), StoreError> {
    let ops = txn.compares.len() + txn.success.len() + txn.failure.len();
    if ops > MAX_TXN_OPS {
        return Err(StoreError::InvalidRequest(format!(
            "transaction has {ops} compares and writes; at most {MAX_TXN_OPS} are allowed"
        )));
    }
    for key in txn.compares.iter().map(Compare::key) {
        check_key(key)?;
    }
    for branch in [&txn.success, &txn.failure] {
        let mut keys: Vec<&[u8]> = Vec::with_capacity(branch.len());
        for op in branch {
            check_key(op.key())?;
            if let Op::Put { value, .. } = op
                && value.len() > MAX_VALUE_BYTES
            {
                return Err(StoreError::InvalidRequest(format!(
                    "value for key {} is {} bytes; at most {MAX_VALUE_BYTES} are allowed",
                    display_key(op.key()),
                    value.len()
                )));
            }
            keys.push(op.key());
        }
        keys.sort_unstable();
        if let Some(pair) = keys.windows(2).find(|w| w[0] == w[1]) {
            return Err(StoreError::InvalidRequest(format!(
                "key {} is written twice in one transaction branch",
                display_key(pair[0])
            )));
        }
    }
    Ok(())
}

/// Checks one key against the limits.
pub fn check_key(key: &[u8]) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(StoreError::InvalidRequest("key is empty".into()));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(StoreError::InvalidRequest(format!(
            "key is {} bytes; at most {MAX_KEY_BYTES} are allowed",
            key.len()
        )));
    }
    Ok(())
}
