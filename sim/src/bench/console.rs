//! B11: the operator console (`central/src/console/`) at fleet scale, measured from a client
//! on the same machine.
//!
//! A real central (its console on its own HTTPS listener, certificate from central's CA) over
//! a generated fleet (sites, regions, servers). The client logs in with the bootstrap admin's
//! API token through the login form and runs on its own tokio runtime, like a separate
//! machine would, over HTTP/1.1 (hyper's `http1` client over tokio-rustls, trusting only
//! central's CA). It measures:
//! - the fleet page: `GET /fleet` `renders` times over one kept-alive connection, each from
//!   the request sent to the last byte of the answer read (server-side render of every site
//!   on the SVG map, counts, GPUs by model and the first page of the site list); then as many
//!   again each over a fresh TCP + TLS connection (handshake included); and the page's size
//!   (uncompressed HTML, as sent);
//! - the live-update fan-out: `streams` `GET /fleet/events` streams, each its own HTTPS
//!   connection, read frame by frame. Every stream is connected and has received a probe
//!   change published into the console's feed before the clock starts. Then `changes` sites
//!   flip their state (online <-> disconnected) in the store, in transactions of
//!   `per_txn` sites one after another, from the first write; each stream counts the
//!   `event: site` events of the changed sites. Per stream: the time until it had every
//!   change; per delivered change: the time from the start of its write's transaction to the
//!   stream receiving it (the "state change on screen" of TARGETS.md, short of the browser's
//!   script applying it).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode, header};
use hyper_util::rt::TokioIo;
use meridian_central::config::CentralConfig;
use meridian_central::console::SiteChange;
use meridian_central::server::Central;
use meridian_common::model::{Site, SiteState};
use meridian_store::Txn;
use meridian_store::tables::Table;
use rustls_pki_types::ServerName;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use super::harness::BoxError;
use super::{ms, percentile, spread_ms};
use crate::fleet::{self, FleetSpec};

/// Options of `meridian-sim bench console`.
#[derive(Debug, Clone)]
pub struct ConsoleBenchOptions {
    /// Sites in the generated fleet.
    pub sites: usize,
    /// Measured `GET /fleet` on a kept-alive connection, and again on fresh connections.
    pub renders: usize,
    /// Concurrent `/fleet/events` streams.
    pub streams: usize,
    /// Sites whose state changes (at most `sites`).
    pub changes: usize,
    /// Changed sites per store transaction.
    pub per_txn: usize,
    /// Seed of the fleet.
    pub seed: u64,
}

impl ConsoleBenchOptions {
    /// The defaults of `meridian-sim bench console`: 1,000 sites (10,000 with `full`), 50
    /// renders, 100 streams, 1,000 changes in transactions of
    /// [`CHANGE_TXN_INTENTS`](super::CHANGE_TXN_INTENTS).
    pub fn new(full: bool) -> Self {
        ConsoleBenchOptions {
            sites: if full { 10_000 } else { 1_000 },
            renders: 50,
            streams: 100,
            changes: 1_000,
            per_txn: super::CHANGE_TXN_INTENTS,
            seed: 42,
        }
    }
}

/// What the benchmark measured.
#[derive(Debug, Clone)]
pub struct ConsoleBenchReport {
    pub sites: usize,
    /// Size of the fleet page's body, bytes.
    pub page_bytes: usize,
    /// `GET /fleet` to the full answer on one kept-alive connection, sorted.
    pub renders: Vec<Duration>,
    /// The same, each on a fresh TCP + TLS connection (handshake included), sorted.
    pub fresh_renders: Vec<Duration>,
    /// Streams opened.
    pub streams: usize,
    /// Sites changed.
    pub changes: usize,
    /// Changed sites per transaction.
    pub per_txn: usize,
    /// Streams that received every change.
    pub complete: usize,
    /// Per complete stream: from the first write until it had every change, sorted.
    pub stream_done: Vec<Duration>,
    /// Per delivered change and stream: from the start of its write's transaction to the
    /// stream receiving it, sorted.
    pub delivery: Vec<Duration>,
    /// `site` events the streams received after the probe, all streams together.
    pub delivered: u64,
    /// `reload` events (a stream fell more than the console's backlog behind).
    pub reloads: u64,
    /// From the first write until the last transaction committed.
    pub written: Duration,
    /// From the first write until the last stream had every change (or gave up waiting).
    pub total: Duration,
}

