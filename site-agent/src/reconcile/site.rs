//! [`SiteReconciler`]: the reconcile loop of a whole site, a background
//! [`Reconciler`] of the agent.
//!
//! - One worker task per resource instance, every one the same loop ([`resource::worker`])
//!   over the one reconcile shape ([`resource::Resource`]): each server
//!   ([`ServerInstance`]) and each leaf switch ([`SwitchInstance`]). A resource is reconciled
//!   by its worker only, one step at a time. A worker reconciles again at once while there is
//!   more to do, after the back-off or poll interval a step asked for, and, once converged,
//!   when a new intent arrives, when one of its allocation windows opens or closes (on the
//!   injected [`Clock`]), or after the periodic resync, whichever comes first.
//! - The coordinator watches the workers' status and decides, for the held generation, when
//!   it is applied (every server converged on it; then the store records it applied) or failed
//!   (an allocation cannot be put in place, names a server this agent does not manage, or a
//!   server it needs failed), and announces it ([`Convergence`]).
//! - A leaf switch ([`ManagedSwitch`]) is rendered what the intent asks of it now
//!   ([`super::fabric::fabric_want`]), compared with what it carries, and given the whole
//!   rendering when anything differs, again on a new intent, at window boundaries and at every
//!   resync (drift made behind the agent's back is put back). A generation is applied only
//!   once every switch carries it too.
//! - Nothing depends on central: the loop reads the held intent from the agent's store and
//!   appends reports to its buffer; the channel ships them when it can.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use meridian_common::ids::ServerId;
use meridian_common::model::{ActionPhase, AllocationStatus, ReportBody, Severity, SiteIntent};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::SiteReconcilerConfig;
use super::clock::Clock;
use super::desired;
use super::fabric::ManagedSwitch;
use super::gateway::{GatewayInstance, ManagedGateway};
use super::host::{HostInstance, ManagedHost};
use super::resource::{self, Env, commit_site_reports};
use super::server::{InventoryBook, ServerInstance, ServerSpec};
use super::storage::{ManagedStorage, StorageInstance};
use super::switch::SwitchInstance;
use super::utilisation::{self, UtilisationConfig};
use crate::reconciler::{AgentLink, ApplyError, Background, Convergence, Reconciler};

pub use super::status::{ServerStatus, SiteStatus, SwitchStatus};

struct Shared {
    env: Env,
    servers: Vec<ServerSpec>,
    switches: Vec<ManagedSwitch>,
    gateway: Option<ManagedGateway>,
    hosts: Vec<ManagedHost>,
    storage: Option<ManagedStorage>,
    outcomes: watch::Sender<Option<Convergence>>,
    started: AtomicBool,
    book: Arc<InventoryBook>,
    utilisation: UtilisationConfig,
}

/// The site's reconcile loop; see the module documentation.
#[derive(Clone)]
pub struct SiteReconciler {
    shared: Arc<Shared>,
}

impl fmt::Debug for SiteReconciler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SiteReconciler")
            .field("servers", &self.shared.servers)
            .field("switches", &self.shared.switches)
            .field("gateway", &self.shared.gateway)
            .field("config", &self.shared.env.config)
            .finish_non_exhaustive()
    }
}

impl SiteReconciler {
    /// A reconciler of these servers (ids must be unique). It does nothing until
    /// [`Reconciler::start`].
    pub fn new(
        servers: Vec<ServerSpec>,
        config: SiteReconcilerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_switches(servers, Vec::new(), config, clock)
    }

    /// A reconciler of these servers and leaf switches (names unique).
    pub fn with_switches(
        servers: Vec<ServerSpec>,
        switches: Vec<ManagedSwitch>,
        config: SiteReconcilerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self::with_resources(servers, switches, None, config, clock)
    }

    /// A reconciler of these servers, leaf switches (names unique) and, when given, the site's
    /// gateway node.
    pub fn with_resources(
        servers: Vec<ServerSpec>,
        switches: Vec<ManagedSwitch>,
        gateway: Option<ManagedGateway>,
        config: SiteReconcilerConfig,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let book = InventoryBook::new(servers.iter().map(|s| s.id.clone()).collect());
        SiteReconciler {
            shared: Arc::new(Shared {
                env: Env {
                    config,
                    clock,
                    intent: watch::Sender::new(None),
                    status: watch::Sender::new(SiteStatus::default()),
                    metrics: crate::metrics::ReconcileMetrics::default(),
                },
                servers,
                switches,
                gateway,
                hosts: Vec::new(),
                storage: None,
                outcomes: watch::Sender::new(None),
                started: AtomicBool::new(false),
                book: Arc::new(book),
                utilisation: UtilisationConfig::default(),
            }),
        }
    }

