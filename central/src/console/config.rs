//! The `[console]` table: where the operator console listens and how long its sessions live.

use std::net::SocketAddr;

use meridian_common::config::ConfigError;
use serde::Deserialize;

/// The `[console]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// Serve the console at all.
    pub enabled: bool,
    /// TCP address of its HTTPS listener (port 0: any free port).
    pub listen: SocketAddr,
    /// A session ends this long after login, whatever is done with it, seconds.
    pub session_ttl_s: u64,
    /// A session unused this long ends, seconds.
    pub session_idle_s: u64,
    /// Most live sessions; the oldest is ended to make room for a new login.
    pub max_sessions: usize,
    /// Most open live-update streams (server-sent events), all users together.
    pub max_streams: usize,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            listen: "127.0.0.1:7445".parse().expect("valid"),
            session_ttl_s: 8 * 3600,
            session_idle_s: 1800,
            max_sessions: 10_000,
            max_streams: 1000,
        }
    }
}

impl ConsoleConfig {
    /// Checks the bounds of every key, naming the bad one.
    pub fn check(&self) -> Result<(), ConfigError> {
        if !(60..=7 * 24 * 3600).contains(&self.session_ttl_s) {
            return Err(ConfigError::invalid(
                "console.session_ttl_s",
                "must be 60 s to 7 days",
            ));
        }
        if !(60..=self.session_ttl_s).contains(&self.session_idle_s) {
            return Err(ConfigError::invalid(
                "console.session_idle_s",
                "must be 60 s to console.session_ttl_s",
            ));
        }
        if !(1..=1_000_000).contains(&self.max_sessions) {
            return Err(ConfigError::invalid(
                "console.max_sessions",
                "must be 1 to 1000000",
            ));
        }
        if !(1..=100_000).contains(&self.max_streams) {
            return Err(ConfigError::invalid(
                "console.max_streams",
                "must be 1 to 100000",
            ));
        }
        Ok(())
    }

    /// The absolute session lifetime.
    pub fn session_ttl(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.session_ttl_s)
    }

    /// The idle timeout.
    pub fn session_idle(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.session_idle_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_keys_are_named() {
        assert!(ConsoleConfig::default().check().is_ok());
        let c = ConsoleConfig {
            session_idle_s: 10,
            ..ConsoleConfig::default()
        };
        assert!(
            c.check()
                .unwrap_err()
                .to_string()
                .contains("console.session_idle_s")
        );
        let c = ConsoleConfig {
            max_streams: 0,
            ..ConsoleConfig::default()
        };
        assert!(
            c.check()
                .unwrap_err()
                .to_string()
                .contains("console.max_streams")
        );
    }
}
