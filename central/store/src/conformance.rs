//! The store conformance suite: the behaviour every [`Store`] backend must show, written once.
//!
//! A backend's test calls [`run`] with a [`Backend`] that opens named stores; the sled
//! backend runs it in `central/tests/store_conformance.rs`, and a later etcd backend runs the
//! same checks. Each check returns a [`Failure`] describing what went wrong instead of
//! panicking, so one run reports every broken guarantee at once.

use std::sync::Arc;
use std::time::Duration;

use super::{
    Compare, EventKind, Expect, MAX_KEY_BYTES, MAX_VALUE_BYTES, Op, RangeRequest, Revision, Store,
    StoreError, Txn,
};

/// Opens stores for the suite.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Opens the store called `name`, creating it empty the first time. Opening a name again
    /// after every handle to it was dropped must show the same data (a restart).
    async fn open(&self, name: &str) -> Result<Arc<dyn Store>, StoreError>;
}

/// A broken guarantee.
#[derive(Debug)]
pub struct Failure(pub String);

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(": ");
            text.push_str(&s.to_string());
            source = s.source();
        }
        Failure(format!("unexpected store error: {text}"))
    }
}

type CheckResult = Result<(), Failure>;

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Failure(format!($($fmt)+)));
        }
    };
}

macro_rules! checks {
    ($($name:ident),+ $(,)?) => {
        /// Names of every check, in the order [`run`] runs them.
        pub const CHECKS: &[&str] = &[$(stringify!($name)),+];

        /// Runs every check against `backend`; returns the failures by check name.
        pub async fn run(backend: &dyn Backend) -> Vec<(&'static str, Failure)> {
            let mut failures = Vec::new();
            $(
                if let Err(f) = $name(backend).await {
                    failures.push((stringify!($name), f));
                }
            )+
            failures
        }
    };
}

checks!(
    put_get_and_revisions,
    compare_and_swap,
    delete_semantics,
    transactions_are_atomic,
    range_by_prefix_and_pages,
    watch_history_then_live,
    watch_slow_reader_sees_everything,
    watch_from_now,
    concurrent_increments_lose_nothing,
    restart_keeps_data_and_revision,
    limits_are_enforced,
);

async fn put_get_and_revisions(b: &dyn Backend) -> CheckResult {
    let s = b.open("put_get").await?;
    let start = s.revision();
    let r1 = s.put(b"a", b"1", Expect::Any).await?;
    ensure!(
        r1.0 == start.0 + 1,
        "first put at {r1}, store was at {start}"
    );
    let r2 = s.put(b"a", b"2", Expect::Any).await?;
    ensure!(r2.0 == r1.0 + 1, "second put at {r2} after {r1}");
    let kv = s.get(b"a").await?.ok_or(Failure("a missing".into()))?;
    ensure!(kv.value == b"2", "a = {:?}", kv.value);
    ensure!(
        kv.create_revision == r1,
        "create_revision {} != {r1}",
        kv.create_revision
    );
    ensure!(
        kv.mod_revision == r2,
        "mod_revision {} != {r2}",
        kv.mod_revision
    );
    ensure!(kv.version == 2, "version {}", kv.version);
    ensure!(s.get(b"b").await?.is_none(), "b exists before any write");
    ensure!(
        s.revision() == r2,
        "revision() {} after write at {r2}",
        s.revision()
    );
    Ok(())
}

async fn compare_and_swap(b: &dyn Backend) -> CheckResult {
    let s = b.open("cas").await?;
    let r1 = s.put(b"k", b"1", Expect::Absent).await?;
    let again = s.put(b"k", b"x", Expect::Absent).await;
    ensure!(
        matches!(again, Err(StoreError::Conflict { found: Some(r), .. }) if r == r1),
        "create over existing key: {again:?}"
    );
    let stale = s
        .put(b"k", b"x", Expect::ModRevision(Revision(r1.0 + 100)))
        .await;
    ensure!(
        matches!(stale, Err(StoreError::Conflict { .. })),
        "stale CAS: {stale:?}"
    );
    let r2 = s.put(b"k", b"2", Expect::ModRevision(r1)).await?;
    ensure!(r2 > r1, "CAS write at {r2}");
    let missing = s.put(b"none", b"x", Expect::ModRevision(r1)).await;
    ensure!(
        matches!(missing, Err(StoreError::Conflict { found: None, .. })),
        "CAS on a missing key: {missing:?}"
    );
    let value = s.get(b"k").await?.map(|kv| kv.value);
    ensure!(
        value.as_deref() == Some(&b"2"[..]),
        "failed CAS writes changed k: {value:?}"
    );
    ensure!(
        s.revision() == r2,
        "failed CAS used a revision: {} != {r2}",
        s.revision()
    );
    Ok(())
}

