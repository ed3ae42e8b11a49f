//! The agent's configuration: the TOML file plus `MERIDIAN_AGENT_*` environment overrides.
//! See `docs/configuration.md`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use meridian_common::config::{ConfigError, Validate};
use meridian_common::telemetry::TelemetryConfig;
use serde::Deserialize;

/// Prefix of the agent's environment overrides.
pub const ENV_PREFIX: &str = "MERIDIAN_AGENT";

/// Everything `meridian-agent` reads at start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Where the agent keeps its sled database (key, certificate, intent, report buffer).
    pub data_dir: PathBuf,
    /// The bootstrap file (from the ISO); read to enrol, and again to re-enrol when the
    /// certificate expired or the site was revoked and the operator issued a new token.
    pub bootstrap_file: PathBuf,
    /// Local UDP address of the agent's QUIC endpoint (port 0: any).
    pub bind: SocketAddr,
    /// Heartbeat period; the link is declared dead after 3 periods without a word from central.
    pub heartbeat_interval_ms: u64,
    /// First reconnect backoff ceiling.
    pub backoff_initial_ms: u64,
    /// Largest reconnect backoff ceiling (delays are drawn uniformly below the ceiling).
    pub backoff_max_ms: u64,
    /// Most reports the buffer holds; beyond it the oldest are dropped (and counted).
    pub report_buffer_max: usize,
    /// Most reports in one batch.
    pub report_batch_max: usize,
    /// Largest frame, bytes.
    pub max_frame_bytes: usize,
    /// Logging.
    pub telemetry: TelemetryConfig,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            data_dir: PathBuf::from("meridian-agent-data"),
            bootstrap_file: PathBuf::from("/etc/meridian/bootstrap.toml"),
            bind: "0.0.0.0:0".parse().expect("valid"),
            heartbeat_interval_ms: 5_000,
            backoff_initial_ms: 250,
            backoff_max_ms: 5_000,
            report_buffer_max: 100_000,
            report_batch_max: 256,
            max_frame_bytes: meridian_common::channel::frame::DEFAULT_MAX_FRAME,
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl Validate for AgentConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        if self.heartbeat_interval_ms < 50 {
            return Err(ConfigError::invalid(
                "heartbeat_interval_ms",
                "must be at least 50 ms",
            ));
        }
        if self.backoff_initial_ms == 0 {
            return Err(ConfigError::invalid(
                "backoff_initial_ms",
                "must be at least 1 ms",
            ));
        }
        if self.backoff_max_ms < self.backoff_initial_ms {
            return Err(ConfigError::invalid(
                "backoff_max_ms",
                "must be at least backoff_initial_ms",
            ));
        }
        if self.report_buffer_max < 16 {
            return Err(ConfigError::invalid(
                "report_buffer_max",
                "must be at least 16",
            ));
        }
        if !(1..=512).contains(&self.report_batch_max) {
            return Err(ConfigError::invalid("report_batch_max", "must be 1 to 512"));
        }
        if !(64 * 1024..=64 * 1024 * 1024).contains(&self.max_frame_bytes) {
            return Err(ConfigError::invalid(
                "max_frame_bytes",
                "must be 64 KiB to 64 MiB",
            ));
        }
        self.telemetry
            .env_filter()
            .map_err(|e| ConfigError::invalid("telemetry.filter", e.to_string()))?;
        Ok(())
    }
}

impl AgentConfig {
    /// The heartbeat period.
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_interval_ms)
    }
}
