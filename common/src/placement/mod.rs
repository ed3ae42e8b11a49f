//! Placements, the planner's decisions: the model in [`model`], the wire form in `wire.rs`.

pub mod model;
mod wire;

pub use model::{Assignment, GpuSlot, Placement, RejectReason, ScoreBreakdown};
