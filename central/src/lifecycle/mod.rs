//! The reservation lifecycle: a central task that moves each workload through
//! `Pending -> Approved -> Active -> Completed` (or `Canceled`, or `Failed` with a reason),
//! places workloads with the planner, and has the intent compiler publish what changed.
//!
//! - **Idempotent and restartable.** All state is in the store: placements are the planner's
//!   bookings, workload states are the lifecycle's progress. On start the planner is rebuilt
//!   from the fleet tables and the placements, and a full publish runs. Every state change is a
//!   transaction guarded by the workload's revision, so a step repeated after a crash, or
//!   racing an API call (a cancel), either applies once or is re-decided on the next pass.
//! - **Placement and quota are one commit.** The planner checks the tenant's quotas while
//!   deciding, and the placement and the workload's `Approved` state are written in one
//!   transaction; this task is the only one placing, so no two placements race for capacity.
//! - **Active** means the window has started and every site of the placement has applied an
//!   intent holding the allocation (the channel's applied generation has reached the
//!   intent's). **Completed** at the window's end; capacity is released and the compiler
//!   removes the allocation from the site's next intent (the agent also ends it on time by
//!   itself, since the window travels in the intent).
//!
//! A pass runs when woken (a new or canceled workload, a site applying an intent) and at least
//! every [`TICK`], so windows start and end within a tick.

mod changes;
mod step;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use meridian_common::ids::{RegionId, SiteId, TenantId, Timestamp, WorkloadId};
use meridian_common::model::{Placement, ReservationState, Site, Tenant, Workload};
use meridian_store::tables::Record;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use step::{Progress, Step, step};

use crate::clock::Clock;
use crate::publisher::{Changes, Publisher};
use meridian_plan::placement::{
    Decision, FleetSnapshot, PlacementError, PlacementRequest, Planner, PlannerConfig,
};
use meridian_store::Tables;
use meridian_store::schema::{DIRTY_PREFIX, SITE_DIRTY_PREFIX, workload_dirty_marker};
use meridian_store::tables::{Table, TableError, Versioned};
use meridian_store::{Compare, Op, RangeRequest, Revision, StoreError, Txn};

/// How long shutting down waits for a running pass.
pub const DRAIN: Duration = Duration::from_secs(5);

/// Longest time between passes.
pub const TICK: Duration = Duration::from_secs(1);
/// Shortest time between two planner rebuilds after fleet changes.
const REBUILD_GAP: Duration = Duration::from_secs(2);
/// Shortest time between passes (wake-ups in between are merged).
const MIN_GAP: Duration = Duration::from_millis(50);