impl ConsoleBenchReport {
    /// Change events delivered per second, all streams together, from the first write.
    pub fn events_per_second(&self) -> f64 {
        self.delivered as f64 / self.total.as_secs_f64().max(1e-9)
    }

    /// Whether every stream received every change and none was told to reload.
    pub fn all_delivered(&self) -> bool {
        self.complete == self.streams && self.reloads == 0
    }
}

impl std::fmt::Display for ConsoleBenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "B11 operator console, {} sites (HTTPS on loopback, client on its own runtime)",
            self.sites
        )?;
        writeln!(
            f,
            "  GET /fleet, kept-alive connection ({} renders): {}",
            self.renders.len(),
            spread_ms(&self.renders)
        )?;
        writeln!(
            f,
            "  GET /fleet, fresh TCP + TLS per request ({} renders): {}",
            self.fresh_renders.len(),
            spread_ms(&self.fresh_renders)
        )?;
        writeln!(
            f,
            "  page size: {} B ({:.1} KiB)",
            self.page_bytes,
            self.page_bytes as f64 / 1024.0
        )?;
        let done = |q: f64| {
            if self.stream_done.is_empty() {
                0.0
            } else {
                ms(percentile(&self.stream_done, q))
            }
        };
        writeln!(
            f,
            "  SSE: {} changes (transactions of {}) to {} streams: {}/{} streams got every change; \
             per stream min {:.1} ms, median {:.1} ms, max {:.1} ms; total {:.1} ms; writes committed in {:.1} ms",
            self.changes,
            self.per_txn,
            self.streams,
            self.complete,
            self.streams,
            done(0.0),
            done(0.5),
            done(1.0),
            ms(self.total),
            ms(self.written)
        )?;
        writeln!(
            f,
            "  SSE per change, write to stream: {}",
            spread_ms(&self.delivery)
        )?;
        write!(
            f,
            "  {} site events delivered ({:.0} events/s), {} reloads; target B11: p99 <= 1 s, <= 1 MB, \
             a state change on screen <= 2 s",
            self.delivered,
            self.events_per_second(),
            self.reloads
        )
    }
}

/// How long the streams may take to receive every change before the run gives up on them.
const STREAM_TIMEOUT: Duration = Duration::from_secs(120);
/// How long connecting the streams and seeing the probe may take.
const SETUP_TIMEOUT: Duration = Duration::from_secs(60);
/// The site ID of the probe change (no site has it: IDs are lower-case).
const PROBE: &str = "bench-probe";
const SESSION_COOKIE: &str = "__Host-meridian-session";
const LOGIN_COOKIE: &str = "__Host-meridian-login";

/// Runs B11 on a runtime of its own (for callers outside one, such as tests).
pub fn run_blocking(options: &ConsoleBenchOptions) -> Result<ConsoleBenchReport, BoxError> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(run(options))
}

