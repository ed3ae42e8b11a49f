//! The one reconcile shape every resource at a site takes, and the one worker loop that runs
//! every instance of it.
//!
//! A resource kind (a server, a leaf switch; host networks, the gateway and storage are meant
//! to be further kinds, not further loops) implements [`Resource`]:
//!
//! 1. [`Resource::want`]: what the held intent asks of the instance at `now` (pure);
//! 2. [`Resource::observe`]: what its device and the agent's records say now (IO through the
//!    driver);
//! 3. [`Resource::plan`]: the next step, from the want and the observation (pure, unit-tested);
//! 4. [`Resource::execute`]: takes the step and says what to do next ([`Action`]);
//! 5. [`Resource::failed`]: a failed observation or step goes through the error policy
//!    ([`super::error_policy`]: back-off, then a permanent failure with the reason);
//! 6. [`Resource::report`]: publishes the pass's outcome (the site's status, reports).
//!
//! [`worker`] runs one instance: one pass at a time (never two reconciles of a resource at
//! once), again at once while there is more to do, after the back-off or poll interval a pass
//! asked for, and once converged when a new intent arrives, when the want changes by itself (a
//! window boundary, on the injected [`Clock`]) or after the periodic resync, whichever comes
//! first. The agent stopping ends it, mid-step if need be.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use meridian_common::ids::{Generation, SiteId, Timestamp};
use meridian_common::model::{ReportBody, Severity, SiteIntent};
use tokio::sync::watch;

use super::clock::Clock;
use super::status::SiteStatus;
use super::{Action, ReconcileError, RetryPolicy, SiteReconcilerConfig, Verdict};
use crate::reconciler::AgentLink;

/// How often a worker looks for the agent's enrolment before it knows its site.
const ENROLMENT_POLL: Duration = Duration::from_millis(500);

/// What every worker of a site shares.
pub(crate) struct Env {
    pub(crate) config: SiteReconcilerConfig,
    pub(crate) clock: Arc<dyn Clock>,
    /// The held intent (newest generation first come).
    pub(crate) intent: watch::Sender<Option<Arc<SiteIntent>>>,
    /// Every resource's last reported status.
    pub(crate) status: watch::Sender<SiteStatus>,
    /// Passes, failures and driver latency ([`crate::metrics`]).
    pub(crate) metrics: crate::metrics::ReconcileMetrics,
}

/// One pass's surroundings.
pub struct Cx<'a> {
    pub(crate) env: &'a Env,
    pub(crate) link: &'a AgentLink,
    /// The site (the intent's, else the enrolled identity's).
    pub site: &'a SiteId,
    /// The injected clock when the pass began.
    pub now: Timestamp,
}

impl fmt::Debug for Cx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cx")
            .field("site", &self.site)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Cx<'_> {
    /// Appends site-level reports (stamped with the applied generation) and progress
    /// `records` in one transaction, and wakes the channel; a failure is logged naming `what`.
    pub(crate) fn commit_reports(
        &self,
        reports: &[ReportBody],
        records: &[(Vec<u8>, Option<Vec<u8>>)],
        what: &str,
    ) {
        commit_site_reports(self.link, self.site, self.now, reports, records, what);
    }

    /// Reports `events` (emptied) as events of `resource` (`switch/leaf-1`, `gateway`).
    pub(crate) fn report_events(&self, resource: &str, events: &mut Vec<(Severity, String)>) {
        if events.is_empty() {
            return;
        }
        let reports: Vec<ReportBody> = events
            .drain(..)
            .map(|(severity, message)| ReportBody::Event {
                severity,
                resource: resource.to_owned(),
                message,
            })
            .collect();
        self.commit_reports(&reports, &[], &format!("events of {resource}"));
    }
}

