//! The agent's durable state in sled: its identity (key, certificate, CA), the intent it
//! holds, and the report buffer. Every write that the agent acknowledges or numbers is
//! flushed to disk before the call returns.
//!
//! - **Intent**: [`AgentStore::store_intent`] refuses a generation lower than the one held
//!   (fencing) and persists a newer one before the agent acknowledges it.
//! - **Reports**: [`AgentStore::append_report`] assigns the next sequence number in the same
//!   transaction that stores the report. A state report replaces the buffered report about the
//!   same resource (compaction); past `max` reports the oldest is dropped and counted.
//!   [`AgentStore::trim`] removes what central acknowledged, and nothing else.
//!
//! - **Reconciler progress**: [`AgentStore::commit_progress`] writes the reconciler's
//!   per-resource records and appends the reports describing the step in one transaction, so
//!   after a crash a step is either recorded and reported, or neither.
//!
//! Several agents can share one sled database (the simulator runs thousands): each uses its
//! own trees, named by a prefix.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use meridian_common::ids::{Generation, Sequence, SiteId, Timestamp};
use meridian_common::model::{ReportBody, SiteIntent, SiteReport};
use meridian_proto::v1 as proto;
use prost::Message;
use serde::{Deserialize, Serialize};
use sled::Transactional;
use sled::transaction::TransactionError;

