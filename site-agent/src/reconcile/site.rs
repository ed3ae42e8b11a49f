//! [`SiteReconciler`]: the reconcile loop of a whole site, a background
//! [`Reconciler`] of the agent.
//!
//! - One worker task per server: a server is reconciled by its worker only, one step at a time
//!   (at most one reconcile of a resource at a time). A worker reconciles again at once while
//!   there is more to do, after the back-off or poll interval a step asked for, and, once
//!   converged, when a new intent arrives, when one of its allocation windows opens or closes
//!   (on the injected [`Clock`]), or after the periodic resync, whichever comes first.
//! - The coordinator watches the workers' status and decides, for the held generation, when
//!   it is applied (every server converged on it; then the store records it applied) or failed
//!   (an allocation cannot be put in place, names a server this agent does not manage, or a
//!   server it needs failed), and announces it ([`Convergence`]).
//! - One worker per leaf switch ([`ManagedSwitch`]): it renders what the intent asks of the
//!   switch now ([`fabric::fabric_want`]) and applies it through the switch's driver (which
//!   changes nothing when the switch already matches), again on a new intent, at window
//!   boundaries and at every resync (drift made behind the agent's back is put back). A
//!   generation is applied only once every switch carries it too.
//! - Nothing depends on central: the loop reads the held intent from the agent's store and
//!   appends reports to its buffer; the channel ships them when it can.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use meridian_common::ids::{Generation, ServerId, SiteId, Timestamp};
use meridian_common::model::{AllocationStatus, ReportBody, ServerState, Severity, SiteIntent};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::clock::Clock;
use super::desired::{self, ServerWant};
use super::fabric::{self, ManagedSwitch};
use super::record;
use super::server::{self, InventoryBook, ServerCtx, ServerDrivers};
use super::{Action, ReconcileError, RetryPolicy, Verdict};
use crate::reconciler::{AgentLink, ApplyError, Background, Convergence, Reconciler};

/// How often a worker looks for the agent's enrolment before it knows its site.
const ENROLMENT_POLL: Duration = Duration::from_millis(500);

/// One server the site reconciler manages.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub id: ServerId,
    /// The BMC's URL as configured (reported in the inventory).
    pub bmc_url: String,
    pub drivers: ServerDrivers,
}

/// Timing of the loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SiteReconcilerConfig {
    pub retry: RetryPolicy,
    /// A converged server is looked at again after this long even if nothing changed
    /// (observation can miss changes made behind the agent's back).
    pub resync: Duration,
    /// How often to look again while a power transition runs.
    pub power_poll: Duration,
    /// How long a power transition seen under way may last before it counts as a failed step.
    pub transition_timeout: Duration,
}

impl Default for SiteReconcilerConfig {
    fn default() -> Self {
        SiteReconcilerConfig {
            retry: RetryPolicy::default(),
            resync: Duration::from_secs(60),
            power_poll: Duration::from_secs(1),
            transition_timeout: Duration::from_secs(300),
        }
    }
}

/// One server as its worker last left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// The generation its last reconcile worked towards.
    pub generation: Generation,
    /// The clock when it computed the want.
    pub at: Timestamp,
    pub state: ServerState,
    /// Its last reconcile found nothing to do.
    pub converged: bool,
    /// It failed and the intent wants something of it.
    pub blocking_failure: Option<String>,
    /// Allocations of the intent that cannot be put in place on it, with why.
    pub rejected: Vec<String>,
    /// Reconciles done.
    pub reconciles: u64,
}

/// One switch as its worker last left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchStatus {
    /// The generation its last apply worked towards.
    pub generation: Generation,
    /// The switch carries what that generation asks of it now.
    pub converged: bool,
    /// It could not be brought there (after the error policy's attempts), with why.
    pub failure: Option<String>,
    /// Applies that changed the switch.
    pub changes: u64,
}

/// Every server's and switch's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteStatus {
    pub servers: BTreeMap<ServerId, ServerStatus>,
    /// By switch name.
    pub switches: BTreeMap<String, SwitchStatus>,
}

impl SiteStatus {
    /// Whether every server converged on `generation` at or after `at` (failed servers the
    /// intent needs count as settled, not converged).
    pub fn settled(&self, generation: Generation, at: Timestamp, servers: usize) -> bool {
        self.servers.len() == servers
            && self.servers.values().all(|s| {
                s.generation == generation
                    && s.at >= at
                    && (s.converged || s.blocking_failure.is_some())
            })
    }
}

