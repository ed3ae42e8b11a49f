//! Central's hash-chained audit log (`audit/` table): each record carries the hash of the one
//! before it, so an edit, a deletion or a reordering breaks the chain. The head of the chain
//! (last sequence and hash) is also written to `audit-head`, in the same transaction as the
//! record, so deleting records from the end is detected too. Someone able to rewrite the whole
//! store can rewrite the chain and its head together: [`Auditor::verify`] returns the head's
//! hash so an operator can anchor it outside central (a ticket, a log shipper).
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

use meridian_store::Tables;
use meridian_store::schema::AUDIT_HEAD_KEY;
use meridian_store::tables::{Table, TableError};
use meridian_store::{Compare, Op, Txn};

/// What [`Auditor::verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The chain is whole: this many records, ending in this hash.
    Intact { records: u64, head: Vec<u8> },
    /// The chain is broken at this sequence (or, for a cut-off end, just after the last one).
    Broken { at: u64, why: &'static str },
}

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
            let put = Table::<proto::AuditRecord>::put_op(&record)?;
            let txn = Txn::new()
                .when(Compare::Absent(put.key().to_vec()))
                .then(put)
                .then(Op::Put {
                    key: AUDIT_HEAD_KEY.to_vec(),
                    value: head_value(record.seq, &record.hash),
                });
            match self.tables.store().txn(txn).await {
                Ok(r) if r.succeeded => {
                    *guard = Some((record.seq, record.hash));
                    return Ok(record.seq);
                }
                Ok(_) => *guard = None,
                Err(e) => {
                    *guard = None;
                    return Err(e.into());
                }
            }
        }
        Err(TableError::Conflict {
            table: "audit",
            key: "(head)".into(),
            current: self.tables.store().revision(),
        })
    }

    /// Checks the whole chain against itself and against the head record.
    pub async fn verify(&self) -> Result<Verdict, TableError> {
        Ok(self.read_verified().await?.1)
    }

    /// Every record in chain order, with the chain's verdict (one read of the log).
    pub async fn read_verified(&self) -> Result<(Vec<proto::AuditRecord>, Verdict), TableError> {
        let records = list_records::<proto::AuditRecord>(&self.tables, "audit/").await?;
        let head = self
            .tables
            .store()
            .get(AUDIT_HEAD_KEY)
            .await?
            .map(|kv| kv.value);
        let verdict = verify_chain(&records, head.as_deref());
        Ok((records, verdict))
    }
}

fn head_value(seq: u64, hash: &[u8]) -> Vec<u8> {
    format!("{seq}:{}", hex::encode(hash)).into_bytes()
}

/// Checks a chain read in key order against the stored head (`None`: no head written).
pub fn verify_chain(records: &[proto::AuditRecord], head: Option<&[u8]>) -> Verdict {
    let mut prev = vec![0u8; 32];
    for (i, r) in records.iter().enumerate() {
        let expected = i as u64 + 1;
        let why = if r.seq != expected {
            Some("a record is missing or out of order")
        } else if r.prev_hash != prev {
            Some("the record does not follow the one before it")
        } else if r.hash != record_hash(r) {
            Some("the record was edited")
        } else {
            None
        };
        if let Some(why) = why {
            return Verdict::Broken {
                at: expected.min(r.seq),
                why,
            };
        }
        prev = r.hash.clone();
    }
    let last = records.last().map(|r| (r.seq, r.hash.as_slice()));
    let expected_head = last.map(|(seq, hash)| head_value(seq, hash));
    if head.map(<[u8]>::to_vec) != expected_head {
        return Verdict::Broken {
            at: last.map_or(1, |(seq, _)| seq + 1),
            why: "records after the last one were removed (the head names a later record)",
        };
    }
    Verdict::Intact {
        records: records.len() as u64,
        head: last.map(|(_, h)| h.to_vec()).unwrap_or_default(),
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
            .range(meridian_store::RangeRequest {
                prefix: prefix.as_bytes().to_vec(),
                start_after: after.take(),
                limit: 1000,
            })
            .await?;
        for kv in &page.kvs {
            out.push(
                M::decode(kv.value.as_slice()).map_err(|e| TableError::Corrupt {
                    table: "audit",
                    key: meridian_store::display_key(&kv.key),
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
