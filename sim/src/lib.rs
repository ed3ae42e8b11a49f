//! Meridian's fleet simulator: the seeded benchmark fleet, device emulators, scenarios and
//! benchmarks.

pub mod bench;
pub mod demo;
pub mod faults;
pub mod fleet;
pub mod nvml;
pub mod nvue;
pub mod proxy;
pub mod redfish;
pub mod scenario;
pub mod simfleet;