/// Why a lifecycle pass failed (it is retried on the next tick).
#[derive(Debug, thiserror::Error)]
pub enum LifecycleError {
    /// The store failed.
    #[error("store error")]
    Table(#[from] TableError),
    /// The stored fleet does not make a planner (a bug or a damaged store).
    #[error("cannot build the planner from the stored fleet")]
    Planner(#[from] PlacementError),
    /// The planner build task died.
    #[error("the planner build task failed: {0}")]
    Task(String),
    /// The intent compiler could not publish.
    #[error("the intent compiler could not publish: {0}")]
    Publish(String),
}

/// Why a dry run could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum DryRunError {
    /// The planner is still being built (central just started).
    #[error("the planner is starting; retry in a second")]
    NotReady,
    /// The request names something the planner cannot evaluate.
    #[error(transparent)]
    Placement(#[from] PlacementError),
}

#[derive(Debug)]
struct Shared {
    planner: Mutex<Option<Planner>>,
    /// Bumped on every change to `planner`.
    version: AtomicU64,
    /// Copies of the planner for dry runs, each with the version it was copied at, so dry runs
    /// run on several cores and never wait for the lifecycle's placements.
    replicas: Vec<Mutex<Option<(u64, Planner)>>>,
    config: PlannerConfig,
    wake: Notify,
    fleet_dirty: AtomicBool,
    /// Measured RTTs older than this are ignored (`placement.rtt_max_age_s`), ms.
    rtt_max_age_ms: AtomicU64,
    /// The measured RTTs the planner was built with.
    rtts: Mutex<RttView>,
}

/// The measured RTTs in the planner, so a new measurement rebuilds it only when it matters.
#[derive(Debug, Default)]
struct RttView {
    /// Per (site, region), the RTT in use, ms.
    measured: std::collections::HashMap<(SiteId, RegionId), u32>,
    /// The sites and regions the planner knows (a measurement of others is not used).
    sites: std::collections::HashSet<SiteId>,
    regions: std::collections::HashSet<RegionId>,
    /// When the first of them goes stale.
    expires: Option<Timestamp>,
}

/// A new measurement closer than this to the one in use does not rebuild the planner, ms.
const RTT_CHANGE_MS: u32 = 1;

/// What the API uses of the lifecycle: dry runs on the live planner, and nudges.
#[derive(Debug, Clone)]
pub struct LifecycleHandle(Arc<Shared>);

impl LifecycleHandle {
    /// A handle with no planner yet.
    pub fn new(config: PlannerConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        LifecycleHandle(Arc::new(Shared {
            planner: Mutex::new(None),
            version: AtomicU64::new(0),
            replicas: (0..cores.clamp(1, 16)).map(|_| Mutex::new(None)).collect(),
            config,
            wake: Notify::new(),
            fleet_dirty: AtomicBool::new(true),
            rtt_max_age_ms: AtomicU64::new(600_000),
            rtts: Mutex::new(RttView::default()),
        }))
    }

    /// Sets the age past which a measured RTT is ignored (`placement.rtt_max_age_s`).
    pub fn set_rtt_max_age(&self, max_age: Duration) {
        let ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.0.rtt_max_age_ms.store(ms, Ordering::Release);
        self.fleet_changed();
    }

    /// A site's agent measured an RTT (a `rtts/` record was written): rebuild the planner
    /// when the measurement differs from the one in use by more than [`RTT_CHANGE_MS`], or
    /// none was in use (new, or the last one went stale), for a site and region it knows.
    fn rtt_measured(&self, raw: &[u8]) {
        let Ok(r) = <meridian_proto::v1::MeasuredRttRecord as Record>::decode(raw) else {
            return;
        };
        let (Ok(site), Ok(region)) = (SiteId::parse(&r.site), RegionId::parse(&r.region)) else {
            return;
        };
        let matters = {
            let view = self.0.rtts.lock().unwrap_or_else(|p| p.into_inner());
            view.sites.contains(&site)
                && view.regions.contains(&region)
                && view
                    .measured
                    .get(&(site, region))
                    .is_none_or(|used| used.abs_diff(r.rtt_ms) > RTT_CHANGE_MS)
        };
        if matters {
            self.fleet_changed();
        }
    }

    /// The planner, for a change (dry-run copies are refreshed before their next use).
    fn planner(&self) -> std::sync::MutexGuard<'_, Option<Planner>> {
        let guard = self.0.planner.lock().unwrap_or_else(|p| p.into_inner());
        self.0.version.fetch_add(1, Ordering::AcqRel);
        guard
    }

    /// The planner, to read.
    fn planner_read(&self) -> std::sync::MutexGuard<'_, Option<Planner>> {
        self.0.planner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Decides `request` as the live planner would, without committing anything. Runs on a
    /// copy of the planner taken since its last change.
    pub fn dry_run(
        &self,
        request: &PlacementRequest,
        now: Timestamp,
    ) -> Result<Decision, DryRunError> {
        let replicas = &self.0.replicas;
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let start = NEXT.fetch_add(1, Ordering::Relaxed) % replicas.len();
        let mut slot = (0..replicas.len())
            .find_map(|i| replicas[(start + i) % replicas.len()].try_lock().ok())
            .unwrap_or_else(|| replicas[start].lock().unwrap_or_else(|p| p.into_inner()));
        let version = self.0.version.load(Ordering::Acquire);
        if slot.as_ref().is_none_or(|(v, _)| *v != version) {
            let main = self.planner_read();
            let planner = main.as_ref().ok_or(DryRunError::NotReady)?.clone();
            // Read the version again under the lock: the copy is at least this new.
            *slot = Some((self.0.version.load(Ordering::Acquire), planner));
        }
        let (_, planner) = slot.as_mut().expect("filled above");
        Ok(planner.dry_run(request, now)?)
    }

    /// Asks for a pass soon (a workload was created or canceled).
    pub fn wake(&self) {
        self.0.wake.notify_one();
    }

    /// The fleet tables changed (sites, servers, regions, datasets): rebuild the planner on
    /// the next pass.
    pub fn fleet_changed(&self) {
        self.0.fleet_dirty.store(true, Ordering::Release);
        self.wake();
    }

    /// A tenant was created or its policy changed.
    pub fn tenant_changed(&self, tenant: Tenant) {
        if let Some(p) = self.planner().as_mut() {
            p.upsert_tenant(tenant);
        }
    }

    /// A site's lifecycle state changed (the channel marks sites online and disconnected).
    fn site_changed(&self, site: &Site) {
        let known = match self.planner().as_mut() {
            Some(p) => p.set_site_state(&site.id, site.state).is_ok(),
            None => true,
        };
        if !known {
            self.fleet_changed();
        } else {
            self.wake();
        }
    }
}

/// The running lifecycle task.
#[derive(Debug)]
pub struct Lifecycle {
    stop: tokio::sync::watch::Sender<bool>,
    tasks: JoinSet<()>,
}

impl Lifecycle {
    /// Starts the reconciler and its watches; the compiler carves networks from `publisher`'s
    /// pools. Placement decisions are counted in `metrics`.
    pub fn start(
        tables: Tables,
        handle: LifecycleHandle,
        publisher: Publisher,
        clock: Arc<dyn Clock>,
        metrics: crate::metrics::Metrics,
    ) -> Lifecycle {
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let mut tasks = JoinSet::new();
        let reconciler =
            Runner::new(tables.clone(), handle.clone(), publisher, clock).with_metrics(metrics);
        tasks.spawn(reconciler.run(stop_rx.clone()));
        tasks.spawn(watch_prefix(
            tables.clone(),
            "sites/",
            handle.clone(),
            stop_rx.clone(),
            |handle, value| {
                if let Ok(site) = <Site as meridian_store::tables::Record>::decode(value) {
                    handle.site_changed(&site);
                }
            },
        ));
        // Servers change when a site reports its inventory: rebuild the planner.
        tasks.spawn(watch_prefix(
            tables.clone(),
            "servers/",
            handle.clone(),
            stop_rx.clone(),
            |handle, _| handle.fleet_changed(),
        ));
        // Agents' RTT measurements: rebuild when one changes what the planner uses.
        tasks.spawn(watch_prefix(
            tables.clone(),
            "rtts/",
            handle.clone(),
            stop_rx.clone(),
            |handle, value| handle.rtt_measured(value),
        ));
        tasks.spawn(watch_prefix(
            tables,
            meridian_store::schema::SITES_PREFIX,
            handle,
            stop_rx,
            |handle, _| handle.wake(),
        ));
        Lifecycle { stop, tasks }
    }

