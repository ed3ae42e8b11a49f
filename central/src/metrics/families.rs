//! Every metric family central exports, with its label set and buckets, and the registry they
//! are registered in. `docs/metrics.md` lists them for operators; keep the two in step.
//!
//! Labels are bounded for a 10,000-site fleet: no family carries a site, server, tenant or
//! workload label. Label values come from closed sets (site states, tiers, GPU models,
//! placement outcomes and reject reasons, gRPC status codes) or, for the API's method, from
//! the API's own RPC table with everything else folded into `other` ([`super::grpc`]).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Prefix of every series central exports.
pub const PREFIX: &str = "meridian";

/// Buckets of the fan-out latency (an intent written until its agent holds it), seconds:
/// milliseconds on a healthy fleet, minutes for a site that was away.
pub const FANOUT_BUCKETS: [f64; 15] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// Buckets of durable writes (a report batch stored, a store transaction), seconds: a flush
/// of sled's log takes tens of microseconds to tens of milliseconds.
pub const WRITE_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// `meridian_sites{state}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: &'static str,
}

/// `meridian_gpus_held{model, tier}` and `meridian_gpus_free{model, tier}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GpuLabels {
    pub model: String,
    pub tier: &'static str,
}

/// `meridian_api_requests_total{method, code}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabels {
    pub method: &'static str,
    pub code: &'static str,
}

/// `meridian_placements_total{outcome, reason}`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlacementLabels {
    pub outcome: &'static str,
    /// A [`RejectReason`](meridian_common::model::RejectReason) as it is spelled in
    /// explanations (`capacity`, `residency`...), or `none` / `invalid_request`.
    pub reason: String,
}

/// Central's metric families; cheap to clone (every family is shared).
#[derive(Debug, Clone)]
pub struct Families {
    /// Sites by state (from the store, cached).
    pub sites: Family<StateLabel, Gauge>,
    /// Sites whose newest intent is newer than what their agent acknowledged holding.
    pub intents_pending: Gauge,
    /// Sites with a live channel session.
    pub channel_sessions: Gauge,
    /// An intent written until its agent acknowledged it, seconds.
    pub fanout: Histogram,
    /// A report batch received until it is durable, seconds.
    pub report_ingest: Histogram,
    /// gRPC calls answered, by method and status code.
    pub api_requests: Family<ApiLabels, Counter>,
    /// One store transaction, from submit until durable, seconds.
    pub store_commit: Histogram,
    /// The lifecycle's placement decisions, by outcome and reason.
    pub placements: Family<PlacementLabels, Counter>,
    /// GPUs held by a placement now, by model and tier (from the store, cached).
    pub gpus_held: Family<GpuLabels, Gauge>,
    /// GPUs not held, by model and tier (from the store, cached).
    pub gpus_free: Family<GpuLabels, Gauge>,
}

impl Default for Families {
    fn default() -> Self {
        Families {
            sites: Family::default(),
            intents_pending: Gauge::default(),
            channel_sessions: Gauge::default(),
            fanout: Histogram::new(FANOUT_BUCKETS),
            report_ingest: Histogram::new(WRITE_BUCKETS),
            api_requests: Family::default(),
            store_commit: Histogram::new(WRITE_BUCKETS),
            placements: Family::default(),
            gpus_held: Family::default(),
            gpus_free: Family::default(),
        }
    }
}

impl Families {
    /// A registry (prefix `meridian_`) holding every family.
    pub fn registry(&self) -> Registry {
        let mut r = Registry::with_prefix(PREFIX);
        r.register("sites", "Sites by lifecycle state", self.sites.clone());
        r.register(
            "intents_pending",
            "Sites whose newest intent generation is above the one their agent acknowledged holding",
            self.intents_pending.clone(),
        );
        r.register(
            "channel_sessions",
            "Sites with a live agent channel session",
            self.channel_sessions.clone(),
        );
        r.register(
            "intent_fanout_seconds",
            "Time from a site's newest intent being written until its agent acknowledged holding it",
            self.fanout.clone(),
        );
        r.register(
            "report_ingest_seconds",
            "Time from a report batch received until it is durable in the store",
            self.report_ingest.clone(),
        );
        r.register(
            "api_requests",
            "gRPC API calls answered, by method and status code",
            self.api_requests.clone(),
        );
        r.register(
            "store_commit_seconds",
            "Time of one store transaction, from submit until durable",
            self.store_commit.clone(),
        );
        r.register(
            "placements",
            "Placement decisions of the lifecycle, by outcome and reason",
            self.placements.clone(),
        );
        r.register(
            "gpus_held",
            "GPUs held by a placement now, by model and site tier",
            self.gpus_held.clone(),
        );
        r.register(
            "gpus_free",
            "GPUs not held by any placement now, by model and site tier",
            self.gpus_free.clone(),
        );
        r
    }
}
