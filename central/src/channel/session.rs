//! Sessions (`meridian/1`, mutual TLS): one per site, on one bidirectional stream the agent
//! opens. The agent's first frame must be `Hello`; then the agent sends `IntentAck`,
//! `ReportBatch`, `CertRenewRequest` and `Heartbeat`, and central sends `IntentPush`,
//! `ReportAck`, `CertRenewResponse` and `Heartbeat`.
//!
//! The site is the one named in the client certificate (verified at the handshake, see
//! [`super::tls`]); a `Hello` naming another site ends the session. A second session of the
//! same site replaces the first (the first is closed with `close::REPLACED`). A revoked
//! site's session is closed as soon as the revocation is seen.
//!
//! Liveness: a site is `Online` while central hears from it; after
//! `channel.disconnect_after_ms` of silence it is marked `Disconnected`. Nothing else happens
//! on silence: its intent stays as it is, and the agent keeps running it.
//!
//! This is the IO half of a session. What the protocol decides (the `Hello` checks, pushing
//! only a newer generation than the agent holds or was sent, the push-window slot and its
//! timeout, never regressing acknowledged generations, report deduplication on sequence
//! numbers, which messages end the session) is the sans-IO machine
//! [`meridian_common::channel::session::central::CentralSession`]; this module feeds it the
//! stream's frames, the distributor's wake-ups and its timer, and carries out its actions on
//! the connection, the registry, the push window and the store (the channel record's
//! compare-and-swap, the report transaction of [`super::ingest`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_common::channel::close;
use meridian_common::channel::frame;
use meridian_common::channel::session::central::{
    CentralAction, CentralClose, CentralEvent, CentralSession, CentralSessionConfig, Release,
};
use meridian_common::channel::session::{Acked, Millis};
use meridian_common::ids::SiteId;
use meridian_common::model::SiteState;
use meridian_proto::v1 as proto;
use prost::Message;
use rustls_pki_types::CertificateDer;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use crate::ca::{CaError, site_identity};
use meridian_channel::{SessionClock, read_frame};
use meridian_store::Tables;
use meridian_store::schema::{self as state, SiteChannel, SiteRecord};
use meridian_store::tables::TableError;
use meridian_store::{Expect, Revision, StoreError};

