//! Central's configuration: the TOML file plus `MERIDIAN_CENTRAL_*` environment overrides.
//! See `docs/configuration.md` for every key.

use std::path::PathBuf;

use meridian_common::config::{ConfigError, Validate};
use meridian_common::telemetry::TelemetryConfig;
use serde::Deserialize;

use crate::channel::ChannelConfig;
use crate::services::ApiConfig;
use meridian_plan::networks::NetworkPools;
use meridian_store::StoreConfig;

/// Prefix of central's environment overrides.
pub const ENV_PREFIX: &str = "MERIDIAN_CENTRAL";

/// Everything `meridian-central` reads at start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CentralConfig {
    /// Where central keeps its store and its certificate authority.
    pub data_dir: PathBuf,
    /// The embedded store.
    pub store: StoreConfig,
    /// The agent channel (QUIC endpoint, certificates, limits).
    pub channel: ChannelConfig,
    /// The `[api]` table: the tenant/operator gRPC API.
    pub api: ApiConfig,
    /// The `[networks]` table: pools tenant networks are carved from.
    pub networks: NetworkPools,
    /// Logging.
    pub telemetry: TelemetryConfig,
}

impl Default for CentralConfig {
    fn default() -> Self {
        CentralConfig {
            data_dir: PathBuf::from("meridian-data"),
            store: StoreConfig::default(),
            channel: ChannelConfig::default(),
            api: ApiConfig::default(),
            networks: NetworkPools::default(),
            telemetry: TelemetryConfig::default(),
        }
    }
}

impl Validate for CentralConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(ConfigError::invalid("data_dir", "must not be empty"));
        }
        self.store
            .check()
            .map_err(|(key, message)| ConfigError::invalid(key, message))?;
        self.channel.check()?;
        self.api.check()?;
        self.networks.check()?;
        self.telemetry
            .env_filter()
            .map_err(|e| ConfigError::invalid("telemetry.filter", e.to_string()))?;
        Ok(())
    }
}

impl CentralConfig {
    /// The store's directory inside `data_dir`.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// The certificate authority's directory inside `data_dir`.
    pub fn ca_dir(&self) -> PathBuf {
        self.data_dir.join("ca")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn load(vars: &[(&str, &str)]) -> Result<CentralConfig, ConfigError> {
        let env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        meridian_common::config::load(None, ENV_PREFIX, &env)
    }

    #[test]
    fn defaults_are_valid_and_env_overrides_apply() {
        assert_eq!(load(&[]).unwrap(), CentralConfig::default());
        let c = load(&[
            ("MERIDIAN_CENTRAL_DATA_DIR", "/var/lib/meridian"),
            ("MERIDIAN_CENTRAL_STORE__GROUP_COMMIT", "false"),
            ("MERIDIAN_CENTRAL_TELEMETRY__FORMAT", "json"),
        ])
        .unwrap();
        assert_eq!(c.store_dir(), PathBuf::from("/var/lib/meridian/store"));
        assert!(!c.store.group_commit);
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            ("MERIDIAN_CENTRAL_STORE__HISTORY", "10", "store.history"),
            ("MERIDIAN_CENTRAL_STORE__MAX_BATCH", "0", "store.max_batch"),
            (
                "MERIDIAN_CENTRAL_STORE__CACHE_MIB",
                "huge",
                "store.cache_mib",
            ),
            (
                "MERIDIAN_CENTRAL_STORE__GROUP_COMMT",
                "true",
                "store.group_commt",
            ),
            ("MERIDIAN_CENTRAL_DATA_DIR", "\"\"", "data_dir"),
            (
                "MERIDIAN_CENTRAL_CHANNEL__SITE_CERT_LIFETIME_S",
                "1",
                "channel.site_cert_lifetime_s",
            ),
            (
                "MERIDIAN_CENTRAL_CHANNEL__LISTEN",
                "nowhere",
                "channel.listen",
            ),
            (
                "MERIDIAN_CENTRAL_CHANNEL__UDP_BUFFER_BYTES",
                "10",
                "channel.udp_buffer_bytes",
            ),
            (
                "MERIDIAN_CENTRAL_CHANNEL__MAX_PUSHES_IN_FLIGHT",
                "0",
                "channel.max_pushes_in_flight",
            ),
            (
                "MERIDIAN_CENTRAL_CHANNEL__PUSH_ACK_TIMEOUT_MS",
                "5",
                "channel.push_ack_timeout_ms",
            ),
            ("MERIDIAN_CENTRAL_API__RATE_BURST", "0", "api.rate_burst"),
            ("MERIDIAN_CENTRAL_API__LISTEN", "nowhere", "api.listen"),
            (
                "MERIDIAN_CENTRAL_TELEMETRY__FORMAT",
                "xml",
                "telemetry.format",
            ),
        ];
        for (var, value, key) in cases {
            match load(&[(var, value)]) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{var}={value}"),
                other => panic!("{var}={value}: expected an error naming {key}, got {other:?}"),
            }
        }
    }
}
