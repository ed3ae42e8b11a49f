//! Servers: the model in [`model`], the wire form of a server, its BMC, DPU and state in
//! `wire.rs`, the checks (including its GPUs' MIG layouts) in `validate.rs`. The GPUs
//! themselves are the `gpu` concept's.

pub mod model;
mod validate;
pub(crate) mod wire;

pub use model::{BmcEndpoint, BmcVendor, Dpu, DpuMode, Server, ServerState};
pub use validate::validate_server;