async fn delete_semantics(b: &dyn Backend) -> CheckResult {
    let s = b.open("delete").await?;
    let r1 = s.put(b"d", b"1", Expect::Any).await?;
    let nothing = s.delete(b"missing", Expect::Any).await?;
    ensure!(
        nothing.is_none(),
        "deleting a missing key returned {nothing:?}"
    );
    ensure!(s.revision() == r1, "deleting a missing key used a revision");
    let wrong = s
        .delete(b"d", Expect::ModRevision(Revision(r1.0 + 7)))
        .await;
    ensure!(
        matches!(wrong, Err(StoreError::Conflict { .. })),
        "stale delete: {wrong:?}"
    );
    let r2 = s.delete(b"d", Expect::ModRevision(r1)).await?;
    ensure!(
        r2 == Some(Revision(r1.0 + 1)),
        "delete at {r2:?} after {r1}"
    );
    ensure!(s.get(b"d").await?.is_none(), "d still present");
    let r3 = s.put(b"d", b"again", Expect::Absent).await?;
    let kv = s.get(b"d").await?.ok_or(Failure("d missing".into()))?;
    ensure!(
        kv.create_revision == r3 && kv.version == 1,
        "recreated key keeps old history: {kv:?}"
    );
    Ok(())
}

async fn transactions_are_atomic(b: &dyn Backend) -> CheckResult {
    let s = b.open("txn").await?;
    let r0 = s.put(b"t/guard", b"v1", Expect::Any).await?;
    let txn = Txn::new()
        .when(Compare::Value(b"t/guard".to_vec(), b"v1".to_vec()))
        .when(Compare::Absent(b"t/a".to_vec()))
        .then(Op::Put {
            key: b"t/a".to_vec(),
            value: b"A".to_vec(),
        })
        .then(Op::Put {
            key: b"t/b".to_vec(),
            value: b"B".to_vec(),
        })
        .then(Op::Delete {
            key: b"t/guard".to_vec(),
        })
        .otherwise(Op::Put {
            key: b"t/failed".to_vec(),
            value: b"1".to_vec(),
        });
    let ok = s.txn(txn.clone()).await?;
    ensure!(ok.succeeded, "txn with true compares did not succeed");
    ensure!(
        ok.revision.0 == r0.0 + 1,
        "txn with 3 writes used revisions {r0}..{}",
        ok.revision
    );
    for key in [&b"t/a"[..], b"t/b"] {
        let kv = s
            .get(key)
            .await?
            .ok_or(Failure("txn write missing".into()))?;
        ensure!(
            kv.mod_revision == ok.revision,
            "txn writes at different revisions"
        );
    }
    ensure!(s.get(b"t/guard").await?.is_none(), "txn delete not applied");
    let failed = s.txn(txn).await?;
    ensure!(!failed.succeeded, "txn with false compares succeeded");
    ensure!(
        s.get(b"t/failed").await?.is_some(),
        "failure branch not applied"
    );
    let nothing = s
        .txn(Txn::new().when(Compare::Exists(b"t/nope".to_vec())))
        .await?;
    ensure!(
        !nothing.succeeded && nothing.revision == s.revision(),
        "empty txn: {nothing:?}"
    );
    let dup = s
        .txn(
            Txn::new()
                .then(Op::Put {
                    key: b"t/x".to_vec(),
                    value: b"1".to_vec(),
                })
                .then(Op::Put {
                    key: b"t/x".to_vec(),
                    value: b"2".to_vec(),
                }),
        )
        .await;
    ensure!(
        matches!(dup, Err(StoreError::InvalidRequest(_))),
        "duplicate key in txn: {dup:?}"
    );
    ensure!(s.get(b"t/x").await?.is_none(), "refused txn wrote t/x");
    Ok(())
}

