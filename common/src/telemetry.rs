//! Telemetry set-up shared by every binary: `tracing` with an env filter and a text or JSON
//! format. `RUST_LOG`, when set, overrides the configured filter.

use serde::Deserialize;
use tracing_subscriber::EnvFilter;

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

/// The `[telemetry]` table of every binary's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// An `EnvFilter` directive such as `info` or `meridian_central=debug,info`.
    pub filter: String,
    /// Line format.
    pub format: LogFormat,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            filter: "info".into(),
            format: LogFormat::Text,
        }
    }
}

/// Why telemetry could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The filter directive does not parse.
    #[error("telemetry.filter `{filter}` is not a valid filter")]
    BadFilter {
        filter: String,
        #[source]
        source: tracing_subscriber::filter::ParseError,
    },
}

impl TelemetryConfig {
    /// Checks the filter directive without installing anything.
    pub fn env_filter(&self) -> Result<EnvFilter, TelemetryError> {
        if let Ok(from_env) = EnvFilter::try_from_default_env() {
            return Ok(from_env);
        }
        EnvFilter::try_new(&self.filter).map_err(|source| TelemetryError::BadFilter {
            filter: self.filter.clone(),
            source,
        })
    }
}

/// Installs the global subscriber. A second call (several servers in one test process) keeps
/// the first subscriber and succeeds.
pub fn init(config: &TelemetryConfig) -> Result<(), TelemetryError> {
    let filter = config.env_filter()?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _already_set = match config.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_filter_is_reported() {
        let c = TelemetryConfig {
            filter: "meridian=notalevel".into(),
            format: LogFormat::Json,
        };
        if std::env::var_os("RUST_LOG").is_none() {
            assert!(matches!(
                c.env_filter(),
                Err(TelemetryError::BadFilter { .. })
            ));
        }
        assert!(TelemetryConfig::default().env_filter().is_ok());
    }
}

/// An error and all its sources on one line (`a: b: c`), for logs and user-facing messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod chain_tests {
    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[test]
    fn chain_lists_every_source() {
        let e = Outer(std::io::Error::other("inner"));
        assert_eq!(super::error_chain(&e), "outer: inner");
    }
}
