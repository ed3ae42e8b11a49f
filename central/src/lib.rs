//! Meridian central: the durable store and its typed tables, configuration, start-up, the
//! certificate authority ([`ca`]), bootstrap tokens ([`tokens`]) and the agent channel
//! ([`channel`]: enrolment, sessions, distributor, report ingest), the planner
//! ([`placement`]), tenant network allocation ([`networks`]), the intent compiler with its
//! publish step ([`compiler`]), the reservation lifecycle ([`lifecycle`]), the tenant/operator
//! gRPC API ([`api`], with [`accounts`] and the hash-chained [`audit`] log) and the `meridian`
//! command line ([`cli`]).

pub mod accounts;
pub mod api;
pub mod audit;
pub mod ca;
pub mod channel;
pub mod config;
pub mod lifecycle;
pub mod publisher;
pub mod server;
pub mod tokens;
