//! The `[api]` table of central's configuration.

use std::net::SocketAddr;

use meridian_common::config::ConfigError;
use serde::Deserialize;

/// How the tenant/operator gRPC API listens and what it allows.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// TCP address of the gRPC listener (port 0: any free port).
    pub listen: SocketAddr,
    /// Serve TLS with a certificate from central's CA (clients trust `ca/ca.pem`). Turning it
    /// off is for a loopback-only lab; tokens then cross the wire in clear.
    pub tls: bool,
    /// Extra DNS names or IP addresses the API certificate names (besides `localhost`,
    /// `127.0.0.1`, `::1` and central's internal name).
    pub tls_names: Vec<String>,
    /// Requests per second each tenant (or each provider user) may make, sustained.
    pub rate_per_second: f64,
    /// Requests a tenant may make at once above its rate.
    pub rate_burst: f64,
    /// Failed authentications per second each source address may make, sustained. Past its
    /// budget an address is refused before its credentials are even read, so a flood of bad
    /// tokens costs no hashing or store lookups. (Clients behind one NAT address share it.)
    pub auth_failures_per_second: f64,
    /// Failed authentications a source address may make at once above that rate.
    pub auth_failure_burst: f64,
    /// How long a call refused by the rate limit waits before its answer, ms (a tarpit for
    /// clients that flood in a closed loop; 0: answer at once).
    pub refusal_delay_ms: u64,
    /// Largest request or response message, bytes.
    pub max_message_bytes: usize,
    /// Most concurrent HTTP/2 streams per connection.
    pub max_streams_per_connection: u32,
    /// Most concurrent `WatchWorkload` streams per tenant.
    pub max_watches_per_tenant: usize,
    /// Deadline for a unary request, ms (a client's shorter `grpc-timeout` wins).
    pub request_timeout_ms: u64,
    /// Most entries per page of a list call.
    pub max_page_size: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "0.0.0.0:7444".parse().expect("valid"),
            tls: true,
            tls_names: Vec::new(),
            rate_per_second: 500.0,
            rate_burst: 1_000.0,
            auth_failures_per_second: 10.0,
            auth_failure_burst: 50.0,
            refusal_delay_ms: 100,
            max_message_bytes: 4 * 1024 * 1024,
            max_streams_per_connection: 256,
            max_watches_per_tenant: 64,
            request_timeout_ms: 10_000,
            max_page_size: 1_000,
        }
    }
}

impl ApiConfig {
    /// Semantic checks; errors name the key under `api.`.
    pub fn check(&self) -> Result<(), ConfigError> {
        let bad = |k: &str, m: &str| Err(ConfigError::invalid(format!("api.{k}"), m));
        if !(self.rate_per_second.is_finite() && self.rate_per_second > 0.0) {
            return bad("rate_per_second", "must be a positive number");
        }
        if !(self.rate_burst.is_finite() && self.rate_burst >= 1.0) {
            return bad("rate_burst", "must be at least 1");
        }
        if !(self.auth_failures_per_second.is_finite() && self.auth_failures_per_second > 0.0) {
            return bad("auth_failures_per_second", "must be a positive number");
        }
        if !(self.auth_failure_burst.is_finite() && self.auth_failure_burst >= 1.0) {
            return bad("auth_failure_burst", "must be at least 1");
        }
        if self.refusal_delay_ms > 10_000 {
            return bad("refusal_delay_ms", "must be at most 10000");
        }
        if !(1024..=64 * 1024 * 1024).contains(&self.max_message_bytes) {
            return bad("max_message_bytes", "must be between 1 KiB and 64 MiB");
        }
        if self.max_streams_per_connection == 0 {
            return bad("max_streams_per_connection", "must be at least 1");
        }
        if self.max_watches_per_tenant == 0 {
            return bad("max_watches_per_tenant", "must be at least 1");
        }
        if !(100..=600_000).contains(&self.request_timeout_ms) {
            return bad("request_timeout_ms", "must be between 100 and 600000");
        }
        if !(1..=10_000).contains(&self.max_page_size) {
            return bad("max_page_size", "must be between 1 and 10000");
        }
        for name in &self.tls_names {
            if name.is_empty() || name.len() > 253 {
                return bad("tls_names", "each name must be 1 to 253 characters");
            }
        }
        Ok(())
    }
}