/// Runs B11 and returns its figures.
pub async fn run(options: &ConsoleBenchOptions) -> Result<ConsoleBenchReport, BoxError> {
    let sites = options.sites.max(1);
    let changes = options.changes.clamp(1, sites);
    let streams = options.streams.max(1);
    let dir = tempfile::tempdir()?;
    let mut config = CentralConfig {
        data_dir: dir.path().to_owned(),
        ..CentralConfig::default()
    };
    config.channel.listen = "127.0.0.1:0".parse()?;
    config.api.listen = "127.0.0.1:0".parse()?;
    config.console.listen = "127.0.0.1:0".parse()?;
    config.metrics.listen = "127.0.0.1:0".parse()?;
    config.console.enabled = true;
    config.console.max_streams = config.console.max_streams.max(streams);
    // One client renders and streams for one user: lift the per-caller limit out of the way.
    config.api.rate_per_second = 1e9;
    config.api.rate_burst = 1e9;
    let central = Central::open(config).await?;
    eprintln!("B11: loading a {sites}-site fleet ...");
    let fleet = fleet::generate(&FleetSpec::with_sites(options.seed, sites));
    let admin = fleet::load_with_admin(&central, &fleet).await?;
    let console = central.console().ok_or("the console is not running")?;

    // The change: `changes` sites spread over the fleet, each flipping online <-> disconnected.
    let n = fleet.sites.len();
    let changed: Vec<Site> = (0..changes)
        .map(|k| {
            let mut s = fleet.sites[k * n / changes].clone();
            s.state = if s.state == SiteState::Online {
                SiteState::Disconnected
            } else {
                SiteState::Online
            };
            s
        })
        .collect();
    let index: HashMap<String, usize> = changed
        .iter()
        .enumerate()
        .map(|(k, s)| (s.id.as_str().to_owned(), k))
        .collect();

    let client = ClientSide {
        addr: console.local_addr(),
        ca: dir.path().join("ca").join("ca.crt"),
        token: admin,
        renders: options.renders.max(1),
        streams,
        index: Arc::new(index),
        events: console.events().clone(),
    };
    let (ready_tx, ready_rx) = oneshot::channel();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let thread = std::thread::spawn(move || runtime.block_on(client.run(ready_tx)));
    if ready_rx.await.is_err() {
        // The client stopped before its streams were ready: its error says why.
        return Err(match join_client(thread).await {
            Err(e) => e,
            Ok(_) => "the console client ended before its streams were ready".into(),
        });
    }

    eprintln!("B11: {changes} site changes to {streams} streams ...");
    let store = central.store();
    let per_txn = options.per_txn.clamp(1, meridian_store::MAX_TXN_OPS);
    let start = Instant::now();
    let mut txn_start = vec![start; changes];
    for (c, chunk) in changed.chunks(per_txn).enumerate() {
        let t = Instant::now();
        txn_start[c * per_txn..c * per_txn + chunk.len()].fill(t);
        let mut txn = Txn::new();
        for s in chunk {
            txn = txn.then(Table::<Site>::put_op(s)?);
        }
        if !store.txn(txn).await?.succeeded {
            return Err("a site change transaction did not apply".into());
        }
    }
    let written = start.elapsed();
    let out = join_client(thread).await?;
    central.shutdown().await;

    let mut stream_done = Vec::new();
    let mut delivery = Vec::with_capacity(streams * changes);
    let mut last = start;
    let (mut delivered, mut reloads, mut complete) = (0, 0, 0);
    for s in &out.streams {
        delivered += s.events;
        reloads += s.reloads;
        for (k, at) in s.arrivals.iter().enumerate() {
            if let Some(at) = at {
                delivery.push(at.saturating_duration_since(txn_start[k]));
            }
        }
        if let Some(done) = s.done {
            complete += 1;
            stream_done.push(done.saturating_duration_since(start));
            last = last.max(done);
        } else {
            last = last.max(s.gave_up);
        }
    }
    stream_done.sort();
    delivery.sort();
    Ok(ConsoleBenchReport {
        sites,
        page_bytes: out.page_bytes,
        renders: out.renders,
        fresh_renders: out.fresh_renders,
        streams,
        changes,
        per_txn,
        complete,
        stream_done,
        delivery,
        delivered,
        reloads,
        written,
        total: last.saturating_duration_since(start),
    })
}

/// Waits for the client's thread without blocking this runtime.
async fn join_client(
    thread: std::thread::JoinHandle<Result<ClientOutcome, BoxError>>,
) -> Result<ClientOutcome, BoxError> {
    match tokio::task::spawn_blocking(move || thread.join()).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err("the console client panicked".into()),
        Err(e) => Err(format!("the console client's thread: {e}").into()),
    }
}

