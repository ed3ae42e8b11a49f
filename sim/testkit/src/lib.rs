//! The harness every integration test, benchmark and the demo start things with, so the
//! bring-up of "a real central and real agents" exists once:
//!
//! - [`central`]: central's configuration for tests (quick liveness) or benchmarks
//!   (relaxed), on `127.0.0.1:0`, and starting it;
//! - [`enrol`]: site records, bootstrap tokens and bootstrap files;
//! - [`agents`]: agent configurations and in-process agents;
//! - [`fixtures`]: typed IDs, site records and intents of a given size;
//! - [`observe`]: what central stored about a site (state, applied generation, reports);
//! - [`processes`]: the real binaries as processes (found or built), clean environments,
//!   free ports, log lines, clean stops;
//! - [`echo`]: a UDP echo responder for the agents' RTT probes;
//! - [`wait`]: polling with a deadline that names what it waited for;
//! - [`netns`]: network namespaces, veth pairs and commands in them, for kernel tests;
//! - [`dns`]: a real BIND 9 serving one zone that a TSIG key may update, and `dig`.
//!
//! Real parts only: a real central (QUIC on loopback, sled in a temporary directory), real
//! agent code, the real kernel. Emulated hardware comes from `meridian-emulators`. Only tests,
//! benchmarks and the simulator depend on this crate; no product crate may.

pub mod agents;
pub mod central;
pub mod dns;
pub mod echo;
pub mod enrol;
pub mod fixtures;
pub mod images;
pub mod netns;
pub mod observe;
pub mod processes;
pub mod wait;
