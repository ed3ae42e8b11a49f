//! B2's etcd baseline (`meridian-sim bench etcd`) at a tiny size, against a real etcd 3.4
//! (Debian's `etcd-server`; installed with apt-get when missing and the test runs as root, as
//! `scripts/test.sh` does): every watcher gets its event, the latencies are ordered, and the
//! etcd child is gone afterwards.

use std::path::Path;
use std::time::Duration;

use meridian_sim::bench::etcd::{self, ETCD_BIN, EtcdBenchOptions, EtcdServer};

fn check(r: &etcd::EtcdBenchReport, n: usize) {
    assert_eq!(r.watchers, n);
    assert_eq!(r.received, n, "{r}");
    assert_eq!(r.samples.len(), n, "{r}");
    assert!(
        r.samples.windows(2).all(|w| w[0] <= w[1]),
        "samples not sorted"
    );
    assert!(r.samples[0] > Duration::ZERO, "{r}");
    assert!(r.p50 > Duration::ZERO, "{r}");
    assert!(r.p50 <= r.p99 && r.p99 <= r.max, "{r}");
    assert_eq!(r.max, *r.samples.last().unwrap());
    // A watcher may see its event before the put's own response arrives: no order there.
    assert!(r.puts_done > Duration::ZERO, "{r}");
    assert!(r.version.contains("3.4"), "not etcd 3.4: {}", r.version);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_watchers_each_get_their_event() {
    let opts = EtcdBenchOptions {
        connections: 10,
        ..EtcdBenchOptions::new(50)
    };
    let r = etcd::run(&opts).await.expect("etcd baseline");
    check(&r, 50);
    assert_eq!((r.connections, r.streams), (10, 50));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_sharing_a_stream_each_get_their_event() {
    let opts = EtcdBenchOptions {
        connections: 4,
        watches_per_stream: 8,
        // 50 puts in transactions of 7: 8 transactions, the last one short.
        txn_puts: 7,
        ..EtcdBenchOptions::new(50)
    };
    let r = etcd::run(&opts).await.expect("etcd baseline");
    check(&r, 50);
    // 50 watches, 8 a stream: 7 streams over 4 connections.
    assert_eq!((r.connections, r.streams), (4, 7));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_etcd_child_is_killed_when_dropped() {
    let bin = etcd::ensure_installed(Path::new(ETCD_BIN)).expect("etcd installed");
    let server = EtcdServer::start(&bin).await.expect("etcd starts");
    let pid = server.pid();
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(server);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "etcd {pid} still there"
    );
}

#[test]
fn a_missing_binary_elsewhere_is_not_installed_but_explained() {
    let e = etcd::ensure_installed(Path::new("/nonexistent/etcd")).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/etcd"), "{e}");
}
