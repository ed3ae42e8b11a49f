//! A UDP fault proxy between site agents and central, for tests and the simulator.
//!
//! Each site gets its own proxy port ([`FaultProxy::add_site`]); the site's agent is pointed at
//! that port (its bootstrap file names it as central's address), so every packet on the port
//! belongs to that site and a single site can be cut off without looking inside QUIC. Every
//! client address seen on a site port gets its own upstream socket towards central, so central
//! sees one stable peer address per agent endpoint and replies find their way back.
//!
//! Faults, changeable at any time through the [`FaultProxy`] handle (or the tiny text control
//! API, [`FaultProxy::command`] and [`FaultProxy::serve_control`]):
//! - a fixed one-way delay, applied to both directions (order is kept);
//! - a packet drop rate in `[0, 1]`, drawn from a seeded generator (reproducible runs);
//! - a cut of one site, or of all sites, for a given time (both directions dropped), healed
//!   when the time is up or on [`FaultProxy::heal_site`] / [`FaultProxy::heal_all`].
//!
//! Per-site counters ([`LinkStats`]) record what was forwarded and dropped in each direction,
//! so tests can measure the bytes a resync costs (B8).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::Instant;

const MAX_DATAGRAM: usize = 65_536;

/// What a site's link carried (or dropped) since it was added or last reset.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Bytes forwarded from the agent to central.
    pub to_central_bytes: u64,
    /// Packets forwarded from the agent to central.
    pub to_central_packets: u64,
    /// Bytes forwarded from central to the agent.
    pub to_agent_bytes: u64,
    /// Packets forwarded from central to the agent.
    pub to_agent_packets: u64,
    /// Packets dropped (cut or drop rate), both directions.
    pub dropped_packets: u64,
}

#[derive(Debug, Default)]
struct Counters {
    to_central_bytes: AtomicU64,
    to_central_packets: AtomicU64,
    to_agent_bytes: AtomicU64,
    to_agent_packets: AtomicU64,
    dropped_packets: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> LinkStats {
        LinkStats {
            to_central_bytes: self.to_central_bytes.load(Ordering::Relaxed),
            to_central_packets: self.to_central_packets.load(Ordering::Relaxed),
            to_agent_bytes: self.to_agent_bytes.load(Ordering::Relaxed),
            to_agent_packets: self.to_agent_packets.load(Ordering::Relaxed),
            dropped_packets: self.dropped_packets.load(Ordering::Relaxed),
        }
    }