/// What the client side measured.
struct ClientOutcome {
    page_bytes: usize,
    renders: Vec<Duration>,
    fresh_renders: Vec<Duration>,
    streams: Vec<StreamOutcome>,
}

/// What one stream received.
struct StreamOutcome {
    /// When each change arrived (by its index in the change).
    arrivals: Vec<Option<Instant>>,
    /// When the last change arrived.
    done: Option<Instant>,
    /// When it stopped waiting without every change.
    gave_up: Instant,
    /// `site` events after the probe.
    events: u64,
    /// `reload` events.
    reloads: u64,
}

/// The client: everything it needs, moved onto its own runtime.
struct ClientSide {
    addr: SocketAddr,
    ca: std::path::PathBuf,
    token: String,
    renders: usize,
    streams: usize,
    /// Changed site ID to its index in the change.
    index: Arc<HashMap<String, usize>>,
    /// The console's feed, for the probe.
    events: meridian_central::console::SiteEvents,
}

impl ClientSide {
    async fn run(self, ready: oneshot::Sender<()>) -> Result<ClientOutcome, BoxError> {
        let mut http = Https::new(self.addr, &self.ca)?;
        http.cookie = login(&http, &self.token).await?;

        // The fleet page: a first render (checked, and its size), then the measured ones.
        let (mut sender, driver) = http.connect().await?;
        let page = fleet_page(&http, &mut sender).await?;
        let page_bytes = page.len();
        let mut renders = Vec::with_capacity(self.renders);
        for _ in 0..self.renders {
            let t = Instant::now();
            fleet_page(&http, &mut sender).await?;
            renders.push(t.elapsed());
        }
        drop(sender);
        driver.abort();
        let mut fresh_renders = Vec::with_capacity(self.renders);
        for _ in 0..self.renders {
            let t = Instant::now();
            let (mut sender, driver) = http.connect().await?;
            fleet_page(&http, &mut sender).await?;
            fresh_renders.push(t.elapsed());
            drop(sender);
            driver.abort();
        }
        renders.sort();
        fresh_renders.sort();
        eprintln!(
            "B11: GET /fleet ({page_bytes} B): {}; fresh connections: {}",
            spread_ms(&renders),
            spread_ms(&fresh_renders)
        );

        // The streams: all connected (their subscription is taken before the answer's head is
        // sent), then all have seen a probe change, before the writes start.
        let http = Arc::new(http);
        let (connected_tx, mut connected_rx) = mpsc::channel(self.streams);
        let (probe_tx, mut probe_rx) = mpsc::channel(self.streams);
        let mut tasks = Vec::with_capacity(self.streams);
        for _ in 0..self.streams {
            tasks.push(tokio::spawn(stream(
                Arc::clone(&http),
                Arc::clone(&self.index),
                connected_tx.clone(),
                probe_tx.clone(),
            )));
        }
        drop((connected_tx, probe_tx));
        let setup = async {
            for _ in 0..self.streams {
                connected_rx
                    .recv()
                    .await
                    .ok_or("a stream ended before it connected")??;
            }
            self.events.publish(SiteChange {
                id: PROBE.into(),
                state: "probe".into(),
                tier: String::new(),
                lat: 0.0,
                lon: 0.0,
                revision: 0,
            });
            for _ in 0..self.streams {
                probe_rx
                    .recv()
                    .await
                    .ok_or("a stream ended before it saw the probe")?;
            }
            Ok::<(), BoxError>(())
        };
        match tokio::time::timeout(SETUP_TIMEOUT, setup).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tasks.iter().for_each(|t| t.abort());
                return Err(e);
            }
            Err(_) => {
                tasks.iter().for_each(|t| t.abort());
                return Err(format!(
                    "the {} streams were not all connected with the probe seen within {} s",
                    self.streams,
                    SETUP_TIMEOUT.as_secs()
                )
                .into());
            }
        }
        let _ = ready.send(());
        let mut streams = Vec::with_capacity(tasks.len());
        for t in tasks {
            streams.push(t.await??);
        }
        Ok(ClientOutcome {
            page_bytes,
            renders,
            fresh_renders,
            streams,
        })
    }
}

