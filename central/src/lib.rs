//! Meridian central: the composition root ([`server`]) that builds every part from
//! configuration and hands each only what it needs; the public, domain-typed [`services`]
//! (placement, tenants, fleet) with their access rules and audit; the gRPC adapters over them
//! ([`grpc`]); the agent channel server ([`channel`]: enrolment, sessions, distributor, report
//! ingest); the reservation [`lifecycle`] and the intent [`publisher`]; endpoint DNS names ([`dns`]); the certificate
//! authority ([`ca`]), bootstrap and API tokens ([`tokens`], [`accounts`]), site revocation
//! ([`sites`]), the hash-chained [`audit`] log, time ([`clock`]), Prometheus `/metrics`
//! ([`metrics`]) and the operator's offline commands ([`offline`]). Binary:
//! `meridian-central`.
//!
//! The pure planner and compiler are `meridian-plan`, the store and every stored record
//! `meridian-store`, the QUIC/TLS plumbing shared with the agent `meridian-channel`, the CLI
//! `meridian-client`; central depends on them, never they on central, and central never
//! depends on the client, the emulators or the testkit.

pub mod accounts;
pub mod audit;
pub mod ca;
pub mod channel;
pub mod clock;
pub mod config;
pub mod console;
pub mod dns;
pub mod grpc;
pub mod lifecycle;
pub mod metering;
pub mod metrics;
pub mod offline;
pub mod publisher;
pub mod server;
pub mod server_actions;
pub mod services;
pub mod sites;
pub mod tokens;
