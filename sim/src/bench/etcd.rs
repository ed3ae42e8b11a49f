//! `meridian-sim bench etcd`: the baseline of TARGETS.md B2, etcd 3.4's watch fan-out to N
//! watchers, measured the way B2 measures Meridian's intent fan-out.
//!
//! - etcd: Debian's `etcd-server` (3.4.23 on Debian 12, `/usr/bin/etcd`), started by the
//!   benchmark as a child process: one member on 127.0.0.1 with free ports, a fresh data
//!   directory, default durability (the WAL is fsynced before a write is committed and before
//!   any watcher sees it). It is killed when the benchmark ends, also on an error
//!   ([`EtcdServer`]'s `Drop`). When `/usr/bin/etcd` is missing the benchmark installs
//!   `etcd-server` with `apt-get` if it runs as root, and otherwise fails with
//!   [`EtcdMissing`], which says how to install it.
//! - Client: etcd's v3 gRPC API (KV.Put, Watch.Watch) over tonic, generated at build time from
//!   the small subset in `sim/proto/etcd_v3_subset.proto`.
//! - Watchers: one per site, each on its own prefix `/sites/{site}/`, as each Meridian agent
//!   receives only its own site's intent. Each watch is its own gRPC stream (one agent, one
//!   watch), and the streams are spread round-robin over 100 HTTP/2 connections (fewer when
//!   there are fewer watchers): one connection per watcher would be 10,000 connections in one
//!   client process, one connection for all would put every event behind one TCP stream; a
//!   client library multiplexes its watches the same way. `--watches-per-stream` puts several
//!   watches on one stream instead, as `clientv3` does with watches sharing a context. Every
//!   watch is created and confirmed (its `created` response received) before the clock starts.
//! - The change: one put per site, `/sites/{site}/intent` with the same JSON intent Meridian's
//!   B2 writes, in transactions of 512 puts (`KV.Txn`, etcd started with `--max-txn-ops` to
//!   allow them), one after another, as B2 writes Meridian's change.
//! - Measured: per watcher, the time from the start of the change until its stream delivered
//!   the event for its key; p50, p99, max, and when the last put was acknowledged. A watcher
//!   that gets no event, or one that is canceled, fails the run: nothing is dropped silently.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use meridian_common::ids::SiteId;

use super::harness::{BoxError, site_name};
use meridian_testkit::fixtures::empty_intent;

/// The generated client of the etcd v3 API subset (package `etcdserverpb`).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    tonic::include_proto!("etcdserverpb");
}

use pb::kv_client::KvClient;
use pb::watch_client::WatchClient;

/// Where Debian's `etcd-server` puts etcd.
pub const ETCD_BIN: &str = "/usr/bin/etcd";

/// How to install etcd 3.4 where the benchmark cannot.
pub const INSTALL_HINT: &str =
    "install Debian's etcd 3.4 as root: apt-get install -y etcd-server (3.4.23 on Debian 12)";

/// Options of `bench etcd`.
#[derive(Debug, Clone)]
pub struct EtcdBenchOptions {
    /// Watchers, one per site (B2's N).
    pub watchers: usize,
    /// HTTP/2 connections the watch streams and puts are spread over (at most one per stream).
    pub connections: usize,
    /// Watches per gRPC Watch stream (1: a stream per watcher).
    pub watches_per_stream: usize,
    /// Puts per transaction (the change is written one transaction after another).
    pub txn_puts: usize,
    /// The etcd binary; missing at [`ETCD_BIN`], it is installed with apt-get when root.
    pub etcd_bin: PathBuf,
    /// How long every watcher may take to get its event.
    pub timeout: Duration,
}

impl EtcdBenchOptions {
    /// `watchers` watchers with the defaults: 100 connections, one watch per stream,
    /// transactions of B2's size, Debian's etcd, 120 s.
    pub fn new(watchers: usize) -> Self {
        EtcdBenchOptions {
            watchers,
            connections: 100,
            watches_per_stream: 1,
            txn_puts: super::harness::CHANGE_TXN_INTENTS,
            etcd_bin: PathBuf::from(ETCD_BIN),
            timeout: Duration::from_secs(120),
        }
    }
}

