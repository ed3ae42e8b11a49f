//! One reconcile of one server: plan the next step from the want and the observation, perform
//! it through the drivers, and commit the record change with the reports describing it.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use meridian_common::ids::RequestId;
use meridian_common::ids::{ServerId, SiteId, Timestamp, WorkloadId};
use meridian_common::model::{
    ActionPhase, AllocationStatus, ReportBody, Server, ServerActionKind, ServerState, Severity,
    SiteIntent,
};
use tokio::sync::Notify;

use super::clock::Clock;
use super::desired::{self, DpuWant, ServerWant, WantedAllocation};
use super::device::{self, Device, DpuSeen};
use super::plan::{self, Note, Step, action_name, describe};
use super::record::{self, ActionRecord, ActionStage, AllocRecord, MigClaim, ServerRecord};
use super::resource::{Cx, Resource};
use super::status::ServerStatus;
use super::{Action, ReconcileError, RetryPolicy, Verdict, error_policy};
use crate::store::AgentStore;
use meridian_drivers::bmc::{
    Bmc, BmcError, BootOverride, BootOverrideEnabled, BootTarget, MediaPolicy, PowerAction,
};
use meridian_drivers::dpu::{Dpu, DpuError};
use meridian_drivers::gpu::{GpuError, GpuIndex, GpuInventory, GpuUuid, MigProfile};

/// How many times an insert found under way is polled (every `power_poll`) before it is
/// asked for again.
const MEDIA_IN_PROGRESS_POLLS: u32 = 100;

/// The drivers of one server.
#[derive(Clone)]
pub struct ServerDrivers {
    pub bmc: Arc<dyn Bmc>,
    /// `None`: no GPU driver for this server (GPUs are known from Redfish only; MIG slices
    /// cannot be made).
    pub gpus: Option<Arc<dyn GpuInventory>>,
    /// `None`: no DPU managed on this server.
    pub dpu: Option<ManagedDpu>,
}

/// A server's DPU and what the site asks of it.
#[derive(Clone, Debug)]
pub struct ManagedDpu {
    pub driver: Arc<dyn Dpu>,
    pub want: DpuWant,
}

impl fmt::Debug for ServerDrivers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerDrivers")
            .field("bmc", &self.bmc)
            .field("gpus", &self.gpus.is_some())
            .field("dpu", &self.dpu.as_ref().map(|d| &d.want))
            .finish()
    }
}

/// One server the site reconciler manages.
#[derive(Debug, Clone)]
pub struct ServerSpec {
    pub id: ServerId,
    /// The BMC's URL as configured (reported in the inventory).
    pub bmc_url: String,
    pub drivers: ServerDrivers,
}

/// One managed server as a [`Resource`], and what its worker remembers between passes.
#[derive(Debug)]
pub(crate) struct ServerInstance {
    spec: ServerSpec,
    book: Arc<InventoryBook>,
    reconciles: u64,
}

impl ServerInstance {
    pub(crate) fn new(spec: ServerSpec, book: Arc<InventoryBook>) -> Self {
        ServerInstance {
            spec,
            book,
            reconciles: 0,
        }
    }

    fn ctx<'a>(&'a self, cx: &'a Cx<'a>) -> ServerCtx<'a> {
        let config = &cx.env.config;
        ServerCtx {
            server: &self.spec.id,
            site: cx.site,
            bmc_url: &self.spec.bmc_url,
            drivers: &self.spec.drivers,
            store: &cx.link.store,
            clock: cx.env.clock.as_ref(),
            reports_ready: &cx.link.reports_ready,
            report_buffer_max: cx.link.report_buffer_max,
            power_poll: config.power_poll,
            transition_timeout: config.transition_timeout,
            inventory: &self.book,
        }
    }
}

#[async_trait]
impl Resource for ServerInstance {
    type Want = ServerWant;
    type Observed = Observed;
    type Step = Step;
    const KIND: &'static str = "server";
    const DRIVER: &'static str = "redfish";

