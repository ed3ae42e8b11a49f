//! R11: editing, deleting or reordering audit records is detected, on a real sled store. Each
//! case writes a fresh chain of 30 records, tampers with the stored bytes directly (as someone
//! with access to the disk would), and runs the verifier.

use std::sync::Arc;

use meridian_central::audit::{AuditEntry, Auditor, Outcome, Verdict, record_hash};
use meridian_common::ids::Timestamp;
use meridian_proto::v1 as proto;
use meridian_store::Tables;
use meridian_store::schema::AUDIT_HEAD_KEY as HEAD_KEY;
use meridian_store::{Expect, SledStore, Store, StoreConfig};
use prost::Message;

const RECORDS: u64 = 30;

fn key(seq: u64) -> Vec<u8> {
    format!("audit/{seq:020}").into_bytes()
}

async fn chain() -> (tempfile::TempDir, Arc<dyn Store>, Auditor, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> =
        Arc::new(SledStore::open(dir.path(), &StoreConfig::default()).unwrap());
    let auditor = Auditor::new(Tables::new(Arc::clone(&store)));
    for i in 0..RECORDS {
        auditor
            .append(
                AuditEntry {
                    actor: "user:alice",
                    action: "PlacementService/CreateWorkload",
                    object: &format!("workload/wl-{i}"),
                    outcome: Outcome::Success,
                    detail: "",
                },
                Timestamp::from_millis(1_700_000_000_000 + i as i64),
            )
            .await
            .unwrap();
    }
    let head = match auditor.verify().await.unwrap() {
        Verdict::Intact { records, head } => {
            assert_eq!(records, RECORDS);
            head
        }
        broken => panic!("fresh chain broken: {broken:?}"),
    };
    (dir, store, auditor, head)
}

async fn read(store: &Arc<dyn Store>, seq: u64) -> proto::AuditRecord {
    let kv = store.get(&key(seq)).await.unwrap().expect("record");
    proto::AuditRecord::decode(kv.value.as_slice()).unwrap()
}

async fn write(store: &Arc<dyn Store>, seq: u64, record: &proto::AuditRecord) {
    store
        .put(&key(seq), &record.encode_to_vec(), Expect::Any)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_tampering_is_detected() {
    type Tamper =
        fn(Arc<dyn Store>) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
    let cases: Vec<(&str, Tamper)> = vec![
        ("edit a field", |s| {
            Box::pin(async move {
                let mut r = read(&s, 10).await;
                r.detail = "nothing happened".into();
                write(&s, 10, &r).await;
            })
        }),
        ("edit a field and recompute its hash", |s| {
            Box::pin(async move {
                let mut r = read(&s, 10).await;
                r.actor = "user:mallory".into();
                r.hash = record_hash(&r);
                write(&s, 10, &r).await;
            })
        }),
        ("delete a record in the middle", |s| {
            Box::pin(async move {
                s.delete(&key(15), Expect::Any).await.unwrap();
            })
        }),
        ("swap two records", |s| {
            Box::pin(async move {
                let (a, b) = (read(&s, 5).await, read(&s, 6).await);
                write(&s, 5, &b).await;
                write(&s, 6, &a).await;
            })
        }),
        ("swap two records and renumber them", |s| {
            Box::pin(async move {
                let (mut a, mut b) = (read(&s, 5).await, read(&s, 6).await);
                std::mem::swap(&mut a.seq, &mut b.seq);
                write(&s, 5, &b).await;
                write(&s, 6, &a).await;
            })
        }),
        ("delete the last record", |s| {
            Box::pin(async move {
                s.delete(&key(RECORDS), Expect::Any).await.unwrap();
            })
        }),
        ("delete the first record", |s| {
            Box::pin(async move {
                s.delete(&key(1), Expect::Any).await.unwrap();
            })
        }),
    ];
    for (name, tamper) in cases {
        let (_dir, store, auditor, _) = chain().await;
        tamper(Arc::clone(&store)).await;
        match auditor.verify().await.unwrap() {
            Verdict::Broken { at, why } => println!("{name}: detected at record {at} ({why})"),
            Verdict::Intact { .. } => panic!("{name}: not detected"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cutting_the_end_and_rewriting_the_head_is_caught_by_an_outside_anchor() {
    let (_dir, store, auditor, anchored) = chain().await;
    // Someone who rewrites the head consistently hides a cut-off end from the chain alone ...
    let last = read(&store, RECORDS - 1).await;
    store.delete(&key(RECORDS), Expect::Any).await.unwrap();
    let head = format!("{}:{}", last.seq, hex::encode(&last.hash));
    store
        .put(HEAD_KEY, head.as_bytes(), Expect::Any)
        .await
        .unwrap();
    match auditor.verify().await.unwrap() {
        // ... but not from the head hash an operator anchored elsewhere.
        Verdict::Intact { records, head } => {
            assert_eq!(records, RECORDS - 1);
            assert_ne!(head, anchored, "the anchored head must expose the cut");
        }
        broken => panic!("unexpected: {broken:?}"),
    }
}
