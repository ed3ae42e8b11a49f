//! Central's configuration: the TOML file plus `MERIDIAN_CENTRAL_*` environment overrides.
//! See `docs/configuration.md` for every key.

use std::path::PathBuf;

use meridian_common::config::{ConfigError, Validate};
use meridian_common::telemetry::TelemetryConfig;
use serde::Deserialize;

use crate::channel::ChannelConfig;
use crate::console::ConsoleConfig;
use crate::dns::DnsConfig;
use crate::metrics::MetricsConfig;
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
    /// The `[dns]` table: endpoint names published in a zone (absent: none).
    pub dns: Option<DnsConfig>,
    /// The `[placement]` table: what the planner takes from the sites.
    pub placement: PlacementConfig,
    /// The `[console]` table: the operator console's HTTPS listener and sessions.
    pub console: ConsoleConfig,
    /// The `[metrics]` table: `/metrics` for Prometheus on its own plain-HTTP listener.
    pub metrics: MetricsConfig,
}

/// The `[placement]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlacementConfig {
    /// A site's measured RTT to a region is used instead of the distance estimate while it is
    /// at most this old, seconds; an older one is ignored (the estimate is used).
    pub rtt_max_age_s: u64,
}

impl Default for PlacementConfig {
    fn default() -> Self {
        PlacementConfig { rtt_max_age_s: 600 }
    }
}

/// Bounds of `placement.rtt_max_age_s`: ten seconds to a week.
const RTT_MAX_AGE_S: std::ops::RangeInclusive<u64> = 10..=7 * 24 * 3600;

impl PlacementConfig {
    fn check(&self) -> Result<(), ConfigError> {
        if !RTT_MAX_AGE_S.contains(&self.rtt_max_age_s) {
            return Err(ConfigError::invalid(
                "placement.rtt_max_age_s",
                format!(
                    "must be {} to {} seconds (agents probe every 30 s by default)",
                    RTT_MAX_AGE_S.start(),
                    RTT_MAX_AGE_S.end()
                ),
            ));
        }
        Ok(())
    }

    /// The age past which a measured RTT is ignored.
    pub fn rtt_max_age(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.rtt_max_age_s)
    }
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
            dns: None,
            placement: PlacementConfig::default(),
            console: ConsoleConfig::default(),
            metrics: MetricsConfig::default(),
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
        if let Some(dns) = &self.dns {
            dns.settings()?;
        }
        self.placement.check()?;
        self.console.check()?;
        self.metrics.check()?;
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
        let c = load(&[
            ("MERIDIAN_CENTRAL_METRICS__ENABLED", "false"),
            ("MERIDIAN_CENTRAL_METRICS__LISTEN", "127.0.0.1:0"),
        ])
        .unwrap();
        assert!(!c.metrics.enabled);
        assert_eq!(c.metrics.listen.port(), 0);
    }

    #[test]
    fn the_rtt_max_age_is_read_and_bounded() {
        assert_eq!(CentralConfig::default().placement.rtt_max_age_s, 600);
        let c = load(&[("MERIDIAN_CENTRAL_PLACEMENT__RTT_MAX_AGE_S", "120")]).unwrap();
        assert_eq!(
            c.placement.rtt_max_age(),
            std::time::Duration::from_secs(120)
        );
        for bad in ["0", "9", "604801"] {
            let e = load(&[("MERIDIAN_CENTRAL_PLACEMENT__RTT_MAX_AGE_S", bad)]).unwrap_err();
            assert!(
                e.to_string().contains("placement.rtt_max_age_s"),
                "{bad}: {e}"
            );
        }
    }

    /// A `[dns]` table from a file (with a secret file beside it), plus `vars`.
    fn load_dns(table: &str, vars: &[(&str, &str)]) -> Result<CentralConfig, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("tsig.key");
        std::fs::write(&secret, "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnk=\n").unwrap();
        let file = dir.path().join("central.toml");
        let text = table.replace("SECRET", &secret.display().to_string());
        std::fs::write(&file, text).unwrap();
        let env: BTreeMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        meridian_common::config::load(Some(&file), ENV_PREFIX, &env)
    }

    const DNS: &str = "[dns]\nzone = \"endpoints.example.net\"\nserver = \"127.0.0.1:5353\"\ntsig_key_name = \"meridian-update\"\ntsig_secret_file = \"SECRET\"\n";

    #[test]
    fn the_dns_table_is_optional_and_checked() {
        assert_eq!(load(&[]).unwrap().dns, None);
        let c = load_dns(DNS, &[]).unwrap();
        let dns = c.dns.unwrap();
        assert_eq!(dns.tsig_algorithm, "hmac-sha256");
        assert_eq!(dns.ttl_s, 60);
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("[dns]\nzone = \"a.net\"\n", &[], "dns.server"),
            ("", &[("MERIDIAN_CENTRAL_DNS__TTL_S", "30")], "dns.zone"),
            (DNS, &[("MERIDIAN_CENTRAL_DNS__TTL_S", "0")], "dns.ttl_s"),
            (DNS, &[("MERIDIAN_CENTRAL_DNS__TTL_S", "soon")], "dns.ttl_s"),
            (
                DNS,
                &[("MERIDIAN_CENTRAL_DNS__ZONE", "a_b.net")],
                "dns.zone",
            ),
            (
                DNS,
                &[("MERIDIAN_CENTRAL_DNS__SERVER", "ns1:53")],
                "dns.server",
            ),
            (
                DNS,
                &[("MERIDIAN_CENTRAL_DNS__TSIG_ALGORITHM", "hmac-md5")],
                "dns.tsig_algorithm",
            ),
            (
                DNS,
                &[("MERIDIAN_CENTRAL_DNS__TSIG_SECRET_FILE", "/nonexistent")],
                "dns.tsig_secret_file",
            ),
            (
                DNS,
                &[("MERIDIAN_CENTRAL_DNS__ZONES", "a.net")],
                "dns.zones",
            ),
        ];
        for (table, vars, key) in cases {
            match load_dns(table, vars) {
                Err(ConfigError::Invalid { key: k, message }) => {
                    assert_eq!(k, *key, "{table:?} {vars:?}: {message}")
                }
                other => {
                    panic!("{table:?} {vars:?}: expected an error naming {key}, got {other:?}")
                }
            }
        }
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
            (
                "MERIDIAN_CENTRAL_METRICS__LISTEN",
                "nowhere",
                "metrics.listen",
            ),
            (
                "MERIDIAN_CENTRAL_METRICS__FLEET_CACHE_MS",
                "1",
                "metrics.fleet_cache_ms",
            ),
            ("MERIDIAN_CENTRAL_METRICS__PORT", "9464", "metrics.port"),
        ];
        for (var, value, key) in cases {
            match load(&[(var, value)]) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{var}={value}"),
                other => panic!("{var}={value}: expected an error naming {key}, got {other:?}"),
            }
        }
    }
}
