//! `kill -9` loops over the channel, with real processes (this test binary re-run as a child,
//! as `central/tests/store_crash.rs` does):
//!
//! - R1: a child runs a real central (store, CA, QUIC channel on a fixed port) and writes intent
//!   generations, printing each acknowledged write; it is killed at a random moment while a real
//!   agent (in this process) stays connected across the restarts. After every kill: no
//!   acknowledged intent lost or partial, the store revision never went back, and the agent
//!   never holds a generation central lost.
//! - R2: a child runs a real agent that appends reports (printing each sequence it got) while
//!   central (in this process) keeps pushing new generations, applied through a slow reconciler
//!   that logs each apply; it is killed at a random moment. After every kill the agent's buffer
//!   holds every numbered report without a gap; at the end central holds every report exactly
//!   once (sequences 1..=last, no gap, no duplicate) and the agent applied the newest
//!   generation, the applies never going backwards.
//!
//! `MERIDIAN_CHANNEL_KILLS` sets the kills per loop (default 30, the CI figure).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc::Receiver;
use std::time::Duration;

use meridian_agent::Agent;
use meridian_agent::reconciler::{ReconcileError, Reconciler, RecordingReconciler};
use meridian_agent::store::AgentStore;
use meridian_central::server::Central;
use meridian_common::ids::{Generation, Sequence};
use meridian_common::model::{ReportBody, Severity, SiteIntent};
use meridian_store::Tables;
use meridian_store::{SledStore, Store, StoreConfig};
use meridian_testkit::agents;
use meridian_testkit::central::{self as test_central, Liveness};
use meridian_testkit::enrol;
use meridian_testkit::fixtures::*;
use meridian_testkit::observe::*;
use meridian_testkit::wait::{LIMIT, wait_for};
use rand::Rng;

const CENTRAL_CHILD: &str = "MERIDIAN_CHANNEL_CRASH_CENTRAL";
const AGENT_CHILD: &str = "MERIDIAN_CHANNEL_CRASH_AGENT";
const SITE: &str = "edge-crash";

