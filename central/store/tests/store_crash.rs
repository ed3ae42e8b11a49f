//! Crash test: a child process writes and acknowledges transactions and is killed with
//! SIGKILL at a random moment; after each kill the store reopens and must hold every
//! acknowledged write, no partial transaction, and a revision that never went backwards.
//!
//! `MERIDIAN_CRASH_KILLS` sets the number of kills (default 30, the CI figure).
//! The child is this same test binary, re-run with `MERIDIAN_CRASH_CHILD` set.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use meridian_store::{Op, RangeRequest, Revision, SledStore, Store, StoreConfig, Txn};
use rand::Rng;

const WRITERS: u32 = 4;

#[test]
fn child_writer() {
    let Some(dir) = std::env::var_os("MERIDIAN_CRASH_CHILD") else {
        return; // Only does something when the crash test starts it.
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = Arc::new(SledStore::open(dir.as_ref(), &StoreConfig::default()).unwrap());
        let stdout = Arc::new(std::sync::Mutex::new(std::io::stdout()));
        println!("READY");
        let mut tasks = Vec::new();
        for w in 0..WRITERS {
            let store = Arc::clone(&store);
            let stdout = Arc::clone(&stdout);
            tasks.push(tokio::spawn(async move {
                let last = store.get(format!("last/{w}").as_bytes()).await.unwrap();
                let mut i = last.map_or(0, |kv| decode(&kv.value) + 1);
                loop {
                    let value = i.to_be_bytes().to_vec();
                    let mut txn = Txn::new().then(Op::Put {
                        key: format!("last/{w}").into_bytes(),
                        value: value.clone(),
                    });
                    for part in ["a", "b", "c"] {
                        txn = txn.then(Op::Put {
                            key: format!("t/{w}/{i:08}/{part}").into_bytes(),
                            value: value.clone(),
                        });
                    }
                    let rev = store.txn(txn).await.unwrap().revision;
                    let mut out = stdout.lock().unwrap();
                    writeln!(out, "ACK {w} {i} {}", rev.0).unwrap();
                    out.flush().unwrap();
                    i += 1;
                }
            }));
        }
        // The writers never stop: the parent ends this process with SIGKILL.
        drop(tasks);
        std::future::pending::<()>().await;
    });
}

fn decode(raw: &[u8]) -> u64 {
    u64::from_be_bytes(raw[..8].try_into().unwrap())
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let kills: usize = std::env::var("MERIDIAN_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30);
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut rng = rand::rng();
    let mut acked: BTreeMap<(u32, u64), u64> = BTreeMap::new();
    let mut floor = Revision(0);
    let runtime = tokio::runtime::Runtime::new().unwrap();

    for kill in 0..kills {
        let mut child = Command::new(&exe)
            .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
            .env("MERIDIAN_CRASH_CHILD", dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines_tx, lines_rx) = std::sync::mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait for the store to open, then let the writers run for a random while.
        // libtest prints its own text first, on the same line with --nocapture.
        loop {
            let line = lines_rx.recv_timeout(Duration::from_secs(60));
            match line.as_deref() {
                Ok(l) if l.ends_with("READY") => break,
                Ok(_) => continue,
                Err(e) => panic!("kill {kill}: child did not start: {e}"),
            }
        }
        std::thread::sleep(Duration::from_millis(rng.random_range(5..200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let mut this_run = 0;
        for line in lines_rx.try_iter() {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [.., "ACK", w, i, rev] = parts[..] {
                acked.insert(
                    (w.parse().unwrap(), i.parse().unwrap()),
                    rev.parse().unwrap(),
                );
                this_run += 1;
            }
        }

        runtime.block_on(async {
            let store = SledStore::open(dir.path(), &StoreConfig::default()).unwrap();
            let revision = store.revision();
            let max_acked = acked.values().copied().max().unwrap_or(0);
            assert!(revision >= floor, "kill {kill}: revision went back from {floor} to {revision}");
            assert!(
                revision.0 >= max_acked,
                "kill {kill}: revision {revision} is below acknowledged revision {max_acked}"
            );
            floor = revision;
            let kvs = store.range(RangeRequest::prefix("t/")).await.unwrap().kvs;
            let mut parts: BTreeMap<(u32, u64), Vec<u64>> = BTreeMap::new();
            for kv in &kvs {
                let key = String::from_utf8(kv.key.clone()).unwrap();
                let fields: Vec<&str> = key.split('/').collect();
                let id = (fields[1].parse().unwrap(), fields[2].parse().unwrap());
                assert_eq!(decode(&kv.value), id.1, "kill {kill}: {key} holds the wrong value");
                parts.entry(id).or_default().push(kv.mod_revision.0);
            }
            for (id, revs) in &parts {
                assert_eq!(revs.len(), 3, "kill {kill}: transaction {id:?} is partial: {revs:?}");
                assert!(revs.windows(2).all(|p| p[0] == p[1]), "kill {kill}: {id:?} split across revisions");
            }
            for (id, rev) in &acked {
                let found = parts.get(id);
                assert!(found.is_some(), "kill {kill}: acknowledged transaction {id:?} (revision {rev}) lost");
                assert_eq!(found.unwrap()[0], *rev, "kill {kill}: {id:?} at another revision");
            }
            eprintln!(
                "kill {kill}: {this_run} acknowledged this run, {} in total, {} stored, revision {revision}",
                acked.len(),
                parts.len()
            );
        });
    }
    assert!(
        acked.len() > kills,
        "too few acknowledged writes to mean anything: {}",
        acked.len()
    );
    eprintln!(
        "crash test: {kills} kills, {} acknowledged transactions checked, 0 lost",
        acked.len()
    );
}
