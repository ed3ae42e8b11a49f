//! Meridian's shared vocabulary: typed IDs, the domain model, validation, configuration and
//! telemetry. No IO runtime lives here (no tokio, quinn or sled), so everything in this crate
//! is usable from the pure planner and from tests without sockets.
//!
//! Depends on `meridian-proto` only among Meridian's crates, and never on an async runtime, a
//! store, QUIC, TLS or a socket crate (checked by `sim/tests/architecture.rs`).

pub mod channel;
pub mod config;
pub mod convert;
pub mod ids;
pub mod model;
pub mod role;
pub mod stdout;
pub mod telemetry;
pub mod validate;