    fn reset(&self) {
        for c in [
            &self.to_central_bytes,
            &self.to_central_packets,
            &self.to_agent_bytes,
            &self.to_agent_packets,
            &self.dropped_packets,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct Faults {
    delay: Duration,
    drop_rate: f64,
    rng: ChaCha8Rng,
    all_cut_until: Option<Instant>,
    cut_until: HashMap<String, Instant>,
}

impl Faults {
    fn is_cut(&self, site: &str, now: Instant) -> bool {
        self.all_cut_until.is_some_and(|t| now < t)
            || self.cut_until.get(site).is_some_and(|t| now < *t)
    }
}

#[derive(Debug)]
struct Site {
    addr: SocketAddr,
    counters: Arc<Counters>,
}

#[derive(Debug)]
struct Inner {
    upstream: SocketAddr,
    faults: Mutex<Faults>,
    sites: Mutex<HashMap<String, Site>>,
    tasks: Mutex<JoinSet<()>>,
}

/// Where a (possibly delayed) packet goes.
#[derive(Debug)]
enum Dest {
    /// To central, through the client's upstream socket.
    Central(Arc<UdpSocket>),
    /// To the agent, from the site's listening socket.
    Agent(Arc<UdpSocket>, SocketAddr),
}

impl Dest {
    async fn send(&self, packet: &[u8]) {
        // UDP: a failed send is a lost packet, which QUIC handles.
        let _ = match self {
            Dest::Central(s) => s.send(packet).await,
            Dest::Agent(s, to) => s.send_to(packet, *to).await,
        };
    }
}

/// Decides the fate of one packet: `None` to drop it, else its delay.
fn verdict(inner: &Inner, site: &str) -> Option<Duration> {
    let mut f = inner.faults.lock().unwrap_or_else(|p| p.into_inner());
    if f.is_cut(site, Instant::now()) {
        return None;
    }
    if f.drop_rate > 0.0 && f.rng.random::<f64>() < f.drop_rate {
        return None;
    }
    Some(f.delay)
}

/// A running fault proxy. Cheap to clone; every clone controls the same proxy.
#[derive(Debug, Clone)]
pub struct FaultProxy {
    inner: Arc<Inner>,
}

impl FaultProxy {
    /// A proxy towards central at `upstream`; `seed` drives the drop decisions.
    pub fn new(upstream: SocketAddr, seed: u64) -> FaultProxy {
        FaultProxy {
            inner: Arc::new(Inner {
                upstream,
                faults: Mutex::new(Faults {
                    delay: Duration::ZERO,
                    drop_rate: 0.0,
                    rng: ChaCha8Rng::seed_from_u64(seed),
                    all_cut_until: None,
                    cut_until: HashMap::new(),
                }),
                sites: Mutex::new(HashMap::new()),
                tasks: Mutex::new(JoinSet::new()),
            }),
        }
    }

    /// Central's address behind the proxy.
    pub fn upstream(&self) -> SocketAddr {
        self.inner.upstream
    }

    /// Opens the proxy port of `site` (on the loopback address of central's family) and
    /// returns it; the site's agent must use it as central's address. Adding a site twice
    /// returns the port it already has.
    pub async fn add_site(&self, site: &str) -> std::io::Result<SocketAddr> {
        if let Some(addr) = self.site_addr(site) {
            return Ok(addr);
        }
        let bind: SocketAddr = if self.inner.upstream.is_ipv4() {
            "127.0.0.1:0".parse().expect("valid")
        } else {
            "[::1]:0".parse().expect("valid")
        };
        let listener = Arc::new(UdpSocket::bind(bind).await?);
        let addr = listener.local_addr()?;
        let counters = Arc::new(Counters::default());
        self.inner
            .sites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                site.to_owned(),
                Site {
                    addr,
                    counters: Arc::clone(&counters),
                },
            );
        let inner = Arc::clone(&self.inner);
        let site = site.to_owned();
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spawn(serve_site(inner, site, listener, counters));
        Ok(addr)
    }

    /// The proxy port of `site`, if added.
    pub fn site_addr(&self, site: &str) -> Option<SocketAddr> {
        self.inner
            .sites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .map(|s| s.addr)
    }

    /// Delays every packet by `delay` (one way).
    pub fn set_delay(&self, delay: Duration) {
        self.faults().delay = delay;
    }

    /// Drops each packet with probability `rate` (clamped to `[0, 1]`).
    pub fn set_drop_rate(&self, rate: f64) {
        self.faults().drop_rate = if rate.is_nan() {
            0.0
        } else {
            rate.clamp(0.0, 1.0)
        };
    }

    /// Cuts `site` off (both directions) for `duration`.
    pub fn cut_site(&self, site: &str, duration: Duration) {
        self.faults()
            .cut_until
            .insert(site.to_owned(), Instant::now() + duration);
    }

    /// Cuts every site off for `duration`.
    pub fn cut_all(&self, duration: Duration) {
        self.faults().all_cut_until = Some(Instant::now() + duration);
    }

    /// Ends the cut of `site` now (a cut of all sites stays).
    pub fn heal_site(&self, site: &str) {
        self.faults().cut_until.remove(site);
    }

    /// Ends every cut now.
    pub fn heal_all(&self) {
        let mut f = self.faults();
        f.all_cut_until = None;
        f.cut_until.clear();
    }

    /// Clears every fault: no delay, no drops, no cuts.
    pub fn clear(&self) {
        self.heal_all();
        let mut f = self.faults();
        f.delay = Duration::ZERO;
        f.drop_rate = 0.0;
    }

    /// Whether `site` is cut off now.
    pub fn is_cut(&self, site: &str) -> bool {
        self.faults().is_cut(site, Instant::now())
    }

    /// What the link of `site` carried since it was added or last reset.
    pub fn stats(&self, site: &str) -> LinkStats {
        self.inner
            .sites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .map(|s| s.counters.snapshot())
            .unwrap_or_default()
    }

    /// Resets the counters of `site`.
    pub fn reset_stats(&self, site: &str) {
        if let Some(s) = self
            .inner
            .sites
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
        {
            s.counters.reset();
        }
    }

    /// Applies one line of the text control API and answers it:
    ///
    /// | command | effect |
    /// |---|---|
    /// | `delay MS` | one-way delay of MS milliseconds |
    /// | `drop RATE` | drop rate, 0 to 1 |
    /// | `cut SITE SECS` / `cut all SECS` | cut a site / every site for SECS seconds (fractions allowed) |
    /// | `heal SITE` / `heal all` | end the cut |
    /// | `clear` | no faults at all |
    /// | `stats SITE` | the site's counters |
    pub fn command(&self, line: &str) -> Result<String, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let secs = |s: &str| {
            s.parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("not a number of seconds: {s:?}"))
        };
        match words[..] {
            ["delay", ms] => {
                let ms: u64 = ms
                    .parse()
                    .map_err(|_| format!("not milliseconds: {ms:?}"))?;
                self.set_delay(Duration::from_millis(ms));
            }
            ["drop", rate] => {
                let rate: f64 = rate.parse().map_err(|_| format!("not a rate: {rate:?}"))?;
                if !(0.0..=1.0).contains(&rate) {
                    return Err("the drop rate must be 0 to 1".into());
                }
                self.set_drop_rate(rate);
            }
            ["cut", "all", s] => self.cut_all(secs(s)?),
            ["cut", site, s] => {
                if self.site_addr(site).is_none() {
                    return Err(format!("unknown site {site:?}"));
                }
                self.cut_site(site, secs(s)?);
            }
            ["heal", "all"] => self.heal_all(),
            ["heal", site] => self.heal_site(site),
            ["clear"] => self.clear(),
            ["stats", site] => {
                let s = self.stats(site);
                return Ok(format!(
                    "to_central {} B {} pkts, to_agent {} B {} pkts, dropped {} pkts",
                    s.to_central_bytes,
                    s.to_central_packets,
                    s.to_agent_bytes,
                    s.to_agent_packets,
                    s.dropped_packets
                ));
            }
            _ => return Err(format!("unknown command {line:?}")),
        }
        Ok("ok".into())
    }