/// The figures of one run.
#[derive(Debug, Clone, Default)]
pub struct EtcdBenchReport {
    /// `etcd --version`'s first line.
    pub version: String,
    pub watchers: usize,
    pub connections: usize,
    pub streams: usize,
    /// Time to open the connections and create and confirm every watch (not measured in B2).
    pub setup: Duration,
    /// Watchers that received their event (the run fails unless it is `watchers`).
    pub received: usize,
    /// When the last put was acknowledged, from the start of the change.
    pub puts_done: Duration,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    /// Every watcher's time from the start of the change to its event, sorted.
    pub samples: Vec<Duration>,
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

impl std::fmt::Display for EtcdBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "etcd watch fan-out ({}), N = {} watchers on {} streams over {} connections \
             (set up in {})",
            self.version,
            self.watchers,
            self.streams,
            self.connections,
            ms(self.setup)
        )?;
        writeln!(
            f,
            "  one put per watcher's prefix, in transactions: p50 {} p99 {} max {} ({}/{} received; last put \
             acknowledged at {})",
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.received,
            self.watchers,
            ms(self.puts_done)
        )
    }
}

/// etcd is not installed and the benchmark could not install it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("etcd is not installed at {path}: {why}")]
pub struct EtcdMissing {
    pub path: PathBuf,
    /// Why it could not be installed, and how to install it.
    pub why: String,
}

/// Whether this process runs as root (`Uid:` of /proc/self/status).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `bin` if it exists; installs Debian's `etcd-server` first when `bin` is [`ETCD_BIN`], it is
/// missing and this process runs as root.
pub fn ensure_installed(bin: &Path) -> Result<PathBuf, EtcdMissing> {
    if bin.exists() {
        return Ok(bin.to_owned());
    }
    let missing = |why: String| EtcdMissing {
        path: bin.to_owned(),
        why,
    };
    if bin != Path::new(ETCD_BIN) {
        return Err(missing("no such file".into()));
    }
    if !is_root() {
        return Err(missing(format!("not running as root; {INSTALL_HINT}")));
    }
    eprintln!("etcd: {ETCD_BIN} is missing; installing etcd-server with apt-get");
    let install = || {
        Command::new("apt-get")
            .args([
                "install",
                "-y",
                "-qq",
                "--no-install-recommends",
                "etcd-server",
            ])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
    };
    let mut ok = install().is_ok_and(|s| s.success());
    if !ok {
        // The package lists may be missing or stale.
        let _ = Command::new("apt-get")
            .args(["update", "-qq"])
            .stdout(Stdio::null())
            .status();
        ok = install().is_ok_and(|s| s.success());
    }
    if ok && bin.exists() {
        Ok(bin.to_owned())
    } else {
        Err(missing(format!(
            "apt-get install etcd-server failed; {INSTALL_HINT}"
        )))
    }
}

/// A running etcd child process with its own data directory; killed when dropped.
#[derive(Debug)]
pub struct EtcdServer {
    child: Child,
    /// `http://127.0.0.1:<port>` of the client API.
    pub endpoint: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Two free ports on 127.0.0.1 (bound at once so they differ, then let go).
fn free_ports() -> std::io::Result<(u16, u16)> {
    let a = std::net::TcpListener::bind("127.0.0.1:0")?;
    let b = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?.port(), b.local_addr()?.port()))
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

impl EtcdServer {
    /// Starts `bin` as a single member on free 127.0.0.1 ports and waits until it takes
    /// writes. Retries on other ports if a port was taken between choosing and binding.
    pub async fn start(bin: &Path) -> Result<EtcdServer, BoxError> {
        let mut last = None;
        for _ in 0..3 {
            match Self::start_once(bin).await {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| "etcd did not start".into()))
    }