/// One resource instance in the one reconcile shape; see the module documentation.
#[async_trait]
pub trait Resource: Send + 'static {
    /// What the intent asks of the instance at one instant.
    type Want: Send + Sync;
    /// What was seen of it.
    type Observed: Send + Sync;
    /// The step the planner chose.
    type Step: Send + fmt::Debug;

    /// The resource kind, as metrics name it (`server`, `switch`...).
    const KIND: &'static str;
    /// The driver kind it is kept through, as metrics name it (`redfish`, `nvue`...).
    const DRIVER: &'static str;

    /// The driver [`Resource::observe`] reads through (`None`: it reads none), for metrics.
    fn observe_driver() -> Option<&'static str> {
        Some(Self::DRIVER)
    }

    /// The driver `step` is carried out through (`None`: it calls none), for metrics.
    fn step_driver(_step: &Self::Step) -> Option<&'static str> {
        Some(Self::DRIVER)
    }

    /// What the held intent (if any) asks of it at `now`; `None`: nothing to do until an
    /// intent arrives. Pure.
    fn want(&self, intent: Option<&SiteIntent>, now: Timestamp) -> Option<Self::Want>;

    /// When `want` changes by itself (an allocation window opening or closing).
    fn next_change(want: &Self::Want) -> Option<Timestamp>;

    /// Reads the device (through its driver) and the agent's records of it.
    async fn observe(
        &mut self,
        want: &Self::Want,
        cx: &Cx<'_>,
    ) -> Result<Self::Observed, ReconcileError>;

    /// The next step. Pure: no IO, no clock.
    fn plan(&self, want: &Self::Want, observed: &Self::Observed) -> Self::Step;

    /// Takes `step`.
    async fn execute(
        &mut self,
        step: Self::Step,
        want: &Self::Want,
        observed: Self::Observed,
        cx: &Cx<'_>,
    ) -> Result<Action, ReconcileError>;

    /// Applies the error policy to a failed observation or step.
    fn failed(&mut self, want: &Self::Want, error: ReconcileError, cx: &Cx<'_>) -> Action;

    /// Publishes how the pass ended.
    fn report(&mut self, want: &Self::Want, action: Action, cx: &Cx<'_>);
}

/// The error policy's bookkeeping for a resource whose progress is not a journal record (a
/// switch, the gateway): consecutive failures, whether one of them was not transient, and the
/// last warning reported, so a failure repeated on the same generation is reported once.
#[derive(Debug, Default)]
pub(crate) struct Streak {
    failures: u32,
    permanent: bool,
    last_warning: Option<(Generation, String)>,
}

/// What the error policy made of one failure.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The reason, once the policy gave up (the resource failed on this generation).
    pub(crate) failed: Option<String>,
    /// How long to wait before the next try.
    pub(crate) wait: Duration,
    /// A warning to report, unless the same one was reported for this generation already.
    pub(crate) warning: Option<String>,
}

impl Streak {
    /// A pass succeeded: the streak is over.
    pub(crate) fn succeeded(&mut self) {
        *self = Streak::default();
    }

    /// A pass working towards `generation` failed with `error`.
    pub(crate) fn failed(
        &mut self,
        error: &ReconcileError,
        generation: Generation,
        retry: &RetryPolicy,
    ) -> Failure {
        self.failures += 1;
        self.permanent |= !error.is_transient();
        let chain = meridian_common::telemetry::error_chain(error);
        let (failed, wait) = match super::error_policy(error, self.failures, self.permanent, retry)
        {
            Verdict::Retry(d) => (None, d),
            Verdict::Fail(reason) => (Some(reason), retry.max),
        };
        let warning = (generation, chain);
        let warning = (self.last_warning.as_ref() != Some(&warning)).then(|| {
            self.last_warning = Some(warning.clone());
            warning.1
        });
        Failure {
            failed,
            wait,
            warning,
        }
    }

    /// Consecutive failures so far.
    pub(crate) fn failures(&self) -> u32 {
        self.failures
    }
}

/// What a node resource (a switch, the gateway, a container host) keeps between passes: its
/// error-policy streak, how many applies changed it, how the current pass ended and the events
/// it has to report.
#[derive(Debug, Default)]
pub(crate) struct NodeBook {
    streak: Streak,
    changes: u64,
    /// How the current pass ended.
    pub(crate) outcome: Option<super::status::SwitchStatus>,
    /// Events to report at the end of the pass.
    pub(crate) events: Vec<(Severity, String)>,
}

impl NodeBook {
    /// A pass starts: nothing concluded, nothing to report yet.
    pub(crate) fn start_pass(&mut self) {
        self.outcome = None;
        self.events.clear();
    }

    /// The node carries `generation`; `changed` says what the pass changed, if anything.
    pub(crate) fn converged(&mut self, generation: Generation, changed: Option<String>) {
        self.streak.succeeded();
        if let Some(what) = changed {
            self.changes += 1;
            self.events
                .push((Severity::Info, format!("generation {generation}: {what}")));
        }
        self.outcome = Some(super::status::SwitchStatus {
            generation,
            converged: true,
            failure: None,
            changes: self.changes,
        });
    }

