//! The agent's session loop: enrol if needed, connect (`meridian/1`, mutual TLS), say Hello,
//! then serve pushes, acknowledgements, reports, heartbeats and certificate renewal until the
//! link dies; reconnect with exponential backoff and full jitter. The intent held stays in
//! force the whole time: nothing here tears anything down.
//!
//! This is the IO half. The protocol's decisions (what `Hello` says, fencing, acknowledging
//! only what the journal holds, one report batch in flight, heartbeats and the silence
//! timeout, the back-off schedule and the connect patience) are made by the sans-IO machine
//! [`meridian_common::channel::session::agent::AgentSession`]; this loop feeds it socket,
//! timer, journal and reconciler events and carries out its actions: it owns the QUIC
//! connection, the journal ([`crate::store`]), the reconciler, enrolment and the keys.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::channel::session::agent::{
    AgentAction, AgentClose, AgentEvent, AgentSession, AgentSessionConfig, Failure, PersistOutcome,
    Snapshot,
};
use meridian_common::channel::session::{Millis, Outcome};
use meridian_common::channel::{CENTRAL_SERVER_NAME, close, frame};
use meridian_common::model::SiteIntent;
use meridian_proto::v1 as proto;
use prost::Message;
use rand::SeedableRng;
use rand::rngs::StdRng;

use crate::enroll::{self, EnrollError, resolve};
use crate::reconciler::Convergence;
use crate::store::{AgentStoreError, Identity, IntentOutcome};
use crate::{Inner, now_ms, tls};
use meridian_channel::{SessionClock, read_frame};

use proto::agent_message::Kind as AgentKind;
use proto::central_message::Kind as CentralKind;

