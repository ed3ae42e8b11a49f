//! The agent's durable state: its identity (key, certificate, CA), the intent it holds, the
//! report buffer and the reconciler's progress records, in a [`journal`] (an append-only,
//! checksummed file). Every write is one atomic batch, on disk before the call returns.
//!
//! - **Intent**: [`AgentStore::store_intent`] refuses a generation lower than the one held
//!   (fencing) and persists a newer one before the agent acknowledges it.
//! - **Reports**: [`AgentStore::append_report`] assigns the next sequence number in the same
//!   batch that stores the report. A state report replaces the buffered report about the
//!   same resource (compaction); past `max` reports the oldest is dropped and counted.
//!   [`AgentStore::trim`] removes what central acknowledged, and nothing else.
//! - **Reconciler progress**: [`AgentStore::commit_progress`] writes the reconciler's
//!   per-resource records and appends the reports describing the step in one batch, so
//!   after a crash a step is either recorded and reported, or neither.
//!
//! The simulator's agents use [`AgentStore::in_memory`]: the same code without the file.

pub mod journal;

use std::collections::HashMap;
use std::sync::Arc;

use journal::{Guard, Journal, JournalError, Op, Tree};
use meridian_common::ids::{Generation, Sequence, SiteId, Timestamp};
use meridian_common::model::{ReportBody, SiteIntent, SiteReport};
use meridian_proto::v1 as proto;
use prost::Message;
use serde::{Deserialize, Serialize};

/// Why the agent's store failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentStoreError {
    #[error("agent database error")]
    Journal(#[from] JournalError),
    #[error(
        "{path} holds a database from an older agent (sled); move it away and enrol the site again"
    )]
    OldFormat { path: std::path::PathBuf },
    #[error("agent database entry {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// A report central would refuse (and so end every session it is sent on): not buffered.
    #[error("report refused before buffering")]
    BadReport(#[source] meridian_common::convert::ConvertError),
}

/// What the agent holds to talk to central.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// The site.
    pub site: SiteId,
    /// The agent's private key, PEM.
    pub key_pem: String,
    /// Its site certificate, PEM.
    pub cert_pem: String,
    /// Central's CA, PEM.
    pub ca_pem: String,
    /// When the certificate was received, unix millis.
    pub issued_at_ms: i64,
    /// When it expires, unix millis.
    pub not_after_ms: i64,
    /// Central's addresses.
    pub central_addresses: Vec<String>,
    /// SHA-256 (hex) of the bootstrap token used to enrol, so a new bootstrap file is noticed.
    pub token_sha256: String,
}

impl Identity {
    /// When to renew: at 2/3 of the certificate's lifetime.
    pub fn renew_at_ms(&self) -> i64 {
        self.issued_at_ms + (self.not_after_ms - self.issued_at_ms) * 2 / 3
    }
}

/// What storing a pushed intent did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntentOutcome {
    /// Newer: persisted.
    Stored,
    /// The same generation is already held.
    AlreadyHeld,
    /// Older than the one held: refused (fencing).
    Stale { held: Generation },
}

/// The agent's journal-backed state; clones share it.
#[derive(Debug, Clone)]
pub struct AgentStore {
    journal: Arc<Journal>,
}

const IDENTITY: &[u8] = b"identity";
const INTENT: &[u8] = b"intent";
const APPLIED: &[u8] = b"applied";
const NEXT_SEQ: &[u8] = b"next_seq";
const ACKED: &[u8] = b"acked";
const DROPPED: &[u8] = b"dropped";

