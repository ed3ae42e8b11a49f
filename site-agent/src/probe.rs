//! Measured latency: the agent probes the user regions its configuration lists (`[[probe]]`,
//! [`crate::config::ProbeConfig`]) and reports its round trip to each as
//! `ReportBody::Rtt { region, rtt_ms }`, which central's planner prefers over its distance
//! estimate while it is fresh.
//!
//! Every `interval_s` a region's round takes [`SAMPLES`] samples of each target: a UDP echo
//! (RFC 862: a small datagram carrying a nonce, timed from sending it to its echo; replies
//! without the nonce, such as a late echo of an earlier sample, are ignored) or a TCP connect
//! (the handshake's time). A target's RTT is the median of its answered samples, the region's
//! the best target's, rounded up to whole milliseconds (at least 1). The report goes into the
//! agent's report buffer like any other (one per region is kept while central is away).
//!
//! A round in which no target answers reports nothing: central keeps the last measurement
//! until it goes stale. The first such round after a reachable one (or at start) also reports
//! one warning event (`probe/<region>`); the next answered round ends the outage.
//!
//! The loop runs in the background from the agent's start, whether or not central is
//! reachable, and ends when the agent stops.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use meridian_common::ids::{RegionId, Timestamp};
use meridian_common::model::{ReportBody, Severity};
use tokio::net::{TcpStream, UdpSocket};
use tokio::task::{JoinHandle, JoinSet};

use crate::config::{ProbeConfig, ProbeKind, parse_target};
use crate::reconciler::AgentLink;

/// Samples per target per round.
pub const SAMPLES: usize = 3;

/// What a datagram of the UDP echo probe starts with (the nonce follows, 16 hex digits).
const MAGIC: &[u8] = b"meridian-probe ";

/// One region's probe, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub region: RegionId,
    /// `(host, port)` of each target.
    pub targets: Vec<(String, u16)>,
    pub kind: ProbeKind,
    pub interval: Duration,
    pub timeout: Duration,
}

impl Probe {
    /// From a validated `[[probe]]` table (`None` if it does not check, which validation
    /// refuses first).
    pub fn from_config(c: &ProbeConfig) -> Option<Probe> {
        Some(Probe {
            region: c.region_id()?,
            targets: c
                .targets
                .iter()
                .map(|t| parse_target(t))
                .collect::<Result<_, _>>()
                .ok()?,
            kind: c.kind,
            interval: Duration::from_secs(c.interval_s),
            timeout: Duration::from_millis(c.timeout_ms),
        })
    }
}

/// A round trip in whole milliseconds, rounded up, at least 1.
pub fn rtt_ms(rtt: Duration) -> u32 {
    let ms = rtt.as_micros().div_ceil(1_000).max(1);
    u32::try_from(ms).unwrap_or(u32::MAX)
}

/// The median of `samples` (the upper one of an even count); `None` for none.
fn median(mut samples: Vec<Duration>) -> Option<Duration> {
    samples.sort();
    samples.get(samples.len() / 2).copied()
}

/// One round of `probe`: the best target's median RTT, or why none answered.
pub async fn measure(probe: &Probe) -> Result<Duration, String> {
    let mut best: Option<Duration> = None;
    let mut last_error = String::from("no target");
    for (host, port) in &probe.targets {
        let addr = match resolve(host, *port).await {
            Ok(a) => a,
            Err(e) => {
                last_error = format!("{host}:{port}: {e}");
                continue;
            }
        };
        let (samples, error) = match probe.kind {
            ProbeKind::UdpEcho => udp_echo(addr, probe.timeout).await,
            ProbeKind::Tcp => tcp_connect(addr, probe.timeout).await,
        };
        if let Some(e) = error {
            last_error = format!("{addr}: {e}");
        }
        if let Some(m) = median(samples) {
            best = Some(best.map_or(m, |b| b.min(m)));
        }
    }
    best.ok_or(last_error)
}

async fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| std::io::Error::other("the name has no address"))
}

/// A nonce no earlier sample of this process used.
fn nonce() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    // Mixed with the start time so two agents behind one echo service never share one.
    let base = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    base.rotate_left(17) ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// [`SAMPLES`] echo samples of one target over one socket: the answered ones, and the last
/// error if any sample failed.
async fn udp_echo(addr: SocketAddr, timeout: Duration) -> (Vec<Duration>, Option<String>) {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0".parse().expect("valid")
    } else {
        "[::]:0".parse().expect("valid")
    };
    let socket = match UdpSocket::bind(bind).await {
        Ok(s) => s,
        Err(e) => return (Vec::new(), Some(format!("cannot bind: {e}"))),
    };
    if let Err(e) = socket.connect(addr).await {
        return (Vec::new(), Some(e.to_string()));
    }
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut error = None;
    for _ in 0..SAMPLES {
        let payload = [MAGIC, format!("{:016x}", nonce()).as_bytes()].concat();
        match echo_once(&socket, &payload, timeout).await {
            Ok(rtt) => samples.push(rtt),
            Err(e) => error = Some(e),
        }
    }
    (samples, error)
}