/// Why the agent's store failed.
#[derive(Debug, thiserror::Error)]
pub enum AgentStoreError {
    #[error("agent database error")]
    Sled(#[from] sled::Error),
    #[error("agent database entry {key} is corrupt: {reason}")]
    Corrupt { key: String, reason: String },
    /// A report central would refuse (and so end every session it is sent on): not buffered.
    #[error("report refused before buffering")]
    BadReport(#[source] meridian_common::convert::ConvertError),
}

impl From<TransactionError<AgentStoreError>> for AgentStoreError {
    fn from(e: TransactionError<AgentStoreError>) -> Self {
        match e {
            TransactionError::Abort(e) => e,
            TransactionError::Storage(e) => AgentStoreError::Sled(e),
        }
    }
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

/// The agent's sled-backed state.
#[derive(Debug, Clone)]
pub struct AgentStore {
    db: sled::Db,
    /// Held by every write from its first change through its flush, so writes never interleave
    /// in sled's log: a `kill -9` then finds at most one write unfinished, never a flushed
    /// (acknowledged) write behind an unfinished transaction, which sled's recovery would
    /// discard with it (seen as a reused report sequence in the R2 crash test).
    writes: Arc<Mutex<()>>,
    meta: sled::Tree,
    reports: sled::Tree,
    index: sled::Tree,
    progress: sled::Tree,
}

const IDENTITY: &[u8] = b"identity";
const INTENT: &[u8] = b"intent";
const APPLIED: &[u8] = b"applied";
const NEXT_SEQ: &[u8] = b"next_seq";
const ACKED: &[u8] = b"acked";
const DROPPED: &[u8] = b"dropped";
const OPENS: &[u8] = b"opens";

fn u64_of(v: Option<sled::IVec>) -> u64 {
    v.and_then(|b| b.as_ref().try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

impl AgentStore {
    /// Opens (or creates) the agent database in `dir`.
    pub fn open(dir: &std::path::Path) -> Result<Self, AgentStoreError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(8 * 1024 * 1024)
            .mode(sled::Mode::LowSpace)
            .open()?;
        let store = Self::in_db(db, "")?;
        store.count_open()?;
        Ok(store)
    }

    /// Counts the opens of the database, durably. Writing right after sled's recovery makes
    /// the recovered log durable as sled now sees it: without a write, a recovered database
    /// closed and opened again lost its last acknowledged write (the R2 crash test, which
    /// opens the crashed database to check it before the next agent starts).
    fn count_open(&self) -> Result<(), AgentStoreError> {
        let _w = self.write_lock();
        let opens = u64_of(self.meta.get(OPENS)?) + 1;
        self.meta.insert(OPENS, &opens.to_be_bytes())?;
        self.flush()
    }

    /// One agent's trees inside a shared database, prefixed with `name`.
    pub fn in_db(db: sled::Db, name: &str) -> Result<Self, AgentStoreError> {
        Ok(AgentStore {
            meta: db.open_tree(format!("{name}meta"))?,
            reports: db.open_tree(format!("{name}reports"))?,
            index: db.open_tree(format!("{name}report-index"))?,
            progress: db.open_tree(format!("{name}reconcile"))?,
            db,
            writes: Arc::default(),
        })
    }

    /// The write lock (see the `writes` field). Agents sharing one database through
    /// [`AgentStore::in_db`] (the simulator) each have their own, so their writes may still
    /// interleave; a panic while holding it poisons nothing that matters.
    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush(&self) -> Result<(), AgentStoreError> {
        self.db.flush()?;
        Ok(())
    }

    /// The stored identity, if enrolled.
    pub fn identity(&self) -> Result<Option<Identity>, AgentStoreError> {
        match self.meta.get(IDENTITY)? {
            Some(raw) => Ok(Some(serde_json::from_slice(&raw).map_err(|e| {
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
        let _w = self.write_lock();
        self.meta.insert(
            IDENTITY,
            serde_json::to_vec(identity).expect("plain record serialises"),
        )?;
        self.flush()
    }

    /// The intent held, if any.
    pub fn intent(&self) -> Result<Option<SiteIntent>, AgentStoreError> {
        match self.meta.get(INTENT)? {
            Some(raw) => {
                let corrupt = |reason: String| AgentStoreError::Corrupt {
                    key: "intent".into(),
                    reason,
                };
                let wire =
                    proto::SiteIntent::decode(raw.as_ref()).map_err(|e| corrupt(e.to_string()))?;
                Ok(Some(
                    SiteIntent::try_from(wire).map_err(|e| corrupt(e.to_string()))?,
                ))
            }
            None => Ok(None),
        }
    }

    /// The generation of the intent held (0: none).
    pub fn held_generation(&self) -> Result<Generation, AgentStoreError> {
        Ok(self.intent()?.map_or(Generation::new(0), |i| i.generation))
    }

    /// Persists `intent` if it is newer than the one held; refuses an older one.
    pub fn store_intent(&self, intent: &SiteIntent) -> Result<IntentOutcome, AgentStoreError> {
        let _w = self.write_lock();
        let held = self.held_generation()?;
        if intent.generation < held {
            return Ok(IntentOutcome::Stale { held });
        }
        if intent.generation == held {
            return Ok(IntentOutcome::AlreadyHeld);
        }
        let wire = proto::SiteIntent::from(intent.clone());
        self.meta.insert(INTENT, wire.encode_to_vec())?;
        self.flush()?;
        Ok(IntentOutcome::Stored)
    }

    /// The generation last applied (0: none).
    pub fn applied_generation(&self) -> Result<Generation, AgentStoreError> {
        Ok(Generation::new(u64_of(self.meta.get(APPLIED)?)))
    }

    /// Records that `generation` was applied.
    pub fn set_applied(&self, generation: Generation) -> Result<(), AgentStoreError> {
        let _w = self.write_lock();
        self.meta.insert(APPLIED, &generation.get().to_be_bytes())?;
        self.flush()
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
        let seqs = self.append_with_progress(site, generation, at, &[body], max, &[])?;
        Ok(seqs[0])
    }

    /// Writes reconciler progress records (`None` removes one) and appends `bodies` as reports,
    /// all in one transaction, then flushes. Returns the reports' sequence numbers.
    pub fn commit_progress(
        &self,
        site: &SiteId,
        generation: Generation,
        at: Timestamp,
        bodies: &[ReportBody],
        max: usize,
        records: &[(Vec<u8>, Option<Vec<u8>>)],
    ) -> Result<Vec<Sequence>, AgentStoreError> {
        self.append_with_progress(site, generation, at, bodies, max, records)
    }

    /// A reconciler progress record.
    pub fn progress(&self, key: &[u8]) -> Result<Option<Vec<u8>>, AgentStoreError> {
        Ok(self.progress.get(key)?.map(|v| v.to_vec()))
    }

    fn append_with_progress(
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
        let resources: Vec<Option<Vec<u8>>> = bodies
            .iter()
            .map(|body| {
                body.resource_key()
                    .map(|k| serde_json::to_vec(&k).expect("keys serialise"))
            })
            .collect();
        let _w = self.write_lock();
        let seqs = (&self.meta, &self.reports, &self.index, &self.progress).transaction(
            |(meta, reports, index, progress)| {
                let mut seqs = Vec::with_capacity(bodies.len());
                let mut seq = u64_of(meta.get(NEXT_SEQ)?).max(1);
                for (body, resource) in bodies.iter().zip(&resources) {
                    let report = SiteReport {
                        site: site.clone(),
                        sequence: Sequence::new(seq),
                        generation,
                        at,
                        body: body.clone(),
                    };
                    let wire = proto::SiteReport::from(report);
                    if let Some(key) = resource {
                        if let Some(old) = index.get(key)? {
                            reports.remove(old)?;
                        }
                        index.insert(key.as_slice(), &seq.to_be_bytes())?;
                    }
                    reports.insert(&seq.to_be_bytes(), wire.encode_to_vec())?;
                    seqs.push(Sequence::new(seq));
                    seq += 1;
                }
                meta.insert(NEXT_SEQ, &seq.to_be_bytes())?;
                for (key, value) in records {
                    match value {
                        Some(v) => progress.insert(key.as_slice(), v.as_slice())?,
                        None => progress.remove(key.as_slice())?,
                    };
                }
                Ok(seqs)
            },
        )?;
        // The bound: drop the oldest beyond `max` (rare; outside the append transaction).
        if self.reports.len() > max {
            let mut dropped = 0u64;
            while self.reports.len() > max {
                let Some((k, v)) = self.reports.pop_min()? else {
                    break;
                };
                self.unindex(&k, &v)?;
                dropped += 1;
            }
            let total = u64_of(self.meta.get(DROPPED)?) + dropped;
            self.meta.insert(DROPPED, &total.to_be_bytes())?;
            tracing::warn!(
                dropped,
                total,
                "report buffer full; dropped the oldest reports"
            );
        }
        self.flush()?;
        Ok(seqs)
    }

    fn unindex(&self, seq_key: &[u8], value: &[u8]) -> Result<(), AgentStoreError> {
        if let Ok(wire) = proto::SiteReport::decode(value)
            && let Ok(report) = SiteReport::try_from(wire)
            && let Some(key) = report.resource_key()
        {
            let key = serde_json::to_vec(&key).expect("keys serialise");
            let _ = self
                .index
                .compare_and_swap(key, Some(seq_key), None as Option<&[u8]>)?;
        }
        Ok(())
    }

    /// Up to `limit` buffered reports with a sequence above `after`, in order.
    pub fn pending(
        &self,
        after: Sequence,
        limit: usize,
    ) -> Result<Vec<proto::SiteReport>, AgentStoreError> {
        let start = after.get().saturating_add(1).to_be_bytes();
        let mut out = Vec::new();
        for item in self.reports.range(start..).take(limit) {
            let (_, v) = item?;
            out.push(proto::SiteReport::decode(v.as_ref()).map_err(|e| {
                AgentStoreError::Corrupt {
                    key: "reports".into(),
                    reason: e.to_string(),
                }
            })?);
        }
        Ok(out)
    }

    /// Removes every buffered report up to `ack` (central stored them).
    pub fn trim(&self, ack: Sequence) -> Result<(), AgentStoreError> {
        // The mark first, the reports after: a crash in between leaves reports at or below the
        // mark (never sent again: the buffer is read after the mark, and the next trim removes
        // them), never a gap above it.
        let _w = self.write_lock();
        let acked = u64_of(self.meta.get(ACKED)?).max(ack.get());
        self.meta.insert(ACKED, &acked.to_be_bytes())?;
        let end = acked.saturating_add(1).to_be_bytes();
        let doomed: Vec<(sled::IVec, sled::IVec)> =
            self.reports.range(..end).filter_map(Result::ok).collect();
        for (k, v) in doomed {
            self.reports.remove(&k)?;
            self.unindex(&k, &v)?;
        }
        self.flush()
    }

    /// Highest sequence central acknowledged.
    pub fn last_acked(&self) -> Result<Sequence, AgentStoreError> {
        Ok(Sequence::new(u64_of(self.meta.get(ACKED)?)))
    }

    /// Reports dropped by the bound, ever.
    pub fn dropped(&self) -> Result<u64, AgentStoreError> {
        Ok(u64_of(self.meta.get(DROPPED)?))
    }

    /// Reports buffered now.
    pub fn buffered(&self) -> usize {
        self.reports.len()
    }

    /// The last sequence number assigned (0: none).
    pub fn last_sequence(&self) -> Result<Sequence, AgentStoreError> {
        Ok(Sequence::new(
            u64_of(self.meta.get(NEXT_SEQ)?).max(1).saturating_sub(1),
        ))
    }

    /// How many buffered reports there are per resource key (for tests of compaction).
    pub fn buffered_by_resource(&self) -> HashMap<String, usize> {
        let mut out = HashMap::new();
        for (_, v) in self.reports.iter().filter_map(Result::ok) {
            if let Ok(wire) = proto::SiteReport::decode(v.as_ref())
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
        }
    }

    fn intent(generation: u64) -> SiteIntent {
        SiteIntent {
            site: site(),
            generation: Generation::new(generation),
            networks: vec![],
            allocations: vec![],
            exposures: vec![],
            volumes: vec![],
            server_actions: vec![],
            pools: vec![],
        }
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
        assert_eq!(s.buffered_by_resource().get("Metrics"), Some(&1));
    }
}
