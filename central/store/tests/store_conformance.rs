//! The sled store against the shared conformance suite, plus sled-specific behaviour.

use std::sync::Arc;
use std::time::Duration;

use meridian_store::conformance::{self, Backend};
use meridian_store::{Expect, Revision, SledStore, Store, StoreConfig, StoreError};

struct SledBackend {
    dir: tempfile::TempDir,
    config: StoreConfig,
}

#[async_trait::async_trait]
impl Backend for SledBackend {
    async fn open(&self, name: &str) -> Result<Arc<dyn Store>, StoreError> {
        Ok(Arc::new(SledStore::open(
            &self.dir.path().join(name),
            &self.config,
        )?))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_conforms_with_group_commit() {
    let backend = SledBackend {
        dir: tempfile::tempdir().unwrap(),
        config: StoreConfig::default(),
    };
    let failures = conformance::run(&backend).await;
    assert!(failures.is_empty(), "conformance failures: {failures:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sled_store_conforms_without_group_commit() {
    let backend = SledBackend {
        dir: tempfile::tempdir().unwrap(),
        config: StoreConfig {
            group_commit: false,
            ..StoreConfig::default()
        },
    };
    let failures = conformance::run(&backend).await;
    assert!(failures.is_empty(), "conformance failures: {failures:#?}");
}

#[test]
fn the_suite_has_every_check() {
    assert!(conformance::CHECKS.len() >= 11, "{:?}", conformance::CHECKS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compacted_history_is_refused_and_recent_history_kept() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig {
        history: 1_000,
        ..StoreConfig::default()
    };
    let store = SledStore::open(dir.path(), &config).unwrap();
    for i in 0..3_000u32 {
        store
            .put(
                format!("h/{}", i % 10).as_bytes(),
                &i.to_be_bytes(),
                Expect::Any,
            )
            .await
            .unwrap();
    }
    let oldest = store.oldest_revision();
    assert!(
        oldest > Revision(1),
        "nothing was compacted (oldest {oldest})"
    );
    assert!(
        oldest.0 <= 3_000 - 1_000,
        "kept less than the configured history: {oldest}"
    );
    match store.watch(b"h/", Revision(1)).await {
        Err(StoreError::Compacted {
            requested,
            oldest: o,
        }) => {
            assert_eq!(requested, Revision(1));
            assert_eq!(o, oldest);
        }
        other => panic!("watch from a compacted revision: {other:?}"),
    }
    let mut w = store.watch(b"h/", oldest).await.unwrap();
    let e = w
        .next_timeout(Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(e.kv.mod_revision, oldest);
    drop(w);
    drop(store);
    let reopened = SledStore::open(dir.path(), &config).unwrap();
    assert_eq!(reopened.revision(), Revision(3_000));
    assert!(reopened.oldest_revision() >= oldest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_ends_when_the_store_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path(), &StoreConfig::default()).unwrap();
    let mut w = store.watch(b"", Revision(0)).await.unwrap();
    assert_eq!(store.watchers(), 1);
    drop(store);
    let end = w.next_timeout(Duration::from_secs(5)).await;
    assert!(matches!(end, Err(StoreError::Closed)), "{end:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_directory_is_refused_by_name_and_reopened_once_released() {
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    let first = SledStore::open(dir.path(), &config).unwrap();
    first.put(b"k", b"v", Expect::Any).await.unwrap();
    let refused = SledStore::open_waiting(dir.path(), &config, Duration::from_millis(100));
    match refused {
        Err(e @ StoreError::InUse { .. }) => {
            let text = e.to_string();
            assert!(
                text.contains(&dir.path().display().to_string()) && text.contains("in use"),
                "{text}"
            );
        }
        other => panic!("second open of a held directory: {other:?}"),
    }
    // A waiting open succeeds once the holder lets go.
    let path = dir.path().to_owned();
    let config2 = config.clone();
    let waiter = std::thread::spawn(move || {
        SledStore::open_waiting(&path, &config2, Duration::from_secs(30)).map(|s| s.revision())
    });
    std::thread::sleep(Duration::from_millis(50));
    drop(first);
    assert_eq!(waiter.join().unwrap().unwrap(), Revision(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_and_reopen_at_once_keeps_every_write() {
    // sled lets go of its file lock from a background thread; an immediate reopen must wait
    // for it rather than fail (the cause of a CI failure in a publish test's restart).
    let dir = tempfile::tempdir().unwrap();
    let config = StoreConfig::default();
    for i in 0..200u32 {
        let store = SledStore::open(dir.path(), &config).unwrap();
        assert_eq!(store.revision(), Revision(u64::from(i)));
        store
            .put(format!("r/{i}").as_bytes(), b"x", Expect::Any)
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_of_one_group_commit_see_each_other() {
    // 64 writers race to create one key and 64 to bump a counter by compare-and-swap; the
    // writer takes them in rounds of many, applied as one sled batch, so each transaction
    // must see the ones before it in its round.
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SledStore::open(dir.path(), &StoreConfig::default()).unwrap());
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..64u32 {
        let store = Arc::clone(&store);
        racers.spawn(async move { store.put(b"once", &i.to_be_bytes(), Expect::Absent).await });
    }
    let mut created = 0;
    while let Some(r) = racers.join_next().await {
        match r.unwrap() {
            Ok(_) => created += 1,
            Err(StoreError::Conflict { .. }) => {}
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(created, 1, "the key was created {created} times");
    let mut bumps = tokio::task::JoinSet::new();
    for _ in 0..64 {
        let store = Arc::clone(&store);
        bumps.spawn(async move {
            loop {
                let (count, expect) = match store.get(b"counter").await.unwrap() {
                    Some(kv) => (
                        u64::from_be_bytes(kv.value[..].try_into().unwrap()),
                        Expect::ModRevision(kv.mod_revision),
                    ),
                    None => (0, Expect::Absent),
                };
                match store
                    .put(b"counter", &(count + 1).to_be_bytes(), expect)
                    .await
                {
                    Ok(_) => return,
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => panic!("{e}"),
                }
            }
        });
    }
    while let Some(r) = bumps.join_next().await {
        r.unwrap();
    }
    let kv = store.get(b"counter").await.unwrap().unwrap();
    assert_eq!(u64::from_be_bytes(kv.value[..].try_into().unwrap()), 64);
    assert_eq!(kv.version, 64);
}