async fn range_by_prefix_and_pages(b: &dyn Backend) -> CheckResult {
    let s = b.open("range").await?;
    for key in ["r/c", "r/a", "r/b", "r0", "q/z", "r/d"] {
        s.put(key.as_bytes(), key.as_bytes(), Expect::Any).await?;
    }
    let all = s.range(RangeRequest::prefix("r/")).await?;
    let keys: Vec<_> = all.kvs.iter().map(|kv| kv.key.clone()).collect();
    ensure!(
        keys == [b"r/a", b"r/b", b"r/c", b"r/d"].map(|k| k.to_vec()),
        "range r/ gave {:?}",
        keys.iter()
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect::<Vec<_>>()
    );
    ensure!(
        !all.more && all.revision == s.revision(),
        "range flags: more {} rev {}",
        all.more,
        all.revision
    );
    let mut page = RangeRequest {
        prefix: b"r/".to_vec(),
        start_after: None,
        limit: 3,
    };
    let first = s.range(page.clone()).await?;
    ensure!(
        first.kvs.len() == 3 && first.more,
        "first page: {} more={}",
        first.kvs.len(),
        first.more
    );
    page.start_after = first.kvs.last().map(|kv| kv.key.clone());
    let second = s.range(page).await?;
    ensure!(
        second.kvs.len() == 1 && second.kvs[0].key == b"r/d" && !second.more,
        "second page: {:?}",
        second.kvs
    );
    let none = s.range(RangeRequest::prefix("zz")).await?;
    ensure!(
        none.kvs.is_empty(),
        "range of an absent prefix is not empty"
    );
    Ok(())
}

async fn watch_history_then_live(b: &dyn Backend) -> CheckResult {
    let s = b.open("watch").await?;
    let r1 = s.put(b"w/1", b"a", Expect::Any).await?;
    s.put(b"other", b"x", Expect::Any).await?;
    s.put(b"w/2", b"b", Expect::Any).await?;
    let mut w = s.watch(b"w/", r1).await?;
    s.delete(b"w/1", Expect::Any).await?;
    s.put(b"w/3", b"c", Expect::Any).await?;
    let mut seen = Vec::new();
    for _ in 0..4 {
        let e = w
            .next_timeout(Duration::from_secs(10))
            .await?
            .ok_or(Failure("watch stalled".into()))?;
        seen.push((
            e.kind,
            String::from_utf8_lossy(&e.kv.key).into_owned(),
            e.kv.mod_revision,
        ));
    }
    let kinds: Vec<_> = seen.iter().map(|(k, key, _)| (*k, key.as_str())).collect();
    ensure!(
        kinds
            == [
                (EventKind::Put, "w/1"),
                (EventKind::Put, "w/2"),
                (EventKind::Delete, "w/1"),
                (EventKind::Put, "w/3")
            ],
        "watch saw {seen:?}"
    );
    ensure!(
        seen.windows(2).all(|p| p[0].2 < p[1].2),
        "revisions not increasing: {seen:?}"
    );
    let extra = w.next_timeout(Duration::from_millis(100)).await?;
    ensure!(extra.is_none(), "watch delivered an extra event {extra:?}");
    Ok(())
}

async fn watch_slow_reader_sees_everything(b: &dyn Backend) -> CheckResult {
    let s = b.open("watch_slow").await?;
    let mut w = s.watch(b"s/", Revision(0)).await?;
    let n = 2_000u32;
    let first = s.revision();
    for i in 0..n {
        s.put(
            format!("s/{:05}", i % 50).as_bytes(),
            &i.to_be_bytes(),
            Expect::Any,
        )
        .await?;
    }
    for i in 0..n {
        let e = w
            .next_timeout(Duration::from_secs(10))
            .await?
            .ok_or(Failure(format!("watch stalled after {i} events")))?;
        ensure!(
            e.kv.value == i.to_be_bytes() && e.kv.mod_revision.0 == first.0 + 1 + u64::from(i),
            "event {i} out of order: value {:?} at {}",
            e.kv.value,
            e.kv.mod_revision
        );
    }
    Ok(())
}