    /// A pass towards `generation` failed: the error policy's verdict becomes the outcome (and
    /// a warning event, once per generation and error); the wait before the next pass.
    pub(crate) fn failed(
        &mut self,
        error: &ReconcileError,
        generation: Generation,
        retry: &RetryPolicy,
    ) -> Action {
        let f = self.streak.failed(error, generation, retry);
        if let Some(warning) = f.warning {
            self.events.push((Severity::Warning, warning));
        }
        self.outcome = Some(super::status::SwitchStatus {
            generation,
            converged: false,
            failure: f.failed,
            changes: self.changes,
        });
        Action::RequeueAfter(f.wait)
    }

    /// Consecutive failures so far.
    pub(crate) fn failures(&self) -> u32 {
        self.streak.failures()
    }
}

/// One pass: observe, plan, execute; a failure goes through the error policy. Each is
/// counted, and each observation and step timed under its driver ([`crate::metrics`]).
async fn pass<R: Resource>(r: &mut R, want: &R::Want, cx: &Cx<'_>) -> Action {
    let metrics = &cx.env.metrics;
    let timed = |driver: Option<&'static str>, started: Instant| {
        if let Some(driver) = driver {
            metrics.driver_call(driver, started.elapsed());
        }
    };
    let started = Instant::now();
    let observed = r.observe(want, cx).await;
    timed(R::observe_driver(), started);
    let result = match observed {
        Ok(observed) => {
            let step = r.plan(want, &observed);
            let driver = R::step_driver(&step);
            let started = Instant::now();
            let done = r.execute(step, want, observed, cx).await;
            timed(driver, started);
            done
        }
        Err(e) => Err(e),
    };
    match result {
        Ok(action) => {
            metrics.action(R::KIND);
            action
        }
        Err(e) => {
            metrics.error(R::KIND);
            r.failed(want, e, cx)
        }
    }
}

/// Runs `resource` until the agent stops; see the module documentation.
pub(crate) async fn worker<R: Resource>(mut resource: R, env: &Env, link: AgentLink) {
    let mut intent_rx = env.intent.subscribe();
    let mut stop = link.stop.clone();
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
                _ = tokio::time::sleep(env.config.resync.min(ENROLMENT_POLL)) => {}
                r = stop.changed() => if r.is_err() { return },
            }
            continue;
        };
        let now = env.clock.now();
        let Some(want) = resource.want(intent.as_deref(), now) else {
            tokio::select! {
                _ = intent_rx.changed() => {}
                r = stop.changed() => if r.is_err() { return },
            }
            continue;
        };
        let cx = Cx {
            env,
            link: &link,
            site: &site,
            now,
        };
        let action = tokio::select! {
            a = pass(&mut resource, &want, &cx) => a,
            _ = stop.changed() => return,
        };
        resource.report(&want, action, &cx);
        let wait = match action {
            Action::RequeueAfter(d) if d.is_zero() => continue,
            Action::RequeueAfter(d) => d,
            Action::AwaitChange => env.config.resync,
        };
        if !pause(env, wait, R::next_change(&want), &mut intent_rx, &mut stop).await {
            return;
        }
    }
}

/// Waits `wait`, or until a new intent, the window boundary `next_change` (on the injected
/// clock) or the agent stopping. Returns `false` when the agent is gone (its stop sender
/// dropped): the worker ends.
async fn pause(
    env: &Env,
    wait: Duration,
    next_change: Option<Timestamp>,
    intent_rx: &mut watch::Receiver<Option<Arc<SiteIntent>>>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    let boundary = match next_change {
        Some(t) => env.clock.sleep_until(t),
        None => Box::pin(std::future::pending()),
    };
    tokio::select! {
        _ = tokio::time::sleep(wait) => true,
        _ = intent_rx.changed() => true,
        _ = boundary => true,
        r = stop.changed() => r.is_ok(),
    }
}

/// The site id: the intent's, else the enrolled identity's.
fn site_of(intent: Option<&SiteIntent>, link: &AgentLink) -> Option<SiteId> {
    if let Some(i) = intent {
        return Some(i.site.clone());
    }
    link.store.identity().ok().flatten().map(|id| id.site)
}

/// Appends site-level reports (stamped with the applied generation) and progress `records`
/// in one transaction, and wakes the channel; a failure is logged naming `what`.
pub(crate) fn commit_site_reports(
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
