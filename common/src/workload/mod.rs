//! Workloads: the spec and the stored workload in [`model`], the reservation lifecycle in
//! [`reservation`], the wire form of both in `wire.rs`, the checks of a spec in `validate.rs`.

pub mod model;
pub mod reservation;
pub(crate) mod validate;
mod wire;

pub use model::{
    Accelerator, Constraints, LatencyConstraint, PortExposure, Resources, Spread, Workload,
    WorkloadKind, WorkloadSpec,
};
pub use reservation::{ReservationState, TransitionError};
pub use validate::validate_workload_spec;
