//! Tenants and what they own beside workloads: the tenant model in [`model`], datasets in
//! [`dataset`], regions in [`region`], the wire form of all three in `wire.rs`, their checks
//! in `validate.rs`.

pub mod dataset;
pub mod model;
pub mod region;
pub(crate) mod validate;
mod wire;

pub use dataset::Dataset;
pub use model::{Quotas, ScoreWeights, Tenant, TenantNetwork};
pub use region::Region;
pub use validate::{validate_dataset, validate_region, validate_tenant};
