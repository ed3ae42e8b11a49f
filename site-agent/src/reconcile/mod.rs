//! The site reconciler: brings every resource of the site (its servers and leaf switches) to
//! what the held [`SiteIntent`] asks of it now, through the drivers of `meridian-drivers`, and
//! reports every step.
//!
//! One shape for every resource kind, after kube-runtime's controllers ([`resource`]):
//!
//! - **want**, derived from the held intent at an instant (pure): [`desired::ServerWant`] for a
//!   server, [`switch::SwitchWant`] (from [`fabric::fabric_want`]) for a switch;
//! - **observe** through the driver: a server's progress record
//!   ([`record::ServerRecord`]) plus what its BMC, GPUs and DPU say now ([`device::Device`]);
//!   a switch's differences from its want;
//! - **plan**, pure and unit-tested: [`plan::plan`] for a server, [`switch::plan`] for a
//!   switch;
//! - **execute**, which returns [`Action::RequeueAfter`] (more to do, or a transition to wait
//!   out) or [`Action::AwaitChange`] (converged);
//! - one **error policy** ([`error_policy`]): a failed step is retried after an exponential
//!   back-off or, after a bounded number of attempts, the resource fails with the reason;
//! - **report**: the resource's status and reports, in the agent's buffer.
//!
//! One worker loop ([`resource::worker`]) runs every instance; [`site::SiteReconciler`] starts
//! one per server and per switch, decides when a generation is applied or failed, and plugs
//! into the agent as a background [`crate::reconciler::Reconciler`]. Host networks, the WAN
//! gateway and storage are to be further [`Resource`] kinds, not further loops.
//!
//! The modules hold no import circle: the planners ([`plan`], [`switch::plan`]) read plain data
//! only ([`desired`], [`device`], the record types of [`record`]), and the IO lives in
//! [`server`], [`switch`] and [`resource`], which import them and never the other way round.
//!
//! Guarantees and assumptions are written down in `docs/reconciler.md`.
//!
//! [`SiteIntent`]: meridian_common::model::SiteIntent

pub mod clock;
pub mod desired;
pub mod device;
pub mod egress;
pub mod fabric;
pub mod gateway;
pub mod host;
pub mod inventory;
pub mod plan;
pub mod record;
pub mod resource;
pub mod server;
pub mod site;
pub mod status;
pub mod storage;
pub mod switch;
pub mod utilisation;

use std::time::Duration;

use crate::store::AgentStoreError;
use meridian_drivers::dpu::DpuError;
use meridian_drivers::{BmcError, GpuError};

pub use clock::{Clock, ManualClock, SystemClock};
pub use desired::ServerWant;
pub use device::Device;
pub use fabric::{ManagedSwitch, SwitchLayout};
pub use gateway::{GatewayLayout, ManagedGateway};
pub use plan::Step;
pub use record::ServerRecord;
pub use resource::Resource;
pub use server::{Observed, ServerCtx, ServerDrivers, ServerSpec, reconcile};
pub use site::SiteReconciler;
pub use status::{GatewayStatus, ServerStatus, SiteStatus, SwitchStatus};
pub use utilisation::UtilisationConfig;

/// What to do after a reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long (zero: at once; there is more to do).
    RequeueAfter(Duration),
    /// Nothing to do until something changes (a new intent, a window boundary, the periodic
    /// resync).
    AwaitChange,
}

