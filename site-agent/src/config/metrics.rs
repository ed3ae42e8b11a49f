//! The `[metrics]` table: where the agent serves `/metrics` for Prometheus
//! ([`crate::metrics`]).

use std::net::SocketAddr;

use serde::{Deserialize, Deserializer};

/// The `[metrics]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Serve `/metrics` at all.
    pub enabled: bool,
    /// TCP address of the plain-HTTP listener (port 0: any free port); `"off"`: none, like
    /// `enabled = false`.
    #[serde(deserialize_with = "listen_or_off")]
    pub listen: Option<SocketAddr>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: Some("127.0.0.1:9465".parse().expect("valid")),
        }
    }
}

impl MetricsConfig {
    /// Where to serve, if at all.
    pub fn address(&self) -> Option<SocketAddr> {
        self.listen.filter(|_| self.enabled)
    }

    /// No listener.
    pub fn off() -> Self {
        MetricsConfig {
            enabled: false,
            listen: None,
        }
    }
}

fn listen_or_off<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
    let text = String::deserialize(d)?;
    if text.trim().eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "{text:?} is not an address (ip:port, port 0 for any) or \"off\""
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_is_an_address_or_off() {
        assert_eq!(
            MetricsConfig::default().address(),
            Some("127.0.0.1:9465".parse().unwrap())
        );
        let c: MetricsConfig = toml::from_str("listen = \"off\"").unwrap();
        assert_eq!(c.address(), None);
        let c: MetricsConfig = toml::from_str("listen = \"0.0.0.0:0\"").unwrap();
        assert_eq!(c.address(), Some("0.0.0.0:0".parse().unwrap()));
        let c: MetricsConfig = toml::from_str("enabled = false").unwrap();
        assert_eq!(c.address(), None);
        assert_eq!(MetricsConfig::off().address(), None);
        let e = toml::from_str::<MetricsConfig>("listen = \"nowhere\"").unwrap_err();
        assert!(e.to_string().contains("\"off\""), "{e}");
    }

    #[test]
    fn the_environment_sets_it_and_a_bad_value_names_its_key() {
        use std::collections::BTreeMap;
        let load = |value: &str| {
            let env: BTreeMap<String, String> = [(
                "MERIDIAN_AGENT_METRICS__LISTEN".to_owned(),
                value.to_owned(),
            )]
            .into();
            meridian_common::config::load::<crate::config::AgentConfig>(
                None,
                crate::config::ENV_PREFIX,
                &env,
            )
        };
        assert_eq!(load("off").unwrap().metrics.address(), None);
        assert_eq!(
            load("127.0.0.1:0").unwrap().metrics.address(),
            Some("127.0.0.1:0".parse().unwrap())
        );
        let e = load("nowhere").unwrap_err().to_string();
        assert!(e.contains("metrics.listen"), "{e}");
    }
}
