//! The on-disk layout of the sled store, in one tree:
//!
//! - `k` + key -> entry: `create_revision u64 | mod_revision u64 | version u64 | value`
//! - `l` + revision (u64 big-endian) -> the events of that revision:
//!   `count u32 | (kind u8 | key_len u32 | key | [create u64 | version u64 | value_len u32 | value])*`
//!
//! A transaction's entries and its log record are written in one sled batch, so a crash
//! leaves both or neither. All integers are big-endian.

use super::{Event, EventKind, KeyValue, Revision, StoreError, display_key};

pub(super) const KV_PREFIX: u8 = b'k';
pub(super) const LOG_PREFIX: u8 = b'l';

pub(super) fn kv_key(key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(KV_PREFIX);
    k.extend_from_slice(key);
    k
}

pub(super) fn log_key(rev: Revision) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = LOG_PREFIX;
    k[1..].copy_from_slice(&rev.0.to_be_bytes());
    k
}

pub(super) fn log_key_revision(raw: &[u8]) -> Result<Revision, StoreError> {
    let bytes: [u8; 8] = raw
        .get(1..9)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt(raw, "log key is not 9 bytes"))?;
    Ok(Revision(u64::from_be_bytes(bytes)))
}

pub(super) fn encode_entry(kv: &KeyValue) -> Vec<u8> {
    let mut out = Vec::with_capacity(24 + kv.value.len());
    out.extend_from_slice(&kv.create_revision.0.to_be_bytes());
    out.extend_from_slice(&kv.mod_revision.0.to_be_bytes());
    out.extend_from_slice(&kv.version.to_be_bytes());
    out.extend_from_slice(&kv.value);
    out
}

pub(super) fn decode_entry(key: &[u8], raw: &[u8]) -> Result<KeyValue, StoreError> {
    let mut r = Reader { raw, at: 0, key };
    Ok(KeyValue {
        key: key.to_vec(),
        create_revision: Revision(r.u64()?),
        mod_revision: Revision(r.u64()?),
        version: r.u64()?,
        value: raw[r.at..].to_vec(),
    })
}

pub(super) fn encode_events(events: &[Event]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(events.len() as u32).to_be_bytes());
    for e in events {
        out.push(match e.kind {
            EventKind::Put => 1,
            EventKind::Delete => 2,
        });
        put_bytes(&mut out, &e.kv.key);
        if e.kind == EventKind::Put {
            out.extend_from_slice(&e.kv.create_revision.0.to_be_bytes());
            out.extend_from_slice(&e.kv.version.to_be_bytes());
            put_bytes(&mut out, &e.kv.value);
        }
    }
    out
}

pub(super) fn decode_events(rev: Revision, raw: &[u8]) -> Result<Vec<Event>, StoreError> {
    let log_key = log_key(rev);
    let mut r = Reader {
        raw,
        at: 0,
        key: &log_key,
    };
    let count = r.u32()? as usize;
    let mut events = Vec::with_capacity(count.min(1024));
    for _ in 0..count {
        let kind = match r.u8()? {
            1 => EventKind::Put,
            2 => EventKind::Delete,
            other => return Err(corrupt(&log_key, &format!("unknown event kind {other}"))),
        };
        let key = r.bytes()?.to_vec();
        let kv = match kind {
            EventKind::Put => KeyValue {
                key,
                create_revision: Revision(r.u64()?),
                version: r.u64()?,
                value: r.bytes()?.to_vec(),
                mod_revision: rev,
            },
            EventKind::Delete => KeyValue {
                key,
                value: Vec::new(),
                create_revision: Revision(0),
                mod_revision: rev,
                version: 0,
            },
        };
        events.push(Event { kind, kv });
    }
    Ok(events)
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn corrupt(key: &[u8], reason: &str) -> StoreError {
    StoreError::Corrupt {
        key: display_key(key),
        reason: reason.to_owned(),
    }
}

struct Reader<'a> {
    raw: &'a [u8],
    at: usize,
    key: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], StoreError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.raw.len());
        let end = end.ok_or_else(|| corrupt(self.key, "entry is truncated"))?;
        let slice = &self.raw[self.at..end];
        self.at = end;
        Ok(slice)
    }
    fn u8(&mut self) -> Result<u8, StoreError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, StoreError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, StoreError> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
    fn bytes(&mut self) -> Result<&[u8], StoreError> {
        let len = self.u32()? as usize;
        self.take(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_and_events_round_trip() {
        let kv = KeyValue {
            key: b"a/b".to_vec(),
            value: b"value".to_vec(),
            create_revision: Revision(3),
            mod_revision: Revision(9),
            version: 4,
        };
        assert_eq!(decode_entry(b"a/b", &encode_entry(&kv)).unwrap(), kv);
        let events = vec![
            Event {
                kind: EventKind::Put,
                kv: kv.clone(),
            },
            Event {
                kind: EventKind::Delete,
                kv: KeyValue {
                    key: b"gone".to_vec(),
                    value: vec![],
                    create_revision: Revision(0),
                    mod_revision: Revision(9),
                    version: 0,
                },
            },
        ];
        assert_eq!(
            decode_events(Revision(9), &encode_events(&events)).unwrap(),
            events
        );
        assert_eq!(
            log_key_revision(&log_key(Revision(77))).unwrap(),
            Revision(77)
        );
    }

    #[test]
    fn truncated_bytes_are_corrupt_not_panics() {
        let raw = encode_events(&[Event {
            kind: EventKind::Put,
            kv: KeyValue {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                create_revision: Revision(1),
                mod_revision: Revision(1),
                version: 1,
            },
        }]);
        for cut in 0..raw.len() {
            assert!(matches!(
                decode_events(Revision(1), &raw[..cut]),
                Err(StoreError::Corrupt { .. })
            ));
        }
        assert!(decode_entry(b"k", &[0; 23]).is_err());
        let mut huge = vec![0, 0, 0, 1, 1];
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_events(Revision(1), &huge).is_err());
    }
}