    /// Serves the text control API on a TCP address (one command per line, one answer line
    /// each: `ok ...` or `error ...`). Returns the bound address.
    pub async fn serve_control(&self, bind: SocketAddr) -> std::io::Result<SocketAddr> {
        use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
        let listener = tokio::net::TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let proxy = self.clone();
        self.inner
            .tasks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .spawn(async move {
                while let Ok((stream, _)) = listener.accept().await {
                    let proxy = proxy.clone();
                    tokio::spawn(async move {
                        let (read, mut write) = stream.into_split();
                        let mut lines = BufReader::new(read).lines();
                        while let Ok(Some(line)) = lines.next_line().await {
                            let answer = match proxy.command(&line) {
                                Ok(a) if a == "ok" => "ok\n".to_owned(),
                                Ok(a) => format!("ok {a}\n"),
                                Err(e) => format!("error {e}\n"),
                            };
                            if write.write_all(answer.as_bytes()).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            });
        Ok(addr)
    }

    /// Stops forwarding (every site port closes).
    pub async fn shutdown(&self) {
        let mut tasks =
            std::mem::take(&mut *self.inner.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        tasks.abort_all();
        while tasks.join_next().await.is_some() {}
    }

    fn faults(&self) -> std::sync::MutexGuard<'_, Faults> {
        self.inner.faults.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Forwards one site's traffic until aborted.
async fn serve_site(
    inner: Arc<Inner>,
    site: String,
    listener: Arc<UdpSocket>,
    counters: Arc<Counters>,
) {
    let mut clients: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
    let mut tasks = JoinSet::new();
    // Delayed packets of this site, both directions, in order (the delay is the same for all).
    let (delayed_tx, mut delayed_rx) = mpsc::unbounded_channel::<(Instant, Dest, Vec<u8>)>();
    tasks.spawn(async move {
        while let Some((at, dest, packet)) = delayed_rx.recv().await {
            tokio::time::sleep_until(at).await;
            dest.send(&packet).await;
        }
    });
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok((n, from)) = listener.recv_from(&mut buf).await else {
            continue;
        };
        let upstream = match clients.get(&from) {
            Some(s) => Arc::clone(s),
            None => {
                let bind: SocketAddr = if inner.upstream.is_ipv4() {
                    "0.0.0.0:0".parse().expect("valid")
                } else {
                    "[::]:0".parse().expect("valid")
                };
                let Ok(socket) = UdpSocket::bind(bind).await else {
                    continue;
                };
                if socket.connect(inner.upstream).await.is_err() {
                    continue;
                }
                let socket = Arc::new(socket);
                clients.insert(from, Arc::clone(&socket));
                tasks.spawn(serve_replies(
                    Arc::clone(&inner),
                    site.clone(),
                    Arc::clone(&socket),
                    Arc::clone(&listener),
                    from,
                    Arc::clone(&counters),
                    delayed_tx.clone(),
                ));
                socket
            }
        };
        forward(
            &inner,
            &site,
            &counters,
            &delayed_tx,
            Dest::Central(upstream),
            &buf[..n],
        )
        .await;
    }
}

/// Forwards central's replies to one client until aborted.
async fn serve_replies(
    inner: Arc<Inner>,
    site: String,
    upstream: Arc<UdpSocket>,
    listener: Arc<UdpSocket>,
    client: SocketAddr,
    counters: Arc<Counters>,
    delayed: mpsc::UnboundedSender<(Instant, Dest, Vec<u8>)>,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let Ok(n) = upstream.recv(&mut buf).await else {
            // ICMP errors surface here on a connected socket; keep listening.
            tokio::time::sleep(Duration::from_millis(1)).await;
            continue;
        };
        forward(
            &inner,
            &site,
            &counters,
            &delayed,
            Dest::Agent(Arc::clone(&listener), client),
            &buf[..n],
        )
        .await;
    }
}

async fn forward(
    inner: &Inner,
    site: &str,
    counters: &Counters,
    delayed: &mpsc::UnboundedSender<(Instant, Dest, Vec<u8>)>,
    dest: Dest,
    packet: &[u8],
) {
    let Some(delay) = verdict(inner, site) else {
        counters.dropped_packets.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (bytes, packets) = match dest {
        Dest::Central(_) => (&counters.to_central_bytes, &counters.to_central_packets),
        Dest::Agent(..) => (&counters.to_agent_bytes, &counters.to_agent_packets),
    };
    bytes.fetch_add(packet.len() as u64, Ordering::Relaxed);
    packets.fetch_add(1, Ordering::Relaxed);
    if delay.is_zero() {
        dest.send(packet).await;
    } else {
        let _ = delayed.send((Instant::now() + delay, dest, packet.to_vec()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn forwards_cuts_heals_and_drops_reproducibly() {
        let echo = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 1500];
            while let Ok((n, from)) = echo.recv_from(&mut buf).await {
                let _ = echo.send_to(&buf[..n], from).await;
            }
        });
        let proxy = FaultProxy::new(echo_addr, 7);
        let port = proxy.add_site("edge-1").await.unwrap();
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(port).await.unwrap();
        let mut buf = [0u8; 1500];
        async fn roundtrip(client: &UdpSocket) -> bool {
            client.send(b"ping").await.unwrap();
            let mut buf = [0u8; 16];
            tokio::time::timeout(Duration::from_millis(150), client.recv(&mut buf))
                .await
                .is_ok()
        }
        assert!(roundtrip(&client).await);
        assert_eq!(proxy.stats("edge-1").to_agent_bytes, 4);
        proxy.command("cut edge-1 60").unwrap();
        assert!(proxy.is_cut("edge-1"));
        assert!(!roundtrip(&client).await);
        proxy.command("heal edge-1").unwrap();
        assert!(roundtrip(&client).await);
        proxy.set_delay(Duration::from_millis(50));
        let start = Instant::now();
        client.send(b"slow").await.unwrap();
        client.recv(&mut buf).await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(100));
        proxy.clear();
        proxy.set_drop_rate(0.5);
        let mut through = 0;
        for _ in 0..24 {
            if roundtrip(&client).await {
                through += 1;
            }
        }
        // Both directions at 0.5: about a quarter gets through (seeded: never none or all).
        assert!((1..24).contains(&through), "{through} of 24");
        assert!(proxy.command("cut nowhere 1").is_err());
        assert!(proxy.command("drop 2").is_err());
        proxy.shutdown().await;
    }
}
