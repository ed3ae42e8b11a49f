//! Meridian's pure core, the most tested code in the project:
//!
//! - [`placement`]: the planner. Filter, score and commit workloads onto sites by latency,
//!   residency, data gravity and GPU/MIG capacity over time windows, explained.
//! - [`networks`]: the tenant-network allocator (VNIs, routing tables, supernets, site
//!   subnets, replica addresses, public endpoints).
//! - [`compiler`]: placements plus tenant networks plus site inventory give one
//!   `SiteIntent` per site whose content changed.
//!
//! Everything here is a synchronous function over values: no IO, no clock (time is an
//! argument), no randomness without a seed. This crate depends on `meridian-common` only
//! among Meridian's crates, and on no async, store, network or RPC crate: its Cargo.toml is
//! the purity rule, checked by the compiler (and by `sim/tests/architecture.rs`, which also
//! fails if anything but `meridian-common` appears among its Meridian dependencies).

pub mod compiler;
pub mod networks;
pub mod placement;
