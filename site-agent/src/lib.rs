//! The Meridian site agent. This crate holds the agent's side of the secure channel: it reads
//! the bootstrap file, enrols once, keeps its key, certificate, intent and report buffer in its
//! own journal ([`store`]), holds a session to central with reconnects under exponential
//! backoff with full jitter ([`session`]), persists each intent before acknowledging it and
//! refuses older generations, and hands intents to a [`reconciler::Reconciler`]: the site
//! reconciler ([`reconcile::SiteReconciler`], servers through their BMCs and GPUs, in a loop of
//! its own that runs whether or not central is reachable) or, for an agent configured without
//! servers, [`reconciler::RecordingReconciler`] (records what it would apply).
//! The device drivers the reconciler drives are the async traits of `meridian-drivers`; the
//! agent builds them from its configuration in one place ([`wiring`]).
//! In the background it also measures its round trip to the user regions its configuration
//! lists and reports them ([`probe`]), and reports its GPU utilisation per period
//! ([`reconcile::utilisation`]; an agent without servers reports its periods with no GPUs).
//!
//! Stands alone: among Meridian's crates it depends on `meridian-common`, `meridian-proto`,
//! `meridian-channel` and `meridian-drivers` only, and never on central, its store or its planner, not even in its
//! tests (checked by `sim/tests/architecture.rs`).

pub mod config;
pub mod enroll;
pub mod metrics;
pub mod probe;
pub mod reconcile;
pub mod reconciler;
pub mod session;
pub mod store;
pub mod tls;
pub mod wiring;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use meridian_common::ids::{Generation, Sequence, Timestamp};
use meridian_common::model::ReportBody;
use tokio::sync::{Notify, watch};

pub use config::AgentConfig;
use reconciler::{AgentLink, Convergence, Reconciler};
use store::{AgentStore, AgentStoreError};

/// UDP buffer asked for the agent's socket.
const AGENT_UDP_BUFFER: usize = 2 * 1024 * 1024;

/// Why the agent could not start or take a report.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot open the agent database in {path}")]
    Open {
        path: std::path::PathBuf,
        #[source]
        source: AgentStoreError,
    },
    #[error("agent database error")]
    Store(#[from] AgentStoreError),
    #[error("cannot bind the agent's UDP socket")]
    Bind(#[source] std::io::Error),
    #[error("the agent has not enrolled yet")]
    NotEnrolled,
}

/// The wall clock, unix millis.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub(crate) config: AgentConfig,
    pub(crate) store: AgentStore,
    pub(crate) reconciler: Arc<dyn Reconciler>,
    pub(crate) endpoint: quinn::Endpoint,
    pub(crate) reports_ready: Arc<Notify>,
    /// A background reconciler's announcements (`None`: a synchronous reconciler).
    pub(crate) outcomes: Option<watch::Receiver<Option<Convergence>>>,
    pub(crate) connected: AtomicBool,
    pub(crate) reenroll: AtomicBool,
    pub(crate) sessions: AtomicU64,
    pub(crate) renewals: AtomicU64,
    pub(crate) refused: AtomicU64,
    pub(crate) pushes: AtomicU64,
    pub(crate) push_bytes: AtomicU64,
    pub(crate) owns_endpoint: bool,
    pub(crate) last_error: Mutex<Option<String>>,
    /// The session TLS configuration of the current identity, built once per certificate
    /// rather than parsed from PEM on every connection attempt.
    pub(crate) session_tls: Mutex<Option<session::CachedTls>>,
}

/// A snapshot of the agent's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentStatus {
    /// A session is up.
    pub connected: bool,
    /// Sessions established since start.
    pub sessions: u64,
    /// Generation held (persisted).
    pub held: Generation,
    /// Generation applied.
    pub applied: Generation,
    /// Highest report sequence central acknowledged.
    pub acked: Sequence,
    /// Last report sequence assigned.
    pub last_sequence: Sequence,
    /// Reports buffered.
    pub buffered: usize,
    /// Reports dropped by the bound.
    pub dropped: u64,
    /// Certificates renewed over a session.
    pub renewals: u64,
    /// Older generations refused.
    pub refused: u64,
    /// Intent pushes received since start (every one, also refused or repeated ones).
    pub pushes_received: u64,
    /// Bytes of those pushes on the session stream (frame header included).
    pub push_bytes_received: u64,
    /// The last error, if any.
    pub last_error: Option<String>,
}

/// A running agent.
#[derive(Debug)]
pub struct Agent {
    inner: Arc<Inner>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
    reconcile_task: Option<tokio::task::JoinHandle<()>>,
    probe_task: Option<tokio::task::JoinHandle<()>>,
    utilisation_task: Option<tokio::task::JoinHandle<()>>,
}

impl Agent {
    /// Opens the database in `config.data_dir` and starts.
    pub async fn start(
        config: AgentConfig,
        reconciler: Arc<dyn Reconciler>,
    ) -> Result<Agent, AgentError> {
        let store = AgentStore::open(&config.data_dir).map_err(|source| AgentError::Open {
            path: config.data_dir.clone(),
            source,
        })?;
        Self::start_with_store(config, store, reconciler).await
    }

    /// Starts on an already opened store (simulated agents share one database).
    pub async fn start_with_store(
        config: AgentConfig,
        store: AgentStore,
        reconciler: Arc<dyn Reconciler>,
    ) -> Result<Agent, AgentError> {
        let endpoint =
            tls::client_endpoint(config.bind, AGENT_UDP_BUFFER).map_err(AgentError::Bind)?;
        Self::start_inner(config, store, reconciler, endpoint, true).await
    }

