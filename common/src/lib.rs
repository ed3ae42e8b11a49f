//! Meridian's shared vocabulary: typed IDs, the domain model, validation, configuration and
//! telemetry. No IO runtime lives here (no tokio, quinn or sled), so everything in this crate
//! is usable from the pure planner and from tests without sockets.
//!
//! Depends on `meridian-proto` only among Meridian's crates, and never on an async runtime, a
//! store, QUIC, TLS or a socket crate (checked by `sim/tests/architecture.rs`).
//!
//! # Layout
//!
//! The domain is organised by concept: each concept is one folder holding its model (the
//! plain-data types), its wire conversion (to and from its protobuf twin) and its semantic
//! validation, with their tests beside them:
//!
//! | folder | holds | files |
//! |---|---|---|
//! | `workload/` | workload specs, stored workloads, the reservation lifecycle | `model.rs`, `reservation.rs`, `wire.rs`, `validate.rs` |
//! | `tenant/` | tenants, and the datasets and regions they own | `model.rs`, `dataset.rs`, `region.rs`, `wire.rs`, `validate.rs` |
//! | `site/` | sites and geographic points | `model.rs`, `wire.rs`, `validate.rs` |
//! | `server/` | servers, BMCs, DPUs | `model.rs`, `wire.rs`, `validate.rs` |
//! | `gpu/` | GPUs, GPU models, the MIG catalogue and geometry | `model.rs`, `wire.rs` |
//! | `intent/` | site intents | `model.rs`, `wire.rs`, `validate.rs` |
//! | `report/` | site reports | `model.rs`, `wire.rs` |
//! | `placement/` | the planner's placements | `model.rs`, `wire.rs` |
//! | `claim/` | tenant-network claims | `model.rs`, `wire.rs`, `validate.rs` |
//! | `net/` | IPv4 prefixes and transport protocols | `model.rs`, `wire.rs` |
//! | `jurisdiction/` | countries, jurisdiction groups, residency rules | `model.rs`, `wire.rs` |
//!
//! Two crate-private modules hold what every concept shares: `wire/`, the conversion
//! machinery (the error types, field paths, the helpers for required, optional, repeated and
//! enum fields; its `tests.rs` holds the round trips that span several concepts), and
//! `check/`, the validation machinery (the problem types and collector, the entry points for
//! raw input, the limits). Test fixtures shared by several concepts live in the test-only
//! `testkit/`.
//!
//! The concept folders are private: other crates use the stable public facades [`model`]
//! (every type), [`convert`] (the conversion errors) and [`validate`] (every validator, the
//! problem types, [`validate::raw`] and [`validate::limits`]), which only re-export. A new
//! concept gets a folder of its own and a line in each facade it adds to.

pub mod channel;
pub mod config;
pub mod convert;
pub mod economics;
pub mod ids;
pub mod model;
pub mod role;
pub mod stdout;
pub mod telemetry;
pub mod validate;
pub mod yaml;

mod check;
mod claim;
mod gpu;
mod intent;
mod jurisdiction;
mod net;
mod placement;
mod report;
mod server;
mod site;
mod tenant;
mod wire;
mod workload;

#[cfg(test)]
mod testkit;
