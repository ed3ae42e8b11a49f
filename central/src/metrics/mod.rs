//! Central's Prometheus metrics: the families ([`families`]), the parts that feed them, and
//! `/metrics` in the Prometheus text format on a plain-HTTP listener of its own ([`serve`],
//! the `[metrics]` table, [`MetricsConfig`]).
//!
//! Who feeds what (each part is handed the [`Metrics`] handle by the composition root):
//! - the agent channel: the fan-out clock ([`fanout`]: the distributor starts it as an intent
//!   is written, the site's session stops it at the agent's acknowledgement) and the report
//!   ingest latency (a batch received until durable);
//! - the gRPC API: calls by method and status code, a tower layer ([`grpc`]);
//! - the store: every transaction timed by a wrapper around it ([`store`]);
//! - the lifecycle: each placement decision by outcome and reason;
//! - the scrape itself: sites by state, intents pending and GPUs held and free, read from the
//!   store and cached for a few seconds ([`fleet`]), and the live sessions.
//!
//! Every series and its labels are listed in `docs/metrics.md`.

pub mod config;
pub mod families;
pub mod fanout;
pub mod fleet;
pub mod grpc;
pub mod serve;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

pub use config::MetricsConfig;
pub use families::Families;
pub use fanout::FanOut;
pub use serve::{MetricsError, MetricsServer};

use families::PlacementLabels;

/// The handle every part of central records through; cheap to clone.
#[derive(Debug, Clone)]
pub struct Metrics(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    families: Families,
    fanout: FanOut,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// Fresh families, nothing recorded.
    pub fn new() -> Self {
        let families = Families::default();
        let fanout = FanOut::new(families.fanout.clone());
        Metrics(Arc::new(Inner { families, fanout }))
    }

    /// The families (to register, to read in tests).
    pub fn families(&self) -> &Families {
        &self.0.families
    }

    /// The fan-out clock.
    pub fn fanout(&self) -> &FanOut {
        &self.0.fanout
    }

    /// A report batch took `elapsed` from being received to being durable.
    pub fn report_batch_stored(&self, elapsed: Duration) {
        self.0.families.report_ingest.observe(elapsed.as_secs_f64());
    }

    /// The lifecycle decided a placement: `outcome` (`placed`, `unplaceable`, `error`) and
    /// `reason` (a reject reason's name, or `none`).
    pub fn placement(&self, outcome: &'static str, reason: impl Into<String>) {
        self.0
            .families
            .placements
            .get_or_create(&PlacementLabels {
                outcome,
                reason: reason.into(),
            })
            .inc();
    }
}

/// The snake_case name of a serialisable enum value (a reject reason, a state), as the API
/// and the configuration spell it; `unknown` for anything else.
pub fn label_of<T: serde::Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::model::RejectReason;

    #[test]
    fn placements_are_counted_by_outcome_and_reason() {
        let m = Metrics::new();
        m.placement("placed", "none");
        m.placement("unplaceable", label_of(&RejectReason::SiteNotOnline));
        m.placement("unplaceable", label_of(&RejectReason::SiteNotOnline));
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &m.families().registry())
            .unwrap();
        assert!(
            text.contains(
                "meridian_placements_total{outcome=\"unplaceable\",reason=\"site_not_online\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("meridian_placements_total{outcome=\"placed\",reason=\"none\"} 1"),
            "{text}"
        );
    }
}
