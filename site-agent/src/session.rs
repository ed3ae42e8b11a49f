//! The agent's session loop: enrol if needed, connect (`meridian/1`, mutual TLS), say Hello,
//! then serve pushes, acknowledgements, reports, heartbeats and certificate renewal until the
//! link dies; reconnect with exponential backoff and full jitter. The intent held stays in
//! force the whole time: nothing here tears anything down.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use meridian_common::channel::backoff::Backoff;
use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::channel::{CENTRAL_SERVER_NAME, close, frame};
use meridian_common::ids::{Generation, Sequence};
use meridian_common::model::SiteIntent;
use meridian_proto::v1 as proto;
use prost::Message;
use rand::SeedableRng;
use tokio::time::Instant;

use crate::enroll::{self, EnrollError, resolve};
use crate::reconciler::Convergence;
use crate::store::{AgentStoreError, Identity, IntentOutcome};
use crate::{Inner, now_ms, tls};
use meridian_channel::read_frame;

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

/// Runs until `stop` turns true.
pub(crate) async fn run(inner: Arc<Inner>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut backoff = Backoff::new(
        Duration::from_millis(inner.config.backoff_initial_ms),
        Duration::from_millis(inner.config.backoff_max_ms),
    );
    let mut rng = rand::rngs::StdRng::from_os_rng();
    let mut address = 0usize;
    // Consecutive failed attempts that central did not refuse outright: each makes the next
    // one more patient (see connect_timeout). A refusal is central shedding load at once, not
    // a slow handshake, so it leaves the patience as it is: under a reconnect storm an agent
    // refused a few times still gives up on a stalled handshake after one period, not eight.
    let mut patience = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        match attempt(&inner, &mut stop, address, patience).await {
            Ok(Ended::Stopped) => return,
            Ok(Ended::WasEstablished) => {
                backoff.reset();
                patience = 0;
            }
            Err(e) => {
                if !refused_by_central(&e) {
                    patience = patience.saturating_add(1);
                }
                if let SessionError::Connection(c) = &e
                    && cert_rejected(c)
                {
                    inner.reenroll.store(true, Ordering::Relaxed);
                }
                if matches!(e, SessionError::Connect(_)) {
                    address = address.wrapping_add(1);
                }
                let text = meridian_common::telemetry::error_chain(&e);
                tracing::warn!(error = %text, "session attempt failed");
                *inner.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(text);
            }
        }
        inner.connected.store(false, Ordering::Relaxed);
        let delay = backoff.next_delay(&mut rng);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
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
    in_flight: Option<Sequence>,
    renewing: Option<rcgen::KeyPair>,
}