    /// Starts on an already opened store and a QUIC endpoint shared with other agents (the
    /// simulator runs thousands in one process). `config.bind` is ignored; stopping this agent
    /// leaves the endpoint open for the others.
    pub async fn start_on_endpoint(
        config: AgentConfig,
        store: AgentStore,
        reconciler: Arc<dyn Reconciler>,
        endpoint: quinn::Endpoint,
    ) -> Result<Agent, AgentError> {
        Self::start_inner(config, store, reconciler, endpoint, false).await
    }

    /// A client endpoint simulated agents can share ([`Agent::start_on_endpoint`]).
    pub fn shared_endpoint(bind: SocketAddr) -> Result<quinn::Endpoint, AgentError> {
        tls::client_endpoint(bind, AGENT_UDP_BUFFER).map_err(AgentError::Bind)
    }

    async fn start_inner(
        config: AgentConfig,
        store: AgentStore,
        reconciler: Arc<dyn Reconciler>,
        endpoint: quinn::Endpoint,
        owns_endpoint: bool,
    ) -> Result<Agent, AgentError> {
        let reports_ready = Arc::new(Notify::new());
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        // A background reconciler starts its loop now; it reads the held intent itself.
        let background = reconciler.start(AgentLink {
            store: store.clone(),
            reports_ready: Arc::clone(&reports_ready),
            report_buffer_max: config.report_buffer_max,
            stop: stop_rx.clone(),
        });
        // RTT probes of the configured regions, in the background until the agent stops.
        let probe_task = probe::start(
            &config.probe,
            AgentLink {
                store: store.clone(),
                reports_ready: Arc::clone(&reports_ready),
                report_buffer_max: config.report_buffer_max,
                stop: stop_rx.clone(),
            },
        );
        // An agent that drives no hardware still reports its utilisation periods (with no
        // GPUs), so central knows how far its reports reach; a background reconciler samples
        // its servers' GPUs itself.
        let utilisation_task = background.is_none().then(|| {
            reconcile::utilisation::start_without_gpus(
                AgentLink {
                    store: store.clone(),
                    reports_ready: Arc::clone(&reports_ready),
                    report_buffer_max: config.report_buffer_max,
                    stop: stop_rx.clone(),
                },
                config.utilisation(),
            )
        });
        // The intent held stays in force across restarts: hand it to the reconciler again
        // (reconciling is idempotent).
        if background.is_none()
            && let Some(intent) = store.intent()?
        {
            match reconciler.apply(&intent) {
                Ok(()) => store.set_applied(intent.generation)?,
                Err(e) => tracing::warn!(error = %e, "held intent could not be applied"),
            }
        }
        let (outcomes, reconcile_task) = match background {
            Some(b) => (Some(b.outcomes), Some(b.task)),
            None => (None, None),
        };
        let inner = Arc::new(Inner {
            config,
            store,
            reconciler,
            endpoint,
            reports_ready,
            outcomes,
            connected: AtomicBool::new(false),
            reenroll: AtomicBool::new(false),
            sessions: AtomicU64::new(0),
            renewals: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            pushes: AtomicU64::new(0),
            push_bytes: AtomicU64::new(0),
            owns_endpoint,
            last_error: Mutex::new(None),
            session_tls: Mutex::new(None),
        });
        let task = tokio::spawn(session::run(Arc::clone(&inner), stop_rx));
        Ok(Agent {
            inner,
            stop,
            task,
            reconcile_task,
            probe_task,
            utilisation_task,
        })
    }

    /// The local UDP address (to map this agent in a fault proxy).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.inner.endpoint.local_addr().ok()
    }

    /// The agent's database.
    pub fn store(&self) -> &AgentStore {
        &self.inner.store
    }

    /// Appends a report durably (it gets its sequence number now) and wakes the sender.
    pub fn report(&self, body: ReportBody) -> Result<Sequence, AgentError> {
        let identity = self
            .inner
            .store
            .identity()?
            .ok_or(AgentError::NotEnrolled)?;
        let seq = self.inner.store.append_report(
            &identity.site,
            self.inner.store.applied_generation()?,
            Timestamp::from_millis(now_ms()),
            body,
            self.inner.config.report_buffer_max,
        )?;
        self.inner.reports_ready.notify_one();
        Ok(seq)
    }

    /// A snapshot of the agent's state.
    /// Whether a session to central is up now (cheaper than [`Agent::status`]).
    pub fn is_connected(&self) -> bool {
        self.inner.connected.load(Ordering::Relaxed)
    }

    pub fn status(&self) -> Result<AgentStatus, AgentError> {
        let s = &self.inner.store;
        Ok(AgentStatus {
            connected: self.inner.connected.load(Ordering::Relaxed),
            sessions: self.inner.sessions.load(Ordering::Relaxed),
            held: s.held_generation()?,
            applied: s.applied_generation()?,
            acked: s.last_acked()?,
            last_sequence: s.last_sequence()?,
            buffered: s.buffered(),
            dropped: s.dropped()?,
            renewals: self.inner.renewals.load(Ordering::Relaxed),
            refused: self.inner.refused.load(Ordering::Relaxed),
            pushes_received: self.inner.pushes.load(Ordering::Relaxed),
            push_bytes_received: self.inner.push_bytes.load(Ordering::Relaxed),
            last_error: self
                .inner
                .last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        })
    }

    /// Stops the session loop and closes the endpoint.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(3), self.task).await;
        if let Some(task) = self.reconcile_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
        }
        if let Some(task) = self.probe_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
        }
        if let Some(task) = self.utilisation_task {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(3), task).await;
        }
        if !self.inner.owns_endpoint {
            return;
        }
        self.inner.endpoint.close(0u32.into(), b"agent stopped");
        let _ = tokio::time::timeout(
            std::time::Duration::from_secs(1),
            self.inner.endpoint.wait_idle(),
        )
        .await;
    }
}