    async fn start_once(bin: &Path) -> Result<EtcdServer, BoxError> {
        let dir = tempfile::tempdir()?;
        let (client, peer) = free_ports()?;
        let endpoint = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let log = dir.path().join("etcd.log");
        let out = std::fs::File::create(&log)?;
        let mut cmd = Command::new(bin);
        // Only the flags below configure it: no ETCD_* variable of ours leaks in.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("ETCD_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd
            .arg("--name=bench")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={endpoint}"))
            .arg(format!("--advertise-client-urls={endpoint}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=bench={peer_url}"))
            .arg("--initial-cluster-state=new")
            // Transactions as large as Meridian's store allows (etcd's default is 128 ops).
            .arg(format!("--max-txn-ops={}", meridian_store::MAX_TXN_OPS))
            .arg("--logger=zap")
            .arg("--log-level=warn")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()?;
        let mut server = EtcdServer {
            child,
            endpoint,
            log,
            _dir: dir,
        };
        let started = Instant::now();
        loop {
            if let Some(status) = server.child.try_wait()? {
                return Err(
                    format!("etcd exited at start ({status}): {}", log_tail(&server.log)).into(),
                );
            }
            if let Ok(channel) = server.connect().await {
                let put = pb::PutRequest {
                    key: b"/meridian-bench/ready".to_vec(),
                    value: b"1".to_vec(),
                };
                if KvClient::new(channel).put(put).await.is_ok() {
                    return Ok(server);
                }
            }
            if started.elapsed() > Duration::from_secs(30) {
                return Err(format!(
                    "etcd did not take writes within 30 s: {}",
                    log_tail(&server.log)
                )
                .into());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The etcd process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new HTTP/2 connection to the client API.
    pub async fn connect(&self) -> Result<tonic::transport::Channel, BoxError> {
        Ok(
            tonic::transport::Endpoint::from_shared(self.endpoint.clone())?
                .connect_timeout(Duration::from_secs(5))
                .connect()
                .await?,
        )
    }
}

/// `etcd --version`'s first line.
fn version(bin: &Path) -> String {
    Command::new(bin)
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(|l| l.replace("etcd Version: ", "etcd "))
        })
        .unwrap_or_else(|| "etcd, version unknown".into())
}

/// The watched prefix of site `i`.
fn prefix(i: usize) -> Vec<u8> {
    format!("/sites/{}/", site_name(i)).into_bytes()
}

/// The key written for site `i`.
fn key(i: usize) -> Vec<u8> {
    format!("/sites/{}/intent", site_name(i)).into_bytes()
}

/// The site index of a key written by [`key`].
fn index_of(key: &[u8]) -> Option<usize> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix("/sites/sim-")?;
    rest.split('/').next()?.parse().ok()
}

/// The end of the range of keys starting with `prefix` (its last byte incremented).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// One Watch stream and the watchers on it, confirmed.
struct Stream {
    sites: Vec<usize>,
    inbound: tonic::Streaming<pb::WatchResponse>,
}

/// Opens a Watch stream on `channel` watching the prefixes of `sites`; returns once every
/// watch is confirmed created.
async fn open_stream(
    channel: tonic::transport::Channel,
    sites: Vec<usize>,
) -> Result<Stream, BoxError> {
    let creates: Vec<pb::WatchRequest> = sites
        .iter()
        .map(|&i| {
            let key = prefix(i);
            pb::WatchRequest {
                request_union: Some(pb::watch_request::RequestUnion::CreateRequest(
                    pb::WatchCreateRequest {
                        range_end: prefix_end(&key),
                        key,
                        start_revision: 0,
                    },
                )),
            }
        })
        .collect();
    // The request side stays open (pending after the creates) for the stream's lifetime.
    let outbound = futures_util::stream::iter(creates).chain(futures_util::stream::pending());
    let mut inbound = WatchClient::new(channel)
        .watch(outbound)
        .await?
        .into_inner();
    let mut ids = HashSet::new();
    while ids.len() < sites.len() {
        let r = inbound
            .message()
            .await?
            .ok_or("etcd closed a watch stream before confirming its watches")?;
        if r.canceled {
            return Err(format!("etcd canceled a watch at creation: {}", r.cancel_reason).into());
        }
        if r.created && !ids.insert(r.watch_id) {
            return Err(format!("etcd confirmed watch {} twice", r.watch_id).into());
        }
    }
    Ok(Stream { sites, inbound })
}

/// Waits for one event per watcher of `stream`; returns (site, time from `start`).
async fn receive(
    mut stream: Stream,
    start: Instant,
    received: Arc<AtomicUsize>,
) -> Result<Vec<(usize, Duration)>, BoxError> {
    let mut waiting: HashSet<usize> = stream.sites.iter().copied().collect();
    let mut times = Vec::with_capacity(waiting.len());
    while !waiting.is_empty() {
        let r = stream
            .inbound
            .message()
            .await?
            .ok_or("etcd closed a watch stream before its events arrived")?;
        let at = start.elapsed();
        if r.canceled {
            return Err(format!(
                "etcd canceled watch {}: {} (compacted at {})",
                r.watch_id, r.cancel_reason, r.compact_revision
            )
            .into());
        }
        for event in r.events {
            let key = event.kv.map(|kv| kv.key).unwrap_or_default();
            let site = index_of(&key)
                .filter(|i| waiting.remove(i))
                .ok_or_else(|| {
                    format!(
                        "unexpected event for {} on a stream watching {} sites",
                        String::from_utf8_lossy(&key),
                        stream.sites.len()
                    )
                })?;
            times.push((site, at));
            received.fetch_add(1, Ordering::Relaxed);
        }
    }
    Ok(times)
}