    fn step_driver(step: &Step) -> Option<&'static str> {
        match step {
            Step::SetMigMode { .. }
            | Step::ResetGpu { .. }
            | Step::CreateMig { .. }
            | Step::DestroyMig { .. } => Some("nvml"),
            Step::InstallBfb { .. } | Step::SetDpuMode { .. } | Step::ResetDpu => Some("dpu"),
            Step::Discover
            | Step::Inspect
            | Step::InsertMedia { .. }
            | Step::ArmBoot
            | Step::PowerOn { .. }
            | Step::Restart { .. }
            | Step::WaitPower
            | Step::PowerOff
            | Step::EjectMedia
            | Step::ClearBootOverride
            | Step::IssueAction { .. } => Some("redfish"),
            // Bookkeeping in the agent's records only.
            _ => None,
        }
    }

    fn want(&self, intent: Option<&SiteIntent>, now: Timestamp) -> Option<ServerWant> {
        let mut want = desired::server_want(intent, &self.spec.id, now);
        want.dpu = self.spec.drivers.dpu.as_ref().map(|d| d.want.clone());
        Some(want)
    }

    fn next_change(want: &ServerWant) -> Option<Timestamp> {
        want.next_change
    }

    async fn observe(
        &mut self,
        _want: &ServerWant,
        cx: &Cx<'_>,
    ) -> Result<Observed, ReconcileError> {
        observe_server(&self.ctx(cx)).await
    }

    fn plan(&self, want: &ServerWant, observed: &Observed) -> Step {
        plan::plan(
            want,
            &observed.record,
            observed.device.as_ref(),
            self.spec.drivers.gpus.is_some(),
        )
    }

    async fn execute(
        &mut self,
        step: Step,
        want: &ServerWant,
        observed: Observed,
        cx: &Cx<'_>,
    ) -> Result<Action, ReconcileError> {
        take_step(step, want, &observed, &self.ctx(cx)).await
    }

    fn failed(&mut self, want: &ServerWant, error: ReconcileError, cx: &Cx<'_>) -> Action {
        let ctx = self.ctx(cx);
        let policy = &cx.env.config.retry;
        if let ReconcileError::Store(_) = &error {
            tracing::error!(server = %ctx.server, error = %meridian_common::telemetry::error_chain(&error), "agent database failed; retrying later");
            return Action::RequeueAfter(policy.max);
        }
        match handle_failure(want, &error, policy, &ctx) {
            Ok(action) => action,
            Err(e) => {
                tracing::error!(server = %ctx.server, error = %meridian_common::telemetry::error_chain(&e), "cannot record a failed step");
                Action::RequeueAfter(policy.max)
            }
        }
    }

    fn report(&mut self, want: &ServerWant, action: Action, cx: &Cx<'_>) {
        self.reconciles += 1;
        let rec = record::load(&cx.link.store, &self.spec.id).unwrap_or_default();
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
        let mut actions: std::collections::BTreeMap<RequestId, String> = rec
            .actions
            .iter()
            .filter(|(_, a)| !a.phase.is_final())
            .map(|(r, a)| (*r, format!("{}: {}", action_name(&a.kind), a.detail)))
            .collect();
        for w in &want.actions {
            if !rec.actions.contains_key(&w.request) {
                actions.insert(w.request, format!("{}: requested", action_name(&w.kind)));
            }
        }
        let status = ServerStatus {
            generation: want.generation,
            at: want.now,
            state: rec.state.clone(),
            converged: action == Action::AwaitChange
                && !matches!(rec.state, ServerState::Failed { .. })
                && actions.is_empty(),
            blocking_failure,
            rejected,
            actions,
            reconciles: self.reconciles,
        };
        let id = self.spec.id.clone();
        cx.env.status.send_modify(|s| {
            s.servers.insert(id, status);
        });
    }
}

/// Serialises inspection commits: each carries the whole site's inventory report, which must
/// include every inventory already committed.
#[derive(Debug)]
pub struct InventoryBook {
    pub(crate) lock: tokio::sync::Mutex<()>,
    pub(crate) servers: Vec<ServerId>,
}

impl InventoryBook {
    /// A book over the site's servers.
    pub fn new(servers: Vec<ServerId>) -> Self {
        InventoryBook {
            lock: tokio::sync::Mutex::new(()),
            servers,
        }
    }
}

/// What a reconcile of one server needs besides the want and the observation.
#[derive(Debug)]
pub struct ServerCtx<'a> {
    pub server: &'a ServerId,
    pub site: &'a SiteId,
    /// The BMC's URL as configured (for the inventory).
    pub bmc_url: &'a str,
    pub drivers: &'a ServerDrivers,
    pub store: &'a AgentStore,
    pub clock: &'a dyn Clock,
    pub reports_ready: &'a Notify,
    pub report_buffer_max: usize,
    /// How often to look again while a power transition runs.
    pub power_poll: Duration,
    /// How long a power transition may run before it counts as a failure.
    pub transition_timeout: Duration,
    pub inventory: &'a InventoryBook,
}

/// A server's progress record and, past inspection, its device observation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    pub record: ServerRecord,
    pub device: Option<Device>,
}

/// Reads the record and, when the server is past inspection and not failed, its devices.
pub async fn observe_server(ctx: &ServerCtx<'_>) -> Result<Observed, ReconcileError> {
    let record = record::load(ctx.store, ctx.server)?;
    let device = match record.state {
        ServerState::Available | ServerState::Allocated | ServerState::Cleaning => {
            Some(observe_devices(ctx.drivers).await?)
        }
        _ => None,
    };
    Ok(Observed { record, device })
}

/// Reads power, boot override and media from the BMC, the GPUs when the server has a GPU
/// inventory driver, and the DPU's mode and `DPU_OS` version when it has a managed DPU.
async fn observe_devices(drivers: &ServerDrivers) -> Result<Device, ReconcileError> {
    let bmc = &drivers.bmc;
    let bmc_err = |step| move |source| ReconcileError::Bmc { step, source };
    let power = bmc.power_state().await.map_err(bmc_err("observe power"))?;
    let boot = bmc
        .boot_override()
        .await
        .map_err(bmc_err("observe boot override"))?;
    let media = bmc.media().await.map_err(bmc_err("observe media"))?;
    let gpus = match &drivers.gpus {
        Some(g) => Some(g.report().await.map_err(|source| ReconcileError::Gpu {
            step: "observe GPUs",
            source,
        })?),
        None => None,
    };
    let dpu = match &drivers.dpu {
        Some(d) => {
            let dpu_err = |step| move |source| ReconcileError::Dpu { step, source };
            let mode = d.driver.mode().await.map_err(dpu_err("observe DPU mode"))?;
            let firmware = d
                .driver
                .firmware()
                .await
                .map_err(dpu_err("observe DPU firmware"))?;
            Some(DpuSeen {
                mode,
                os: firmware.os,
            })
        }
        None => None,
    };
    Ok(Device {
        power,
        boot,
        media,
        gpus,
        dpu,
    })
}

/// Takes the next step for one server: the pure [`plan::plan`], then [`take_step`].
pub async fn reconcile(
    want: &ServerWant,
    observed: &Observed,
    ctx: &ServerCtx<'_>,
) -> Result<Action, ReconcileError> {
    let step = plan::plan(
        want,
        &observed.record,
        observed.device.as_ref(),
        ctx.drivers.gpus.is_some(),
    );
    take_step(step, want, observed, ctx).await
}

