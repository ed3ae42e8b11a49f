//! Site reports, what a site says it looks like: the model in [`model`], the wire form in
//! `wire.rs`.

pub mod model;
mod wire;

pub use model::{
    ActionPhase, AllocationPhaseKey, AllocationStatus, ReportBody, ResourceKey, Severity,
    SiteReport,
};
pub use model::{GpuUtilisation, MetricsPeriod};
