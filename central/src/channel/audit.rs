//! Appending to central's hash-chained audit log (`audit/` table): each record carries the
//! hash of the one before it, so an edit, a deletion or a reordering breaks the chain.
//!
//! Appends from this process are serialised by a lock around the cached head of the chain;
//! each append is a create-if-absent at the next sequence, so a concurrent writer in another
//! process makes the append re-read the head and retry instead of forking the chain.

use std::sync::Arc;

use meridian_common::ids::Timestamp;
use meridian_proto::v1 as proto;
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use crate::store::tables::{TableError, Tables};

/// What the audited action came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Done.
    Success,
    /// Not allowed (a refused token, a revoked site).
    Denied,
    /// Allowed but failed.
    Failed,
}

impl From<Outcome> for proto::AuditResult {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => proto::AuditResult::Success,
            Outcome::Denied => proto::AuditResult::Denied,
            Outcome::Failed => proto::AuditResult::Failed,
        }
    }
}

/// One entry to append.
#[derive(Debug, Clone)]
pub struct AuditEntry<'a> {
    /// Who acted: `user:alice`, `site:fra-1`, `operator-cli`, `system`.
    pub actor: &'a str,
    /// What was done: `channel/Enroll`, `tokens/Create`, ...
    pub action: &'a str,
    /// What it was done to: `site/fra-1`, `token/btk-...`.
    pub object: &'a str,
    /// How it ended.
    pub outcome: Outcome,
    /// Detail (the error for a refusal).
    pub detail: &'a str,
}

/// The sequence and hash of the last record of the chain.
type Head = Option<(u64, Vec<u8>)>;

/// Appends audit records.
#[derive(Debug, Clone)]
pub struct Auditor {
    tables: Tables,
    head: Arc<Mutex<Head>>,
}

/// The hash of a record: SHA-256 of its encoding with `hash` empty.
pub fn record_hash(record: &proto::AuditRecord) -> Vec<u8> {
    let mut r = record.clone();
    r.hash.clear();
    Sha256::digest(r.encode_to_vec()).to_vec()
}

impl Auditor {
    /// An auditor writing to `tables`.
    pub fn new(tables: Tables) -> Self {
        Auditor {
            tables,
            head: Arc::new(Mutex::new(None)),
        }
    }

    async fn load_head(&self) -> Result<(u64, Vec<u8>), TableError> {
        let records = list_records::<proto::AuditRecord>(&self.tables, "audit/").await?;
        Ok(records
            .last()
            .map_or((0, vec![0u8; 32]), |r| (r.seq, r.hash.clone())))
    }

    /// Appends one record; returns its sequence.
    pub async fn append(&self, entry: AuditEntry<'_>, now: Timestamp) -> Result<u64, TableError> {
        let mut guard = self.head.lock().await;
        for _ in 0..16 {
            let (seq, prev_hash) = match guard.as_ref() {
                Some(h) => h.clone(),
                None => self.load_head().await?,
            };
            let mut record = proto::AuditRecord {
                seq: seq + 1,
                at: now.as_millis(),
                actor: entry.actor.to_owned(),
                action: entry.action.to_owned(),
                object: entry.object.to_owned(),
                result: proto::AuditResult::from(entry.outcome) as i32,
                detail: entry.detail.chars().take(1024).collect(),
                prev_hash,
                hash: Vec::new(),
            };
            record.hash = record_hash(&record);
            match self.tables.audit().create(&record).await {
                Ok(_) => {
                    *guard = Some((record.seq, record.hash));
                    return Ok(record.seq);
                }
                Err(TableError::AlreadyExists { .. }) => *guard = None,
                Err(e) => {
                    *guard = None;
                    return Err(e);
                }
            }
        }
        Err(TableError::Conflict {
            table: "audit",
            key: "(head)".into(),
            current: self.tables.store().revision(),
        })
    }

    /// Checks the whole chain; returns the number of records or the first broken sequence.
    pub async fn verify(&self) -> Result<Result<u64, u64>, TableError> {
        let records = list_records::<proto::AuditRecord>(&self.tables, "audit/").await?;
        let mut prev = vec![0u8; 32];
        for (i, r) in records.iter().enumerate() {
            if r.seq != i as u64 + 1 || r.prev_hash != prev || r.hash != record_hash(r) {
                return Ok(Err(r.seq));
            }
            prev = r.hash.clone();
        }
        Ok(Ok(records.len() as u64))
    }
}

/// Every protobuf record under a table prefix, in key order (paged range reads).
///
/// (`Table::list` takes `Option<&dyn TableKeyDyn>`, which is not `Sync`, so its futures cannot
/// be spawned; this reads the raw range instead.)
pub async fn list_records<M: Message + Default>(
    tables: &Tables,
    prefix: &str,
) -> Result<Vec<M>, TableError> {
    let mut out = Vec::new();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let page = tables
            .store()
            .range(crate::store::RangeRequest {
                prefix: prefix.as_bytes().to_vec(),
                start_after: after.take(),
                limit: 1000,
            })
            .await?;
        for kv in &page.kvs {
            out.push(
                M::decode(kv.value.as_slice()).map_err(|e| TableError::Corrupt {
                    table: "audit",
                    key: crate::store::display_key(&kv.key),
                    source: e.into(),
                })?,
            );
        }
        match (page.more, page.kvs.last()) {
            (true, Some(last)) => after = Some(last.key.clone()),
            _ => return Ok(out),
        }
    }
}