async fn watch_from_now(b: &dyn Backend) -> CheckResult {
    let s = b.open("watch_now").await?;
    s.put(b"n/old", b"x", Expect::Any).await?;
    let mut w = s.watch(b"n/", Revision(0)).await?;
    let r = s.put(b"n/new", b"y", Expect::Any).await?;
    let e = w
        .next_timeout(Duration::from_secs(10))
        .await?
        .ok_or(Failure("no event".into()))?;
    ensure!(
        e.kv.key == b"n/new" && e.kv.mod_revision == r,
        "watch from now saw {e:?}"
    );
    Ok(())
}

async fn concurrent_increments_lose_nothing(b: &dyn Backend) -> CheckResult {
    let s = b.open("counter").await?;
    s.put(b"c", &0u64.to_be_bytes(), Expect::Any).await?;
    let tasks = 8;
    let each = 25;
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let s = Arc::clone(&s);
        handles.push(tokio::spawn(async move {
            let mut done = 0;
            while done < each {
                let kv = s.get(b"c").await?.expect("counter exists");
                let n = u64::from_be_bytes(kv.value[..8].try_into().expect("8 bytes"));
                match s
                    .put(
                        b"c",
                        &(n + 1).to_be_bytes(),
                        Expect::ModRevision(kv.mod_revision),
                    )
                    .await
                {
                    Ok(_) => done += 1,
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            Ok::<_, StoreError>(())
        }));
    }
    for h in handles {
        h.await
            .map_err(|e| Failure(format!("task panicked: {e}")))??;
    }
    let kv = s.get(b"c").await?.ok_or(Failure("counter gone".into()))?;
    let n = u64::from_be_bytes(
        kv.value[..8]
            .try_into()
            .map_err(|_| Failure("short".into()))?,
    );
    ensure!(
        n == tasks * each,
        "counter is {n}, expected {}",
        tasks * each
    );
    Ok(())
}

async fn restart_keeps_data_and_revision(b: &dyn Backend) -> CheckResult {
    let s = b.open("restart").await?;
    s.put(b"p/1", b"one", Expect::Any).await?;
    let last = s
        .txn(Txn::new().then(Op::Put {
            key: b"p/2".to_vec(),
            value: b"two".to_vec(),
        }))
        .await?
        .revision;
    drop(s);
    let s = b.open("restart").await?;
    ensure!(
        s.revision() == last,
        "revision after restart {} != {last}",
        s.revision()
    );
    let keys = s.range(RangeRequest::prefix("p/")).await?.kvs.len();
    ensure!(keys == 2, "{keys} keys after restart");
    let next = s.put(b"p/3", b"three", Expect::Any).await?;
    ensure!(
        next.0 == last.0 + 1,
        "first write after restart at {next}, last before {last}"
    );
    let mut w = s.watch(b"p/", Revision(1)).await?;
    let first = w.next_timeout(Duration::from_secs(10)).await?;
    ensure!(
        first.as_ref().map(|e| e.kv.key.as_slice()) == Some(b"p/1"),
        "history after restart starts with {first:?}"
    );
    Ok(())
}

async fn limits_are_enforced(b: &dyn Backend) -> CheckResult {
    let s = b.open("limits").await?;
    let before = s.revision();
    let empty = s.put(b"", b"x", Expect::Any).await;
    ensure!(
        matches!(empty, Err(StoreError::InvalidRequest(_))),
        "empty key: {empty:?}"
    );
    let long_key = vec![b'k'; MAX_KEY_BYTES + 1];
    let r = s.put(&long_key, b"x", Expect::Any).await;
    ensure!(
        matches!(r, Err(StoreError::InvalidRequest(_))),
        "long key: {r:?}"
    );
    let big = vec![0u8; MAX_VALUE_BYTES + 1];
    let r = s.put(b"big", &big, Expect::Any).await;
    ensure!(
        matches!(r, Err(StoreError::InvalidRequest(_))),
        "big value: {r:?}"
    );
    let r = s.get(&long_key).await;
    ensure!(
        matches!(r, Err(StoreError::InvalidRequest(_))),
        "get with long key: {r:?}"
    );
    ensure!(s.revision() == before, "refused writes used revisions");
    let max = vec![1u8; MAX_VALUE_BYTES];
    s.put(b"max", &max, Expect::Any).await?;
    let back = s.get(b"max").await?.map(|kv| kv.value.len());
    ensure!(
        back == Some(MAX_VALUE_BYTES),
        "largest value came back as {back:?}"
    );
    Ok(())
}
