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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_common::channel::close;
use meridian_common::channel::frame;
use meridian_common::channel::seq::HighWater;
use meridian_common::ids::{Generation, SiteId};
use meridian_common::model::SiteState;
use meridian_proto::v1 as proto;
use prost::Message;
use rustls_pki_types::CertificateDer;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use crate::ca::{CaError, site_identity};
use meridian_channel::read_frame;
use meridian_store::Tables;
use meridian_store::schema::{self as state, SiteChannel, SiteRecord};
use meridian_store::tables::TableError;
use meridian_store::{Expect, Revision, StoreError};

use proto::agent_message::Kind as AgentKind;
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

struct Session<'a> {
    shared: &'a Shared,
    site: SiteId,
    send: quinn::SendStream,
    channel: SiteChannel,
    channel_rev: Option<Revision>,
    high_water: HighWater,
    /// Newest generation the agent holds or was sent.
    pushed: Generation,
    /// The push window's permit while a push awaits the agent's acknowledgement: the
    /// generation pushed and when the permit stops counting.
    in_flight: Option<InFlight>,
}

struct InFlight {
    permit: tokio::sync::OwnedSemaphorePermit,
    generation: Generation,
    expires: tokio::time::Instant,
}

/// Completes at `deadline`; never without one.
async fn expiry(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
        .map_err(SessionError::Stream)?
        .ok_or_else(|| SessionError::Protocol("stream ended before Hello".into()))?;
    let hello = match proto::AgentMessage::decode(first.as_slice())?.kind {
        Some(AgentKind::Hello(h)) => h,
        _ => return Err(SessionError::Protocol("first message must be Hello".into())),
    };
    if !hello.site.is_empty() && hello.site != site.as_str() {
        return Err(SessionError::Protocol(format!(
            "Hello names site {:?} but the certificate is for {site}",
            hello.site
        )));
    }
    let (id, wake, injected) = shared.registry.insert(&site, connection.clone());
    let result = run(
        shared,
        connection,
        &site,
        send,
        recv,
        hello,
        identity.not_after,
        (wake, injected),
    )
    .await;
    shared.registry.remove(&site, id);
    result
}

#[allow(clippy::too_many_arguments)]
async fn run(
    shared: &Shared,
    connection: &quinn::Connection,
    site: &SiteId,
    send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    hello: proto::Hello,
    cert_not_after: meridian_common::ids::Timestamp,
    (wake, mut injected): (
        Arc<Notify>,
        tokio::sync::mpsc::UnboundedReceiver<proto::IntentPush>,
    ),
) -> Result<(), SessionError> {
    let store = shared.tables.store();
    let (channel, channel_rev) =
        match state::read_site_record::<SiteChannel>(store.as_ref(), &state::site_key(site)).await?
        {
            Some((c, r)) => (c, Some(r)),
            None => (SiteChannel::default(), None),
        };
    let high_water = HighWater::new(channel.report_high_water);
    let mut session = Session {
        shared,
        site: site.clone(),
        send,
        channel,
        channel_rev,
        high_water,
        pushed: Generation::new(hello.held_generation),
        in_flight: None,
    };
    shared.registry.heard(site);
    set_site_state(&shared.tables, site, SiteState::Online).await?;
    tracing::info!(%site, held = hello.held_generation, applied = hello.applied_generation, acked = hello.last_acked_sequence, "session open");
    session
        .update_channel(|c| {
            c.received_generation = c
                .received_generation
                .max(Generation::new(hello.held_generation));
            c.applied_generation = c
                .applied_generation
                .max(Generation::new(hello.applied_generation));
            c.cert_not_after_ms = cert_not_after.as_millis();
            c.last_seen_ms = shared.clock.now().as_millis();
        })
        .await?;
    if hello.last_acked_sequence < session.high_water.mark().get() {
        session
            .send(CentralKind::ReportAck(proto::ReportAck {
                high_water_sequence: session.high_water.mark().get(),
            }))
            .await?;
    }
    session.push_newest().await?;

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
        let deadline = session.in_flight.as_ref().map(|f| f.expires);
        tokio::select! {
            frame = rx.recv() => match frame {
                Some(Ok(body)) => {
                    if shared.registry.heard(site) {
                        set_site_state(&shared.tables, site, SiteState::Online).await?;
                    }
                    if let Err(e) = session.handle(&body).await {
                        break Err(e);
                    }
                }
                Some(Err(e)) => break Err(e),
                None => break Ok(()),
            },
            _ = wake.notified() => {
                if let Err(e) = session.push_newest().await {
                    break Err(e);
                }
            }
            Some(push) = injected.recv() => {
                if let Err(e) = session.send(CentralKind::IntentPush(push)).await {
                    break Err(e);
                }
            }
            _ = expiry(deadline) => {
                tracing::debug!(%site, "intent push unacknowledged; its window slot is released");
                session.in_flight = None;
            }
            _ = connection.closed() => break Ok(()),
        }
    };
    reader.abort();
    result
}