/// Runs the baseline and returns its figures.
pub async fn run(opts: &EtcdBenchOptions) -> Result<EtcdBenchReport, BoxError> {
    let n = opts.watchers.max(1);
    let bin = ensure_installed(&opts.etcd_bin)?;
    let version = version(&bin);
    let server = EtcdServer::start(&bin).await?;
    eprintln!("etcd ({version}) on {}", server.endpoint);

    let per_stream = opts.watches_per_stream.max(1);
    let streams = n.div_ceil(per_stream);
    let connections = opts.connections.clamp(1, streams);
    let setup_start = Instant::now();
    let mut channels = Vec::with_capacity(connections);
    for _ in 0..connections {
        channels.push(server.connect().await?);
    }
    // Create the watches, a bounded number of streams at a time.
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let mut opening = tokio::task::JoinSet::new();
    for s in 0..streams {
        let sites: Vec<usize> = (s * per_stream..((s + 1) * per_stream).min(n)).collect();
        let channel = channels[s % connections].clone();
        let gate = Arc::clone(&gate);
        opening.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            open_stream(channel, sites).await
        });
    }
    let mut open = Vec::with_capacity(streams);
    while let Some(r) = opening.join_next().await {
        open.push(r??);
    }
    let setup = setup_start.elapsed();
    eprintln!(
        "etcd: {n} watches created on {streams} streams over {connections} connections in {}",
        ms(setup)
    );

    // The change: one put per site, in transactions of `txn_puts`, one after another.
    let received = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut receivers = tokio::task::JoinSet::new();
    for stream in open {
        receivers.spawn(receive(stream, start, Arc::clone(&received)));
    }
    let mut kv = KvClient::new(channels[0].clone())
        .max_decoding_message_size(64 * 1024 * 1024)
        .max_encoding_message_size(64 * 1024 * 1024);
    let per_txn = opts.txn_puts.clamp(1, meridian_store::MAX_TXN_OPS);
    let mut success = Vec::with_capacity(per_txn);
    for i in 0..n {
        let site = SiteId::parse(&site_name(i))?;
        let value = serde_json::to_vec(&empty_intent(&site, 1))?;
        success.push(pb::RequestOp {
            request: Some(pb::request_op::Request::RequestPut(pb::PutRequest {
                key: key(i),
                value,
            })),
        });
        if success.len() == per_txn || i + 1 == n {
            let txn = pb::TxnRequest {
                success: std::mem::take(&mut success),
            };
            if !kv.txn(txn).await?.into_inner().succeeded {
                return Err("an unconditional etcd transaction did not succeed".into());
            }
        }
    }
    let puts_done = start.elapsed();
    let mut samples = Vec::with_capacity(n);
    let collect = async {
        while let Some(r) = receivers.join_next().await {
            samples.extend(r??.into_iter().map(|(_, t)| t));
        }
        Ok::<(), BoxError>(())
    };
    let left = opts.timeout.saturating_sub(start.elapsed());
    match tokio::time::timeout(left, collect).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(format!(
                "only {} of {n} etcd watchers received their event within {} s",
                received.load(Ordering::Relaxed),
                opts.timeout.as_secs()
            )
            .into());
        }
    }
    if samples.len() != n {
        return Err(format!(
            "{} of {n} etcd watchers received their event",
            samples.len()
        )
        .into());
    }
    samples.sort();
    drop(server);
    Ok(EtcdBenchReport {
        version,
        watchers: n,
        connections,
        streams,
        setup,
        received: samples.len(),
        puts_done,
        p50: super::percentile(&samples, 0.5),
        p99: super::percentile(&samples, 0.99),
        max: *samples.last().expect("n >= 1"),
        samples,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_do_not_overlap_and_keys_map_back() {
        assert_eq!(prefix_end(b"/sites/a/"), b"/sites/a0".to_vec());
        assert_eq!(prefix_end(&[b'a', 0xff]), b"b".to_vec());
        for i in [0, 1, 10, 9_999] {
            let (p, k) = (prefix(i), key(i));
            assert!(k.starts_with(&p) && k < prefix_end(&p), "{i}");
            assert_eq!(index_of(&k), Some(i));
            // No other site's key falls into site i's range.
            for j in [0, 1, 10, 100, 9_999].into_iter().filter(|j| *j != i) {
                let other = key(j);
                assert!(!(other >= p && other < prefix_end(&p)), "{i} {j}");
            }
        }
        assert_eq!(index_of(b"/elsewhere"), None);
    }
}
