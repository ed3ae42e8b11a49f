//! What the site reconciler records: its passes and failed passes per resource kind, and how
//! long the drivers took per driver kind. The one worker loop records them
//! ([`crate::reconcile::resource`]), so every resource kind is covered the same way.

use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Buckets of a driver's latency, seconds: a netlink call takes microseconds, a Redfish
/// request on a busy BMC seconds, a BFB install minutes.
pub const DRIVER_BUCKETS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0,
];

/// `kind`: the resource kind (`server`, `switch`, `gateway`, `host`, `storage`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: &'static str,
}

/// `driver`: the driver kind (`redfish`, `nvml`, `dpu`, `nvue`, `gateway`, `netlink`,
/// `storage`).
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DriverLabel {
    pub driver: &'static str,
}

fn driver_histogram() -> Histogram {
    Histogram::new(DRIVER_BUCKETS)
}

/// The reconciler's families; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct ReconcileMetrics {
    /// Passes that observed and carried out their step.
    pub actions: Family<KindLabel, Counter>,
    /// Passes whose observation or step failed (each goes through the error policy).
    pub errors: Family<KindLabel, Counter>,
    /// One observation or step through a driver, seconds.
    pub driver_latency: Family<DriverLabel, Histogram, fn() -> Histogram>,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        ReconcileMetrics {
            actions: Family::default(),
            errors: Family::default(),
            driver_latency: Family::new_with_constructor(driver_histogram),
        }
    }
}

impl ReconcileMetrics {
    /// A pass of a `kind` resource carried out its step.
    pub fn action(&self, kind: &'static str) {
        self.actions.get_or_create(&KindLabel { kind }).inc();
    }

    /// A pass of a `kind` resource failed.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&KindLabel { kind }).inc();
    }

    /// `driver` took `elapsed` for one observation or step.
    pub fn driver_call(&self, driver: &'static str, elapsed: Duration) {
        self.driver_latency
            .get_or_create(&DriverLabel { driver })
            .observe(elapsed.as_secs_f64());
    }

    /// Registers the families in `registry` (prefix included by the caller).
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "reconcile_actions",
            "Reconcile passes that observed their resource and carried out the planned step, by resource kind",
            self.actions.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile passes whose observation or step failed, by resource kind",
            self.errors.clone(),
        );
        registry.register(
            "driver_latency_seconds",
            "Time of one observation or step through a device driver, by driver kind",
            self.driver_latency.clone(),
        );
    }
}