impl Session<'_> {
    async fn send(&mut self, kind: CentralKind) -> Result<(), SessionError> {
        let msg = proto::CentralMessage { kind: Some(kind) };
        let bytes = frame::encode_message(&msg, self.shared.config.max_frame_bytes)?;
        self.send
            .write_all(&bytes)
            .await
            .map_err(|e| SessionError::Stream(std::io::Error::other(e)))
    }

    /// Sends the newest intent if it is newer than what the agent holds or was sent.
    async fn push_newest(&mut self) -> Result<(), SessionError> {
        let Some(intent) = self.shared.tables.intents().get(&self.site).await? else {
            return Ok(());
        };
        let generation = intent.record.generation;
        if generation <= self.pushed {
            return Ok(());
        }
        self.pushed = generation;
        let permit = match self.in_flight.take() {
            Some(f) => f.permit,
            None => Arc::clone(&self.shared.push_window)
                .acquire_owned()
                .await
                .map_err(|_| SessionError::Protocol("push window closed".into()))?,
        };
        self.in_flight = Some(InFlight {
            permit,
            generation,
            expires: tokio::time::Instant::now() + self.shared.config.push_ack_timeout(),
        });
        tracing::debug!(site = %self.site, %generation, "pushing intent");
        self.send(CentralKind::IntentPush(proto::IntentPush {
            generation: generation.get(),
            intent: Some(intent.record.into()),
        }))
        .await
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

    async fn handle(&mut self, body: &[u8]) -> Result<(), SessionError> {
        let msg = proto::AgentMessage::decode(body)?;
        match msg.kind {
            None => {
                // A message type this central does not know (a newer agent): skip it.
                tracing::debug!(site = %self.site, "skipping unknown agent message");
                Ok(())
            }
            Some(AgentKind::Hello(_)) => Err(SessionError::Protocol("second Hello".into())),
            Some(AgentKind::Heartbeat(_)) => {
                self.send(CentralKind::Heartbeat(proto::Heartbeat {
                    sent_at: self.shared.clock.now().as_millis(),
                }))
                .await
            }
            Some(AgentKind::IntentAck(ack)) => {
                let generation = Generation::new(ack.generation);
                let status = proto::IntentAckStatus::try_from(ack.status)
                    .unwrap_or(proto::IntentAckStatus::Unspecified);
                if self
                    .in_flight
                    .as_ref()
                    .is_some_and(|f| generation >= f.generation)
                {
                    self.in_flight = None;
                }
                self.update_channel(|c| match status {
                    proto::IntentAckStatus::Received => {
                        c.received_generation = c.received_generation.max(generation);
                    }
                    proto::IntentAckStatus::Applied => {
                        c.received_generation = c.received_generation.max(generation);
                        c.applied_generation = c.applied_generation.max(generation);
                    }
                    proto::IntentAckStatus::Failed => {
                        c.failed_generation = c.failed_generation.max(generation);
                        c.failed_reason = ack.reason.chars().take(512).collect();
                    }
                    proto::IntentAckStatus::Unspecified => {}
                })
                .await
            }
            Some(AgentKind::ReportBatch(batch)) => {
                let mark = super::ingest::ingest(
                    self.shared,
                    &self.site,
                    batch,
                    &mut self.high_water,
                    &mut self.channel,
                    &mut self.channel_rev,
                )
                .await?;
                self.send(CentralKind::ReportAck(proto::ReportAck {
                    high_water_sequence: mark.get(),
                }))
                .await
            }
            Some(AgentKind::CertRenewRequest(req)) => {
                let epoch = self
                    .shared
                    .auth
                    .get(&self.site)
                    .map_or(1, |a| a.epoch.max(1));
                let issued = self.shared.ca.sign_site_csr(
                    &req.csr_pem,
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
                self.send(CentralKind::CertRenewResponse(proto::CertRenewResponse {
                    certificate_chain_pem: issued.certificate_pem,
                    not_after: issued.not_after.as_millis(),
                }))
                .await
            }
        }
    }
}
