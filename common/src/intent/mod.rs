//! Site intents: the model in [`model`], the wire form in `wire.rs`, the consistency checks
//! (no GPU booked twice, usable networks) in `validate.rs`.

pub mod model;
mod validate;
mod wire;

pub use model::{
    Allocation, AllocationMode, Exposure, PoolAssignment, PowerAction, ServerAction,
    ServerActionKind, SiteIntent, StorageVolume, TenantNetworkIntent, TenantPeer, WorkloadEndpoint,
};
pub use validate::validate_site_intent;
