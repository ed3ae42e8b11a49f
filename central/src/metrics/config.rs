//! The `[metrics]` table: where central serves `/metrics` and how long fleet-wide gauges are
//! cached.

use std::net::SocketAddr;
use std::time::Duration;

use meridian_common::config::ConfigError;
use serde::Deserialize;

/// The `[metrics]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// TCP address of the plain-HTTP listener (port 0: any free port).
    pub listen: SocketAddr,
    /// The gauges read from the store (sites by state, intents pending, GPUs held and free)
    /// are computed again at most this often, milliseconds; scrapes in between are answered
    /// from the last computation, so a scrape storm cannot load the store.
    pub fleet_cache_ms: u64,
}

/// Bounds of `metrics.fleet_cache_ms`: 100 ms to 10 minutes.
const FLEET_CACHE_MS: std::ops::RangeInclusive<u64> = 100..=600_000;

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: "127.0.0.1:9464".parse().expect("valid"),
            fleet_cache_ms: 5_000,
        }
    }
}

impl MetricsConfig {
    /// Checks the bounds of every key, naming the bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !FLEET_CACHE_MS.contains(&self.fleet_cache_ms) {
            return Err(ConfigError::invalid(
                "metrics.fleet_cache_ms",
                format!(
                    "must be {} to {} ms",
                    FLEET_CACHE_MS.start(),
                    FLEET_CACHE_MS.end()
                ),
            ));
        }
        Ok(())
    }

    /// How long a computation of the fleet gauges is served.
    pub fn fleet_cache(&self) -> Duration {
        Duration::from_millis(self.fleet_cache_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_keys_are_named() {
        assert!(MetricsConfig::default().check().is_ok());
        let c = MetricsConfig {
            fleet_cache_ms: 0,
            ..MetricsConfig::default()
        };
        let e = c.check().unwrap_err().to_string();
        assert!(e.contains("metrics.fleet_cache_ms"), "{e}");
    }

    #[test]
    fn the_table_parses_with_unknown_keys_refused() {
        let c: MetricsConfig = toml::from_str("enabled = false\nlisten = \"127.0.0.1:0\"").unwrap();
        assert!(!c.enabled);
        assert_eq!(c.listen.port(), 0);
        assert_eq!(c.fleet_cache_ms, 5_000);
        let e = toml::from_str::<MetricsConfig>("port = 1").unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
    }
}