struct Shared {
    servers: Vec<ServerSpec>,
    switches: Vec<ManagedSwitch>,
    config: SiteReconcilerConfig,
    clock: Arc<dyn Clock>,
    intent: watch::Sender<Option<Arc<SiteIntent>>>,
    outcomes: watch::Sender<Option<Convergence>>,
    status: watch::Sender<SiteStatus>,
    started: AtomicBool,
    book: InventoryBook,
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
            .field("config", &self.shared.config)
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
        let book = InventoryBook::new(servers.iter().map(|s| s.id.clone()).collect());
        SiteReconciler {
            shared: Arc::new(Shared {
                servers,
                switches,
                config,
                clock,
                intent: watch::Sender::new(None),
                outcomes: watch::Sender::new(None),
                status: watch::Sender::new(SiteStatus::default()),
                started: AtomicBool::new(false),
                book,
            }),
        }
    }

    /// The workers' status, updated after every reconcile.
    pub fn status(&self) -> watch::Receiver<SiteStatus> {
        self.shared.status.subscribe()
    }

    /// The announcements of applied and failed generations.
    pub fn outcomes(&self) -> watch::Receiver<Option<Convergence>> {
        self.shared.outcomes.subscribe()
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
}

impl Reconciler for SiteReconciler {
    fn apply(&self, intent: &SiteIntent) -> Result<(), ApplyError> {
        let newer = self.shared.intent.send_if_modified(|held| match held {
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
    for i in 0..shared.servers.len() {
        workers.spawn(worker(Arc::clone(&shared), i, link.clone()));
    }
    for i in 0..shared.switches.len() {
        workers.spawn(switch_worker(Arc::clone(&shared), i, link.clone()));
    }
    coordinate(&shared, &link).await;
    // Stopping: the workers see the same stop signal.
    while workers.join_next().await.is_some() {}
}

/// The site id: the intent's, else the enrolled identity's.
fn site_of(intent: Option<&SiteIntent>, link: &AgentLink) -> Option<SiteId> {
    if let Some(i) = intent {
        return Some(i.site.clone());
    }
    link.store.identity().ok().flatten().map(|id| id.site)
}

async fn worker(shared: Arc<Shared>, index: usize, link: AgentLink) {
    let spec = &shared.servers[index];
    let mut intent_rx = shared.intent.subscribe();
    let mut stop = link.stop.clone();
    let mut reconciles = 0u64;
    // The agent stopping, or gone without saying so (its sender dropped), ends the worker.
    loop {
        if *stop.borrow() {
            return;
        }
        let intent = intent_rx.borrow_and_update().clone();
        let Some(site) = site_of(intent.as_deref(), &link) else {
            // Reports need the site: wait for an intent, or for enrolment (the identity in
            // the store, looked for every ENROLMENT_POLL), so a new site's servers are
            // inspected as soon as it enrolled rather than at the next resync.
            tokio::select! {
                _ = intent_rx.changed() => {}
                _ = tokio::time::sleep(shared.config.resync.min(ENROLMENT_POLL)) => {}
                r = stop.changed() => if r.is_err() { return },
            }
            continue;
        };
        let now = shared.clock.now();
        let mut want = desired::server_want(intent.as_deref(), &spec.id, now);
        want.dpu = spec.drivers.dpu.as_ref().map(|d| d.want.clone());
        let ctx = ServerCtx {
            server: &spec.id,
            site: &site,
            bmc_url: &spec.bmc_url,
            drivers: &spec.drivers,
            store: &link.store,
            clock: shared.clock.as_ref(),
            reports_ready: &link.reports_ready,
            report_buffer_max: link.report_buffer_max,
            power_poll: shared.config.power_poll,
            transition_timeout: shared.config.transition_timeout,
            inventory: &shared.book,
        };
        let action = tokio::select! {
            a = once(&want, &ctx, &shared.config.retry) => a,
            _ = stop.changed() => return,
        };
        reconciles += 1;
        publish(&shared, &ctx, &want, action, reconciles);
        let wait = match action {
            Action::RequeueAfter(d) if d.is_zero() => continue,
            Action::RequeueAfter(d) => d,
            Action::AwaitChange => shared.config.resync,
        };
        if !pause(&shared, wait, want.next_change, &mut intent_rx, &mut stop).await {
            return;
        }
    }
}

/// Waits `wait`, or until a new intent, the window boundary `next_change` (on the injected
/// clock) or the agent stopping. Returns `false` when the agent is gone (its stop sender
/// dropped): the worker ends.
async fn pause(
    shared: &Shared,
    wait: Duration,
    next_change: Option<Timestamp>,
    intent_rx: &mut watch::Receiver<Option<Arc<SiteIntent>>>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let boundary = match next_change {
        Some(t) => shared.clock.sleep_until(t),
        None => Box::pin(std::future::pending()),
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = intent_rx.changed() => true,
        _ = boundary => true,
        r = stop.changed() => r.is_ok(),
    }
}

/// Observe, reconcile, and apply the error policy to a failure.
async fn once(want: &ServerWant, ctx: &ServerCtx<'_>, policy: &RetryPolicy) -> Action {
    let result = match server::observe_server(ctx).await {
        Ok(observed) => server::reconcile(want, &observed, ctx).await,
        Err(e) => Err(e),
    };
    let error = match result {
        Ok(action) => return action,
        Err(e) => e,
    };
    if let ReconcileError::Store(_) = &error {
        tracing::error!(server = %ctx.server, error = %meridian_common::telemetry::error_chain(&error), "agent database failed; retrying later");
        return Action::RequeueAfter(policy.max);
    }
    match server::handle_failure(want, &error, policy, ctx) {
        Ok(action) => action,
        Err(e) => {
            tracing::error!(server = %ctx.server, error = %meridian_common::telemetry::error_chain(&e), "cannot record a failed step");
            Action::RequeueAfter(policy.max)
        }
    }
}

fn publish(
    shared: &Shared,
    ctx: &ServerCtx<'_>,
    want: &ServerWant,
    action: Action,
    reconciles: u64,
) {
    let rec = record::load(ctx.store, ctx.server).unwrap_or_default();
    let needed = !want.active.is_empty() || !want.upcoming.is_empty();
    let blocking_failure = match &rec.state {
        ServerState::Failed { reason } if needed => Some(reason.clone()),
        _ => None,
    };
    let rejected = want
        .active
        .iter()
        .filter_map(
            |a| match rec.allocations.get(&a.workload).map(|r| &r.status) {
                Some(AllocationStatus::Failed { reason }) if blocking_failure.is_none() => {
                    Some(format!("allocation {}: {reason}", a.workload))
                }
                _ => None,
            },
        )
        .collect();
    let status = ServerStatus {
        generation: want.generation,
        at: want.now,
        state: rec.state.clone(),
        converged: action == Action::AwaitChange
            && !matches!(rec.state, ServerState::Failed { .. }),
        blocking_failure,
        rejected,
        reconciles,
    };
    shared.status.send_modify(|s| {
        s.servers.insert(ctx.server.clone(), status);
    });
}

/// Keeps switch `index` in line with the held intent; see the module documentation.
async fn switch_worker(shared: Arc<Shared>, index: usize, link: AgentLink) {
    let switch = &shared.switches[index];
    let resource = format!("switch/{}", switch.name);
    let mut intent_rx = shared.intent.subscribe();
    let mut stop = link.stop.clone();
    let (mut failures, mut permanent, mut changes) = (0u32, false, 0u64);
    // The last (generation, warning) reported, so a repeated failure is reported once.
    let mut last_warning: Option<(Generation, String)> = None;
    loop {
        if *stop.borrow() {
            return;
        }
        let Some(intent) = intent_rx.borrow_and_update().clone() else {
            tokio::select! {
                _ = intent_rx.changed() => {}
                r = stop.changed() => if r.is_err() { return },
            }
            continue;
        };
        let now = shared.clock.now();
        let mut events = Vec::new();
        let (result, next_change) = match fabric::fabric_want(&intent, &switch.layout, now) {
            Err(e) => (Err(ReconcileError::SwitchLayout(e)), None),
            Ok(want) => {
                for (server, tenants) in &want.shared_servers {
                    let names: Vec<&str> = tenants.iter().map(|t| t.as_str()).collect();
                    events.push((
                        Severity::Warning,
                        format!(
                            "server {server} carries tenants {} at once: its access port \
                             stays out of every tenant VLAN",
                            names.join(", ")
                        ),
                    ));
                }
                let driver = Arc::clone(&switch.driver);
                let spec = want.spec;
                let applied = tokio::select! {
                    r = tokio::task::spawn_blocking(move || driver.apply(&spec)) => r,
                    _ = stop.changed() => return,
                };
                let result = match applied {
                    Ok(r) => r.map_err(|source| ReconcileError::Switch {
                        step: "apply the tenant fabric",
                        source,
                    }),
                    Err(_) => Err(ReconcileError::Switch {
                        step: "apply the tenant fabric",
                        source: crate::network::FabricError::Worker,
                    }),
                };
                (result, want.next_change)
            }
        };
        let (status, wait) = match result {
            Ok(report) => {
                (failures, permanent) = (0, false);
                if report.changed() {
                    changes += 1;
                    events.push((
                        Severity::Info,
                        format!("generation {}: {report}", intent.generation),
                    ));
                }
                last_warning = None;
                let status = SwitchStatus {
                    generation: intent.generation,
                    converged: true,
                    failure: None,
                    changes,
                };
                (status, shared.config.resync)
            }
            Err(e) => {
                failures += 1;
                permanent |= !e.is_transient();
                let chain = meridian_common::telemetry::error_chain(&e);
                tracing::warn!(switch = %switch.name, error = %chain, failures, "switch not in line with the intent");
                let (failure, wait) =
                    match super::error_policy(&e, failures, permanent, &shared.config.retry) {
                        Verdict::Retry(d) => (None, d),
                        Verdict::Fail(reason) => (Some(reason), shared.config.retry.max),
                    };
                let warning = (intent.generation, chain);
                if last_warning.as_ref() != Some(&warning) {
                    events.push((Severity::Warning, warning.1.clone()));
                    last_warning = Some(warning);
                }
                let status = SwitchStatus {
                    generation: intent.generation,
                    converged: false,
                    failure,
                    changes,
                };
                (status, wait)
            }
        };
        if !events.is_empty() {
            let reports: Vec<ReportBody> = events
                .into_iter()
                .map(|(severity, message)| ReportBody::Event {
                    severity,
                    resource: resource.clone(),
                    message,
                })
                .collect();
            commit_site_reports(&link, &intent.site, now, &reports, &[], "a switch event");
        }
        shared.status.send_modify(|s| {
            s.switches.insert(switch.name.clone(), status);
        });
        if !pause(&shared, wait, next_change, &mut intent_rx, &mut stop).await {
            return;
        }
    }
}

/// Decides applied and failed generations from the workers' status.
async fn coordinate(shared: &Shared, link: &AgentLink) {
    let mut status = shared.status.subscribe();
    let mut intent_rx = shared.intent.subscribe();
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
        && s.servers
            .values()
            .all(|v| v.generation == g && (v.converged || v.blocking_failure.is_some()))
        && s.switches.len() == shared.switches.len()
        && s.switches
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

/// Reports allocations on servers this agent does not manage as failed, once per generation.
fn report_unmanaged(shared: &Shared, link: &AgentLink, intent: &SiteIntent) {
    let list = desired::unmanaged(intent, &|id| managed(shared, id));
    if list.is_empty() {
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
    let done = (
        UNMANAGED_KEY.to_vec(),
        Some(intent.generation.get().to_be_bytes().to_vec()),
    );
    commit_site_reports(
        link,
        &intent.site,
        shared.clock.now(),
        &reports,
        &[done],
        "unmanaged allocations",
    );
}

/// Appends site-level reports (stamped with the applied generation) and progress `records`
/// in one transaction, and wakes the channel; a failure is logged naming `what`.
fn commit_site_reports(
    link: &AgentLink,
    site: &SiteId,
    at: Timestamp,
    reports: &[ReportBody],
    records: &[(Vec<u8>, Option<Vec<u8>>)],
    what: &str,
) {
    let generation = link.store.applied_generation().unwrap_or_default();
    match link.store.commit_progress(
        site,
        generation,
        at,
        reports,
        link.report_buffer_max,
        records,
    ) {
        Ok(_) => link.reports_ready.notify_one(),
        Err(e) => {
            tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "cannot report {what}")
        }
    }
}