/// Takes `step` (chosen by [`plan::plan`] from `want` and `observed`), records the progress
/// and reports it in one transaction.
pub async fn take_step(
    step: Step,
    want: &ServerWant,
    observed: &Observed,
    ctx: &ServerCtx<'_>,
) -> Result<Action, ReconcileError> {
    match step {
        Step::Converged => {
            if observed.record.failures > 0 {
                let mut rec = observed.record.clone();
                clear_failures(&mut rec);
                commit(ctx, &rec, Vec::new())?;
            }
            return Ok(Action::AwaitChange);
        }
        Step::WaitPower => return wait_transition(ctx).await,
        Step::IssueAction {
            request,
            kind: ServerActionKind::Power(p),
        } => return issue_power(request, p, observed, ctx).await,
        _ => {}
    }
    tracing::debug!(server = %ctx.server, ?step, "reconcile step");
    let guard = match step {
        Step::Inspect => Some(ctx.inventory.lock.lock().await),
        _ => None,
    };
    let mut rec = observed.record.clone();
    let mut reports = execute(&step, want, &mut rec, ctx).await?;
    clear_failures(&mut rec);
    if guard.is_some() {
        let (servers, pending) = site_inventory(ctx, &rec)?;
        reports.push(ReportBody::Inventory { servers, pending });
    }
    commit(ctx, &rec, reports)?;
    drop(guard);
    Ok(Action::RequeueAfter(Duration::ZERO))
}

/// Waits (bounded) for a power transition someone else started to end.
async fn wait_transition(ctx: &ServerCtx<'_>) -> Result<Action, ReconcileError> {
    let start = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(ctx.power_poll).await;
        let power = ctx
            .drivers
            .bmc
            .power_state()
            .await
            .map_err(bmc_step("wait for a power transition"))?;
        if !matches!(
            power,
            meridian_drivers::bmc::PowerState::PoweringOn
                | meridian_drivers::bmc::PowerState::PoweringOff
        ) {
            return Ok(Action::RequeueAfter(Duration::ZERO));
        }
        if start.elapsed() >= ctx.transition_timeout {
            return Err(ReconcileError::Unexpected {
                step: "wait for a power transition",
                detail: format!("still {power} after {} s", ctx.transition_timeout.as_secs()),
            });
        }
    }
}

/// Carries out a started power request once: records it `Issuing` (with its report) before
/// the BMC is asked, then `Issued` once the BMC took the call and the power state reached the
/// request's end. If the BMC *refused* the reset (an error status answering the reset POST,
/// or no reset type for it, and the power state unchanged), nothing happened: the request is
/// recorded `Started` again and the error goes through the error policy, so it is asked again
/// after the back-off. On any other error whether it happened is unknown: the request stays
/// `Issuing`, and the next pass finishes it from what the device shows or fails it as not
/// confirmed; it is never asked again.
async fn issue_power(
    request: RequestId,
    power: meridian_common::model::PowerAction,
    observed: &Observed,
    ctx: &ServerCtx<'_>,
) -> Result<Action, ReconcileError> {
    use meridian_common::model::PowerAction as P;
    const STEP: &str = "server action";
    let bmc = &ctx.drivers.bmc;
    let mut rec = observed.record.clone();
    let Some(was_on) = rec.actions.get(&request).map(|a| a.was_on) else {
        return Err(ReconcileError::Unexpected {
            step: STEP,
            detail: format!("request {request} is not recorded as started"),
        });
    };
    // The BMC answers before anything is recorded as asked (an error here is retried).
    bmc.power_state().await.map_err(bmc_step(STEP))?;
    let driver_action = match power {
        P::On => PowerAction::On,
        P::Off => PowerAction::ForceOff,
        P::Reboot => PowerAction::ForceRestart,
        P::Cycle => PowerAction::PowerCycle,
    };
    let name = action_name(&ServerActionKind::Power(power));
    let detail = format!("asking the BMC to {name} ({driver_action:?})");
    set_action(&mut rec, request, ActionStage::Issuing, &detail);
    commit(
        ctx,
        &rec,
        vec![action_report(
            ctx.server,
            request,
            ActionPhase::Running,
            detail,
        )],
    )?;
    match bmc.power(driver_action).await {
        Ok(state) => {
            let detail = format!("the BMC took the request; the server is {state}");
            set_action(&mut rec, request, ActionStage::Issued, &detail);
            clear_failures(&mut rec);
            let reports = vec![
                event(
                    ctx.server,
                    Severity::Info,
                    format!("request {request} ({name}): {detail}"),
                ),
                action_report(ctx.server, request, ActionPhase::Running, detail),
            ];
            commit(ctx, &rec, reports)?;
            Ok(Action::RequeueAfter(Duration::ZERO))
        }
        Err(e) => {
            let refused = matches!(&e, BmcError::Unsupported { .. } | BmcError::Config(_))
                || matches!(&e, BmcError::Http { method, url, .. }
                    if method.eq_ignore_ascii_case("POST") && url.contains("ComputerSystem.Reset"));
            let unchanged = refused
                && match bmc.power_state().await {
                    Ok(meridian_drivers::bmc::PowerState::On) => was_on == Some(true),
                    Ok(meridian_drivers::bmc::PowerState::Off) => was_on == Some(false),
                    _ => false,
                };
            if unchanged {
                let detail = format!(
                    "the BMC refused the request ({}); nothing happened, it will be asked again",
                    meridian_common::telemetry::error_chain(&e)
                );
                set_action(&mut rec, request, ActionStage::Started, &detail);
                commit(
                    ctx,
                    &rec,
                    vec![action_report(
                        ctx.server,
                        request,
                        ActionPhase::Running,
                        detail,
                    )],
                )?;
            }
            Err(bmc_step(STEP)(e))
        }
    }
}