async fn attempt(
    inner: &Arc<Inner>,
    stop: &mut tokio::sync::watch::Receiver<bool>,
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
    let (mut send, mut recv) = connection.open_bi().await?;
    let hello = proto::Hello {
        site: identity.site.as_str().to_owned(),
        agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        applied_generation: inner.store.applied_generation()?.get(),
        last_acked_sequence: inner.store.last_acked()?.get(),
        held_generation: inner.store.held_generation()?.get(),
    };
    let bytes = frame::encode_message(
        &proto::AgentMessage {
            kind: Some(AgentKind::Hello(hello)),
        },
        inner.config.max_frame_bytes,
    )?;
    send.write_all(&bytes)
        .await
        .map_err(|e| SessionError::Stream(std::io::Error::other(e)))?;
    inner.connected.store(true, Ordering::Relaxed);
    inner.sessions.fetch_add(1, Ordering::Relaxed);
    tracing::info!(site = %identity.site, %remote, "session open");

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
        in_flight: None,
        renewing: None,
    };
    let heartbeat = inner.config.heartbeat();
    let mut tick = tokio::time::interval(heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_heard = Instant::now();
    // A background reconciler's outcome: repeated once per session (central may have missed
    // it while the link was down), then every new one.
    let mut outcomes = inner.outcomes.clone();
    let result: Result<Ended, SessionError> = async {
        live.send_reports().await?;
        if let Some(rx) = outcomes.as_mut() {
            let current = rx.borrow_and_update().clone();
            if let Some(c) = current {
                live.send_convergence(c).await?;
            }
        }
        loop {
            tokio::select! {
                item = rx.recv() => match item {
                    Some(Ok(body)) => {
                        last_heard = Instant::now();
                        live.handle(&body).await?;
                    }
                    Some(Err(e)) => return Err(SessionError::Stream(e)),
                    None => return Err(SessionError::Connection(connection.closed().await)),
                },
                _ = tick.tick() => {
                    if last_heard.elapsed() > heartbeat * 3 {
                        return Err(SessionError::Silent);
                    }
                    live.send_msg(AgentKind::Heartbeat(proto::Heartbeat { sent_at: now_ms() })).await?;
                    live.maybe_renew().await?;
                }
                _ = inner.reports_ready.notified() => live.send_reports().await?,
                c = next_outcome(&mut outcomes) => live.send_convergence(c).await?,
                _ = stop.changed() => {
                    connection.close(close::NORMAL.into(), b"agent stopping");
                    return Ok(Ended::Stopped);
                }
                e = connection.closed() => return Err(SessionError::Connection(e)),
            }
        }
    }
    .await;
    reader.abort();
    inner.connected.store(false, Ordering::Relaxed);
    match result {
        Ok(Ended::Stopped) => Ok(Ended::Stopped),
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
        Ok(other) => Ok(other),
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
    /// Acknowledges what a background reconciler concluded about a generation.
    async fn send_convergence(&mut self, c: Convergence) -> Result<(), SessionError> {
        use proto::IntentAckStatus as S;
        match c {
            Convergence::Applied(g) => self.ack(g.get(), S::Applied, String::new()).await,
            Convergence::Failed { generation, reason } => {
                self.ack(generation.get(), S::Failed, reason).await
            }
        }
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

    async fn ack(
        &mut self,
        generation: u64,
        status: proto::IntentAckStatus,
        reason: String,
    ) -> Result<(), SessionError> {
        self.send_msg(AgentKind::IntentAck(proto::IntentAck {
            generation,
            status: status as i32,
            reason,
        }))
        .await
    }

    /// Sends the next batch if none is in flight (one at a time, replayed from the last ack).
    async fn send_reports(&mut self) -> Result<(), SessionError> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let store = &self.inner.store;
        let pending = store.pending(store.last_acked()?, self.inner.config.report_batch_max)?;
        let Some(last) = pending.last().map(|r| r.sequence) else {
            return Ok(());
        };
        self.in_flight = Some(Sequence::new(last));
        let batch = proto::ReportBatch {
            first_sequence: pending[0].sequence,
            reports: pending,
            dropped: store.dropped()?,
        };
        self.send_msg(AgentKind::ReportBatch(batch)).await
    }

    async fn maybe_renew(&mut self) -> Result<(), SessionError> {
        if self.renewing.is_some() || now_ms() < self.identity.renew_at_ms() {
            return Ok(());
        }
        let key = rcgen::KeyPair::generate().map_err(EnrollError::from)?;
        let csr = rcgen::CertificateParams::new(Vec::<String>::new())
            .and_then(|p| p.serialize_request(&key))
            .and_then(|c| c.pem())
            .map_err(EnrollError::from)?;
        tracing::info!(site = %self.identity.site, "renewing site certificate");
        self.renewing = Some(key);
        self.send_msg(AgentKind::CertRenewRequest(proto::CertRenewRequest {
            csr_pem: csr,
        }))
        .await
    }

    async fn handle(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let msg = proto::CentralMessage::decode(body)?;
        match msg.kind {
            None | Some(CentralKind::Heartbeat(_)) => Ok(()),
            Some(CentralKind::ReportAck(ack)) => {
                let hw = Sequence::new(ack.high_water_sequence);
                self.inner.store.trim(hw)?;
                if self.in_flight.is_some_and(|s| s <= hw) {
                    self.in_flight = None;
                }
                self.send_reports().await
            }
            Some(CentralKind::CertRenewResponse(r)) => {
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
            Some(CentralKind::IntentPush(push)) => {
                self.inner.pushes.fetch_add(1, Ordering::Relaxed);
                self.inner
                    .push_bytes
                    .fetch_add(body.len() as u64 + 4, Ordering::Relaxed);
                self.on_push(push).await
            }
        }
    }

    async fn on_push(&mut self, push: proto::IntentPush) -> Result<(), SessionError> {
        use proto::IntentAckStatus as S;
        let generation = push.generation;
        let intent = match push.intent.map(SiteIntent::try_from) {
            Some(Ok(i)) => i,
            Some(Err(e)) => {
                return self
                    .ack(
                        generation,
                        S::Failed,
                        format!("intent does not convert: {e}"),
                    )
                    .await;
            }
            None => {
                return self
                    .ack(generation, S::Failed, "push without an intent".into())
                    .await;
            }
        };
        if intent.site != self.identity.site || intent.generation != Generation::new(generation) {
            return self
                .ack(
                    generation,
                    S::Failed,
                    "intent is for another site or generation".into(),
                )
                .await;
        }
        match self.inner.store.store_intent(&intent)? {
            IntentOutcome::Stale { held } => {
                self.inner.refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(%generation, %held, "refused an older intent generation");
                self.ack(
                    generation,
                    S::Failed,
                    format!(
                        "generation {generation} is older than the held generation {held}; refused"
                    ),
                )
                .await
            }
            IntentOutcome::AlreadyHeld | IntentOutcome::Stored => {
                // Persisted (flushed) before this acknowledgement.
                self.ack(generation, S::Received, String::new()).await?;
                if self.inner.store.applied_generation()? >= intent.generation {
                    return self.ack(generation, S::Applied, String::new()).await;
                }
                if let Some(outcomes) = &self.inner.outcomes {
                    // A background reconciler: wake it; `APPLIED` or `FAILED` follows from its
                    // announcement. A re-push of a generation it already concluded on gets
                    // that conclusion again.
                    if let Err(e) = self.inner.reconciler.apply(&intent) {
                        return self.ack(generation, S::Failed, e.to_string()).await;
                    }
                    let known = outcomes
                        .borrow()
                        .clone()
                        .filter(|c| c.generation() == intent.generation);
                    return match known {
                        Some(c) => self.send_convergence(c).await,
                        None => Ok(()),
                    };
                }
                match self.inner.reconciler.apply(&intent) {
                    Ok(()) => {
                        self.inner.store.set_applied(intent.generation)?;
                        self.ack(generation, S::Applied, String::new()).await
                    }
                    Err(e) => self.ack(generation, S::Failed, e.to_string()).await,
                }
            }
        }
    }
}