/// Why a reconcile step failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The server's BMC refused or did not answer.
    #[error("{step}: BMC operation failed")]
    Bmc {
        /// The step (`power on`, `insert media`...).
        step: &'static str,
        #[source]
        source: BmcError,
    },
    /// A GPU operation failed.
    #[error("{step}: GPU operation failed")]
    Gpu {
        step: &'static str,
        #[source]
        source: GpuError,
    },
    /// A DPU operation failed (through the DPU's own BMC).
    #[error("{step}: DPU operation failed")]
    Dpu {
        step: &'static str,
        #[source]
        source: DpuError,
    },
    /// What the drivers answered makes no sense for the step (e.g. a created MIG device that
    /// does not show up).
    #[error("{step}: {detail}")]
    Unexpected { step: &'static str, detail: String },
    /// A leaf switch refused or did not take its configuration.
    #[error("{step}: switch operation failed")]
    Switch {
        step: &'static str,
        #[source]
        source: meridian_drivers::FabricError,
    },
    /// The intent cannot be rendered for a switch with its configured layout.
    #[error("switch layout")]
    SwitchLayout(#[from] fabric::FabricWantError),
    /// The gateway node's kernel networking could not be converged.
    #[error("{step}: host network operation failed")]
    HostNetwork {
        step: &'static str,
        #[source]
        source: meridian_drivers::HostNetworkError,
    },
    /// The gateway's ruleset could not be read or applied.
    #[error("{step}: gateway operation failed")]
    Gateway {
        step: &'static str,
        #[source]
        source: meridian_drivers::GatewayError,
    },
    /// The intent cannot be put on the gateway as configured.
    #[error("gateway layout")]
    GatewayLayout(#[from] gateway::GatewayWantError),
    /// The intent cannot be put on a container/VM host as configured.
    #[error("host layout")]
    HostLayout(#[from] host::HostWantError),
    /// The site's storage array refused or did not answer.
    #[error("{step}: storage array operation failed")]
    Storage {
        step: &'static str,
        #[source]
        source: meridian_drivers::StorageError,
    },
    /// The agent's database failed (not counted against the server).
    #[error("agent database")]
    Store(#[from] AgentStoreError),
}

impl ReconcileError {
    /// Whether the same step may succeed later without anyone changing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            ReconcileError::Bmc { source, .. } => source.is_transient(),
            ReconcileError::Gpu { source, .. } => matches!(
                source,
                GpuError::InUse { .. } | GpuError::Nvml { .. } | GpuError::Worker(_)
            ),
            ReconcileError::Dpu { source, .. } => match source {
                DpuError::Bmc(b) => b.is_transient(),
                _ => false,
            },
            ReconcileError::Switch { source, .. } => {
                use meridian_drivers::FabricError as F;
                match source {
                    F::Http { status, .. } => *status >= 500 || *status == 429,
                    F::Transport { .. } | F::ApplyTimeout { .. } => true,
                    _ => false,
                }
            }
            ReconcileError::SwitchLayout(_)
            | ReconcileError::GatewayLayout(_)
            | ReconcileError::HostLayout(_) => false,
            ReconcileError::HostNetwork { source, .. } => {
                use meridian_drivers::HostNetworkError as H;
                !matches!(source, H::Spec(_) | H::Namespace { .. } | H::Spawn { .. })
            }
            ReconcileError::Gateway { source, .. } => {
                use meridian_drivers::GatewayError as G;
                matches!(source, G::Nft { .. } | G::Parse(_))
            }
            ReconcileError::Storage { source, .. } => source.is_transient(),
            ReconcileError::Unexpected { .. } => true,
            ReconcileError::Store(_) => true,
        }
    }
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

/// Bounds on retrying a failed step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Back-off after the first failure; doubled after each further one.
    pub initial: Duration,
    /// Longest back-off.
    pub max: Duration,
    /// Consecutive failures of transient errors (busy, unreachable, timeouts) before the
    /// server is `Failed`.
    pub transient_attempts: u32,
    /// Consecutive failures when one error was not transient (a refusal, a failed task, an
    /// image the BMC could not fetch) before the server is `Failed`: such errors get a second
    /// chance, as a one-off failure is common, but no more.
    pub permanent_attempts: u32,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            transient_attempts: 8,
            permanent_attempts: 2,
        }
    }
}

/// What to do about a failed step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Try again after this long.
    Retry(Duration),
    /// Give up: the server becomes `Failed` with this reason.
    Fail(String),
}

/// The error policy: `failures` counts consecutive failed steps of this server, this one
/// included; `permanent` whether any of them was not transient.
pub fn error_policy(
    error: &ReconcileError,
    failures: u32,
    permanent: bool,
    policy: &RetryPolicy,
) -> Verdict {
    let limit = if permanent || !error.is_transient() {
        policy.permanent_attempts.min(policy.transient_attempts)
    } else {
        policy.transient_attempts
    };
    if failures >= limit.max(1) {
        return Verdict::Fail(format!(
            "{} (after {failures} attempt(s))",
            meridian_common::telemetry::error_chain(error)
        ));
    }
    let shift = failures.saturating_sub(1).min(16);
    let delay = policy.initial.saturating_mul(1 << shift).min(policy.max);
    Verdict::Retry(delay)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transient() -> ReconcileError {
        ReconcileError::Unexpected {
            step: "power on",
            detail: "x".into(),
        }
    }

    fn permanent() -> ReconcileError {
        ReconcileError::Gpu {
            step: "create MIG device",
            source: GpuError::MigNotSupported(meridian_drivers::gpu::GpuIndex(0)),
        }
    }

    #[test]
    fn transient_errors_back_off_then_fail() {
        let p = RetryPolicy {
            initial: Duration::from_millis(100),
            max: Duration::from_millis(350),
            transient_attempts: 4,
            permanent_attempts: 2,
        };
        let e = transient();
        assert_eq!(
            error_policy(&e, 1, false, &p),
            Verdict::Retry(Duration::from_millis(100))
        );
        assert_eq!(
            error_policy(&e, 2, false, &p),
            Verdict::Retry(Duration::from_millis(200))
        );
        assert_eq!(
            error_policy(&e, 3, false, &p),
            Verdict::Retry(Duration::from_millis(350))
        );
        match error_policy(&e, 4, false, &p) {
            Verdict::Fail(reason) => assert!(reason.contains("after 4 attempt"), "{reason}"),
            v => panic!("{v:?}"),
        }
    }

    #[test]
    fn permanent_errors_get_one_more_chance() {
        let p = RetryPolicy::default();
        assert!(matches!(
            error_policy(&permanent(), 1, false, &p),
            Verdict::Retry(_)
        ));
        match error_policy(&permanent(), 2, false, &p) {
            Verdict::Fail(reason) => assert!(reason.contains("does not support MIG"), "{reason}"),
            v => panic!("{v:?}"),
        }
        // A transient failure after a permanent one counts against the permanent bound.
        assert!(matches!(
            error_policy(&transient(), 2, true, &p),
            Verdict::Fail(_)
        ));
    }
}