    /// Also keeps these container/VM hosts (servers unique). Before [`start`](Self::start)
    /// only: a clone shares the reconciler, so this panics once one exists.
    pub fn with_hosts(mut self, hosts: Vec<ManagedHost>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("hosts are added before the reconciler is shared")
            .hosts = hosts;
        self
    }

    /// Also keeps the site's storage array (tenant volumes). Before [`start`](Self::start)
    /// only, like [`with_hosts`](Self::with_hosts).
    pub fn with_storage(mut self, storage: Option<ManagedStorage>) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("the array is added before the reconciler is shared")
            .storage = storage;
        self
    }

    /// Samples and reports GPU utilisation as `config` says (default: a summary every 60 s
    /// of the reconciler's clock, NVML sampled every 5 s; see [`super::utilisation`]). Before
    /// [`start`](Self::start) only, like [`with_hosts`](Self::with_hosts).
    pub fn with_utilisation(mut self, config: UtilisationConfig) -> Self {
        Arc::get_mut(&mut self.shared)
            .expect("utilisation sampling is set before the reconciler is shared")
            .utilisation = config;
        self
    }

    /// The workers' status, updated after every reconcile.
    pub fn status(&self) -> watch::Receiver<SiteStatus> {
        self.shared.env.status.subscribe()
    }

    /// The announcements of applied and failed generations.
    pub fn outcomes(&self) -> watch::Receiver<Option<Convergence>> {
        self.shared.outcomes.subscribe()
    }

    /// What the loop records for `/metrics` (its own families; served when a
    /// [`MetricsServer`](crate::metrics::MetricsServer) is given this reconciler).
    pub fn metrics(&self) -> &crate::metrics::ReconcileMetrics {
        &self.shared.env.metrics
    }

    /// The servers managed.
    pub fn servers(&self) -> Vec<ServerId> {
        self.shared.servers.iter().map(|s| s.id.clone()).collect()
    }

    /// The servers managed, with their drivers.
    pub fn specs(&self) -> &[ServerSpec] {
        &self.shared.servers
    }

    /// The leaf switches managed.
    pub fn switches(&self) -> &[ManagedSwitch] {
        &self.shared.switches
    }

    /// The gateway node managed, if any.
    pub fn gateway(&self) -> Option<&ManagedGateway> {
        self.shared.gateway.as_ref()
    }
}

impl Reconciler for SiteReconciler {
    fn apply(&self, intent: &SiteIntent) -> Result<(), ApplyError> {
        let newer = self.shared.env.intent.send_if_modified(|held| match held {
            Some(h) if h.generation >= intent.generation => false,
            _ => {
                *held = Some(Arc::new(intent.clone()));
                true
            }
        });
        if newer {
            tracing::info!(generation = %intent.generation, "reconciling towards a new intent");
        }
        Ok(())
    }

    fn start(&self, link: AgentLink) -> Option<Background> {
        if self.shared.started.swap(true, Ordering::SeqCst) {
            tracing::error!("the site reconciler was started twice; ignoring the second start");
            return None;
        }
        match link.store.intent() {
            Ok(Some(held)) => {
                let _ = self.apply(&held);
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "cannot read the held intent")
            }
        }
        let outcomes = self.shared.outcomes.subscribe();
        let task = tokio::spawn(run(Arc::clone(&self.shared), link));
        Some(Background { outcomes, task })
    }
}

