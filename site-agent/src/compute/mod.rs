//! Compute drivers: what the reconciler sees of a server, its DPU and its GPUs, as traits.
//!
//! - [`Bmc`]: a server's baseboard management controller over DMTF Redfish ([`bmc::redfish`]):
//!   discovery by following links, power with the reset types the BMC advertises, one-time and
//!   continuous boot override, virtual media, hardware and firmware inventory, firmware update
//!   tasks. Vendor differences live in [`bmc::quirks`] and nowhere else.
//! - [`Dpu`]: a BlueField-3 DPU through its own BMC ([`dpu`]): mode (DPU/NIC, effective after a
//!   reset), BFB installation with RShim ownership, firmware inventory.
//! - [`GpuInventory`]: the node's NVIDIA GPUs through NVML ([`gpu::nvml`]): devices, memory,
//!   utilisation, MIG mode and MIG devices. A node without the library or driver reports "no
//!   GPUs" as a typed answer, not an error, and the agent keeps running.
//!
//! Every method is `async` and bounded in time; the reconciler holds `Arc<dyn Trait>` and the
//! simulator (`meridian-sim`) supplies emulated implementations. See `docs/compute-drivers.md`.

pub mod bmc;
pub mod dpu;
pub mod gpu;

pub use bmc::{Bmc, BmcError};
pub use dpu::{Dpu, DpuError};
pub use gpu::{GpuError, GpuInventory};
