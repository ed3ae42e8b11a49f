//! Meridian central: the durable store and its typed tables, configuration, start-up, the
//! certificate authority ([`ca`]), bootstrap tokens ([`tokens`]) and the agent channel
//! ([`channel`]: enrolment, sessions, distributor, report ingest). The planner, the intent
//! compiler and the tenant/operator API arrive in later issues, each as its own module.

pub mod accounts;
pub mod api;
pub mod audit;
pub mod ca;
pub mod channel;
pub mod cli;
pub mod config;
pub mod lifecycle;
pub mod placement;
pub mod server;
pub mod store;
pub mod tokens;