/// An HTTPS client of the console: one TCP + TLS connection per [`Https::connect`], HTTP/1.1,
/// central's CA the only trust anchor; the session cookie once logged in.
struct Https {
    addr: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
    cookie: String,
}

type Sender = SendRequest<Full<Bytes>>;

impl Https {
    fn new(addr: SocketAddr, ca: &Path) -> Result<Https, BoxError> {
        let pem = std::fs::read_to_string(ca)?;
        let der = meridian_central::ca::pem_to_der(&pem).ok_or("central's CA is not PEM")?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(der)?;
        let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Https {
            addr,
            connector: tokio_rustls::TlsConnector::from(Arc::new(config)),
            name: ServerName::from(addr.ip()),
            cookie: String::new(),
        })
    }

    /// A new connection; its driver runs until aborted or the sender is dropped.
    async fn connect(&self) -> Result<(Sender, tokio::task::JoinHandle<()>), BoxError> {
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(self.name.clone(), tcp).await?;
        let (sender, conn) = http1::handshake(TokioIo::new(tls)).await?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok((sender, driver))
    }

    fn request(
        &self,
        method: &str,
        path: &str,
        cookie: &str,
        body: String,
    ) -> Request<Full<Bytes>> {
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, self.addr.to_string());
        if !cookie.is_empty() {
            req = req.header(header::COOKIE, cookie);
        }
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        }
        req.body(Full::new(Bytes::from(body)))
            .expect("a request from valid parts")
    }
}

/// An answer read whole.
struct Answer {
    status: StatusCode,
    set_cookies: Vec<String>,
    body: Bytes,
}

async fn exchange(sender: &mut Sender, req: Request<Full<Bytes>>) -> Result<Answer, BoxError> {
    sender.ready().await?;
    let resp = sender.send_request(req).await?;
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Answer {
        status: parts.status,
        set_cookies: parts
            .headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect(),
        body,
    })
}

/// The value `name` is set to by an answer's `Set-Cookie` headers.
fn set_cookie_value(answer: &Answer, name: &str) -> Option<String> {
    answer.set_cookies.iter().find_map(|c| {
        let (k, v) = c.split(';').next()?.split_once('=')?;
        (k.trim() == name && !v.is_empty()).then(|| v.to_owned())
    })
}