async fn run(shared: Arc<Shared>, link: AgentLink) {
    let mut workers = JoinSet::new();
    for spec in &shared.servers {
        let server = ServerInstance::new(spec.clone(), Arc::clone(&shared.book));
        let (shared, link) = (Arc::clone(&shared), link.clone());
        workers.spawn(async move { resource::worker(server, &shared.env, link).await });
    }
    for switch in &shared.switches {
        let switch = SwitchInstance::new(switch.clone());
        let (shared, link) = (Arc::clone(&shared), link.clone());
        workers.spawn(async move { resource::worker(switch, &shared.env, link).await });
    }
    if let Some(gateway) = &shared.gateway {
        let gateway = GatewayInstance::new(gateway.clone());
        let (shared, link) = (Arc::clone(&shared), link.clone());
        workers.spawn(async move { resource::worker(gateway, &shared.env, link).await });
    }
    for host in &shared.hosts {
        let host = HostInstance::new(host.clone());
        let (shared, link) = (Arc::clone(&shared), link.clone());
        workers.spawn(async move { resource::worker(host, &shared.env, link).await });
    }
    if let Some(storage) = &shared.storage {
        let storage = StorageInstance::new(storage.clone());
        let (shared, link) = (Arc::clone(&shared), link.clone());
        workers.spawn(async move { resource::worker(storage, &shared.env, link).await });
    }
    workers.spawn(utilisation::run(
        link.clone(),
        Arc::clone(&shared.env.clock),
        shared.utilisation,
        utilisation_sources(&shared, &link),
    ));
    coordinate(&shared, &link).await;
    // Stopping: the workers see the same stop signal.
    while workers.join_next().await.is_some() {}
}

/// What the utilisation sampler reads: the servers' GPU drivers, whether each is in service
/// (its worker last saw it available or allocated) and the site.
fn utilisation_sources(shared: &Arc<Shared>, link: &AgentLink) -> utilisation::Sources {
    let gpus = shared
        .servers
        .iter()
        .filter_map(|s| Some((s.id.clone(), s.drivers.gpus.clone()?)))
        .collect();
    let status = shared.env.status.subscribe();
    let intent = shared.env.intent.subscribe();
    let store = link.store.clone();
    utilisation::Sources {
        gpus,
        in_service: Box::new(move |id| {
            status.borrow().servers.get(id).is_some_and(|s| {
                matches!(
                    s.state,
                    meridian_common::model::ServerState::Available
                        | meridian_common::model::ServerState::Allocated
                )
            })
        }),
        site: Box::new(move || {
            if let Some(i) = intent.borrow().as_ref() {
                return Some(i.site.clone());
            }
            store.identity().ok().flatten().map(|id| id.site)
        }),
    }
}

/// Decides applied and failed generations from the workers' status.
async fn coordinate(shared: &Shared, link: &AgentLink) {
    let mut status = shared.env.status.subscribe();
    let mut intent_rx = shared.env.intent.subscribe();
    let mut stop = link.stop.clone();
    loop {
        if *stop.borrow() {
            return;
        }
        let intent = intent_rx.borrow_and_update().clone();
        if let Some(intent) = intent {
            report_unmanaged(shared, link, &intent);
            let s = status.borrow_and_update().clone();
            if let Some(outcome) = conclude(shared, &intent, &s) {
                announce(shared, link, outcome);
            }
        }
        tokio::select! {
            r = status.changed() => if r.is_err() { return },
            r = intent_rx.changed() => if r.is_err() { return },
            r = stop.changed() => if r.is_err() { return },
        }
    }
}

fn managed(shared: &Shared, id: &ServerId) -> bool {
    shared.servers.iter().any(|s| &s.id == id)
}

