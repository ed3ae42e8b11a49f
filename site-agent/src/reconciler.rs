//! The seam where the reconciler of a later issue plugs in. The channel hands every intent it
//! has persisted to a [`Reconciler`]; for now [`RecordingReconciler`] records what it would
//! apply (and logs it), so the channel's guarantees are testable end to end.

use std::sync::Mutex;

use meridian_common::ids::Generation;
use meridian_common::model::SiteIntent;

/// Why an intent could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot apply intent generation {generation}: {reason}")]
pub struct ReconcileError {
    /// The generation.
    pub generation: Generation,
    /// Why.
    pub reason: String,
}

/// Brings the site to an intent. Must be idempotent: the same intent may be applied again
/// (after a restart, a re-push).
pub trait Reconciler: Send + Sync + std::fmt::Debug {
    /// Applies `intent`.
    fn apply(&self, intent: &SiteIntent) -> Result<(), ReconcileError>;
}

/// Records the generations it was asked to apply and applies nothing.
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
    fn apply(&self, intent: &SiteIntent) -> Result<(), ReconcileError> {
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