use proto::central_message::Kind as CentralKind;

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session stream failed")]
    Stream(#[source] std::io::Error),
    #[error("frame could not be encoded")]
    Frame(#[from] frame::FrameError),
    #[error("message does not decode")]
    Decode(#[from] prost::DecodeError),
    #[error("protocol violation: {0}")]
    Protocol(String),
    #[error("client certificate is not usable")]
    Certificate(#[from] CaError),
    #[error("store failed")]
    Table(#[from] TableError),
    #[error("agent did not open its session in time")]
    Timeout,
}

impl From<super::ingest::IngestError> for SessionError {
    fn from(e: super::ingest::IngestError) -> Self {
        match e {
            super::ingest::IngestError::Protocol(m) => SessionError::Protocol(m),
            super::ingest::IngestError::Table(t) => SessionError::Table(t),
        }
    }
}

impl From<StoreError> for SessionError {
    fn from(e: StoreError) -> Self {
        SessionError::Table(e.into())
    }
}

#[derive(Debug)]
struct Entry {
    id: u64,
    connection: quinn::Connection,
    wake: Arc<Notify>,
    /// Pushes injected by tests (see `inject_push`); absent from product builds, where the
    /// session's receiving end is closed at once and never yields.
    #[cfg(feature = "test-hooks")]
    inject: tokio::sync::mpsc::UnboundedSender<proto::IntentPush>,
}

/// Live sessions by site, and when each site was last heard from.
#[derive(Debug, Default)]
pub struct Registry {
    sessions: Mutex<HashMap<SiteId, Entry>>,
    heard: Mutex<HashMap<SiteId, Instant>>,
    next_id: AtomicU64,
}

impl Registry {
    fn insert(
        &self,
        site: &SiteId,
        connection: quinn::Connection,
    ) -> (
        u64,
        Arc<Notify>,
        tokio::sync::mpsc::UnboundedReceiver<proto::IntentPush>,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let wake = Arc::new(Notify::new());
        let (inject, injected) = tokio::sync::mpsc::unbounded_channel();
        let old = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(
                site.clone(),
                Entry {
                    id,
                    connection,
                    wake: Arc::clone(&wake),
                    #[cfg(feature = "test-hooks")]
                    inject,
                },
            );
        #[cfg(not(feature = "test-hooks"))]
        drop(inject);
        if let Some(old) = old {
            tracing::info!(%site, "new session replaces the old one");
            old.connection
                .close(close::REPLACED.into(), b"replaced by a newer session");
        }
        (id, wake, injected)
    }

    /// Fault injection for tests: sends `push` as it is on the live session of `site`,
    /// bypassing the distributor's newest-only rule (to replay an old generation and check
    /// that the agent refuses it, R4). False if the site has no session. Only in builds with
    /// the `test-hooks` feature, which the product never enables.
    #[cfg(feature = "test-hooks")]
    pub fn inject_push(&self, site: &SiteId, push: proto::IntentPush) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
            .is_some_and(|e| e.inject.send(push).is_ok())
    }

    fn remove(&self, site: &SiteId, id: u64) {
        let mut map = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        if map.get(site).is_some_and(|e| e.id == id) {
            map.remove(site);
        }
    }

    /// Wakes the session of `site` (its intent changed).
    pub fn wake(&self, site: &SiteId) {
        if let Some(e) = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(site)
        {
            e.wake.notify_one();
        }
    }

    /// Wakes every session.
    pub fn wake_all(&self) {
        for e in self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
        {
            e.wake.notify_one();
        }
    }

    /// Closes the session of `site`, if any.
    pub fn close(&self, site: &SiteId, code: u32, reason: &[u8]) {
        if let Some(e) = self
            .sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(site)
        {
            e.connection.close(code.into(), reason);
        }
    }

    /// Sites with a live session.
    pub fn len(&self) -> usize {
        self.sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Records hearing from `site`; true if it had been considered silent (or new).
    fn heard(&self, site: &SiteId) -> bool {
        self.heard
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(site.clone(), Instant::now())
            .is_none()
    }

    fn silent_since(&self, limit: Duration) -> Vec<SiteId> {
        let mut heard = self.heard.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let silent: Vec<SiteId> = heard
            .iter()
            .filter(|(_, t)| now.duration_since(**t) >= limit)
            .map(|(s, _)| s.clone())
            .collect();
        for s in &silent {
            heard.remove(s);
        }
        silent
    }
}

/// Sets a site's lifecycle state (not touching a decommissioned site).
pub async fn set_site_state(
    tables: &Tables,
    site: &SiteId,
    to: SiteState,
) -> Result<(), TableError> {
    for _ in 0..16 {
        let Some(current) = tables.sites().get(site).await? else {
            return Ok(());
        };
        if current.record.state == to || current.record.state == SiteState::Decommissioned {
            return Ok(());
        }
        let mut next = current.record.clone();
        next.state = to;
        match tables.sites().update(&next, current.revision).await {
            Ok(_) => {
                tracing::info!(%site, state = ?to, "site state");
                return Ok(());
            }
            Err(TableError::Conflict { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Marks sites `Disconnected` after `disconnect_after_ms` of silence.
pub async fn sweep_silent(shared: Arc<Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let limit = Duration::from_millis(shared.config.disconnect_after_ms);
    let period = (limit / 4).clamp(Duration::from_millis(25), Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(period) => {}
            _ = stop.changed() => return,
        }
        for site in shared.registry.silent_since(limit) {
            if let Err(e) = set_site_state(&shared.tables, &site, SiteState::Disconnected).await {
                tracing::warn!(%site, error = %meridian_common::telemetry::error_chain(&e), "cannot mark site disconnected");
            }
        }
    }
}

/// Keeps the auth cache in step with `channel/auth/`, closing revoked sites' sessions.
pub async fn watch_auth(
    shared: Arc<Shared>,
    mut from: Revision,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    loop {
        let store = Arc::clone(shared.tables.store());
        let mut watch = match store.watch(state::AUTH_PREFIX.as_bytes(), from).await {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "auth watch failed; reloading");
                match shared.auth.load(store.as_ref()).await {
                    Ok(r) => from = r,
                    Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
                }
                continue;
            }
        };
        loop {
            let event = tokio::select! {
                e = watch.next() => e,
                _ = stop.changed() => return,
            };
            match event {
                Ok(event) => {
                    from = Revision(event.kv.mod_revision.0 + 1);
                    if let Some((site, auth)) = shared.auth.apply(&event)
                        && auth.is_none_or(|a| a.revoked)
                    {
                        tracing::info!(%site, "site revoked; closing its session");
                        shared
                            .registry
                            .close(&site, close::REVOKED, b"site revoked");
                    }
                }
                Err(StoreError::Closed) => return,
                Err(_) => break,
            }
        }
    }
}

/// Serves one session connection until it ends.
pub async fn serve(shared: Arc<Shared>, connection: quinn::Connection) {
    let remote = connection.remote_address();
    if let Err(e) = serve_inner(&shared, &connection).await {
        let code = match e {
            SessionError::Protocol(_) | SessionError::Decode(_) | SessionError::Frame(_) => {
                shared
                    .counters
                    .protocol_errors
                    .fetch_add(1, Ordering::Relaxed);
                close::PROTOCOL
            }
            SessionError::Certificate(_) => close::NO_CERTIFICATE,
            SessionError::Table(_) => close::INTERNAL,
            _ => close::NORMAL,
        };
        tracing::info!(%remote, error = %meridian_common::telemetry::error_chain(&e), "session ended");
        connection.close(code.into(), b"session ended");
    }
}

fn peer_certificate(connection: &quinn::Connection) -> Option<CertificateDer<'static>> {
    connection
        .peer_identity()?
        .downcast::<Vec<CertificateDer<'static>>>()
        .ok()?
        .into_iter()
        .next()
}

/// What the session listens to once registered: the distributor's wake-up and the test
/// hook's pushes.
type Links = (
    Arc<Notify>,
    tokio::sync::mpsc::UnboundedReceiver<proto::IntentPush>,
);

struct Session<'a> {
    shared: &'a Shared,
    connection: &'a quinn::Connection,
    site: SiteId,
    send: quinn::SendStream,
    cert_not_after: meridian_common::ids::Timestamp,
    channel: SiteChannel,
    channel_rev: Option<Revision>,
    clock: SessionClock,
    timer: Option<Millis>,
    /// The push window's permit while a push awaits the agent's acknowledgement.
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    /// The session's id in the registry, once registered.
    registered: Option<u64>,
    links: Option<Links>,
}

async fn serve_inner(shared: &Shared, connection: &quinn::Connection) -> Result<(), SessionError> {
    let Some(cert) = peer_certificate(connection) else {
        connection.close(
            close::NO_CERTIFICATE.into(),
            b"a session needs a site certificate",
        );
        return Ok(());
    };
    let identity = site_identity(&cert)?;
    let site = identity.site.clone();
    let open_timeout = Duration::from_millis(shared.config.handshake_timeout_ms);
    let (send, mut recv) = tokio::time::timeout(open_timeout, connection.accept_bi())
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(|e| SessionError::Stream(std::io::Error::other(e)))?;
    let max = shared.config.max_frame_bytes;
    let first = tokio::time::timeout(open_timeout, read_frame(&mut recv, max))
        .await
        .map_err(|_| SessionError::Timeout)?
        .map_err(SessionError::Stream)?;
    let first = match first {
        Some(body) => CentralEvent::Received(proto::AgentMessage::decode(body.as_slice())?),
        None => CentralEvent::StreamEnded,
    };
    let mut machine = CentralSession::new(
        site.clone(),
        CentralSessionConfig {
            push_ack_timeout: shared.config.push_ack_timeout(),
        },
    );
    let mut session = Session {
        shared,
        connection,
        site: site.clone(),
        send,
        cert_not_after: identity.not_after,
        channel: SiteChannel::default(),
        channel_rev: None,
        clock: SessionClock::start(),
        timer: None,
        permit: None,
        registered: None,
        links: None,
    };
    machine.handle(session.clock.now(), first);
    let result = run(&mut session, &mut machine, recv).await;
    if let Some(id) = session.registered {
        shared.registry.remove(&site, id);
    }
    result
}

async fn run(
    session: &mut Session<'_>,
    machine: &mut CentralSession,
    mut recv: quinn::RecvStream,
) -> Result<(), SessionError> {
    // The Hello: checked, registered, recorded; the newest intent pushed if the agent lacks it.
    if session.drain(machine).await? {
        return Ok(());
    }
    let Some((wake, mut injected)) = session.links.take() else {
        return Ok(());
    };
    let shared = session.shared;
    let site = session.site.clone();
    // Frames are read on their own task so a half-received frame never blocks pushes.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, SessionError>>(16);
    let max = shared.config.max_frame_bytes;
    let reader = tokio::spawn(async move {
        loop {
            let item = match read_frame(&mut recv, max).await {
                Ok(Some(b)) => Ok(b),
                Ok(None) => break,
                Err(e) => Err(SessionError::Stream(e)),
            };
            let stop = item.is_err();
            if tx.send(item).await.is_err() || stop {
                break;
            }
        }
    });
    let result = loop {
        let clock = session.clock;
        let event = tokio::select! {
            frame = rx.recv() => match frame {
                Some(Ok(body)) => {
                    if shared.registry.heard(&site)
                        && let Err(e) = set_site_state(&shared.tables, &site, SiteState::Online).await
                    {
                        break Err(SessionError::Table(e));
                    }
                    match proto::AgentMessage::decode(body.as_slice()) {
                        Ok(msg) => {
                            if msg.kind.is_none() {
                                // A message type this central does not know (a newer agent).
                                tracing::debug!(%site, "skipping unknown agent message");
                            }
                            CentralEvent::Received(msg)
                        }
                        Err(e) => break Err(SessionError::Decode(e)),
                    }
                }
                Some(Err(e)) => break Err(e),
                None => CentralEvent::StreamEnded,
            },
            _ = wake.notified() => CentralEvent::IntentChanged,
            Some(push) = injected.recv() => CentralEvent::Inject(push),
            _ = clock.expiry(session.timer) => {
                session.timer = None;
                CentralEvent::Timer
            }
            _ = session.connection.closed() => CentralEvent::StreamEnded,
        };
        machine.handle(clock.now(), event);
        match session.drain(machine).await {
            Ok(false) => {}
            Ok(true) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    reader.abort();
    result
}

impl Session<'_> {
    /// Carries out the machine's actions in order, feeding each answer back at once. True
    /// when the machine ended the session normally; a protocol violation is an error.
    async fn drain(&mut self, machine: &mut CentralSession) -> Result<bool, SessionError> {
        while let Some(action) = machine.poll_action() {
            let answer = match action {
                CentralAction::Register => {
                    let (id, wake, injected) = self
                        .shared
                        .registry
                        .insert(&self.site, self.connection.clone());
                    self.registered = Some(id);
                    self.links = Some((wake, injected));
                    None
                }
                CentralAction::LoadRecord => {
                    let store = self.shared.tables.store();
                    (self.channel, self.channel_rev) = match state::read_site_record::<SiteChannel>(
                        store.as_ref(),
                        &state::site_key(&self.site),
                    )
                    .await?
                    {
                        Some((c, r)) => (c, Some(r)),
                        None => (SiteChannel::default(), None),
                    };
                    Some(CentralEvent::RecordLoaded {
                        report_high_water: self.channel.report_high_water,
                        acked: acked_of(&self.channel),
                    })
                }
                CentralAction::Opened(hello) => {
                    let site = &self.site;
                    self.shared.registry.heard(site);
                    set_site_state(&self.shared.tables, site, SiteState::Online).await?;
                    tracing::info!(%site, held = %hello.held, applied = %hello.applied, acked = %hello.acked, "session open");
                    self.shared.metrics.fanout().acknowledged(
                        site,
                        hello.held,
                        std::time::Instant::now(),
                    );
                    let cert_not_after = self.cert_not_after.as_millis();
                    let last_seen = self.shared.clock.now().as_millis();
                    let path_rtt_us = self.path_rtt_us();
                    self.update_channel(|c| {
                        c.path_rtt_us = path_rtt_us;
                        let mut acked = acked_of(c);
                        acked.hello(hello.held, hello.applied);
                        set_acked(c, acked);
                        c.cert_not_after_ms = cert_not_after;
                        c.last_seen_ms = last_seen;
                    })
                    .await?;
                    None
                }
                CentralAction::Send(kind) => {
                    if let CentralKind::IntentPush(p) = &kind {
                        tracing::debug!(site = %self.site, generation = p.generation, "pushing intent");
                    }
                    self.send(kind).await?;
                    None
                }
                CentralAction::Heartbeat => {
                    self.send(CentralKind::Heartbeat(proto::Heartbeat {
                        sent_at: self.shared.clock.now().as_millis(),
                    }))
                    .await?;
                    // The path RTT is written with every report batch; between batches only
                    // a change worth showing costs a write.
                    let path_rtt_us = self.path_rtt_us();
                    if path_rtt_changed(self.channel.path_rtt_us, path_rtt_us) {
                        self.update_channel(|c| c.path_rtt_us = path_rtt_us).await?;
                    }
                    None
                }
                CentralAction::ReadIntent => {
                    let intent = self.shared.tables.intents().get(&self.site).await?;
                    Some(CentralEvent::NewestIntent(intent.map(|i| i.record)))
                }
                CentralAction::AcquireSlot => {
                    let permit = Arc::clone(&self.shared.push_window)
                        .acquire_owned()
                        .await
                        .map_err(|_| SessionError::Protocol("push window closed".into()))?;
                    self.permit = Some(permit);
                    Some(CentralEvent::SlotAcquired)
                }
                CentralAction::ReleaseSlot(why) => {
                    if why == Release::Expired {
                        tracing::debug!(site = %self.site, "intent push unacknowledged; its window slot is released");
                    }
                    self.permit = None;
                    None
                }
                CentralAction::RecordAck(ack) => {
                    if matches!(
                        ack.status,
                        proto::IntentAckStatus::Received | proto::IntentAckStatus::Applied
                    ) {
                        self.shared.metrics.fanout().acknowledged(
                            &self.site,
                            ack.generation,
                            std::time::Instant::now(),
                        );
                    }
                    self.update_channel(|c| {
                        let mut acked = acked_of(c);
                        if let Some(reason) = acked.apply(&ack) {
                            c.failed_reason = reason.to_owned();
                        }
                        set_acked(c, acked);
                    })
                    .await?;
                    None
                }
                CentralAction::StoreReports(write) => {
                    let received = std::time::Instant::now();
                    let path_rtt_us = self.path_rtt_us();
                    super::ingest::store(
                        self.shared,
                        &self.site,
                        write,
                        &mut self.channel,
                        &mut self.channel_rev,
                        Some(path_rtt_us),
                    )
                    .await?;
                    self.shared.metrics.report_batch_stored(received.elapsed());
                    Some(CentralEvent::ReportsStored)
                }
                CentralAction::SignCertificate { csr_pem } => {
                    Some(CentralEvent::CertificateIssued(self.renew(&csr_pem).await?))
                }
                CentralAction::SetTimer(t) => {
                    self.timer = Some(t);
                    None
                }
                CentralAction::CancelTimer => {
                    self.timer = None;
                    None
                }
                CentralAction::Close(CentralClose::Ended) => return Ok(true),
                CentralAction::Close(CentralClose::Protocol(m)) => {
                    return Err(SessionError::Protocol(m));
                }
            };
            if let Some(event) = answer {
                machine.handle(self.clock.now(), event);
            }
        }
        Ok(false)
    }

    /// The connection's current QUIC path RTT estimate, microseconds (at least 1).
    fn path_rtt_us(&self) -> u64 {
        u64::try_from(self.connection.rtt().as_micros())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    async fn send(&mut self, kind: CentralKind) -> Result<(), SessionError> {
        let msg = proto::CentralMessage { kind: Some(kind) };
        let bytes = frame::encode_message(&msg, self.shared.config.max_frame_bytes)?;
        self.send
            .write_all(&bytes)
            .await
            .map_err(|e| SessionError::Stream(std::io::Error::other(e)))
    }

    /// Signs a renewal CSR with the site's current epoch and audits it.
    async fn renew(&self, csr_pem: &str) -> Result<proto::CertRenewResponse, SessionError> {
        let epoch = self
            .shared
            .auth
            .get(&self.site)
            .map_or(1, |a| a.epoch.max(1));
        let issued = self.shared.ca.sign_site_csr(
            csr_pem,
            &self.site,
            epoch,
            self.shared.config.site_cert_lifetime(),
            self.shared.clock.now(),
        )?;
        self.shared
            .audit
            .append(
                crate::audit::AuditEntry {
                    actor: &format!("site:{}", self.site),
                    action: "channel/RenewCertificate",
                    object: &format!("site/{}", self.site),
                    outcome: crate::audit::Outcome::Success,
                    detail: &format!("valid until {}", issued.not_after),
                },
                self.shared.clock.now(),
            )
            .await?;
        Ok(proto::CertRenewResponse {
            certificate_chain_pem: issued.certificate_pem,
            not_after: issued.not_after.as_millis(),
        })
    }

    /// Applies `f` to the stored channel record (compare-and-swap; re-reads on conflict).
    async fn update_channel(&mut self, f: impl Fn(&mut SiteChannel)) -> Result<(), SessionError> {
        let store = Arc::clone(self.shared.tables.store());
        let key = state::site_key(&self.site);
        for _ in 0..16 {
            let mut next = self.channel.clone();
            f(&mut next);
            if next == self.channel && self.channel_rev.is_some() {
                return Ok(());
            }
            let expect = self.channel_rev.map_or(Expect::Absent, Expect::ModRevision);
            match store.put(&key, &next.encode(), expect).await {
                Ok(rev) => {
                    self.channel = next;
                    self.channel_rev = Some(rev);
                    return Ok(());
                }
                Err(StoreError::Conflict { .. }) => {
                    let current =
                        state::read_site_record::<SiteChannel>(store.as_ref(), &key).await?;
                    (self.channel, self.channel_rev) = match current {
                        Some((c, r)) => (c, Some(r)),
                        None => (SiteChannel::default(), None),
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(SessionError::Protocol(
            "channel record keeps changing".into(),
        ))
    }
}

/// Whether a path RTT moved far enough from the recorded one to be written between report
/// batches: by more than 1 ms and more than a fifth, or never recorded.
fn path_rtt_changed(recorded_us: u64, now_us: u64) -> bool {
    let diff = recorded_us.abs_diff(now_us);
    recorded_us == 0 || (diff > 1_000 && diff * 5 > recorded_us)
}

/// The acknowledged generations of a channel record.
fn acked_of(c: &SiteChannel) -> Acked {
    Acked {
        received: c.received_generation,
        applied: c.applied_generation,
        failed: c.failed_generation,
    }
}

fn set_acked(c: &mut SiteChannel, acked: Acked) {
    c.received_generation = acked.received;
    c.applied_generation = acked.applied;
    c.failed_generation = acked.failed;
}

#[cfg(test)]
mod tests {
    use super::path_rtt_changed;

    #[test]
    fn only_a_path_rtt_change_worth_showing_is_written_between_batches() {
        assert!(path_rtt_changed(0, 300), "never recorded");
        assert!(!path_rtt_changed(300, 900), "under 1 ms apart");
        assert!(!path_rtt_changed(40_000, 41_500), "under a fifth apart");
        assert!(path_rtt_changed(5_000, 30_000));
        assert!(path_rtt_changed(30_000, 5_000));
    }
}
