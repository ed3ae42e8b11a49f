//! Endpoint DNS names: with a `[dns]` table, central publishes every workload with published
//! endpoints as `<workload-id>.<tenant-id>.<zone>`, one A record per public address of a site
//! gateway that publishes it, by RFC 2136 dynamic updates signed with TSIG sent to the zone's
//! primary server. See `docs/network.md` ("Endpoint names").
//!
//! - [`config`]: the `[dns]` table and its checks (the secret file is read at start-up);
//! - [`names`]: the names and the records they should hold, from intents and applied
//!   generations (pure);
//! - [`update`]: the signed UPDATE client;
//! - [`published`]: what was published, kept in the store;
//! - [`publisher`]: the background task tying them together.

pub mod config;
pub mod names;
pub mod published;
pub mod publisher;
pub mod update;

pub use config::{DnsConfig, DnsSettings};
pub use publisher::DnsPublisher;
pub use update::{UpdateError, Updater};
