//! Meridian central: the durable store and its typed tables, configuration, and start-up.
//! The planner, the intent compiler, the distributor, the certificate authority and the
//! tenant/operator API arrive in later issues, each as its own module.

pub mod config;
pub mod server;
pub mod store;
