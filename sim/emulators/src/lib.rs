//! Emulators of the hardware and services Meridian cannot have in a test: Redfish BMCs
//! ([`redfish`], checked by DMTF's validators), NVIDIA Spectrum switches over NVUE
//! ([`nvue`], which can realise its applied configuration on the real kernel), GPUs behind
//! NVML ([`nvml`]), NetApp ONTAP storage arrays over their REST API ([`ontap`], with
//! asynchronous jobs), and the WAN between sites and central ([`proxy`], a UDP fault proxy).
//! Each speaks the documented protocol its real driver speaks, including its failures
//! ([`faults`]: injected statuses, latency, hangs).
//!
//! Depends on `meridian-common` and, where an emulator implements a driver-facing type or
//! realises state on the kernel, on the agent's driver types; never on central.

pub mod faults;
mod http_thread;
pub mod nvml;
pub mod nvue;
pub mod ontap;
pub mod proxy;
pub mod redfish;

pub use ontap::{OntapEmulator, OntapEmulatorConfig};