fn set_action(rec: &mut ServerRecord, request: RequestId, phase: ActionStage, detail: &str) {
    if let Some(a) = rec.actions.get_mut(&request) {
        a.phase = phase;
        a.detail = detail.to_owned();
    }
}

fn action_report(
    server: &ServerId,
    request: RequestId,
    phase: ActionPhase,
    detail: String,
) -> ReportBody {
    ReportBody::ServerAction {
        request,
        server: server.clone(),
        phase,
        detail,
    }
}

/// Records `request` final and returns its reports; forgets old final requests the intent no
/// longer carries ([`record::prune_actions`]).
fn end_action(
    want: &ServerWant,
    rec: &mut ServerRecord,
    id: &ServerId,
    now: Timestamp,
    (request, kind): (RequestId, &ServerActionKind),
    done: bool,
    detail: &str,
) -> Vec<ReportBody> {
    let phase = if done {
        ActionStage::Done
    } else {
        ActionStage::Failed
    };
    let a = rec.actions.entry(request).or_insert_with(|| ActionRecord {
        kind: kind.clone(),
        phase,
        detail: String::new(),
        started_at: now,
        was_on: None,
    });
    a.phase = phase;
    a.detail = detail.to_owned();
    record::prune_actions(&mut rec.actions, |r| want.wants_action(r));
    let name = action_name(kind);
    let (severity, verb, report_phase) = if done {
        (Severity::Info, "done", ActionPhase::Done)
    } else {
        (Severity::Warning, "failed", ActionPhase::Failed)
    };
    vec![
        event(
            id,
            severity,
            format!("request {request} ({name}) {verb}: {detail}"),
        ),
        action_report(id, request, report_phase, detail.to_owned()),
    ]
}

fn clear_failures(rec: &mut ServerRecord) {
    rec.failures = 0;
    rec.permanent_failure = false;
    rec.last_error = None;
}

/// Applies the error policy to a failed observation or step: records the failure and reports
/// it, and either requeues after the back-off or marks the server `Failed`.
pub fn handle_failure(
    want: &ServerWant,
    error: &ReconcileError,
    policy: &RetryPolicy,
    ctx: &ServerCtx<'_>,
) -> Result<Action, ReconcileError> {
    let text = meridian_common::telemetry::error_chain(error);
    let mut rec = record::load(ctx.store, ctx.server)?;
    if matches!(rec.state, ServerState::Failed { .. }) {
        return Ok(Action::AwaitChange);
    }
    rec.failures += 1;
    let verdict = error_policy(error, rec.failures, rec.permanent_failure, policy);
    rec.permanent_failure |= !error.is_transient();
    rec.last_error = Some(text.clone());
    match verdict {
        Verdict::Retry(after) => {
            tracing::warn!(server = %ctx.server, error = %text, attempt = rec.failures, ?after, "reconcile step failed; retrying");
            let reports = vec![event(
                ctx.server,
                Severity::Warning,
                format!(
                    "{text} (attempt {}; retrying in {} ms)",
                    rec.failures,
                    after.as_millis()
                ),
            )];
            commit(ctx, &rec, reports)?;
            Ok(Action::RequeueAfter(after))
        }
        Verdict::Fail(reason) => {
            tracing::error!(server = %ctx.server, %reason, "server failed");
            let state = ServerState::Failed {
                reason: reason.clone(),
            };
            rec.state = state.clone();
            rec.failed_generation = want.generation;
            let mut reports = vec![event(
                ctx.server,
                Severity::Error,
                format!("server failed: {reason}"),
            )];
            let failed = AllocationStatus::Failed {
                reason: format!("server {} failed: {reason}", ctx.server),
            };
            let mut touched: Vec<(WorkloadId, AllocRecord)> = Vec::new();
            for a in want.active.iter().chain(&want.upcoming) {
                touched.push((
                    a.workload.clone(),
                    AllocRecord {
                        tenant: a.tenant.clone(),
                        status: failed.clone(),
                    },
                ));
            }
            for (w, r) in &rec.allocations {
                if r.status == AllocationStatus::Applied && !touched.iter().any(|t| &t.0 == w) {
                    touched.push((
                        w.clone(),
                        AllocRecord {
                            tenant: r.tenant.clone(),
                            status: failed.clone(),
                        },
                    ));
                }
            }
            for (w, r) in touched {
                reports.push(ReportBody::AllocationState {
                    workload: w.clone(),
                    server: ctx.server.clone(),
                    state: r.status.clone(),
                });
                rec.allocations.insert(w, r);
            }
            let mut unfinished: Vec<(RequestId, ServerActionKind)> = rec
                .actions
                .iter()
                .filter(|(_, a)| !a.phase.is_final())
                .map(|(r, a)| (*r, a.kind.clone()))
                .collect();
            unfinished.extend(
                want.actions
                    .iter()
                    .filter(|w| !rec.actions.contains_key(&w.request))
                    .map(|w| (w.request, w.kind.clone())),
            );
            let detail = format!("server {} failed: {reason}", ctx.server);
            for (request, kind) in unfinished {
                reports.extend(end_action(
                    want,
                    &mut rec,
                    ctx.server,
                    ctx.clock.now(),
                    (request, &kind),
                    false,
                    &detail,
                ));
            }
            reports.push(server_state(ctx.server, &state));
            commit(ctx, &rec, reports)?;
            Ok(Action::AwaitChange)
        }
    }
}

