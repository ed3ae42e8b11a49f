//! Meridian's fleet simulator: the seeded benchmark fleet ([`fleet`]), the simulated fleet
//! against a real central ([`simfleet`], behind the [`demo`]), scenarios as data files
//! ([`scenario`]), the benchmark suite with its fuzzer ([`bench`]) and the command line
//! ([`cli`], the whole of the `meridian-sim` binary); `sim/tests` holds the
//! workspace's tests that need more than one product crate. The emulators are
//! `meridian-emulators`, the harness that starts central, agents and emulated hardware
//! `meridian-testkit`. Nothing in the product depends on this crate (or on the emulators or the
//! testkit).

pub mod bench;
pub mod cli;
pub mod demo;
pub mod fleet;
pub mod netlab;
pub mod scenario;
pub mod simfleet;