/// What the workers' status says about the held generation, once every server settled on it.
fn conclude(shared: &Shared, intent: &SiteIntent, s: &SiteStatus) -> Option<Convergence> {
    let g = intent.generation;
    let settled = s.servers.len() == shared.servers.len()
        // (An operator request not yet final keeps its server unconverged.)
        && s.servers.values().all(|v| {
            v.generation == g
                && (v.converged || v.blocking_failure.is_some())
                && v.actions.is_empty()
        })
        && s.switches.len() == shared.switches.len()
        && s.switches
            .values()
            .all(|v| v.generation == g && (v.converged || v.failure.is_some()))
        && match (&shared.gateway, &s.gateway) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(v)) => v.generation == g && (v.converged || v.failure.is_some()),
        }
        && match (&shared.storage, &s.storage) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(_), Some(v)) => v.generation == g && (v.converged || v.failure.is_some()),
        }
        && s.hosts.len() == shared.hosts.len()
        && s.hosts
            .values()
            .all(|v| v.generation == g && (v.converged || v.failure.is_some()));
    if !settled {
        return None;
    }
    let mut reasons: Vec<String> = desired::unmanaged(intent, &|id| managed(shared, id))
        .iter()
        .map(|a| {
            format!(
                "allocation {} names server {}, which this agent does not manage",
                a.workload, a.server
            )
        })
        .collect();
    for (id, v) in &s.servers {
        if let Some(why) = &v.blocking_failure {
            reasons.push(format!("server {id} failed: {why}"));
        }
        reasons.extend(v.rejected.iter().cloned());
    }
    for (name, v) in &s.switches {
        if let Some(why) = &v.failure {
            reasons.push(format!("switch {name} failed: {why}"));
        }
    }
    if let Some(why) = s.gateway.as_ref().and_then(|v| v.failure.as_ref()) {
        reasons.push(format!("the gateway failed: {why}"));
    }
    if let Some(why) = s.storage.as_ref().and_then(|v| v.failure.as_ref()) {
        reasons.push(format!("the storage array failed: {why}"));
    }
    for (server, v) in &s.hosts {
        if let Some(why) = &v.failure {
            reasons.push(format!("host {server}'s network failed: {why}"));
        }
    }
    Some(if reasons.is_empty() {
        Convergence::Applied(g)
    } else {
        Convergence::Failed {
            generation: g,
            reason: reasons.join("; "),
        }
    })
}

fn announce(shared: &Shared, link: &AgentLink, outcome: Convergence) {
    if let Convergence::Applied(g) = &outcome {
        match link.store.applied_generation() {
            Ok(applied) if applied >= *g => {}
            Ok(_) => {
                if let Err(e) = link.store.set_applied(*g) {
                    tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "cannot record the applied generation");
                    return;
                }
            }
            Err(e) => {
                tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "cannot read the applied generation");
                return;
            }
        }
    }
    shared.outcomes.send_if_modified(|held| {
        if held.as_ref() == Some(&outcome) {
            return false;
        }
        match &outcome {
            Convergence::Applied(g) => tracing::info!(generation = %g, "intent applied"),
            Convergence::Failed { generation, reason } => {
                tracing::warn!(%generation, %reason, "intent failed")
            }
        }
        *held = Some(outcome.clone());
        true
    });
}

const UNMANAGED_KEY: &[u8] = b"site/unmanaged-reported";

/// Reports allocations (and operator requests) on servers this agent does not manage as
/// failed, once per generation.
fn report_unmanaged(shared: &Shared, link: &AgentLink, intent: &SiteIntent) {
    let list = desired::unmanaged(intent, &|id| managed(shared, id));
    let actions: Vec<_> = intent
        .server_actions
        .iter()
        .filter(|a| !managed(shared, &a.server))
        .collect();
    if list.is_empty() && actions.is_empty() {
        return;
    }
    let done = link
        .store
        .progress(UNMANAGED_KEY)
        .ok()
        .flatten()
        .and_then(|v| v.try_into().ok().map(u64::from_be_bytes))
        .unwrap_or(0);
    if done >= intent.generation.get() {
        return;
    }
    let mut reports = Vec::new();
    for a in list {
        let reason = format!(
            "server {} is not managed by this agent (not in its [[servers]])",
            a.server
        );
        reports.push(ReportBody::Event {
            severity: Severity::Warning,
            resource: format!("allocation/{}", a.workload),
            message: format!("allocation {} cannot be put in place: {reason}", a.workload),
        });
        reports.push(ReportBody::AllocationState {
            workload: a.workload.clone(),
            server: a.server.clone(),
            state: AllocationStatus::Failed { reason },
        });
    }
    // Requests on servers this agent does not manage are final at once (failed), so central
    // stops sending them.
    for a in actions {
        reports.push(ReportBody::ServerAction {
            request: a.request,
            server: a.server.clone(),
            phase: ActionPhase::Failed,
            detail: format!(
                "server {} is not managed by this agent (not in its [[servers]])",
                a.server
            ),
        });
    }
    let done = (
        UNMANAGED_KEY.to_vec(),
        Some(intent.generation.get().to_be_bytes().to_vec()),
    );
    commit_site_reports(
        link,
        &intent.site,
        shared.env.clock.now(),
        &reports,
        &[done],
        "unmanaged allocations",
    );
}