/// Writes the record and appends the reports in one transaction, then wakes the sender.
fn commit(
    ctx: &ServerCtx<'_>,
    rec: &ServerRecord,
    reports: Vec<ReportBody>,
) -> Result<(), ReconcileError> {
    let generation = ctx.store.applied_generation()?;
    ctx.store.commit_progress(
        ctx.site,
        generation,
        ctx.clock.now(),
        &reports,
        ctx.report_buffer_max,
        &[record::entry(ctx.server, rec)],
    )?;
    if !reports.is_empty() {
        ctx.reports_ready.notify_one();
    }
    Ok(())
}

/// Every inventoried server of the site, this one as it is about to be committed.
/// The site's inventory: every server inspected so far, and the IDs of those not yet inspected
/// (central keeps its records of them rather than dropping them).
fn site_inventory(
    ctx: &ServerCtx<'_>,
    mine: &ServerRecord,
) -> Result<(Vec<Server>, Vec<ServerId>), ReconcileError> {
    let mut out = Vec::new();
    let mut pending = Vec::new();
    for id in &ctx.inventory.servers {
        let rec = if id == ctx.server {
            mine.clone()
        } else {
            record::load(ctx.store, id)?
        };
        match rec.inventory {
            Some(mut s) => {
                s.state = rec.state.clone();
                out.push(s);
            }
            None => pending.push(id.clone()),
        }
    }
    Ok((out, pending))
}

fn event(server: &ServerId, severity: Severity, message: String) -> ReportBody {
    ReportBody::Event {
        severity,
        resource: format!("server/{server}"),
        message,
    }
}

fn server_state(server: &ServerId, state: &ServerState) -> ReportBody {
    ReportBody::ServerState {
        server: server.clone(),
        state: state.clone(),
    }
}

fn alloc_state(server: &ServerId, workload: &WorkloadId, status: &AllocationStatus) -> ReportBody {
    ReportBody::AllocationState {
        workload: workload.clone(),
        server: server.clone(),
        state: status.clone(),
    }
}

fn bmc_step(step: &'static str) -> impl FnOnce(BmcError) -> ReconcileError {
    move |source| ReconcileError::Bmc { step, source }
}

fn gpu_step(step: &'static str) -> impl FnOnce(GpuError) -> ReconcileError {
    move |source| ReconcileError::Gpu { step, source }
}

fn dpu_step(step: &'static str) -> impl FnOnce(DpuError) -> ReconcileError {
    move |source| ReconcileError::Dpu { step, source }
}

fn dpu<'a>(ctx: &'a ServerCtx<'_>, step: &'static str) -> Result<&'a dyn Dpu, ReconcileError> {
    ctx.drivers
        .dpu
        .as_ref()
        .map(|d| d.driver.as_ref())
        .ok_or_else(|| ReconcileError::Unexpected {
            step,
            detail: "no DPU managed on this server".to_owned(),
        })
}

fn gpus<'a>(
    ctx: &'a ServerCtx<'_>,
    step: &'static str,
) -> Result<&'a Arc<dyn GpuInventory>, ReconcileError> {
    ctx.drivers
        .gpus
        .as_ref()
        .ok_or_else(|| ReconcileError::Unexpected {
            step,
            detail: "no GPU driver for this server".to_owned(),
        })
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

/// Why an allocation no longer runs, for its `Ended` event.
fn end_reason(want: &ServerWant, workload: &WorkloadId) -> String {
    match want.ended.iter().find(|a| &a.workload == workload) {
        Some(a) => match a.window {
            Some(w) => format!("its window closed at {}", w.end()),
            None => "its window closed".to_owned(),
        },
        None if want.mentions(workload) => "it is not in force".to_owned(),
        None => "it left the intent".to_owned(),
    }
}

fn slots_text(a: &WantedAllocation) -> String {
    if a.slots.is_empty() {
        return "no GPU".to_owned();
    }
    let parts: Vec<String> = a
        .slots
        .iter()
        .map(|s| match s {
            meridian_common::model::GpuSlot::None => "no GPU".to_owned(),
            meridian_common::model::GpuSlot::WholeGpus { indices } => format!("GPUs {indices:?}"),
            meridian_common::model::GpuSlot::Mig {
                gpu_index, profile, ..
            } => format!("MIG {profile} on GPU {gpu_index}"),
        })
        .collect();
    parts.join(", ")
}

/// Ends (or, for allocations still wanted, re-pends) the recorded allocations that `keep`
/// does not hold as applied.
fn settle_allocations(
    want: &ServerWant,
    rec: &mut ServerRecord,
    server: &ServerId,
    keep_applied: &[&WantedAllocation],
    reports: &mut Vec<ReportBody>,
) {
    let applied: Vec<WorkloadId> = rec
        .allocations
        .iter()
        .filter(|(_, r)| r.status == AllocationStatus::Applied)
        .map(|(w, _)| w.clone())
        .collect();
    for w in applied {
        if keep_applied.iter().any(|a| a.workload == w) {
            continue;
        }
        let still = want.active.iter().any(|a| a.workload == w);
        let status = if still {
            AllocationStatus::Pending
        } else {
            AllocationStatus::Ended
        };
        let msg = if still {
            format!("allocation {w} torn down; it will be put in place again")
        } else {
            format!("allocation {w} ended: {}", end_reason(want, &w))
        };
        reports.push(event(server, Severity::Info, msg));
        reports.push(alloc_state(server, &w, &status));
        if want.mentions(&w) {
            if let Some(r) = rec.allocations.get_mut(&w) {
                r.status = status;
            }
        } else {
            rec.allocations.remove(&w);
        }
    }
}

