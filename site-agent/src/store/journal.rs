//! The agent's durable key-value journal: a few ordered maps ("trees") held in memory and an
//! append-only file of checksummed batches that rebuilds them.
//!
//! Why not sled, which central uses: the agent is killed (`kill -9`, power loss) far more often
//! than central, and its crash test showed sled 0.34 losing a flushed write when a database
//! recovered from a crash was recovered a second time (a report sequence handed out twice).
//! The agent holds little (identity, one intent, a bounded report buffer, per-server reconciler
//! records), so a journal whose recovery fits in one screen is the safer store.
//!
//! ## File format (`agent.journal`)
//!
//! ```text
//! header  "MRDNJRN1"                                   8 bytes
//! frame*  len: u32 LE | crc32(payload): u32 LE | payload (len bytes)
//! payload op*   tree: u8 | kind: u8 (0 put, 1 delete) | klen: u32 LE | key | [vlen: u32 LE | value]
//! ```
//!
//! A frame is one atomic batch. [`Journal::commit`] appends it and calls `fdatasync` before it
//! returns, so an acknowledged batch is on disk; a crash can only leave the last frame torn,
//! and opening truncates a torn or corrupt frame and everything after it (with a warning), so
//! the next append never lands behind garbage. When the file is mostly superseded batches it
//! is compacted: the live maps are written as one batch to a new file, synced, and renamed over
//! the old one (and the directory synced), so a crash leaves either file whole.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

/// The journal file's name inside the agent's data directory.
pub const FILE_NAME: &str = "agent.journal";
/// The lock file: one process at a time uses a data directory (the journal file itself is
/// replaced by compaction, so it cannot carry the lock).
pub const LOCK_NAME: &str = "agent.lock";
const HEADER: &[u8; 8] = b"MRDNJRN1";
const FRAME_HEAD: usize = 8;
/// Compact when the file exceeds this size and is mostly superseded batches.
const COMPACT_MIN_BYTES: u64 = 4 * 1024 * 1024;
const COMPACT_RATIO: u64 = 4;
/// A frame longer than this is corruption, not a batch the agent wrote.
const MAX_FRAME: usize = 256 * 1024 * 1024;

/// The maps a journal holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Tree {
    /// Identity, intent, counters.
    Meta = 0,
    /// Buffered reports by sequence.
    Reports = 1,
    /// Resource key to the sequence of its buffered state report.
    Index = 2,
    /// Reconciler progress records.
    Progress = 3,
}

const TREES: usize = 4;

impl Tree {
    fn from_byte(b: u8) -> Option<Tree> {
        [Tree::Meta, Tree::Reports, Tree::Index, Tree::Progress]
            .into_iter()
            .find(|t| *t as u8 == b)
    }
}

/// One change in a batch: `value` `None` deletes the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Op {
    pub tree: Tree,
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

impl Op {
    pub fn put(tree: Tree, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> Op {
        Op {
            tree,
            key: key.into(),
            value: Some(value.into()),
        }
    }

    pub fn delete(tree: Tree, key: impl Into<Vec<u8>>) -> Op {
        Op {
            tree,
            key: key.into(),
            value: None,
        }
    }
}

/// Why the journal failed.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is in use by another process (an agent already runs on this data directory)")]
    Locked { path: PathBuf },
    #[error("{path} is not an agent journal (bad header)")]
    NotAJournal { path: PathBuf },
    /// A write failed and the file could not be cut back to its last whole batch: further
    /// writes are refused until the agent restarts (and recovery truncates the tail).
    #[error("journal {path} is unusable after a failed write; restart the agent")]
    Poisoned { path: PathBuf },
}

/// The maps, and the file when the journal is durable.
#[derive(Debug)]
pub struct Journal {
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    maps: [BTreeMap<Vec<u8>, Vec<u8>>; TREES],
    file: Option<DiskLog>,
}

#[derive(Debug)]
struct DiskLog {
    /// Held (locked) while the journal is open.
    _lock: File,
    path: PathBuf,
    file: File,
    len: u64,
    poisoned: bool,
}

/// A locked view of the journal: reads and one writer's read-modify-commit see the same state.
#[derive(Debug)]
pub struct Guard<'a>(MutexGuard<'a, Inner>);

