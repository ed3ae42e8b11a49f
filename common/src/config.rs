//! Typed configuration, loaded in one place for every Meridian binary.
//!
//! A binary's configuration is a serde struct with defaults. [`load`] reads an optional TOML
//! file, applies environment overrides, deserialises with unknown keys refused, then runs the
//! struct's own [`Validate`] checks. Every error names the offending key (`store.flush_ms`)
//! and the binaries exit with [`EXIT_BAD_CONFIG`] before they bind any port.
//!
//! Environment overrides: with prefix `MERIDIAN_CENTRAL`, the variable
//! `MERIDIAN_CENTRAL_DATA_DIR` sets `data_dir` and `MERIDIAN_CENTRAL_TELEMETRY__FORMAT` sets
//! `telemetry.format` (a double underscore descends one table). Values are read as TOML
//! scalars when they parse as one (`42`, `true`, `["a", "b"]`) and as strings otherwise.
//! The environment is read through [`EnvSource`] so tests supply their own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Exit status for a configuration error (`EX_USAGE` from sysexits.h).
pub const EXIT_BAD_CONFIG: i32 = 64;

/// Why a configuration could not be loaded. Each variant names where the problem is.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {path} is not valid TOML: {message}")]
    Syntax { path: PathBuf, message: String },
    /// An environment override could not be applied.
    #[error("environment variable {var}: {message}")]
    Env { var: String, message: String },
    /// A key has a value of the wrong type, or is not a known key.
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    /// A semantic validation failure for `key`.
    pub fn invalid(key: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError::Invalid {
            key: key.into(),
            message: message.into(),
        }
    }
}

/// Semantic checks that serde cannot express (ranges, relations between keys).
pub trait Validate {
    /// Returns the first problem found, naming its key.
    fn validate(&self) -> Result<(), ConfigError>;
}

/// Where environment variables come from: the process, or a map in tests.
pub trait EnvSource {
    /// Every variable whose name starts with `prefix`, sorted by name.
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)>;
}

/// The process environment.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcessEnv;

impl EnvSource for ProcessEnv {
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        let mut vars: Vec<_> = std::env::vars()
            .filter(|(k, _)| k.starts_with(prefix))
            .collect();
        vars.sort();
        vars
    }
}

impl EnvSource for BTreeMap<String, String> {
    fn vars_with_prefix(&self, prefix: &str) -> Vec<(String, String)> {
        self.iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// Loads a configuration: defaults, then the file (if any), then `{env_prefix}_*` variables,
/// then [`Validate::validate`].
pub fn load<T>(file: Option<&Path>, env_prefix: &str, env: &dyn EnvSource) -> Result<T, ConfigError>
where
    T: DeserializeOwned + Validate,
{
    let mut table = match file {
        Some(path) => read_file(path)?,
        None => toml::Table::new(),
    };
    apply_env(&mut table, env_prefix, env)?;
    let config: T = serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        ConfigError::Invalid {
            key: if key == "." { "(root)".into() } else { key },
            message: e.into_inner().to_string().trim().to_owned(),
        }
    })?;
    config.validate()?;
    Ok(config)
}

fn read_file(path: &Path) -> Result<toml::Table, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            path: path.to_owned(),
            message: e.to_string().trim().to_owned(),
        })
}

fn apply_env(
    table: &mut toml::Table,
    prefix: &str,
    env: &dyn EnvSource,
) -> Result<(), ConfigError> {
    let full_prefix = format!("{prefix}_");
    for (var, raw) in env.vars_with_prefix(&full_prefix) {
        let rest = &var[full_prefix.len()..];
        let path: Vec<String> = rest.split("__").map(str::to_ascii_lowercase).collect();
        if path.iter().any(String::is_empty) {
            return Err(ConfigError::Env {
                var,
                message: "empty key segment; use a single `__` between table and key".into(),
            });
        }
        let (leaf, parents) = path
            .split_last()
            .expect("split yields at least one segment");
        let mut node = &mut *table;
        for (depth, part) in parents.iter().enumerate() {
            let entry = node
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            node = match entry {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(ConfigError::Env {
                        var,
                        message: format!("`{}` is not a table", parents[..=depth].join(".")),
                    });
                }
            };
        }
        node.insert(leaf.clone(), scalar(&raw));
    }
    Ok(())
}