/// Performs `step` and changes the record accordingly; returns the reports describing it.
async fn execute(
    step: &Step,
    want: &ServerWant,
    rec: &mut ServerRecord,
    ctx: &ServerCtx<'_>,
) -> Result<Vec<ReportBody>, ReconcileError> {
    let id = ctx.server;
    let bmc = &ctx.drivers.bmc;
    let info = |m: String| event(id, Severity::Info, m);
    let mut reports = Vec::new();
    match step {
        Step::Converged | Step::WaitPower => {}
        Step::Retry { generation } => {
            rec.state = if rec.inventory.is_some() {
                ServerState::Cleaning
            } else {
                ServerState::Discovered
            };
            clear_failures(rec);
            rec.allocations
                .retain(|_, r| !matches!(r.status, AllocationStatus::Failed { .. }));
            reports.push(info(format!(
                "retrying the failed server for intent generation {generation}"
            )));
            reports.push(server_state(id, &rec.state));
        }
        Step::Discover => {
            let d = bmc.discover().await.map_err(bmc_step("discover"))?;
            rec.state = ServerState::Inspecting;
            reports.push(info(format!(
                "discovered: {:?} BMC, Redfish {}, host system {}",
                d.vendor,
                d.redfish_version.as_deref().unwrap_or("?"),
                d.host_system
            )));
            reports.push(server_state(id, &rec.state));
        }
        Step::Inspect => {
            let d = bmc.discover().await.map_err(bmc_step("inspect"))?;
            let hw = bmc.inventory().await.map_err(bmc_step("inspect"))?;
            let report = match &ctx.drivers.gpus {
                Some(g) => Some(g.report().await.map_err(gpu_step("inspect GPUs"))?),
                None => None,
            };
            let (server, unknown) = super::inventory::server_from(
                id,
                ctx.site,
                ctx.bmc_url,
                &d.vendor,
                &hw,
                report.as_ref(),
            );
            let gpus: Vec<String> = server
                .gpus
                .iter()
                .map(|g| format!("{} {}", g.index, g.model))
                .collect();
            reports.push(info(format!(
                "inspected: serial {}, {} CPU cores, {} MiB memory, GPUs [{}]{}",
                server.serial,
                server.cpu_cores,
                server.memory_mib,
                gpus.join(", "),
                match &report {
                    Some(meridian_drivers::gpu::GpuReport::NoGpus(why)) => format!(" ({why})"),
                    _ => String::new(),
                }
            )));
            if !unknown.is_empty() {
                reports.push(event(
                    id,
                    Severity::Warning,
                    format!(
                        "GPUs of unknown models left out of the inventory: {}",
                        unknown.join(", ")
                    ),
                ));
            }
            if let Some(d) = &ctx.drivers.dpu {
                let mode = d.driver.mode().await.map_err(dpu_step("inspect the DPU"))?;
                let fw = d
                    .driver
                    .firmware()
                    .await
                    .map_err(dpu_step("inspect the DPU"))?;
                reports.push(info(format!(
                    "DPU: {} running DPU_OS {}, NIC firmware {}, BMC {}",
                    mode.current.as_str(),
                    fw.os.as_deref().unwrap_or("?"),
                    fw.nic.as_deref().unwrap_or("?"),
                    fw.bmc.as_deref().unwrap_or("?")
                )));
            }
            rec.inventory = Some(server);
            rec.state = ServerState::Available;
            reports.push(server_state(id, &rec.state));
        }
        Step::Note(note) => note_step(note, want, rec, id, &mut reports),
        Step::BeginAction {
            request,
            kind,
            was_on,
        } => {
            let name = action_name(kind);
            let detail = format!("{name} started");
            rec.actions.insert(
                *request,
                ActionRecord {
                    kind: kind.clone(),
                    phase: ActionStage::Started,
                    detail: detail.clone(),
                    started_at: ctx.clock.now(),
                    was_on: *was_on,
                },
            );
            reports.push(info(format!("request {request}: {detail}")));
            reports.push(action_report(id, *request, ActionPhase::Running, detail));
        }
        Step::IssueAction { request, kind } => {
            // Power requests are taken in `issue_power`; a reprovision asks nothing of the
            // device: the server goes through cleaning, then back to what the intent wants.
            if *kind != ServerActionKind::Clean {
                return Err(ReconcileError::Unexpected {
                    step: "server action",
                    detail: format!("request {request}: {} cannot be issued", action_name(kind)),
                });
            }
            let detail = "cleaning (MIG torn down, powered off, media ejected, boot override \
                          cleared), then the allocations in force are put in place again"
                .to_owned();
            set_action(rec, *request, ActionStage::Issued, &detail);
            rec.state = ServerState::Cleaning;
            reports.push(info(format!("cleaning: request {request}: reprovision")));
            reports.push(server_state(id, &rec.state));
            reports.push(action_report(id, *request, ActionPhase::Running, detail));
        }
        Step::EndAction {
            request,
            kind,
            done,
            detail,
        } => reports.extend(end_action(
            want,
            rec,
            id,
            ctx.clock.now(),
            (*request, kind),
            *done,
            detail,
        )),
        Step::BeginCleaning { why } => {
            rec.state = ServerState::Cleaning;
            reports.push(info(format!("cleaning: {why}")));
            reports.push(server_state(id, &rec.state));
        }
        Step::InsertMedia { image } => {
            // An insert of this image may be under way (one asked for before a crash): let it
            // finish rather than eject it and insert again.
            let mut pending = bmc
                .media()
                .await
                .map_err(bmc_step("insert virtual media"))?;
            let mut polls = 0;
            while !pending.inserted
                && device::same_image(pending.image.as_deref(), image)
                && polls < MEDIA_IN_PROGRESS_POLLS
            {
                tokio::time::sleep(ctx.power_poll).await;
                pending = bmc
                    .media()
                    .await
                    .map_err(bmc_step("insert virtual media"))?;
                polls += 1;
            }
            if !(pending.inserted && device::same_image(pending.image.as_deref(), image)) {
                bmc.insert_media(image, MediaPolicy::EjectFirst)
                    .await
                    .map_err(bmc_step("insert virtual media"))?;
            }
            rec.media = Some(image.clone());
            reports.push(info(format!("virtual media {image} inserted")));
        }
        Step::ArmBoot => {
            bmc.set_boot_override(&BootOverride {
                target: BootTarget::Cd,
                enabled: BootOverrideEnabled::Once,
                mode: None,
            })
            .await
            .map_err(bmc_step("arm one-time CD boot"))?;
            rec.boot_armed = true;
            reports.push(info("one-time boot from the virtual CD armed".to_owned()));
        }
        Step::PowerOn { with } | Step::Restart { with } => {
            let (action, verb, what) = match step {
                Step::PowerOn { .. } => (PowerAction::On, "powered on", "power on"),
                _ => (PowerAction::ForceRestart, "restarted", "restart"),
            };
            bmc.power(action).await.map_err(bmc_step(what))?;
            rec.booted = Some(with.clone());
            rec.boot_armed = false;
            reports.push(info(format!("{verb}; booted {}", describe(with))));
        }
        Step::SetMigMode { gpu, enabled } => {
            let g = gpus(ctx, "set MIG mode")?;
            let mode = g
                .set_mig_mode(GpuIndex(*gpu), *enabled)
                .await
                .map_err(gpu_step("set MIG mode"))?;
            reports.push(info(format!(
                "GPU {gpu}: MIG mode {} asked for (in force: {})",
                on_off(mode.pending),
                on_off(mode.current)
            )));
        }
        Step::ResetGpu { gpu } => {
            let g = gpus(ctx, "reset GPU")?;
            let mode = g
                .reset_gpu(GpuIndex(*gpu))
                .await
                .map_err(gpu_step("reset GPU"))?;
            if mode.current {
                rec.mig_on.insert(*gpu);
            } else {
                rec.mig_on.remove(gpu);
            }
            reports.push(info(format!(
                "GPU {gpu} reset: MIG mode {}",
                on_off(mode.current)
            )));
        }
        Step::CreateMig {
            key,
            workload,
            gpu,
            profile,
        } => {
            let g = gpus(ctx, "create MIG device")?;
            let d = g
                .create_mig_device(GpuIndex(*gpu), &MigProfile(profile.clone()))
                .await
                .map_err(gpu_step("create MIG device"))?;
            rec.mig.insert(
                key.clone(),
                MigClaim {
                    workload: workload.clone(),
                    gpu: *gpu,
                    profile: profile.clone(),
                    uuid: d.uuid.0.clone(),
                },
            );
            reports.push(info(format!(
                "GPU {gpu}: MIG device {} ({profile}) created for {workload}",
                d.uuid
            )));
        }
        Step::DestroyMig { gpu, uuid, key } => {
            let g = gpus(ctx, "destroy MIG device")?;
            match g
                .destroy_mig_device(GpuIndex(*gpu), &GpuUuid(uuid.clone()))
                .await
            {
                Ok(()) | Err(GpuError::NoSuchMigDevice { .. }) => {}
                Err(e) => return Err(gpu_step("destroy MIG device")(e)),
            }
            let whose = match key.as_ref().and_then(|k| rec.mig.remove(k)) {
                Some(c) => format!("of {}", c.workload),
                None => "owned by no allocation".to_owned(),
            };
            reports.push(info(format!(
                "GPU {gpu}: MIG device {uuid} {whose} destroyed"
            )));
        }
        Step::PowerOff => {
            bmc.power(PowerAction::ForceOff)
                .await
                .map_err(bmc_step("power off"))?;
            rec.booted = None;
            rec.boot_armed = false;
            reports.push(info("powered off".to_owned()));
        }
        Step::EjectMedia => {
            let before = bmc.media().await.map_err(bmc_step("eject virtual media"))?;
            bmc.eject_media()
                .await
                .map_err(bmc_step("eject virtual media"))?;
            rec.media = None;
            reports.push(info(format!(
                "virtual media {} ejected",
                before.image.as_deref().unwrap_or("(unnamed)")
            )));
        }
        Step::ClearBootOverride => {
            bmc.set_boot_override(&BootOverride {
                target: BootTarget::None,
                enabled: BootOverrideEnabled::Disabled,
                mode: None,
            })
            .await
            .map_err(bmc_step("clear boot override"))?;
            rec.boot_armed = false;
            reports.push(info("boot override cleared".to_owned()));
        }
        Step::InstallBfb { image, version } => {
            let installed = dpu(ctx, "install the BFB bundle")?
                .install_bfb(image)
                .await
                .map_err(dpu_step("install the BFB bundle"))?;
            if installed.version.as_deref() != Some(version.as_str()) {
                return Err(ReconcileError::Unexpected {
                    step: "install the BFB bundle",
                    detail: format!(
                        "{} installed, but DPU_OS reports {:?}, not {version:?}",
                        image.url, installed.version
                    ),
                });
            }
            reports.push(info(format!(
                "BFB bundle {} installed on the DPU: DPU_OS {} -> {version}",
                image.url,
                installed.previous_version.as_deref().unwrap_or("(none)")
            )));
        }
        Step::SetDpuMode { mode } => {
            let status = dpu(ctx, "set the DPU mode")?
                .set_mode(*mode)
                .await
                .map_err(dpu_step("set the DPU mode"))?;
            reports.push(info(format!(
                "DPU mode {} requested (running {}); effective after a reset",
                mode.as_str(),
                status.current.as_str()
            )));
        }
        Step::ResetDpu => {
            let status = dpu(ctx, "reset the DPU")?
                .reset()
                .await
                .map_err(dpu_step("reset the DPU"))?;
            reports.push(info(format!(
                "DPU reset; running {}",
                status.current.as_str()
            )));
        }
        Step::MarkAvailable => {
            rec.state = ServerState::Available;
            rec.mig.clear();
            rec.mig_on.clear();
            rec.media = None;
            rec.booted = None;
            rec.boot_armed = false;
            settle_allocations(want, rec, id, &[], &mut reports);
            reports.push(info("clean and available".to_owned()));
            reports.push(server_state(id, &rec.state));
        }
        Step::MarkAllocated => {
            let accepted = match &rec.inventory {
                Some(inv) => plan::assess(want, inv, ctx.drivers.gpus.is_some()).accepted,
                None => Vec::new(),
            };
            settle_allocations(want, rec, id, &accepted, &mut reports);
            for a in &accepted {
                let applied = rec
                    .allocations
                    .get(&a.workload)
                    .is_some_and(|r| r.status == AllocationStatus::Applied);
                if applied {
                    continue;
                }
                reports.push(info(format!(
                    "allocation {} of tenant {} in place: {} ({:?})",
                    a.workload,
                    a.tenant,
                    slots_text(a),
                    a.mode
                )));
                reports.push(alloc_state(id, &a.workload, &AllocationStatus::Applied));
                rec.allocations.insert(
                    a.workload.clone(),
                    AllocRecord {
                        tenant: a.tenant.clone(),
                        status: AllocationStatus::Applied,
                    },
                );
            }
            if rec.state != ServerState::Allocated {
                rec.state = ServerState::Allocated;
                reports.push(server_state(id, &rec.state));
            }
        }
    }
    Ok(reports)
}

