//! The seam between the channel and whatever brings the site to its intent.
//!
//! The channel persists every intent before acknowledging it and hands it to a [`Reconciler`]
//! with [`Reconciler::apply`]. Two kinds plug in:
//!
//! - **Synchronous** (the default): `apply` does the work; `Ok` means the generation is applied
//!   and the channel acknowledges `APPLIED` at once. [`RecordingReconciler`] is one: it records
//!   the generations it was handed and touches no hardware (the agent runs it when its
//!   configuration lists no servers, and the channel tests use it).
//! - **Background**: [`Reconciler::start`] starts its own loop when the agent starts and returns
//!   a [`Background`]; `apply` then only wakes that loop. The loop reads the held intent from the
//!   agent's store, appends its reports to the agent's report buffer ([`AgentLink`]), marks a
//!   generation applied in the store once the site converged on it, and announces
//!   [`Convergence`]; the channel acknowledges `APPLIED` or `FAILED` from that announcement
//!   (again after every reconnect). [`crate::reconcile::SiteReconciler`] is one.

use std::sync::{Arc, Mutex};

use meridian_common::ids::Generation;
use meridian_common::model::SiteIntent;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

use crate::store::AgentStore;

/// Why an intent could not be handed over or applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply intent generation {generation}: {reason}")]
pub struct ApplyError {
    /// The generation.
    pub generation: Generation,
    /// Why.
    pub reason: String,
}

/// The name this error had before the per-resource reconciler
/// ([`crate::reconcile::ReconcileError`]) existed.
pub type ReconcileError = ApplyError;

/// What the agent gives a background reconciler when it starts.
#[derive(Debug, Clone)]
pub struct AgentLink {
    /// The agent's database: the held intent, the report buffer, the applied generation, and a
    /// tree for the reconciler's own progress records.
    pub store: AgentStore,
    /// Notified after reports are appended, so the channel ships them.
    pub reports_ready: Arc<Notify>,
    /// The report buffer's bound (`report_buffer_max`).
    pub report_buffer_max: usize,
    /// Turns `true` when the agent stops.
    pub stop: watch::Receiver<bool>,
}

/// What a background reconciler says about a generation once it is done with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Convergence {
    /// The site is as the generation asks (and the store records it applied).
    Applied(Generation),
    /// The generation cannot be brought about (bad allocation, failed server): why.
    Failed {
        generation: Generation,
        reason: String,
    },
}

impl Convergence {
    /// The generation it is about.
    pub fn generation(&self) -> Generation {
        match self {
            Convergence::Applied(g) => *g,
            Convergence::Failed { generation, .. } => *generation,
        }
    }
}

/// A background reconciler's loop, as the agent holds it.
#[derive(Debug)]
pub struct Background {
    /// The latest [`Convergence`] (`None` until there is one).
    pub outcomes: watch::Receiver<Option<Convergence>>,
    /// The loop; it ends after `AgentLink::stop` turns true.
    pub task: JoinHandle<()>,
}

/// Brings the site to an intent. Must be idempotent: the same intent may be handed over again
/// (after a restart, a re-push).
pub trait Reconciler: Send + Sync + std::fmt::Debug {
    /// Hands over `intent` (already persisted). A synchronous reconciler applies it; a
    /// background one wakes its loop.
    fn apply(&self, intent: &SiteIntent) -> Result<(), ApplyError>;

    /// Called once when the agent starts, before any `apply`. A background reconciler starts
    /// its loop here; the default (synchronous) returns `None`.
    fn start(&self, _link: AgentLink) -> Option<Background> {
        None
    }
}

/// Records the generations it was asked to apply and applies nothing (the agent's "no
/// hardware" mode).
#[derive(Debug, Default)]
pub struct RecordingReconciler {
    applied: Mutex<Vec<Generation>>,
}

impl RecordingReconciler {
    /// Every generation applied, in order.
    pub fn applied(&self) -> Vec<Generation> {
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Reconciler for RecordingReconciler {
    fn apply(&self, intent: &SiteIntent) -> Result<(), ApplyError> {
        tracing::info!(
            site = %intent.site,
            generation = %intent.generation,
            allocations = intent.allocations.len(),
            networks = intent.networks.len(),
            "would apply intent"
        );
        self.applied
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(intent.generation);
        Ok(())
    }
}