/// Reads an environment value as a TOML value where it is one, else as a string.
fn scalar(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

/// Writes a secret (a token, a bootstrap file) readable by its owner only (mode 0600), and
/// makes it durable.
pub fn write_secret(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields, default)]
    struct Inner {
        flush_ms: u64,
        name: String,
    }
    impl Default for Inner {
        fn default() -> Self {
            Inner {
                flush_ms: 5,
                name: "x".into(),
            }
        }
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Sample {
        data_dir: String,
        store: Inner,
    }

    impl Validate for Sample {
        fn validate(&self) -> Result<(), ConfigError> {
            if self.store.flush_ms > 1000 {
                return Err(ConfigError::invalid(
                    "store.flush_ms",
                    "must be at most 1000",
                ));
            }
            Ok(())
        }
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn load_str(text: &str, vars: &[(&str, &str)]) -> Result<Sample, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        load(Some(&path), "MX", &env(vars))
    }

    #[test]
    fn defaults_file_then_env() {
        let c = load_str("data_dir = \"/a\"\n[store]\nflush_ms = 7\n", &[]).unwrap();
        assert_eq!(c.data_dir, "/a");
        assert_eq!(c.store.flush_ms, 7);
        assert_eq!(c.store.name, "x");
        let c = load_str(
            "data_dir = \"/a\"\n",
            &[
                ("MX_DATA_DIR", "/b"),
                ("MX_STORE__FLUSH_MS", "9"),
                ("OTHER", "1"),
            ],
        )
        .unwrap();
        assert_eq!(c.data_dir, "/b");
        assert_eq!(c.store.flush_ms, 9);
    }

    #[test]
    fn no_file_means_defaults() {
        let c: Sample = load(None, "MX", &env(&[])).unwrap();
        assert_eq!(c, Sample::default());
    }

    #[test]
    fn errors_name_the_key() {
        type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            ("[store]\nflush_ms = \"soon\"\n", &[], "store.flush_ms"),
            ("[store]\nflsh_ms = 3\n", &[], "store.flsh_ms"),
            ("bogus = 1\n", &[], "bogus"),
            ("", &[("MX_STORE__FLUSH_MS", "-1")], "store.flush_ms"),
            ("[store]\nflush_ms = 5000\n", &[], "store.flush_ms"),
        ];
        for (text, vars, key) in cases {
            match load_str(text, vars) {
                Err(ConfigError::Invalid { key: k, message }) => {
                    assert!(k.starts_with(key), "{text:?}: key {k} ({message})");
                }
                other => panic!("{text:?}: expected Invalid for {key}, got {other:?}"),
            }
        }
    }

    #[test]
    fn syntax_read_and_env_errors() {
        assert!(matches!(
            load_str("data_dir = ", &[]),
            Err(ConfigError::Syntax { .. })
        ));
        let missing: Result<Sample, _> =
            load(Some(Path::new("/nonexistent/x.toml")), "MX", &env(&[]));
        assert!(matches!(missing, Err(ConfigError::Read { .. })));
        match load_str("", &[("MX_DATA_DIR__X", "1"), ("MX_DATA_DIR", "3")]) {
            // DATA_DIR sorts before DATA_DIR__X, so the scalar is set first and then descended into.
            Err(ConfigError::Env { var, .. }) => assert_eq!(var, "MX_DATA_DIR__X"),
            other => panic!("expected Env error, got {other:?}"),
        }
        assert!(matches!(
            load_str("", &[("MX_STORE____X", "1")]),
            Err(ConfigError::Env { .. })
        ));
    }
}