async fn echo_once(
    socket: &UdpSocket,
    payload: &[u8],
    timeout: Duration,
) -> Result<Duration, String> {
    let start = Instant::now();
    socket
        .send(payload)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 512];
    loop {
        match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_) => return Err(format!("no echo within {} ms", timeout.as_millis())),
            // A refused port (ICMP unreachable) shows as an error on a connected socket.
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(n)) if &buf[..n] == payload => return Ok(start.elapsed()),
            // A stray datagram (an earlier sample's late echo, anything else): ignored.
            Ok(Ok(_)) => {}
        }
    }
}

/// [`SAMPLES`] TCP handshakes with one target.
async fn tcp_connect(addr: SocketAddr, timeout: Duration) -> (Vec<Duration>, Option<String>) {
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut error = None;
    for _ in 0..SAMPLES {
        let start = Instant::now();
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                samples.push(start.elapsed());
                drop(stream);
            }
            Ok(Err(e)) => error = Some(e.to_string()),
            Err(_) => error = Some(format!("no handshake within {} ms", timeout.as_millis())),
        }
    }
    (samples, error)
}

/// Starts the probe loops of `probes` (`None` when there are none). They append their reports
/// through `link` and end when `link.stop` turns true.
pub fn start(probes: &[ProbeConfig], link: AgentLink) -> Option<JoinHandle<()>> {
    let probes: Vec<Probe> = probes.iter().filter_map(Probe::from_config).collect();
    if probes.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        let mut loops = JoinSet::new();
        for probe in probes {
            loops.spawn(run(probe, link.clone()));
        }
        while loops.join_next().await.is_some() {}
    }))
}

/// One region's rounds until the agent stops.
async fn run(probe: Probe, link: AgentLink) {
    let mut stop = link.stop.clone();
    let mut reachable = true;
    let mut warned = false;
    let mut ticks = tokio::time::interval(probe.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = stop.changed() => return,
            _ = ticks.tick() => {}
        }
        let outcome = tokio::select! {
            _ = stop.changed() => return,
            outcome = measure(&probe) => outcome,
        };
        let body = match outcome {
            Ok(rtt) => {
                if !reachable {
                    tracing::info!(region = %probe.region, "a probe target answers again");
                }
                (reachable, warned) = (true, false);
                ReportBody::Rtt {
                    region: probe.region.clone(),
                    rtt_ms: rtt_ms(rtt),
                }
            }
            Err(why) => {
                reachable = false;
                if warned {
                    continue;
                }
                warned = true;
                tracing::warn!(region = %probe.region, error = %why, "no probe target of the region answers; its last RTT stands");
                ReportBody::Event {
                    severity: Severity::Warning,
                    resource: format!("probe/{}", probe.region),
                    message: format!(
                        "no probe target of region {} answers ({why}); the last RTT measured stands",
                        probe.region
                    ),
                }
            }
        };
        if let Err(e) = append(&link, body) {
            tracing::warn!(region = %probe.region, error = %e, "cannot buffer the probe's report");
        }
    }
}

