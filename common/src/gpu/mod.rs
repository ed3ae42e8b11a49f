//! GPUs, GPU models and the MIG catalogue and geometry: the model in [`model`], the wire form
//! of a GPU and its MIG layout (and the parsers of GPU model and MIG profile names every
//! message uses) in `wire.rs`. A server's GPUs are validated with the server
//! (`server/validate.rs`).

pub mod model;
pub(crate) mod wire;

pub use model::{
    Gpu, GpuHealth, GpuModel, GpuModelError, MigConfig, MigError, MigGeometry, MigInstance,
    MigProfile, MigProfileSpec,
};
