//! The agent's Prometheus metrics: `/metrics` in the Prometheus text format on a plain-HTTP
//! listener of its own (the `[metrics]` table; [`MetricsServer`]), started by the
//! `meridian-agent` binary.
//!
//! - [`reconcile`]: reconcile passes and failed passes per resource kind, driver latency per
//!   driver kind, recorded by the site reconciler's one worker loop;
//! - [`store`]: the report buffer's depth and drops, read from the store at scrape time;
//! - [`gpus`]: utilisation and memory per GPU and per MIG device, read from NVML at scrape
//!   time.
//!
//! In-process agents of the simulator serve nothing unless asked: each
//! [`SiteReconciler`](crate::reconcile::SiteReconciler) records into families of its own,
//! and a harness starts a [`MetricsServer`] for the agents it wants scraped. Every series is
//! listed in `docs/metrics.md`.

pub mod gpus;
pub mod reconcile;
pub mod serve;
pub mod store;

pub use reconcile::ReconcileMetrics;
pub use serve::{MetricsServer, MetricsSources};

#[cfg(test)]
mod tests;
