//! Tenant-network claims: the model (and the store layout of claims) in [`model`], the
//! conversion to and from the stored `NetworkClaimRecord` in `wire.rs`, the checks before a
//! claim is stored in `validate.rs`.

pub mod model;
mod validate;
mod wire;

pub use model::{HostKey, NetworkClaim, PublicEndpoint, PublicKey};
pub use validate::validate_claim;