fn kills() -> usize {
    std::env::var("MERIDIAN_CHANNEL_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// The intent of generation `g`: its content depends on `g`, so a mixed or partial record
/// shows.
fn intent_of(g: u64) -> SiteIntent {
    intent_with_networks(&site_id(SITE), g, (g % 7 + 1) as usize)
}

/// Starts this test binary as the child `test`, with `env` set; returns it and its stdout
/// lines.
fn spawn_child(test: &str, env: &[(&str, String)]) -> (Child, Receiver<String>) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args([test, "--exact", "--nocapture", "--test-threads=1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for the child's READY line (libtest may print before it on the same line).
fn wait_ready(rx: &Receiver<String>, what: &str) {
    loop {
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(l) if l.ends_with("READY") => return,
            Ok(_) => continue,
            Err(e) => panic!("{what}: child did not start: {e}"),
        }
    }
}

/// Kills the child with SIGKILL and returns every line it printed.
fn kill(mut child: Child, rx: Receiver<String>) -> Vec<String> {
    child.kill().unwrap();
    child.wait().unwrap();
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        lines.push(line);
    }
    lines
}

fn free_udp_port() -> SocketAddr {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// R1: central killed during intent writes.

#[test]
fn child_central() {
    let Some(dir) = std::env::var_os(CENTRAL_CHILD) else {
        return; // Only does something when the crash test starts it.
    };
    let listen: SocketAddr = std::env::var("MERIDIAN_CHANNEL_CRASH_LISTEN")
        .unwrap()
        .parse()
        .unwrap();
    let write = std::env::var_os("MERIDIAN_CHANNEL_CRASH_IDLE").is_none();
    #[allow(clippy::while_immutable_condition)]
    runtime().block_on(async move {
        let central = Central::open(test_central::config(
            Path::new(&dir),
            listen,
            Liveness::Quick,
        ))
        .await
        .unwrap();
        let intents = central.tables().intents();
        let mut g = intents
            .get(&site_id(SITE))
            .await
            .unwrap()
            .map_or(1, |i| i.record.generation.get() + 1);
        println!("READY");
        let mut out = std::io::stdout();
        while write {
            let rev = intents.upsert(&intent_of(g)).await.unwrap();
            writeln!(out, "ACK {g} {}", rev.0).unwrap();
            out.flush().unwrap();
            g += 1;
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        // Killed by the parent.
        std::future::pending::<()>().await;
    });
}

#[test]
fn central_kill_9_during_intent_writes_loses_no_acknowledged_intent() {
    let kills = kills();
    let dir = tempfile::tempdir().unwrap();
    let central_dir = dir.path().join("central");
    let listen = free_udp_port();
    let runtime = runtime();
    let mut rng = rand::rng();

    // Set up the site and the agent's bootstrap file with an in-process central on the same
    // port and data directory, then let the children take over.
    let agent = runtime.block_on(async {
        let central = Central::open(test_central::config(&central_dir, listen, Liveness::Quick))
            .await
            .unwrap();
        enrol::add_site(&central, SITE).await.unwrap();
        let boot = enrol::write_bootstrap(&central, SITE, vec![listen.to_string()], dir.path())
            .await
            .unwrap();
        let agent = Agent::start(
            agents::config(&dir.path().join("agent"), &boot, 200),
            Arc::new(RecordingReconciler::default()),
        )
        .await
        .unwrap();
        wait_for("agent enrolled and connected", LIMIT, || async {
            agent.status().unwrap().connected
        })
        .await;
        central.shutdown().await;
        agent
    });
    let env = |idle: bool| {
        let mut env = vec![
            (CENTRAL_CHILD, central_dir.display().to_string()),
            ("MERIDIAN_CHANNEL_CRASH_LISTEN", listen.to_string()),
        ];
        if idle {
            env.push(("MERIDIAN_CHANNEL_CRASH_IDLE", "1".into()));
        }
        env
    };

    let mut acked: BTreeMap<u64, u64> = BTreeMap::new();
    let mut floor = 0u64;
    let mut agent_held = Generation::new(0);
    let mut agent_sessions = 0;
    for kill_no in 0..kills {
        let (child, rx) = spawn_child("child_central", &env(false));
        wait_ready(&rx, &format!("kill {kill_no}"));
        std::thread::sleep(Duration::from_millis(rng.random_range(100..1_200)));
        let lines = kill(child, rx);
        for line in lines {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [.., "ACK", g, rev] = parts[..] {
                acked.insert(g.parse().unwrap(), rev.parse().unwrap());
            }
        }
        runtime.block_on(async {
            let store = Arc::new(
                SledStore::open(&central_dir.join("store"), &StoreConfig::default()).unwrap(),
            );
            let revision = store.revision().0;
            let tables = Tables::new(store.clone() as Arc<dyn Store>);
            let stored = tables.intents().get(&site_id(SITE)).await.unwrap();
            let (max_g, max_rev) = acked.iter().next_back().map_or((0, 0), |(g, r)| (*g, *r));
            assert!(
                revision >= floor,
                "kill {kill_no}: revision went back from {floor} to {revision}"
            );
            assert!(
                revision >= max_rev,
                "kill {kill_no}: revision {revision} below acknowledged {max_rev}"
            );
            floor = revision;
            let stored = stored.map(|s| s.record);
            let g = stored.as_ref().map_or(0, |s| s.generation.get());
            assert!(
                g >= max_g,
                "kill {kill_no}: acknowledged generation {max_g} lost (stored {g})"
            );
            if let Some(s) = &stored {
                assert_eq!(
                    s,
                    &intent_of(g),
                    "kill {kill_no}: generation {g} stored partially or mixed"
                );
            }
            let status = agent.status().unwrap();
            assert!(
                status.held >= agent_held,
                "kill {kill_no}: the agent's generation went back"
            );
            assert!(
                status.held.get() <= g,
                "kill {kill_no}: agent holds {} but central only {g}",
                status.held
            );
            agent_held = status.held;
            agent_sessions = status.sessions;
            drop(tables);
        });
    }
    // One more central, idle: the agent comes back and holds exactly central's newest.
    let newest = *acked.keys().next_back().unwrap();
    let (child, rx) = spawn_child("child_central", &env(true));
    wait_ready(&rx, "final");
    runtime.block_on(wait_for(
        "agent holds the newest generation",
        LIMIT,
        || async { agent.status().unwrap().held.get() >= newest },
    ));
    let _ = kill(child, rx);
    let status = agent.status().unwrap();
    assert!(status.held.get() >= newest);
    eprintln!(
        "R1: {kills} kills of central during intent writes; {} acknowledged generations, 0 lost, \
         revision never decreased (last {floor}); agent reconnected {} times, holds generation {}",
        acked.len(),
        agent_sessions,
        status.held
    );
    assert!(
        acked.len() > kills,
        "too few acknowledged writes: {}",
        acked.len()
    );
    runtime.block_on(agent.shutdown());
}

// ---------------------------------------------------------------------------------------
// R2: agent killed during report appends and during intent apply.

/// A reconciler that takes a while and logs `begin G` / `end G` to a file (appends survive
/// the process being killed: they are in the kernel).
#[derive(Debug)]
struct SlowLoggingReconciler {
    log: std::sync::Mutex<std::fs::File>,
}

impl Reconciler for SlowLoggingReconciler {
    fn apply(&self, intent: &SiteIntent) -> Result<(), ReconcileError> {
        let g = intent.generation;
        let mut log = self.log.lock().unwrap();
        writeln!(log, "begin {g}").unwrap();
        std::thread::sleep(Duration::from_millis(3));
        writeln!(log, "end {g}").unwrap();
        Ok(())
    }
}

#[test]
fn child_agent() {
    let Some(dir) = std::env::var_os(AGENT_CHILD) else {
        return; // Only does something when the crash test starts it.
    };
    let dir = PathBuf::from(dir);
    let run: String = std::env::var("MERIDIAN_CHANNEL_CRASH_RUN").unwrap();
    let append = std::env::var_os("MERIDIAN_CHANNEL_CRASH_IDLE").is_none();
    #[allow(clippy::while_immutable_condition)]
    runtime().block_on(async move {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("apply.log"))
            .unwrap();
        let reconciler = Arc::new(SlowLoggingReconciler {
            log: std::sync::Mutex::new(log),
        });
        let mut config = agents::config(&dir.join("agent"), &dir.join("bootstrap.toml"), 200);
        config.backoff_initial_ms = 20;
        config.backoff_max_ms = 100;
        // Only the test's events are reported: no utilisation period ends in a child's life.
        config.utilisation_report_interval_ms = 3_600_000;
        let agent = Agent::start(config, reconciler).await.unwrap();
        // Never killed before the identity is stored (enrolment spends the token).
        while agent.store().identity().unwrap().is_none() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        println!("READY");
        let mut out = std::io::stdout();
        let mut i = 0u64;
        while append {
            let msg = format!("{run}-{i}");
            let seq = agent
                .report(ReportBody::Event {
                    severity: Severity::Info,
                    resource: "site".into(),
                    message: msg.clone(),
                })
                .unwrap();
            writeln!(out, "APPENDED {} {msg}", seq.get()).unwrap();
            out.flush().unwrap();
            i += 1;
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        std::future::pending::<()>().await;
    });
}

#[test]
fn agent_kill_9_during_appends_and_applies_loses_and_duplicates_nothing() {
    let kills = kills();
    let dir = tempfile::tempdir().unwrap();
    let runtime = runtime();
    let mut rng = rand::rng();
    let central = runtime.block_on(async {
        let central = Central::open(test_central::config(
            &dir.path().join("central"),
            "127.0.0.1:0".parse().unwrap(),
            Liveness::Quick,
        ))
        .await
        .unwrap();
        enrol::add_site(&central, SITE).await.unwrap();
        let boot = enrol::write_bootstrap(
            &central,
            SITE,
            vec![central.channel().local_addr().to_string()],
            dir.path(),
        )
        .await
        .unwrap();
        std::fs::rename(boot, dir.path().join("bootstrap.toml")).unwrap();
        central
    });
    // Central keeps changing the site's intent: the agent is often killed mid-apply.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let tables = central.tables();
    let writer = runtime.spawn(async move {
        let mut g = 1;
        loop {
            tables.intents().upsert(&intent_of(g)).await.unwrap();
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(25)) => {}
                _ = stop_rx.changed() => return g,
            }
            g += 1;
        }
    });

    let agent_dir = dir.path().join("agent");
    let mut acked: BTreeMap<u64, String> = BTreeMap::new();
    let mut held_floor = Generation::new(0);
    let mut mid_apply = 0;
    let mut last_sequence = Sequence::new(0);
    for kill_no in 0..kills {
        let env = [
            (AGENT_CHILD, dir.path().display().to_string()),
            ("MERIDIAN_CHANNEL_CRASH_RUN", format!("run{kill_no}")),
        ];
        let (child, rx) = spawn_child("child_agent", &env);
        wait_ready(&rx, &format!("kill {kill_no}"));
        std::thread::sleep(Duration::from_millis(rng.random_range(50..800)));
        for line in kill(child, rx) {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let [.., "APPENDED", seq, msg] = parts[..] {
                let old = acked.insert(seq.parse().unwrap(), msg.to_owned());
                assert!(
                    old.is_none(),
                    "kill {kill_no}: sequence {seq} handed out twice"
                );
            }
        }
        let log = std::fs::read_to_string(dir.path().join("apply.log")).unwrap_or_default();
        if log.lines().last().is_some_and(|l| l.starts_with("begin")) {
            mid_apply += 1;
        }
        // Opening the crashed journal here runs recovery, as a restarted agent does, before it
        // closes again (the next agent then recovers it a second time: sled lost a flushed
        // write that way).
        let store = AgentStore::open(&agent_dir).unwrap();
        let last = store.last_sequence().unwrap();
        let acked_mark = store.last_acked().unwrap();
        let max_acked = acked.keys().next_back().copied().unwrap_or(0);
        assert!(
            last.get() >= max_acked,
            "kill {kill_no}: numbered report {max_acked} lost (last {last})"
        );
        // The buffer holds exactly what central has not acknowledged: no gap.
        let pending: Vec<u64> = store
            .pending(acked_mark, usize::MAX)
            .unwrap()
            .iter()
            .map(|r| r.sequence)
            .collect();
        let expected: Vec<u64> = (acked_mark.get() + 1..=last.get()).collect();
        assert_eq!(
            pending, expected,
            "kill {kill_no}: gap in the report buffer"
        );
        let held = store.held_generation().unwrap();
        let applied = store.applied_generation().unwrap();
        assert!(
            held >= held_floor,
            "kill {kill_no}: held generation went back"
        );
        assert!(
            applied <= held,
            "kill {kill_no}: applied {applied} above held {held}"
        );
        if applied < held {
            mid_apply += 1;
        }
        held_floor = held;
        last_sequence = last;
        drop(store);
    }
    let newest = runtime.block_on(async {
        let _ = stop_tx.send(true);
        writer.await.unwrap()
    });
    // One more agent, idle: it delivers everything and applies the newest generation.
    let env = [
        (AGENT_CHILD, dir.path().display().to_string()),
        ("MERIDIAN_CHANNEL_CRASH_RUN", "final".into()),
        ("MERIDIAN_CHANNEL_CRASH_IDLE", "1".into()),
    ];
    let (child, rx) = spawn_child("child_agent", &env);
    wait_ready(&rx, "final");
    runtime.block_on(async {
        wait_for(
            "every report stored and the newest generation applied",
            LIMIT,
            || async {
                let ch = central
                    .channel()
                    .site_channel(&site_id(SITE))
                    .await
                    .unwrap();
                ch.report_high_water >= last_sequence
                    && ch.applied_generation == Generation::new(newest)
            },
        )
        .await;
    });
    let _ = kill(child, rx);

    let stored = runtime.block_on(stored_reports(&central, SITE));
    let seqs: Vec<u64> = stored.iter().map(|r| r.sequence.get()).collect();
    let expected: Vec<u64> = (1..=last_sequence.get()).collect();
    assert_eq!(
        seqs, expected,
        "central's reports have a gap or a duplicate"
    );
    let mut messages = BTreeSet::new();
    for r in &stored {
        let ReportBody::Event { message, .. } = &r.body else {
            panic!("only events were reported");
        };
        assert!(
            messages.insert(message.clone()),
            "report {message} stored twice"
        );
        if let Some(m) = acked.get(&r.sequence.get()) {
            assert_eq!(m, message, "sequence {} holds another report", r.sequence);
        }
    }
    for seq in acked.keys() {
        assert!(*seq <= last_sequence.get());
    }
    // Applies never went backwards and ended at the newest generation.
    let log = std::fs::read_to_string(dir.path().join("apply.log")).unwrap();
    let ends: Vec<u64> = log
        .lines()
        .filter_map(|l| l.strip_prefix("end "))
        // A line a killed child was writing can be torn; every whole line must parse.
        .filter_map(|g| g.parse().ok())
        .collect();
    assert!(
        ends.windows(2).all(|w| w[0] <= w[1]),
        "an older generation was applied after a newer one"
    );
    assert_eq!(ends.last().copied(), Some(newest));
    eprintln!(
        "R2: {kills} kills of the agent during report appends and intent applies ({mid_apply} with an apply \
         unfinished); {} reports numbered, {} stored at central: 0 gaps, 0 duplicates; {} applies, \
         newest generation {newest} applied",
        last_sequence,
        stored.len(),
        ends.len()
    );
    runtime.block_on(central.shutdown());
}
