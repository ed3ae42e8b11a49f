//! Site reports, what a site says it looks like: the model in [`model`], the wire form in
//! `wire.rs`.

pub mod model;
mod wire;

pub use model::{AllocationStatus, ReportBody, ResourceKey, Severity, SiteReport};