/// Appends a report to the agent's buffer and wakes the sender. Before enrolment the agent
/// has no site to report for: the round's result is dropped (the next round measures again).
fn append(link: &AgentLink, body: ReportBody) -> Result<(), crate::store::AgentStoreError> {
    let Some(identity) = link.store.identity()? else {
        return Ok(());
    };
    link.store.append_report(
        &identity.site,
        link.store.applied_generation()?,
        Timestamp::from_millis(crate::now_ms()),
        body,
        link.report_buffer_max,
    )?;
    link.reports_ready.notify_one();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RFC 862 echo responder on 127.0.0.1 that answers after `delay` and also sends a
    /// stray datagram before each echo (which the probe must ignore).
    async fn echo(delay: Duration) -> SocketAddr {
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        tokio::spawn(async move {
            let mut buf = [0u8; 512];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                let _ = socket.send_to(b"stray", from).await;
                tokio::time::sleep(delay).await;
                let _ = socket.send_to(&buf[..n], from).await;
            }
        });
        addr
    }

    fn probe(targets: Vec<(String, u16)>, kind: ProbeKind) -> Probe {
        Probe {
            region: RegionId::parse("paris").unwrap(),
            targets,
            kind,
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(800),
        }
    }

    fn target(addr: SocketAddr) -> (String, u16) {
        (addr.ip().to_string(), addr.port())
    }

    #[test]
    fn rtts_round_up_to_whole_milliseconds() {
        assert_eq!(rtt_ms(Duration::from_micros(1)), 1);
        assert_eq!(rtt_ms(Duration::ZERO), 1);
        assert_eq!(rtt_ms(Duration::from_micros(30_000)), 30);
        assert_eq!(rtt_ms(Duration::from_micros(30_001)), 31);
        let ms = Duration::from_millis;
        assert_eq!(median(vec![ms(9), ms(1), ms(5)]), Some(ms(5)));
        assert_eq!(median(vec![ms(1), ms(5)]), Some(ms(5)));
        assert_eq!(median(Vec::new()), None);
    }

    #[tokio::test]
    async fn udp_echo_measures_the_best_target_and_ignores_strays() {
        let slow = echo(Duration::from_millis(40)).await;
        let fast = echo(Duration::from_millis(5)).await;
        let rtt = measure(&probe(vec![target(slow), target(fast)], ProbeKind::UdpEcho))
            .await
            .unwrap();
        assert!(rtt >= Duration::from_millis(5), "{rtt:?}");
        assert!(
            rtt < Duration::from_millis(40),
            "the faster target wins: {rtt:?}"
        );
        let only_slow = measure(&probe(vec![target(slow)], ProbeKind::UdpEcho))
            .await
            .unwrap();
        assert!(only_slow >= Duration::from_millis(40), "{only_slow:?}");
    }

    #[tokio::test]
    async fn a_silent_region_has_no_rtt() {
        // A bound socket that never answers.
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let mut p = probe(
            vec![target(silent.local_addr().unwrap())],
            ProbeKind::UdpEcho,
        );
        p.timeout = Duration::from_millis(50);
        let e = measure(&p).await.unwrap_err();
        assert!(e.contains("no echo"), "{e}");
        let e = measure(&probe(
            vec![("no-such-host.invalid".into(), 7)],
            ProbeKind::Tcp,
        ))
        .await
        .unwrap_err();
        assert!(e.contains("no-such-host.invalid"), "{e}");
    }

    #[tokio::test]
    async fn tcp_probes_time_the_handshake() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { while listener.accept().await.is_ok() {} });
        let rtt = measure(&probe(vec![target(addr)], ProbeKind::Tcp))
            .await
            .unwrap();
        assert!(rtt < Duration::from_millis(800), "{rtt:?}");
        // A closed port refuses.
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        assert!(
            measure(&probe(vec![target(closed)], ProbeKind::Tcp))
                .await
                .is_err()
        );
    }

    #[tokio::test]
    async fn the_loop_reports_rtts_warns_once_and_stops_with_the_agent() {
        use meridian_common::ids::{Sequence, SiteId};
        use meridian_proto::v1 as proto;

        let store = crate::store::AgentStore::in_memory();
        store
            .set_identity(&crate::store::Identity {
                site: SiteId::parse("edge-1").unwrap(),
                key_pem: String::new(),
                cert_pem: String::new(),
                ca_pem: String::new(),
                issued_at_ms: 0,
                not_after_ms: 0,
                central_addresses: Vec::new(),
                token_sha256: String::new(),
            })
            .unwrap();
        let echo = echo(Duration::from_millis(2)).await;
        let silent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let config = |region: &str, target: SocketAddr| ProbeConfig {
            region: region.into(),
            targets: vec![target.to_string()],
            kind: ProbeKind::UdpEcho,
            interval_s: 1,
            timeout_ms: 50,
        };
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let task = start(
            &[
                config("paris", echo),
                config("berlin", silent.local_addr().unwrap()),
            ],
            AgentLink {
                store: store.clone(),
                reports_ready: Default::default(),
                report_buffer_max: 1_000,
                stop: stop_rx,
            },
        )
        .expect("two probes");
        // Three rounds of paris (one report each; the buffer keeps the latest per region)
        // and berlin's warning, given only once although its later rounds fail too.
        let deadline = Instant::now() + Duration::from_secs(30);
        while store.last_sequence().unwrap() < Sequence::new(4) {
            assert!(Instant::now() < deadline, "{:?}", store.last_sequence());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let bodies: Vec<proto::site_report::Body> = store
            .pending(Sequence::new(0), 1_000)
            .unwrap()
            .into_iter()
            .filter_map(|r| r.body)
            .collect();
        assert_eq!(bodies.len(), 2, "{bodies:?}");
        for b in &bodies {
            match b {
                proto::site_report::Body::Rtt(r) => {
                    assert_eq!(r.region, "paris");
                    assert!(r.rtt_ms >= 2, "{r:?}");
                }
                proto::site_report::Body::Event(e) => {
                    assert!(e.resource == "probe/berlin", "{e:?}");
                }
                other => panic!("{other:?}"),
            }
        }
        let warnings = bodies
            .iter()
            .filter(|b| matches!(b, proto::site_report::Body::Event(_)))
            .count();
        assert_eq!(warnings, 1, "one warning per outage: {bodies:?}");
        stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the loops stop with the agent")
            .unwrap();
    }
}