/// Logs in with an API token through the login form; returns the session's `Cookie` header.
async fn login(http: &Https, token: &str) -> Result<String, BoxError> {
    let (mut sender, driver) = http.connect().await?;
    let result = async {
        let form = exchange(
            &mut sender,
            http.request("GET", "/login", "", String::new()),
        )
        .await?;
        let login =
            set_cookie_value(&form, LOGIN_COOKIE).ok_or("GET /login set no login cookie")?;
        let text = String::from_utf8_lossy(&form.body);
        let marker = r#"name="csrf" value=""#;
        let at = text
            .find(marker)
            .ok_or("the login page has no CSRF field")?
            + marker.len();
        let csrf = &text[at..at + text[at..].find('"').ok_or("unterminated CSRF field")?];
        let encode = |v: &str| {
            percent_encoding::utf8_percent_encode(v, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        let body = format!("csrf={}&token={}", encode(csrf), encode(token));
        let cookie = format!("{LOGIN_COOKIE}={login}");
        let answer = exchange(&mut sender, http.request("POST", "/login", &cookie, body)).await?;
        if answer.status != StatusCode::SEE_OTHER {
            return Err(format!(
                "POST /login answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            )
            .into());
        }
        let session =
            set_cookie_value(&answer, SESSION_COOKIE).ok_or("POST /login set no session cookie")?;
        Ok::<_, BoxError>(format!("{SESSION_COOKIE}={session}"))
    }
    .await;
    driver.abort();
    result
}

/// `GET /fleet`, checked to be the fleet page; its body.
async fn fleet_page(http: &Https, sender: &mut Sender) -> Result<Bytes, BoxError> {
    let answer = exchange(
        sender,
        http.request("GET", "/fleet", &http.cookie, String::new()),
    )
    .await?;
    if answer.status != StatusCode::OK {
        return Err(format!("GET /fleet answered {}", answer.status).into());
    }
    if !answer.body.windows(14).any(|w| w == b"Sites by state") {
        return Err("GET /fleet answered a page without the counts by state".into());
    }
    Ok(answer.body)
}

/// The `data` of a `site` event, as far as the benchmark reads it.
#[derive(Deserialize)]
struct ChangeData {
    id: String,
}

/// One `/fleet/events` stream: connects (reports it), reports the probe, then records when
/// each change arrives until it has every one or [`STREAM_TIMEOUT`] passes.
async fn stream(
    http: Arc<Https>,
    index: Arc<HashMap<String, usize>>,
    connected: mpsc::Sender<Result<(), BoxError>>,
    probe: mpsc::Sender<()>,
) -> Result<StreamOutcome, BoxError> {
    let opened = async {
        let (mut sender, driver) = http.connect().await?;
        let mut req = http.request("GET", "/fleet/events", &http.cookie, String::new());
        req.headers_mut().insert(
            header::ACCEPT,
            header::HeaderValue::from_static("text/event-stream"),
        );
        sender.ready().await?;
        let resp = sender.send_request(req).await?;
        if resp.status() != StatusCode::OK {
            driver.abort();
            return Err(BoxError::from(format!(
                "GET /fleet/events answered {}",
                resp.status()
            )));
        }
        Ok((sender, driver, resp.into_body()))
    }
    .await;
    let (_sender, driver, mut body) = match opened {
        Ok(x) => x,
        Err(e) => {
            let text = e.to_string();
            let _ = connected.send(Err(e)).await;
            return Err(text.into());
        }
    };
    let _ = connected.send(Ok(())).await;
    let mut out = StreamOutcome {
        arrivals: vec![None; index.len()],
        done: None,
        gave_up: Instant::now(),
        events: 0,
        reloads: 0,
    };
    let mut seen = 0;
    let mut probed = false;
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    let mut deadline = tokio::time::Instant::now() + SETUP_TIMEOUT + STREAM_TIMEOUT;
    'read: while seen < index.len() {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => frame,
            Ok(Some(Err(e))) => {
                driver.abort();
                return Err(e.into());
            }
            Ok(None) | Err(_) => break,
        };
        let Ok(data) = frame.into_data() else {
            continue;
        };
        let at = Instant::now();
        buf.extend_from_slice(&data);
        // Every complete event (ends with a blank line) in the buffer.
        let mut from = 0;
        while let Some(end) = buf[from..].windows(2).position(|w| w == b"\n\n") {
            let event = &buf[from..from + end];
            from += end + 2;
            let (mut name, mut payload) = ("", "");
            for line in std::str::from_utf8(event).unwrap_or("").lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    name = v.trim();
                } else if let Some(v) = line.strip_prefix("data:") {
                    payload = v.trim_start();
                }
            }
            match name {
                "reload" => out.reloads += 1,
                "site" => {
                    let Ok(change) = serde_json::from_str::<ChangeData>(payload) else {
                        continue;
                    };
                    if change.id == PROBE {
                        if !probed {
                            probed = true;
                            let _ = probe.send(()).await;
                            // From now on the writes are running: this stream has this long.
                            deadline = tokio::time::Instant::now() + STREAM_TIMEOUT;
                        }
                        continue;
                    }
                    out.events += 1;
                    if let Some(&k) = index.get(&change.id)
                        && out.arrivals[k].is_none()
                    {
                        out.arrivals[k] = Some(at);
                        seen += 1;
                        if seen == index.len() {
                            out.done = Some(at);
                            break 'read;
                        }
                    }
                }
                _ => {}
            }
        }
        buf.drain(..from);
    }
    out.gave_up = Instant::now();
    driver.abort();
    Ok(out)
}