fn note_step(
    note: &Note,
    want: &ServerWant,
    rec: &mut ServerRecord,
    id: &ServerId,
    reports: &mut Vec<ReportBody>,
) {
    let info = |m: String| event(id, Severity::Info, m);
    match note {
        Note::Allocation { alloc, status } => {
            let msg = match status {
                AllocationStatus::Pending => format!(
                    "allocation {} of tenant {} pending: {}",
                    alloc.workload,
                    alloc.tenant,
                    slots_text(alloc)
                ),
                AllocationStatus::Failed { reason } => {
                    format!(
                        "allocation {} cannot be put in place: {reason}",
                        alloc.workload
                    )
                }
                AllocationStatus::Ended => format!(
                    "allocation {} ended before it was put in place: {}",
                    alloc.workload,
                    end_reason(want, &alloc.workload)
                ),
                AllocationStatus::Applied => format!("allocation {} in place", alloc.workload),
            };
            let severity = if matches!(status, AllocationStatus::Failed { .. }) {
                Severity::Warning
            } else {
                Severity::Info
            };
            reports.push(event(id, severity, msg));
            reports.push(alloc_state(id, &alloc.workload, status));
            if want.mentions(&alloc.workload) {
                rec.allocations.insert(
                    alloc.workload.clone(),
                    AllocRecord {
                        tenant: alloc.tenant.clone(),
                        status: status.clone(),
                    },
                );
            } else {
                rec.allocations.remove(&alloc.workload);
            }
        }
        Note::Forget { workload } => {
            rec.allocations.remove(workload);
        }
        Note::MediaFound { image } => {
            rec.media = Some(image.clone());
            reports.push(info(format!(
                "virtual media {image} found inserted (recorded after a restart)"
            )));
        }
        Note::MediaGone => {
            rec.media = None;
            reports.push(info("virtual media found ejected".to_owned()));
        }
        Note::BootArmedFound => {
            rec.boot_armed = true;
            reports.push(info(
                "one-time boot from the virtual CD found armed (recorded after a restart)"
                    .to_owned(),
            ));
        }
        Note::BootedFound { with } => {
            rec.booted = Some(with.clone());
            rec.boot_armed = false;
            reports.push(info(format!(
                "found on and booted from {} (recorded after a restart)",
                describe(with)
            )));
        }
        Note::BootLost => {
            rec.booted = None;
            rec.boot_armed = false;
            reports.push(event(
                id,
                Severity::Warning,
                "the server is no longer up with what its allocations need; starting it again"
                    .to_owned(),
            ));
        }
        Note::PoweredOffFound => {
            rec.booted = None;
            rec.boot_armed = false;
            reports.push(info("found powered off".to_owned()));
        }
        Note::MigModeFound { gpu, on } => {
            if *on {
                rec.mig_on.insert(*gpu);
            } else {
                rec.mig_on.remove(gpu);
            }
            reports.push(info(format!("GPU {gpu}: MIG mode found {}", on_off(*on))));
        }
        Note::MigAdopted { key, claim } => {
            reports.push(info(format!(
                "GPU {}: MIG device {} ({}) found and adopted for {}",
                claim.gpu, claim.uuid, claim.profile, claim.workload
            )));
            rec.mig.insert(key.clone(), claim.clone());
        }
        Note::ActionUnderWay { request } => {
            let detail = "found under way after the agent stopped before confirming it (the BMC \
                          took the request; not repeated); waiting for it to end"
                .to_owned();
            set_action(rec, *request, ActionStage::Issued, &detail);
            reports.push(info(format!("request {request}: {detail}")));
            reports.push(action_report(id, *request, ActionPhase::Running, detail));
        }
        Note::MigVanished { key } => {
            if let Some(c) = rec.mig.remove(key) {
                reports.push(event(
                    id,
                    Severity::Warning,
                    format!(
                        "GPU {}: MIG device {} of {} is gone",
                        c.gpu, c.uuid, c.workload
                    ),
                ));
            }
        }
    }
}