fn u64_of(v: Option<&Vec<u8>>) -> u64 {
    v.and_then(|b| b.as_slice().try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn meta_u64(g: &Guard<'_>, key: &[u8]) -> u64 {
    u64_of(g.get(Tree::Meta, key))
}

fn put_u64(key: &[u8], value: u64) -> Op {
    Op::put(Tree::Meta, key, value.to_be_bytes())
}

impl AgentStore {
    /// Opens (or creates) the agent's journal in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, AgentStoreError> {
        // sled's files (`conf`, `db`) and no journal: a data directory of an older agent.
        if dir.join("db").exists() && !dir.join(journal::FILE_NAME).exists() {
            return Err(AgentStoreError::OldFormat {
                path: dir.to_owned(),
            });
        }
        Ok(AgentStore {
            journal: Arc::new(Journal::open(dir)?),
        })
    }

    /// A store kept only in memory (simulated agents, which never restart within a run).
    pub fn in_memory() -> Self {
        AgentStore {
            journal: Arc::new(Journal::in_memory()),
        }
    }

    /// The stored identity, if enrolled.
    pub fn identity(&self) -> Result<Option<Identity>, AgentStoreError> {
        match self.journal.lock().get(Tree::Meta, IDENTITY) {
            Some(raw) => Ok(Some(serde_json::from_slice(raw).map_err(|e| {
                AgentStoreError::Corrupt {
                    key: "identity".into(),
                    reason: e.to_string(),
                }
            })?)),
            None => Ok(None),
        }
    }

    /// Stores the identity durably.
    pub fn set_identity(&self, identity: &Identity) -> Result<(), AgentStoreError> {
        let raw = serde_json::to_vec(identity).expect("plain record serialises");
        self.journal
            .lock()
            .commit(vec![Op::put(Tree::Meta, IDENTITY, raw)])?;
        Ok(())
    }

    /// The intent held, if any.
    pub fn intent(&self) -> Result<Option<SiteIntent>, AgentStoreError> {
        intent_in(&self.journal.lock())
    }

    /// The generation of the intent held (0: none).
    pub fn held_generation(&self) -> Result<Generation, AgentStoreError> {
        Ok(self.intent()?.map_or(Generation::new(0), |i| i.generation))
    }

    /// Persists `intent` if it is newer than the one held; refuses an older one.
    pub fn store_intent(&self, intent: &SiteIntent) -> Result<IntentOutcome, AgentStoreError> {
        let mut g = self.journal.lock();
        let held = intent_in(&g)?.map_or(Generation::new(0), |i| i.generation);
        if intent.generation < held {
            return Ok(IntentOutcome::Stale { held });
        }
        if intent.generation == held {
            return Ok(IntentOutcome::AlreadyHeld);
        }
        let wire = proto::SiteIntent::from(intent.clone());
        g.commit(vec![Op::put(Tree::Meta, INTENT, wire.encode_to_vec())])?;
        Ok(IntentOutcome::Stored)
    }

    /// The generation last applied (0: none).
    pub fn applied_generation(&self) -> Result<Generation, AgentStoreError> {
        Ok(Generation::new(meta_u64(&self.journal.lock(), APPLIED)))
    }

    /// Records that `generation` was applied.
    pub fn set_applied(&self, generation: Generation) -> Result<(), AgentStoreError> {
        self.journal
            .lock()
            .commit(vec![put_u64(APPLIED, generation.get())])?;
        Ok(())
    }

    /// Appends a report durably; returns its sequence number.
    pub fn append_report(
        &self,
        site: &SiteId,
        generation: Generation,
        at: Timestamp,
        body: ReportBody,
        max: usize,
    ) -> Result<Sequence, AgentStoreError> {
        let seqs = self.commit_progress(site, generation, at, &[body], max, &[])?;
        Ok(seqs[0])
    }

    /// A reconciler progress record.
    pub fn progress(&self, key: &[u8]) -> Result<Option<Vec<u8>>, AgentStoreError> {
        Ok(self.journal.lock().get(Tree::Progress, key).cloned())
    }

    /// Writes reconciler progress records (`None` removes one) and appends `bodies` as reports,
    /// all in one batch. Past `max` buffered reports the oldest are dropped and counted, in
    /// the same batch. Returns the reports' sequence numbers.
    pub fn commit_progress(
        &self,
        site: &SiteId,
        generation: Generation,
        at: Timestamp,
        bodies: &[ReportBody],
        max: usize,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<Vec<Sequence>, AgentStoreError> {
        // Central converts every report it receives and ends the session on one that does not
        // convert; one such report in the buffer would block every later one. Check each body
        // the same way (the site, sequence and time do not affect the check).
        for body in bodies {
            let probe = SiteReport {
                site: site.clone(),
                sequence: Sequence::new(1),
                generation,
                at,
                body: body.clone(),
            };
            SiteReport::try_from(proto::SiteReport::from(probe))
                .map_err(AgentStoreError::BadReport)?;
        }
        let mut g = self.journal.lock();
        let mut ops = Vec::new();
        // The buffer as it will be after this batch, to apply the bound.
        let mut removed: Vec<Vec<u8>> = Vec::new();
        let mut seqs = Vec::with_capacity(bodies.len());
        let mut seq = meta_u64(&g, NEXT_SEQ).max(1);
        let mut indexed: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        for body in bodies {
            let report = SiteReport {
                site: site.clone(),
                sequence: Sequence::new(seq),
                generation,
                at,
                body: body.clone(),
            };
            let seq_key = seq.to_be_bytes().to_vec();
            if let Some(key) = body
                .resource_key()
                .map(|k| serde_json::to_vec(&k).expect("keys serialise"))
            {
                let old = indexed
                    .get(&key)
                    .cloned()
                    .or_else(|| g.get(Tree::Index, &key).cloned());
                if let Some(old) = old {
                    ops.push(Op::delete(Tree::Reports, old.clone()));
                    removed.push(old);
                }
                indexed.insert(key.clone(), seq_key.clone());
                ops.push(Op::put(Tree::Index, key, seq_key.clone()));
            }
            let wire = proto::SiteReport::from(report);
            ops.push(Op::put(Tree::Reports, seq_key, wire.encode_to_vec()));
            seqs.push(Sequence::new(seq));
            seq += 1;
        }
        ops.push(put_u64(NEXT_SEQ, seq));
        for (key, value) in records {
            ops.push(match value {
                Some(v) => Op::put(Tree::Progress, key.clone(), v.clone()),
                None => Op::delete(Tree::Progress, key.clone()),
            });
        }
        // The bound: the oldest beyond `max` go, in the same batch.
        let after = g.len(Tree::Reports) + bodies.len() - removed.len();
        if after > max {
            let excess = after - max;
            // (sequence key, the index key to clear with it)
            let mut doomed: Vec<(Vec<u8>, Option<Vec<u8>>)> = g
                .range(Tree::Reports, ..)
                .filter(|(k, _)| !removed.iter().any(|r| r.as_slice() == *k))
                .take(excess)
                .map(|(k, v)| {
                    let key = resource_key_of(v)
                        .filter(|key| g.get(Tree::Index, key).is_some_and(|s| s == k));
                    (k.to_vec(), key)
                })
                .collect();
            // When the batch itself is larger than `max`, its own oldest reports go too.
            let short = excess - doomed.len();
            for seq in seqs.iter().take(short) {
                let k = seq.get().to_be_bytes().to_vec();
                let key = indexed
                    .iter()
                    .find(|(_, s)| **s == k)
                    .map(|(key, _)| key.clone());
                doomed.push((k, key));
            }
            for (k, key) in &doomed {
                ops.push(Op::delete(Tree::Reports, k.clone()));
                if let Some(key) = key {
                    ops.push(Op::delete(Tree::Index, key.clone()));
                }
            }
            let total = meta_u64(&g, DROPPED) + doomed.len() as u64;
            ops.push(put_u64(DROPPED, total));
            tracing::warn!(
                dropped = doomed.len(),
                total,
                "report buffer full; dropped the oldest reports"
            );
        }
        g.commit(ops)?;
        Ok(seqs)
    }

    /// Up to `limit` buffered reports with a sequence above `after`, in order.
    pub fn pending(
        &self,
        after: Sequence,
        limit: usize,
    ) -> Result<Vec<proto::SiteReport>, AgentStoreError> {
        let start = after.get().saturating_add(1).to_be_bytes().to_vec();
        let g = self.journal.lock();
        g.range(Tree::Reports, start..)
            .take(limit)
            .map(|(_, v)| {
                proto::SiteReport::decode(v).map_err(|e| AgentStoreError::Corrupt {
                    key: "reports".into(),
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// Removes every buffered report up to `ack` (central stored them), with the mark, in one
    /// batch.
    pub fn trim(&self, ack: Sequence) -> Result<(), AgentStoreError> {
        let mut g = self.journal.lock();
        let acked = meta_u64(&g, ACKED).max(ack.get());
        let end = acked.saturating_add(1).to_be_bytes().to_vec();
        let mut ops = vec![put_u64(ACKED, acked)];
        for (k, v) in g.range(Tree::Reports, ..end) {
            ops.push(Op::delete(Tree::Reports, k));
            if let Some(key) = resource_key_of(v)
                && g.get(Tree::Index, &key).is_some_and(|s| s == k)
            {
                ops.push(Op::delete(Tree::Index, key));
            }
        }
        g.commit(ops)?;
        Ok(())
    }

    /// Highest sequence central acknowledged.
    pub fn last_acked(&self) -> Result<Sequence, AgentStoreError> {
        Ok(Sequence::new(meta_u64(&self.journal.lock(), ACKED)))
    }

    /// Reports dropped by the bound, ever.
    pub fn dropped(&self) -> Result<u64, AgentStoreError> {
        Ok(meta_u64(&self.journal.lock(), DROPPED))
    }

    /// Reports buffered now.
    pub fn buffered(&self) -> usize {
        self.journal.lock().len(Tree::Reports)
    }

    /// The last sequence number assigned (0: none).
    pub fn last_sequence(&self) -> Result<Sequence, AgentStoreError> {
        Ok(Sequence::new(
            meta_u64(&self.journal.lock(), NEXT_SEQ)
                .max(1)
                .saturating_sub(1),
        ))
    }

    /// How many buffered reports there are per resource key (for tests of compaction).
    pub fn buffered_by_resource(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for (_, v) in self.journal.lock().range(Tree::Reports, ..) {
            if let Ok(wire) = proto::SiteReport::decode(v)
                && let Ok(r) = SiteReport::try_from(wire)
            {
                let key = r
                    .resource_key()
                    .map_or_else(|| "event".to_owned(), |k| format!("{k:?}"));
                *out.entry(key).or_default() += 1;
            }
        }
        out
    }
}

fn intent_in(g: &Guard<'_>) -> Result<Option<SiteIntent>, AgentStoreError> {
    let Some(raw) = g.get(Tree::Meta, INTENT) else {
        return Ok(None);
    };
    let corrupt = |reason: String| AgentStoreError::Corrupt {
        key: "intent".into(),
        reason,
    };
    let wire = proto::SiteIntent::decode(raw.as_slice()).map_err(|e| corrupt(e.to_string()))?;
    Ok(Some(
        SiteIntent::try_from(wire).map_err(|e| corrupt(e.to_string()))?,
    ))
}

/// The index key of a buffered report's resource, if it is a state report.
fn resource_key_of(raw: &[u8]) -> Option<Vec<u8>> {
    let report = SiteReport::try_from(proto::SiteReport::decode(raw).ok()?).ok()?;
    let key = report.resource_key()?;
    Some(serde_json::to_vec(&key).expect("keys serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::model::Severity;

    fn site() -> SiteId {
        SiteId::parse("edge-1").unwrap()
    }

    fn event(n: u32) -> ReportBody {
        ReportBody::Event {
            severity: Severity::Info,
            resource: "site".into(),
            message: format!("event {n}"),
        }
    }

    fn metrics(v: f64) -> ReportBody {
        ReportBody::Metrics {
            gpu_utilisation_pct: v,
            power_watts: 1.0,
            period: None,
        }
    }

    fn intent(generation: u64) -> SiteIntent {
        SiteIntent::empty(site(), Generation::new(generation))
    }

    #[test]
    fn intents_are_fenced_by_generation() {
        let dir = tempfile::tempdir().unwrap();
        let s = AgentStore::open(dir.path()).unwrap();
        assert_eq!(s.store_intent(&intent(3)).unwrap(), IntentOutcome::Stored);
        assert_eq!(
            s.store_intent(&intent(3)).unwrap(),
            IntentOutcome::AlreadyHeld
        );
        assert_eq!(
            s.store_intent(&intent(2)).unwrap(),
            IntentOutcome::Stale {
                held: Generation::new(3)
            }
        );
        drop(s);
        let s = AgentStore::open(dir.path()).unwrap();
        assert_eq!(s.held_generation().unwrap(), Generation::new(3));
    }

    #[test]
    fn reports_central_would_refuse_are_not_buffered() {
        let dir = tempfile::tempdir().unwrap();
        let s = AgentStore::open(dir.path()).unwrap();
        let (at, g) = (Timestamp::from_millis(1), Generation::new(1));
        let ok = s.append_report(&site(), g, at, metrics(40.0), 100).unwrap();
        for bad in [f64::NAN, 101.0, -1.0] {
            let e = s
                .append_report(&site(), g, at, metrics(bad), 100)
                .unwrap_err();
            assert!(matches!(e, AgentStoreError::BadReport(_)), "{bad}: {e}");
            let chain = meridian_common::telemetry::error_chain(&e);
            assert!(chain.contains("metrics.gpu_utilisation_pct"), "{chain}");
        }
        // A batch with one bad body stores none of it, and the sequence goes on unbroken.
        assert!(
            s.commit_progress(&site(), g, at, &[event(1), metrics(f64::NAN)], 100, &[])
                .is_err()
        );
        let next = s.append_report(&site(), g, at, event(2), 100).unwrap();
        assert_eq!(next.get(), ok.get() + 1);
        assert_eq!(s.pending(Sequence::new(0), 100).unwrap().len(), 2);
    }

    #[test]
    fn reports_are_sequenced_compacted_bounded_and_trimmed_on_ack() {
        let dir = tempfile::tempdir().unwrap();
        let s = AgentStore::open(dir.path()).unwrap();
        let at = Timestamp::from_millis(1);
        let g = Generation::new(1);
        for n in 0..5 {
            s.append_report(&site(), g, at, event(n), 100).unwrap();
            s.append_report(&site(), g, at, metrics(n as f64), 100)
                .unwrap();
        }
        assert_eq!(s.last_sequence().unwrap(), Sequence::new(10));
        // 5 events + only the latest metrics report.
        assert_eq!(s.buffered(), 6);
        let pending = s.pending(Sequence::new(0), 100).unwrap();
        let seqs: Vec<u64> = pending.iter().map(|r| r.sequence).collect();
        assert_eq!(seqs, vec![1, 3, 5, 7, 9, 10]);
        s.trim(Sequence::new(5)).unwrap();
        assert_eq!(s.pending(Sequence::new(0), 100).unwrap().len(), 3);
        assert_eq!(s.last_acked().unwrap(), Sequence::new(5));
        // The bound drops the oldest and counts them.
        for n in 0..30 {
            s.append_report(&site(), g, at, event(n), 20).unwrap();
        }
        assert_eq!(s.buffered(), 20);
        assert_eq!(s.dropped().unwrap(), 13);
        // A state report dropped by the bound leaves no stale index entry behind.
        s.append_report(&site(), g, at, metrics(9.0), 20).unwrap();
        assert_eq!(
            s.buffered_by_resource().get("Metrics(Timestamp(0))"),
            Some(&1)
        );
    }
}