/// Why a session attempt or a session ended.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("agent store failed")]
    Store(#[from] AgentStoreError),
    #[error("cannot set up TLS")]
    Tls(#[from] meridian_channel::tls::TlsError),
    #[error("enrolment failed")]
    Enroll(#[from] EnrollError),
    #[error("cannot read bootstrap file {path}")]
    Bootstrap {
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "the site certificate is expired or revoked and the bootstrap file holds the token already used; \
         the operator must issue a new token (`meridian-central token create --site {site} --export FILE`) \
         and place the file at {path}"
    )]
    NeedsNewToken {
        site: String,
        path: std::path::PathBuf,
    },
    #[error("cannot reach central: {0}")]
    Connect(String),
    #[error("connection lost")]
    Connection(#[from] quinn::ConnectionError),
    #[error("session stream failed")]
    Stream(#[source] std::io::Error),
    #[error("frame error")]
    Frame(#[from] frame::FrameError),
    #[error("central sent a message that does not decode")]
    Decode(#[from] prost::DecodeError),
    #[error("central was silent for three heartbeat periods")]
    Silent,
}

/// What the loop should do after a session attempt.
enum Ended {
    Stopped,
    WasEstablished,
}

fn cert_rejected(e: &quinn::ConnectionError) -> bool {
    // TLS alerts travel as QUIC crypto errors 0x100..0x1ff (certificate revoked, unknown...).
    let crypto = |code: u64| (0x100..0x200).contains(&code);
    match e {
        quinn::ConnectionError::TransportError(t) => crypto(u64::from(t.code)),
        quinn::ConnectionError::ConnectionClosed(c) => crypto(u64::from(c.error_code)),
        quinn::ConnectionError::ApplicationClosed(a) => {
            u64::from(a.error_code) == u64::from(close::REVOKED)
        }
        _ => false,
    }
}

/// Whether central refused the connection before any handshake (it sheds load that way).
fn refused_by_central(e: &SessionError) -> bool {
    matches!(
        e,
        SessionError::Connection(quinn::ConnectionError::ConnectionClosed(c))
            if c.error_code == quinn::TransportErrorCode::CONNECTION_REFUSED
    )
}

/// The session machine, with the OS as its source of back-off jitter.
type Machine = AgentSession<StdRng>;

fn machine_config(inner: &Inner) -> AgentSessionConfig {
    AgentSessionConfig {
        heartbeat: inner.config.heartbeat(),
        backoff_initial: Duration::from_millis(inner.config.backoff_initial_ms),
        backoff_max: Duration::from_millis(inner.config.backoff_max_ms),
        report_batch_max: inner.config.report_batch_max,
        background_reconciler: inner.outcomes.is_some(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
    }
}

/// How a failed attempt counts for the retry policy.
fn failure(e: &SessionError) -> Failure {
    if refused_by_central(e) {
        Failure::Refused
    } else if matches!(e, SessionError::Connect(_)) {
        Failure::Unreachable
    } else {
        Failure::Other
    }
}

fn outcome(c: Convergence) -> Outcome {
    match c {
        Convergence::Applied(g) => Outcome::Applied(g),
        Convergence::Failed { generation, reason } => Outcome::Failed { generation, reason },
    }
}

/// Runs until `stop` turns true.
pub(crate) async fn run(inner: Arc<Inner>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let clock = SessionClock::start();
    let mut machine = Machine::new(machine_config(&inner), StdRng::from_os_rng());
    let mut timer: Option<Millis> = None;
    machine.handle(clock.now(), AgentEvent::Start);
    loop {
        while let Some(action) = machine.poll_action() {
            match action {
                AgentAction::Connect { address, patience } => {
                    if *stop.borrow() {
                        return;
                    }
                    let event = match attempt(
                        &inner,
                        &mut stop,
                        &mut machine,
                        &mut timer,
                        clock,
                        address,
                        patience,
                    )
                    .await
                    {
                        Ok(Ended::Stopped) => return,
                        Ok(Ended::WasEstablished) => AgentEvent::SessionLost,
                        Err(e) => {
                            if let SessionError::Connection(c) = &e
                                && cert_rejected(c)
                            {
                                inner.reenroll.store(true, Ordering::Relaxed);
                            }
                            let text = meridian_common::telemetry::error_chain(&e);
                            tracing::warn!(error = %text, "session attempt failed");
                            *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) =
                                Some(text);
                            AgentEvent::AttemptFailed(failure(&e))
                        }
                    };
                    inner.connected.store(false, Ordering::Relaxed);
                    machine.handle(clock.now(), event);
                }
                AgentAction::SetTimer(t) => timer = Some(t),
                AgentAction::CancelTimer => timer = None,
                // Only a session executes the others; none is open.
                _ => {}
            }
        }
        tokio::select! {
            _ = clock.expiry(timer) => {
                timer = None;
                machine.handle(clock.now(), AgentEvent::Timer);
            }
            _ = stop.changed() => return,
        }
    }
}

fn read_bootstrap(inner: &Inner) -> Result<BootstrapFile, SessionError> {
    let path = &inner.config.bootstrap_file;
    let text = std::fs::read_to_string(path).map_err(|e| SessionError::Bootstrap {
        path: path.clone(),
        source: Box::new(e),
    })?;
    BootstrapFile::parse(&text).map_err(|e| SessionError::Bootstrap {
        path: path.clone(),
        source: Box::new(e),
    })
}

/// The identity to connect with: the stored one, or a new one from (re-)enrolment.
async fn ensure_identity(inner: &Inner, patience: u32) -> Result<Identity, SessionError> {
    let stored = inner.store.identity()?;
    let usable = stored
        .as_ref()
        .is_some_and(|id| id.not_after_ms > now_ms() && !inner.reenroll.load(Ordering::Relaxed));
    if usable {
        return Ok(stored.expect("checked"));
    }
    let bootstrap = read_bootstrap(inner)?;
    if let Some(id) = &stored
        && id.token_sha256 == enroll::token_hash(&bootstrap.token)
    {
        return Err(SessionError::NeedsNewToken {
            site: id.site.to_string(),
            path: inner.config.bootstrap_file.clone(),
        });
    }
    tracing::info!(site = %bootstrap.site, "enrolling");
    let identity = enroll::enroll_with_patience(
        &inner.endpoint,
        &bootstrap,
        inner.config.max_frame_bytes,
        now_ms(),
        patience,
    )
    .await?;
    inner.store.set_identity(&identity)?;
    inner.reenroll.store(false, Ordering::Relaxed);
    tracing::info!(site = %identity.site, not_after = identity.not_after_ms, "enrolled");
    Ok(identity)
}

/// A session TLS configuration and the certificate it was built for.
#[derive(Debug)]
pub(crate) struct CachedTls {
    cert_pem: String,
    ca_pem: String,
    config: quinn::ClientConfig,
}

/// The session TLS configuration for `identity`: the cached one while the certificate and CA
/// are unchanged, else a new one (renewal and re-enrolment change the certificate).
fn session_tls(inner: &Inner, identity: &Identity) -> Result<quinn::ClientConfig, SessionError> {
    let mut cached = inner.session_tls.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(c) = cached.as_ref()
        && c.cert_pem == identity.cert_pem
        && c.ca_pem == identity.ca_pem
    {
        return Ok(c.config.clone());
    }
    let config = tls::session_config(
        &identity.ca_pem,
        &identity.cert_pem,
        &identity.key_pem,
        inner.config.heartbeat(),
        inner.config.max_frame_bytes,
    )?;
    *cached = Some(CachedTls {
        cert_pem: identity.cert_pem.clone(),
        ca_pem: identity.ca_pem.clone(),
        config: config.clone(),
    });
    Ok(config)
}

struct Live<'a> {
    inner: &'a Inner,
    identity: Identity,
    send: quinn::SendStream,
    connection: quinn::Connection,
    remote: std::net::SocketAddr,
    renewing: Option<rcgen::KeyPair>,
    /// `Hello` went out: from now on an error ends an established session.
    established: bool,
}

async fn attempt(
    inner: &Arc<Inner>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
    machine: &mut Machine,
    timer: &mut Option<Millis>,
    clock: SessionClock,
    address: usize,
    patience: u32,
) -> Result<Ended, SessionError> {
    let identity = ensure_identity(inner, patience).await?;
    let config = session_tls(inner, &identity)?;
    let addrs = &identity.central_addresses;
    let addr = &addrs[address % addrs.len().max(1)];
    let remote = resolve(addr)
        .await
        .ok_or_else(|| SessionError::Connect(format!("{addr} does not resolve")))?;
    let connecting = inner
        .endpoint
        .connect_with(config, remote, CENTRAL_SERVER_NAME)
        .map_err(|e| SessionError::Connect(e.to_string()))?;
    let connection = tokio::select! {
        c = tokio::time::timeout(tls::connect_timeout(inner.config.heartbeat(), patience), connecting) => match c {
            Ok(c) => c?,
            Err(_) => return Err(SessionError::Connect(format!("{addr}: handshake timed out"))),
        },
        _ = stop.changed() => return Ok(Ended::Stopped),
    };
    let (send, mut recv) = connection.open_bi().await?;
    let snapshot = Snapshot {
        site: identity.site.clone(),
        held: inner.store.held_generation()?,
        applied: inner.store.applied_generation()?,
        acked: inner.store.last_acked()?,
    };

    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(16);
    let max = inner.config.max_frame_bytes;
    let reader = tokio::spawn(async move {
        loop {
            let item = match read_frame(&mut recv, max).await {
                Ok(Some(b)) => Ok(b),
                Ok(None) => break,
                Err(e) => Err(e),
            };
            let end = item.is_err();
            if tx.send(item).await.is_err() || end {
                break;
            }
        }
    });
    let mut live = Live {
        inner,
        identity,
        send,
        connection: connection.clone(),
        remote,
        renewing: None,
        established: false,
    };
    // A background reconciler's outcome: repeated once per session (central may have missed
    // it while the link was down), then every new one.
    let mut outcomes = inner.outcomes.clone();
    let result: Result<Ended, SessionError> = async {
        // Hello, then the reports the last session left unacknowledged.
        machine.handle(clock.now(), AgentEvent::Connected(snapshot));
        if let Some(end) = live.drain(machine, timer, clock).await? {
            return Ok(end);
        }
        if let Some(rx) = outcomes.as_mut() {
            let current = rx.borrow_and_update().clone();
            if let Some(c) = current {
                machine.handle(clock.now(), AgentEvent::Concluded(outcome(c)));
                if let Some(end) = live.drain(machine, timer, clock).await? {
                    return Ok(end);
                }
            }
        }
        loop {
            let event = tokio::select! {
                item = rx.recv() => match item {
                    Some(Ok(body)) => AgentEvent::Received(live.decode(&body)?),
                    Some(Err(e)) => return Err(SessionError::Stream(e)),
                    None => return Err(SessionError::Connection(connection.closed().await)),
                },
                _ = clock.expiry(*timer) => {
                    *timer = None;
                    AgentEvent::Timer
                }
                _ = inner.reports_ready.notified() => AgentEvent::ReportsReady,
                c = next_outcome(&mut outcomes) => AgentEvent::Concluded(outcome(c)),
                _ = stop.changed() => AgentEvent::Stop,
                e = connection.closed() => return Err(SessionError::Connection(e)),
            };
            machine.handle(clock.now(), event);
            if let Some(end) = live.drain(machine, timer, clock).await? {
                return Ok(end);
            }
        }
    }
    .await;
    reader.abort();
    inner.connected.store(false, Ordering::Relaxed);
    match result {
        Ok(end) => Ok(end),
        // Broken before Hello went out: a failed attempt.
        Err(e) if !live.established => Err(e),
        Err(e) => {
            if let SessionError::Connection(c) = &e
                && cert_rejected(c)
            {
                inner.reenroll.store(true, Ordering::Relaxed);
            }
            let text = meridian_common::telemetry::error_chain(&e);
            tracing::warn!(error = %text, "session ended");
            *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
            Ok(Ended::WasEstablished)
        }
    }
}

/// The next announcement of a background reconciler; never resolves without one.
async fn next_outcome(
    rx: &mut Option<tokio::sync::watch::Receiver<Option<Convergence>>>,
) -> Convergence {
    loop {
        let Some(r) = rx.as_mut() else {
            return std::future::pending().await;
        };
        if r.changed().await.is_err() {
            *rx = None;
            continue;
        }
        if let Some(c) = r.borrow_and_update().clone() {
            return c;
        }
    }
}

impl Live<'_> {
    /// Decodes a frame from central, counting intent pushes and their bytes.
    fn decode(&self, body: &[u8]) -> Result<proto::CentralMessage, SessionError> {
        let msg = proto::CentralMessage::decode(body)?;
        if matches!(msg.kind, Some(CentralKind::IntentPush(_))) {
            self.inner.pushes.fetch_add(1, Ordering::Relaxed);
            self.inner
                .push_bytes
                .fetch_add(body.len() as u64 + 4, Ordering::Relaxed);
        }
        Ok(msg)
    }

    /// Carries out the machine's actions in order, feeding each answer back at once (so an
    /// acknowledgement never goes out before the journal write it stands for). `Some` when
    /// the machine ended the session for good (the agent stops).
    async fn drain(
        &mut self,
        machine: &mut Machine,
        timer: &mut Option<Millis>,
        clock: SessionClock,
    ) -> Result<Option<Ended>, SessionError> {
        while let Some(action) = machine.poll_action() {
            let answer = match action {
                // Only the outer loop connects.
                AgentAction::Connect { .. } => None,
                AgentAction::Established => {
                    self.established = true;
                    self.inner.connected.store(true, Ordering::Relaxed);
                    self.inner.sessions.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(site = %self.identity.site, remote = %self.remote, "session open");
                    None
                }
                AgentAction::Send(kind) => {
                    self.send_msg(kind).await?;
                    None
                }
                AgentAction::Heartbeat => {
                    self.send_msg(AgentKind::Heartbeat(proto::Heartbeat { sent_at: now_ms() }))
                        .await?;
                    None
                }
                AgentAction::Persist(intent) => Some(self.persist(&intent)?),
                AgentAction::Refused { generation, held } => {
                    self.inner.refused.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%generation, %held, "refused an older intent generation");
                    None
                }
                AgentAction::Hand(intent) => Some(self.hand(&intent)?),
                AgentAction::LoadReports { after, limit } => {
                    let store = &self.inner.store;
                    let reports = store.pending(after, limit)?;
                    let dropped = if reports.is_empty() {
                        0
                    } else {
                        store.dropped()?
                    };
                    Some(AgentEvent::ReportsLoaded { reports, dropped })
                }
                AgentAction::Trim(hw) => {
                    self.inner.store.trim(hw)?;
                    None
                }
                AgentAction::RenewIfDue => self.renewal_request()?,
                AgentAction::InstallCertificate(r) => {
                    self.install_certificate(r)?;
                    None
                }
                AgentAction::SetTimer(t) => {
                    *timer = Some(t);
                    None
                }
                AgentAction::CancelTimer => {
                    *timer = None;
                    None
                }
                AgentAction::Close(AgentClose::Silent) => return Err(SessionError::Silent),
                AgentAction::Close(AgentClose::Stopping) => {
                    self.connection
                        .close(close::NORMAL.into(), b"agent stopping");
                    return Ok(Some(Ended::Stopped));
                }
            };
            if let Some(event) = answer {
                machine.handle(clock.now(), event);
            }
        }
        Ok(None)
    }

    async fn send_msg(&mut self, kind: AgentKind) -> Result<(), SessionError> {
        let bytes = frame::encode_message(
            &proto::AgentMessage { kind: Some(kind) },
            self.inner.config.max_frame_bytes,
        )?;
        self.send
            .write_all(&bytes)
            .await
            .map_err(|e| SessionError::Stream(std::io::Error::other(e)))
    }

    /// Writes a pushed intent to the journal (flushed), which refuses an older generation
    /// than the one it holds.
    fn persist(&self, intent: &SiteIntent) -> Result<AgentEvent, SessionError> {
        let store = &self.inner.store;
        let outcome = match store.store_intent(intent)? {
            IntentOutcome::Stale { held } => PersistOutcome::Stale { held },
            IntentOutcome::Stored => PersistOutcome::Stored,
            IntentOutcome::AlreadyHeld => PersistOutcome::AlreadyHeld,
        };
        Ok(AgentEvent::Persisted {
            outcome,
            applied: store.applied_generation()?,
        })
    }

    /// Hands a persisted intent to the reconciler: a background one is woken (its conclusion
    /// follows as an announcement; the latest one goes back with the answer); a synchronous
    /// one applies it, and the journal records it applied.
    fn hand(&self, intent: &SiteIntent) -> Result<AgentEvent, SessionError> {
        if let Some(outcomes) = &self.inner.outcomes {
            let result = self
                .inner
                .reconciler
                .apply(intent)
                .map_err(|e| e.to_string());
            let latest = outcomes.borrow().clone().map(outcome);
            return Ok(AgentEvent::Handed { result, latest });
        }
        let result = match self.inner.reconciler.apply(intent) {
            Ok(()) => {
                self.inner.store.set_applied(intent.generation)?;
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        };
        Ok(AgentEvent::Handed {
            result,
            latest: None,
        })
    }

    /// A CSR for a new key if the certificate is due for renewal (2/3 of its lifetime).
    fn renewal_request(&mut self) -> Result<Option<AgentEvent>, SessionError> {
        if self.renewing.is_some() || now_ms() < self.identity.renew_at_ms() {
            return Ok(None);
        }
        let key = rcgen::KeyPair::generate().map_err(EnrollError::from)?;
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .and_then(|p| p.serialize_request(&key))
            .and_then(|c| c.pem())
            .map_err(EnrollError::from)?;
        tracing::info!(site = %self.identity.site, "renewing site certificate");
        self.renewing = Some(key);
        Ok(Some(AgentEvent::RenewalRequested { csr_pem: csr }))
    }

    fn install_certificate(&mut self, r: proto::CertRenewResponse) -> Result<(), SessionError> {
        let Some(key) = self.renewing.take() else {
            return Ok(());
        };
        let identity = Identity {
            key_pem: key.serialize_pem(),
            cert_pem: r.certificate_chain_pem,
            issued_at_ms: now_ms(),
            not_after_ms: r.not_after,
            ..self.identity.clone()
        };
        self.inner.store.set_identity(&identity)?;
        self.identity = identity;
        self.inner.renewals.fetch_add(1, Ordering::Relaxed);
        tracing::info!(site = %self.identity.site, not_after = r.not_after, "site certificate renewed");
        Ok(())
    }
}
