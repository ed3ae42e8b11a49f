//! Meridian central: the durable store and its typed tables, configuration, start-up, the
//! certificate authority ([`ca`]), bootstrap tokens ([`tokens`]) and the agent channel
//! ([`channel`]: enrolment, sessions, distributor, report ingest), the planner
//! ([`placement`]), tenant network allocation ([`networks`]) and the intent compiler with its
//! publish step ([`compiler`]). The tenant/operator API arrives in a later issue.

pub mod ca;
pub mod channel;
pub mod compiler;
pub mod config;
pub mod networks;
pub mod placement;
pub mod server;
pub mod store;
pub mod tokens;