impl Journal {
    /// A journal with no file (simulated agents, which never restart within a run).
    pub fn in_memory() -> Journal {
        Journal {
            inner: Mutex::new(Inner {
                maps: Default::default(),
                file: None,
            }),
        }
    }

    /// Opens or creates `dir/agent.journal`, replaying it; truncates a torn tail.
    pub fn open(dir: &Path) -> Result<Journal, JournalError> {
        let path = dir.join(FILE_NAME);
        let io = |what| {
            let path = path.clone();
            move |source| JournalError::Io { path, what, source }
        };
        std::fs::create_dir_all(dir).map_err(io("cannot create the directory"))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io("cannot open the lock file"))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    path: dir.to_owned(),
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io("cannot lock")(e)),
        }
        let mut maps: [BTreeMap<Vec<u8>, Vec<u8>>; TREES] = Default::default();
        // Missing, or cut short while it was being created (a prefix of the header): new.
        let fresh = match std::fs::read(&path) {
            Ok(b) => b.len() < HEADER.len() && HEADER.starts_with(&b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(io("cannot read")(e)),
        };
        if fresh {
            write_new_file(&path, &[]).map_err(io("cannot create"))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(io("cannot open"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("cannot read"))?;
        if bytes.len() < HEADER.len() || &bytes[..HEADER.len()] != HEADER {
            return Err(JournalError::NotAJournal { path });
        }
        let mut at = HEADER.len();
        while at < bytes.len() {
            match parse_frame(&bytes[at..]) {
                Some((ops, used)) => {
                    apply(&mut maps, ops);
                    at += used;
                }
                None => break,
            }
        }
        if at < bytes.len() {
            tracing::warn!(
                path = %path.display(),
                dropped_bytes = bytes.len() - at,
                "journal ends in a torn or corrupt batch; truncated to the last whole batch"
            );
            file.set_len(at as u64).map_err(io("cannot truncate"))?;
            file.sync_all().map_err(io("cannot sync"))?;
        }
        Ok(Journal {
            inner: Mutex::new(Inner {
                maps,
                file: Some(DiskLog {
                    _lock: lock,
                    path,
                    file,
                    len: at as u64,
                    poisoned: false,
                }),
            }),
        })
    }

    /// Locks the journal for reads and, at most, one commit sequence.
    pub fn lock(&self) -> Guard<'_> {
        Guard(self.inner.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl Guard<'_> {
    /// The value of `key` in `tree`.
    pub fn get(&self, tree: Tree, key: &[u8]) -> Option<&Vec<u8>> {
        self.0.maps[tree as usize].get(key)
    }

    /// Entries of `tree` in key order within `range`.
    pub fn range<'b, R>(
        &'b self,
        tree: Tree,
        range: R,
    ) -> impl Iterator<Item = (&'b [u8], &'b [u8])>
    where
        R: RangeBounds<Vec<u8>> + 'b,
    {
        self.0.maps[tree as usize]
            .range(range)
            .map(|(k, v)| (k.as_slice(), v.as_slice()))
    }

    /// How many entries `tree` holds.
    pub fn len(&self, tree: Tree) -> usize {
        self.0.maps[tree as usize].len()
    }

    /// Whether `tree` is empty.
    pub fn is_empty(&self, tree: Tree) -> bool {
        self.0.maps[tree as usize].is_empty()
    }

    /// Applies `ops` atomically: on disk (synced) first, then in memory. On error nothing
    /// changed, in memory or (once the agent restarts) on disk.
    pub fn commit(&mut self, ops: Vec<Op>) -> Result<(), JournalError> {
        if ops.is_empty() {
            return Ok(());
        }
        let inner = &mut *self.0;
        if let Some(log) = &mut inner.file {
            log.append(&encode_frame(&ops))?;
        }
        apply(&mut inner.maps, ops);
        if let Some(log) = &mut inner.file
            && let Err(e) = log.compact_if_due(&inner.maps)
        {
            // The batch is committed; the file is only larger than it needs to be.
            tracing::warn!(
                error = %meridian_common::telemetry::error_chain(&e),
                "journal compaction failed; will retry after the next batch"
            );
        }
        Ok(())
    }
}

impl DiskLog {
    fn io(&self, what: &'static str) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
        move |source| JournalError::Io {
            path: self.path.clone(),
            what,
            source,
        }
    }

    fn append(&mut self, frame: &[u8]) -> Result<(), JournalError> {
        if self.poisoned {
            return Err(JournalError::Poisoned {
                path: self.path.clone(),
            });
        }
        let written = self
            .file
            .write_all(frame)
            .and_then(|()| self.file.sync_data());
        if let Err(source) = written {
            // Cut back to the last whole batch so a later append does not follow garbage.
            if self.file.set_len(self.len).is_err() || self.file.sync_all().is_err() {
                self.poisoned = true;
            }
            return Err(JournalError::Io {
                path: self.path.clone(),
                what: "cannot append",
                source,
            });
        }
        self.len += frame.len() as u64;
        Ok(())
    }

    fn compact_if_due(
        &mut self,
        maps: &[BTreeMap<Vec<u8>, Vec<u8>>; TREES],
    ) -> Result<(), JournalError> {
        if self.len < COMPACT_MIN_BYTES {
            return Ok(());
        }
        let snapshot: Vec<Op> = maps
            .iter()
            .zip([Tree::Meta, Tree::Reports, Tree::Index, Tree::Progress])
            .flat_map(|(map, tree)| {
                map.iter()
                    .map(move |(k, v)| Op::put(tree, k.clone(), v.clone()))
            })
            .collect();
        let frame = encode_frame(&snapshot);
        if self.len < COMPACT_RATIO * (frame.len() + HEADER.len()) as u64 {
            return Ok(());
        }
        let tmp = self.path.with_extension("journal.compacting");
        write_new_file(&tmp, &frame).map_err(self.io("cannot write the compacted copy"))?;
        std::fs::rename(&tmp, &self.path)
            .map_err(self.io("cannot replace with the compacted copy"))?;
        sync_dir(&self.path).map_err(self.io("cannot sync the directory"))?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(self.io("cannot reopen after compaction"))?;
        self.len = (HEADER.len() + frame.len()) as u64;
        Ok(())
    }
}

/// Writes a new journal file (header and `frame`), synced, and syncs its directory.
fn write_new_file(path: &Path, frame: &[u8]) -> std::io::Result<()> {
    let mut f = File::create(path)?;
    f.write_all(HEADER)?;
    f.write_all(frame)?;
    f.sync_all()?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => File::open(dir)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
}

fn apply(maps: &mut [BTreeMap<Vec<u8>, Vec<u8>>; TREES], ops: Vec<Op>) {
    for op in ops {
        let map = &mut maps[op.tree as usize];
        match op.value {
            Some(v) => {
                map.insert(op.key, v);
            }
            None => {
                map.remove(&op.key);
            }
        }
    }
}

fn encode_frame(ops: &[Op]) -> Vec<u8> {
    let mut payload = Vec::new();
    for op in ops {
        payload.push(op.tree as u8);
        payload.push(u8::from(op.value.is_none()));
        put_bytes(&mut payload, &op.key);
        if let Some(v) = &op.value {
            put_bytes(&mut payload, v);
        }
    }
    let mut frame = Vec::with_capacity(FRAME_HEAD + payload.len());
    frame.extend_from_slice(
        &u32::try_from(payload.len())
            .expect("batch under 4 GiB")
            .to_le_bytes(),
    );
    frame.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    frame.extend_from_slice(&payload);
    frame
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(
        &u32::try_from(bytes.len())
            .expect("entry under 4 GiB")
            .to_le_bytes(),
    );
    out.extend_from_slice(bytes);
}

/// The ops of the frame at the start of `bytes` and its length; `None` if it is torn or
/// corrupt.
fn parse_frame(bytes: &[u8]) -> Option<(Vec<Op>, usize)> {
    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(bytes.get(4..8)?.try_into().ok()?);
    if len > MAX_FRAME {
        return None;
    }
    let payload = bytes.get(FRAME_HEAD..FRAME_HEAD + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
    let mut ops = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let tree = Tree::from_byte(*rest.first()?)?;
        let kind = *rest.get(1)?;
        rest = &rest[2..];
        let key = take_bytes(&mut rest)?;
        let value = match kind {
            0 => Some(take_bytes(&mut rest)?),
            1 => None,
            _ => return None,
        };
        ops.push(Op { tree, key, value });
    }
    Some((ops, FRAME_HEAD + len))
}

fn take_bytes(rest: &mut &[u8]) -> Option<Vec<u8>> {
    let len = u32::from_le_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let bytes = rest.get(4..4 + len)?.to_vec();
    *rest = &rest[4 + len..];
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(j: &Journal, tree: Tree, key: &[u8]) -> Option<Vec<u8>> {
        j.lock().get(tree, key).cloned()
    }

    #[test]
    fn batches_survive_reopen_and_deletes_stick() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        j.lock()
            .commit(vec![
                Op::put(Tree::Meta, *b"a", *b"1"),
                Op::put(Tree::Reports, *b"a", *b"r"),
            ])
            .unwrap();
        j.lock()
            .commit(vec![Op::delete(Tree::Meta, *b"a")])
            .unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(value(&j, Tree::Meta, b"a"), None);
        assert_eq!(value(&j, Tree::Reports, b"a"), Some(b"r".to_vec()));
    }

    #[test]
    fn a_torn_or_corrupt_tail_is_cut_and_later_appends_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let j = Journal::open(dir.path()).unwrap();
        j.lock()
            .commit(vec![Op::put(Tree::Meta, *b"k", *b"whole")])
            .unwrap();
        drop(j);
        let whole = std::fs::metadata(&path).unwrap().len();
        // Every prefix of a second batch (a write cut short by a crash), and the whole batch
        // with one byte flipped, recover to exactly the first batch.
        let second = encode_frame(&[Op::put(Tree::Meta, *b"k", *b"torn")]);
        let mut cases: Vec<Vec<u8>> = (1..second.len()).map(|n| second[..n].to_vec()).collect();
        let mut flipped = second.clone();
        *flipped.last_mut().unwrap() ^= 0x40;
        cases.push(flipped);
        for tail in cases {
            let mut f = OpenOptions::new().append(true).open(&path).unwrap();
            f.write_all(&tail).unwrap();
            drop(f);
            let j = Journal::open(dir.path()).unwrap();
            assert_eq!(value(&j, Tree::Meta, b"k"), Some(b"whole".to_vec()));
            assert_eq!(std::fs::metadata(&path).unwrap().len(), whole);
        }
        // After the cut, a new batch is appended where the torn one was and read back.
        let j = Journal::open(dir.path()).unwrap();
        j.lock()
            .commit(vec![Op::put(Tree::Meta, *b"k", *b"after")])
            .unwrap();
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(value(&j, Tree::Meta, b"k"), Some(b"after".to_vec()));
    }

    #[test]
    fn compaction_keeps_exactly_the_live_entries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        let j = Journal::open(dir.path()).unwrap();
        let big = vec![7u8; 64 * 1024];
        // ~8 MiB written, at most 10 entries of 64 KiB live: compaction must run.
        for i in 0..128u32 {
            let mut g = j.lock();
            g.commit(vec![Op::put(
                Tree::Reports,
                (i % 10).to_be_bytes(),
                big.clone(),
            )])
            .unwrap();
            g.commit(vec![Op::put(Tree::Meta, *b"n", i.to_be_bytes())])
                .unwrap();
        }
        assert!(std::fs::metadata(&path).unwrap().len() < COMPACT_MIN_BYTES);
        drop(j);
        let j = Journal::open(dir.path()).unwrap();
        assert_eq!(j.lock().len(Tree::Reports), 10);
        assert_eq!(
            value(&j, Tree::Meta, b"n"),
            Some(127u32.to_be_bytes().to_vec())
        );
    }

    #[test]
    fn one_process_at_a_time_and_the_lock_goes_with_the_journal() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path()).unwrap();
        assert!(matches!(
            Journal::open(dir.path()),
            Err(JournalError::Locked { .. })
        ));
        drop(j);
        Journal::open(dir.path()).unwrap();
    }

    #[test]
    fn a_file_that_is_not_a_journal_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), b"something else").unwrap();
        assert!(matches!(
            Journal::open(dir.path()),
            Err(JournalError::NotAJournal { .. })
        ));
    }
}