    /// Stops the tasks.
    /// Stops the passes and watches; a pass still running gets [`DRAIN`] to finish its
    /// store transaction (each is atomic, so one cut short leaves nothing half-written).
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(DRAIN, async {
            while self.tasks.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(after = ?DRAIN, "lifecycle tasks did not stop in time; aborting them");
            self.tasks.abort_all();
            while self.tasks.join_next().await.is_some() {}
        }
    }
}

/// Calls `on_change` for each change under `prefix` until `stop`.
async fn watch_prefix(
    tables: Tables,
    prefix: &'static str,
    handle: LifecycleHandle,
    mut stop: tokio::sync::watch::Receiver<bool>,
    on_change: fn(&LifecycleHandle, &[u8]),
) {
    let store = Arc::clone(tables.store());
    let mut from = Revision(store.revision().0 + 1);
    loop {
        let mut watch = match store.watch(prefix.as_bytes(), from).await {
            Ok(w) => w,
            Err(StoreError::Closed) => return,
            Err(e) => {
                tracing::warn!(error = %e, prefix, "lifecycle watch failed; retrying");
                handle.fleet_changed();
                from = Revision(store.revision().0 + 1);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                event = watch.next() => match event {
                    Ok(event) => on_change(&handle, &event.kv.value),
                    Err(StoreError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(error = %e, prefix, "lifecycle watch lost; rebuilding");
                        handle.fleet_changed();
                        from = Revision(store.revision().0 + 1);
                        break;
                    }
                }
            }
        }
    }
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassSummary {
    pub placed: usize,
    pub failed: usize,
    pub activated: usize,
    pub completed: usize,
    pub released: usize,
    /// Tenants whose allocations changed (their sites need new intents).
    pub dirty_tenants: BTreeSet<TenantId>,
}

impl PassSummary {
    fn changed(&self) -> bool {
        !self.dirty_tenants.is_empty()
    }
}

/// The lifecycle's reconciler.
#[derive(Debug, Clone)]
pub struct Runner {
    tables: Tables,
    clock: Arc<dyn Clock>,
    handle: LifecycleHandle,
    publisher: Arc<Publisher>,
    last_rebuild: Arc<Mutex<Option<std::time::Instant>>>,
    metrics: crate::metrics::Metrics,
}

impl Runner {
    /// A reconciler over `tables` sharing `handle`'s planner.
    pub fn new(
        tables: Tables,
        handle: LifecycleHandle,
        publisher: Publisher,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Runner {
            tables,
            clock,
            handle,
            publisher: Arc::new(publisher),
            last_rebuild: Arc::new(Mutex::new(None)),
            metrics: crate::metrics::Metrics::default(),
        }
    }

    /// Counts placement decisions in `metrics` (by default, in families nobody serves).
    pub fn with_metrics(mut self, metrics: crate::metrics::Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    async fn run(self, mut stop: tokio::sync::watch::Receiver<bool>) {
        loop {
            let now = self.clock.now();
            match self.pass(now).await {
                Ok(summary) => {
                    if summary.changed() {
                        tracing::debug!(?summary, "lifecycle pass");
                    }
                }
                Err(LifecycleError::Table(TableError::Store(StoreError::Closed))) => return,
                Err(e) => tracing::warn!(
                    error = %meridian_common::telemetry::error_chain(&e),
                    "lifecycle pass failed; retrying"
                ),
            }
            tokio::select! {
                _ = stop.changed() => return,
                _ = self.handle.0.wake.notified() => {}
                _ = tokio::time::sleep(TICK) => {}
            }
            tokio::time::sleep(MIN_GAP).await;
        }
    }

    /// Rebuilds the planner from the tables.
    pub async fn rebuild(&self) -> Result<(), LifecycleError> {
        let t = &self.tables;
        let sites = t.sites().list_all(None, 1000).await?;
        let regions = t.regions().list_all(None, 1000).await?;
        // Measured RTTs while fresh; a stale one leaves the planner its estimate.
        let (rtts, expires) = crate::channel::rtts::fresh(
            t,
            &sites.iter().map(|s| &s.id).collect(),
            &regions.iter().map(|r| &r.id).collect(),
            self.clock.now(),
            self.handle.0.rtt_max_age_ms.load(Ordering::Acquire),
        )
        .await?;
        let view = RttView {
            measured: rtts
                .iter()
                .map(|m| ((m.site.clone(), m.region.clone()), m.rtt_ms as u32))
                .collect(),
            sites: sites.iter().map(|s| s.id.clone()).collect(),
            regions: regions.iter().map(|r| r.id.clone()).collect(),
            expires,
        };
        let servers = t.servers().list_all(None, 1000).await?;
        // A drain of a server no longer in the inventory has nothing to keep off.
        let drained = t
            .drains()
            .list_all(None, 1000)
            .await?
            .into_iter()
            .filter(|d| {
                servers
                    .iter()
                    .any(|s| s.site.as_str() == d.site && s.id.as_str() == d.server)
            })
            .filter_map(|d| meridian_common::ids::ServerId::parse(&d.server).ok())
            .collect();
        // A placement does not say what storage its replicas hold: their specs do.
        let storage: Vec<(WorkloadId, u64)> = t
            .workloads()
            .list_all(None, 1000)
            .await?
            .into_iter()
            .filter(|w| w.spec.resources.storage_mib > 0 && !w.state.is_terminal())
            .map(|w| (w.id, w.spec.resources.storage_mib))
            .collect();
        let snapshot = FleetSnapshot {
            sites,
            servers,
            regions,
            rtts,
            datasets: t.datasets().list_all(None, 1000).await?,
            tenants: t.tenants().list_all(None, 1000).await?,
            placements: t.placements().list_all(None, 1000).await?,
            drained,
        };
        let config = self.handle.0.config.clone();
        let planner = tokio::task::spawn_blocking(move || {
            let mut planner = Planner::new(&snapshot, config)?;
            for (workload, mib) in &storage {
                planner.rebook_storage(workload, *mib);
            }
            Ok::<_, meridian_plan::placement::PlacementError>(planner)
        })
        .await
        .map_err(|e| LifecycleError::Task(e.to_string()))??;
        *self.handle.planner() = Some(planner);
        *self.handle.0.rtts.lock().unwrap_or_else(|p| p.into_inner()) = view;
        *self.last_rebuild.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(std::time::Instant::now());
        Ok(())
    }

    /// One pass over every workload at `now`, then a publish for every tenant marked dirty.
    pub async fn pass(&self, now: Timestamp) -> Result<PassSummary, LifecycleError> {
        let mut summary = PassSummary::default();
        let workloads = self.tables.workloads().list(None, None, 0).await?;
        // Fleet changes come in bursts (a site reporting its inventory, a reconnect storm):
        // rebuild at most every REBUILD_GAP, leaving the flag set in between, unless a
        // workload waits to be placed (it must see the fleet as it is).
        let waiting = workloads
            .items
            .iter()
            .any(|w| w.record.state == ReservationState::Pending);
        let due = waiting
            || self
                .last_rebuild
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .is_none_or(|t| t.elapsed() >= REBUILD_GAP);
        // A measured RTT in use went stale: the planner must fall back to its estimate.
        let expired = self
            .handle
            .0
            .rtts
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .expires
            .is_some_and(|at| at <= now);
        if expired {
            self.handle.0.fleet_dirty.store(true, Ordering::Release);
        }
        let stale = (due && self.handle.0.fleet_dirty.swap(false, Ordering::AcqRel))
            || self.handle.planner_read().is_none();
        if stale && let Err(e) = self.rebuild().await {
            self.handle.0.fleet_dirty.store(true, Ordering::Release);
            return Err(e);
        }
        for Versioned { record, revision } in workloads.items {
            let placed = self
                .handle
                .planner_read()
                .as_ref()
                .is_some_and(|p| p.is_placed(&record.id));
            let progress = if record.state == ReservationState::Approved && placed {
                self.progress(&record).await?
            } else {
                Progress::default()
            };
            match step(&record, placed, &progress, now) {
                Step::Wait => {}
                Step::Place => self.place(record, revision, now, &mut summary).await?,
                Step::Activate => {
                    if self
                        .transition(&record, revision, ReservationState::Active)
                        .await?
                    {
                        summary.activated += 1;
                    }
                }
                Step::Complete => {
                    if self
                        .finish(&record, revision, ReservationState::Completed)
                        .await?
                    {
                        summary.completed += 1;
                        summary.dirty_tenants.insert(record.tenant.clone());
                    }
                }
                Step::Fail(reason) => {
                    if self
                        .finish(&record, revision, ReservationState::Failed { reason })
                        .await?
                    {
                        summary.failed += 1;
                        summary.dirty_tenants.insert(record.tenant.clone());
                    }
                }
                Step::Release => {
                    self.release(&record).await?;
                    summary.released += 1;
                    summary.dirty_tenants.insert(record.tenant.clone());
                }
            }
        }
        self.publish_dirty(now).await?;
        Ok(summary)
    }

    /// Publishes intents for every tenant with a marker, then removes the markers that did not
    /// change meanwhile.
    async fn publish_dirty(&self, now: Timestamp) -> Result<(), LifecycleError> {
        let store = self.tables.store();
        let mut marks = store
            .range(RangeRequest {
                prefix: DIRTY_PREFIX.as_bytes().to_vec(),
                start_after: None,
                limit: 0,
            })
            .await
            .map_err(TableError::from)?;
        let site_marks = store
            .range(RangeRequest {
                prefix: SITE_DIRTY_PREFIX.as_bytes().to_vec(),
                start_after: None,
                limit: 0,
            })
            .await
            .map_err(TableError::from)?;
        if marks.kvs.is_empty() && site_marks.kvs.is_empty() {
            return Ok(());
        }
        let mut changes = Changes::default();
        for kv in &site_marks.kvs {
            if let Some(site) = std::str::from_utf8(&kv.key[SITE_DIRTY_PREFIX.len()..])
                .ok()
                .and_then(|s| SiteId::parse(s).ok())
            {
                changes.sites.insert(site);
            }
        }
        for kv in &marks.kvs {
            let Ok(path) = std::str::from_utf8(&kv.key[DIRTY_PREFIX.len()..]) else {
                continue;
            };
            match path.split_once('/') {
                Some((t, w)) => {
                    if let (Ok(t), Ok(w)) = (TenantId::parse(t), WorkloadId::parse(w)) {
                        changes.workloads.insert((t, w));
                    }
                }
                None => {
                    if let Ok(t) = TenantId::parse(path) {
                        changes.tenants.insert(t);
                    }
                }
            }
        }
        let (summary, unmet) =
            changes::publish_changes(&self.publisher, &self.tables, now, changes).await?;
        if !summary.published.is_empty() {
            tracing::debug!(sites = summary.published.len(), "published intents");
        }
        // A replica the compiler could not fit (no network address, an unknown server) fails
        // its workload; the next pass releases it and publishes again.
        for ((tenant, workload), reason) in unmet {
            if let Some(v) = self.tables.workloads().get(&(&tenant, &workload)).await?
                && !v.record.state.is_terminal()
            {
                self.finish(&v.record, v.revision, ReservationState::Failed { reason })
                    .await?;
            }
        }
        marks.kvs.extend(site_marks.kvs);
        for kv in marks.kvs {
            let txn = Txn::new()
                .when(Compare::ModRevision(kv.key.clone(), kv.mod_revision))
                .then(Op::Delete { key: kv.key });
            store.txn(txn).await.map_err(TableError::from)?;
        }
        Ok(())
    }

    /// Whether every site of a placed workload has applied an intent holding it.
    async fn progress(&self, workload: &Workload) -> Result<Progress, TableError> {
        let Some(placement) = self
            .tables
            .placements()
            .get(&(&workload.tenant, &workload.id))
            .await?
        else {
            return Ok(Progress::default());
        };
        let sites: BTreeSet<&SiteId> = placement
            .record
            .assignments
            .iter()
            .map(|a| &a.site)
            .collect();
        for site in sites {
            let intent = self.tables.intents().get(site).await?;
            let holds = intent.as_ref().is_some_and(|i| {
                i.record
                    .allocations
                    .iter()
                    .any(|a| a.workload == workload.id)
            });
            let applied = match (&intent, holds) {
                (Some(i), true) => {
                    let channel =
                        meridian_store::schema::site_channel(self.tables.store().as_ref(), site)
                            .await?;
                    channel.applied_generation >= i.record.generation
                }
                _ => false,
            };
            if !applied {
                return Ok(Progress {
                    applied: false,
                    waiting_for: Some(site.to_string()),
                });
            }
        }
        Ok(Progress {
            applied: true,
            waiting_for: None,
        })
    }

    async fn place(
        &self,
        workload: Workload,
        revision: Revision,
        now: Timestamp,
        summary: &mut PassSummary,
    ) -> Result<(), TableError> {
        let request = PlacementRequest {
            workload: workload.id.clone(),
            tenant: workload.tenant.clone(),
            spec: workload.spec.clone(),
        };
        let decision = {
            let mut guard = self.handle.planner();
            let Some(planner) = guard.as_mut() else {
                return Ok(());
            };
            planner.place(&request, now)
        };
        let placement = match decision {
            Ok(Decision::Placed(p)) => p,
            Ok(Decision::Unplaceable(u)) => {
                let reason = main_reason(&u.rejections);
                if self
                    .transition(
                        &workload,
                        revision,
                        ReservationState::Failed {
                            reason: u.explanation,
                        },
                    )
                    .await?
                {
                    summary.failed += 1;
                    self.metrics.placement("unplaceable", reason);
                }
                return Ok(());
            }
            Err(e) => {
                if self
                    .transition(
                        &workload,
                        revision,
                        ReservationState::Failed {
                            reason: e.to_string(),
                        },
                    )
                    .await?
                {
                    summary.failed += 1;
                    self.metrics.placement("error", "invalid_request");
                }
                return Ok(());
            }
        };
        let mut next = workload.clone();
        next.state = ReservationState::Approved;
        let txn = Txn::new()
            .when(Compare::ModRevision(
                Table::<Workload>::store_key(&workload.key_path()),
                revision,
            ))
            .then(Table::<Placement>::put_op(&placement)?)
            .then(Table::<Workload>::put_op(&next)?)
            .then(workload_dirty_marker(&workload.tenant, &workload.id));
        let committed = self.tables.store().txn(txn).await.map(|r| r.succeeded);
        match committed {
            Ok(true) => {
                summary.placed += 1;
                summary.dirty_tenants.insert(workload.tenant.clone());
                self.metrics.placement("placed", "none");
                Ok(())
            }
            Ok(false) => {
                // Changed meanwhile (canceled?): undo the booking; the next pass re-decides.
                if let Some(p) = self.handle.planner().as_mut() {
                    p.release(&workload.id);
                }
                Ok(())
            }
            Err(e) => {
                if let Some(p) = self.handle.planner().as_mut() {
                    p.release(&workload.id);
                }
                Err(e.into())
            }
        }
    }

    /// Moves a workload to `to` if it is still at `revision`; returns whether it moved.
    async fn transition(
        &self,
        workload: &Workload,
        revision: Revision,
        to: ReservationState,
    ) -> Result<bool, TableError> {
        let Some(next) = moved(workload, to) else {
            return Ok(false);
        };
        match self.tables.workloads().update(&next, revision).await {
            Ok(_) => Ok(true),
            Err(TableError::Conflict { .. } | TableError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Moves a workload to a terminal state and frees what it holds, in one transaction.
    async fn finish(
        &self,
        workload: &Workload,
        revision: Revision,
        to: ReservationState,
    ) -> Result<bool, TableError> {
        let Some(next) = moved(workload, to) else {
            return Ok(false);
        };
        let key = Table::<Workload>::store_key(&workload.key_path());
        let txn = Txn::new()
            .when(Compare::ModRevision(key, revision))
            .then(Table::<Workload>::put_op(&next)?)
            .then(Op::Delete {
                key: Table::<Placement>::store_key(&workload.key_path()),
            })
            .then(workload_dirty_marker(&workload.tenant, &workload.id));
        if !self.tables.store().txn(txn).await?.succeeded {
            return Ok(false);
        }
        if let Some(p) = self.handle.planner().as_mut() {
            p.release(&workload.id);
        }
        Ok(true)
    }

    /// Deletes the placement (marking the tenant for a publish) and frees the planner's
    /// booking, in that order: a crash in between leaves no placement, and the rebuilt planner
    /// holds nothing for it.
    async fn release(&self, workload: &Workload) -> Result<(), TableError> {
        let txn = Txn::new()
            .then(Op::Delete {
                key: Table::<Placement>::store_key(&workload.key_path()),
            })
            .then(workload_dirty_marker(&workload.tenant, &workload.id));
        self.tables.store().txn(txn).await?;
        if let Some(p) = self.handle.planner().as_mut() {
            p.release(&workload.id);
        }
        Ok(())
    }
}

/// `workload` in state `to`, or `None` (logged) when the lifecycle forbids the move.
fn moved(workload: &Workload, to: ReservationState) -> Option<Workload> {
    match workload.state.clone().transition(to) {
        Ok(state) => Some(Workload {
            state,
            ..workload.clone()
        }),
        Err(e) => {
            tracing::warn!(workload = %workload.id, error = %e, "lifecycle skipped a refused transition");
            None
        }
    }
}

/// The `reason` label of an unplaceable workload: the reject reason that ruled out the most
/// sites (the first in the reasons' order on a tie), `no_sites` when none was considered.
fn main_reason(
    rejections: &std::collections::BTreeMap<meridian_common::model::RejectReason, u32>,
) -> String {
    let mut best: Option<(&meridian_common::model::RejectReason, u32)> = None;
    for (reason, &n) in rejections {
        if best.is_none_or(|(_, m)| n > m) {
            best = Some((reason, n));
        }
    }
    best.map_or_else(
        || "no_sites".to_owned(),
        |(r, _)| crate::metrics::label_of(r),
    )
}

#[cfg(test)]
mod metrics_tests {
    use super::main_reason;
    use meridian_common::model::RejectReason;

    #[test]
    fn the_reason_that_ruled_out_most_sites_names_an_unplaceable_workload() {
        let mut r = std::collections::BTreeMap::new();
        assert_eq!(main_reason(&r), "no_sites");
        r.insert(RejectReason::Residency, 3);
        r.insert(RejectReason::Capacity, 7);
        r.insert(RejectReason::Quota, 7);
        assert_eq!(main_reason(&r), "capacity");
    }
}
