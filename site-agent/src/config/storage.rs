//! `[storage]`: the site's external storage array, on which the agent keeps one volume per
//! tenant volume of the intent (NetApp ONTAP's REST API).

use std::fmt;
use std::path::PathBuf;

use meridian_common::config::ConfigError;
use serde::Deserialize;

use super::Access;

/// The storage array.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// The cluster's management address, `https://...` (`http://` for an emulator).
    pub url: String,
    /// An ONTAP user allowed to manage the SVM's volumes, quota rules and export policies;
    /// with `password`, or `credentials_file`.
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// A TOML file with `username` and `password` (mode 0600).
    #[serde(default)]
    pub credentials_file: Option<PathBuf>,
    /// The cluster's certificate or CA (PEM), required for https.
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// The SVM (vserver) tenant volumes live in.
    pub svm: String,
    /// The aggregate new volumes are created on.
    pub aggregate: String,
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &self.url)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("credentials_file", &self.credentials_file)
            .field("tls_ca_file", &self.tls_ca_file)
            .field("svm", &self.svm)
            .field("aggregate", &self.aggregate)
            .finish()
    }
}

impl StorageConfig {
    pub(crate) fn access(&self) -> Access<'_> {
        Access {
            url_key: "url",
            what: "storage array",
            url: &self.url,
            may_be_insecure: false,
            username: &self.username,
            password: &self.password,
            credentials_file: &self.credentials_file,
            tls_ca_file: &self.tls_ca_file,
            tls_insecure: false,
            basic_auth: true,
        }
    }
}

/// An ONTAP object name: a letter or `_` first, then letters, digits and `_`, at most 203.
fn ontap_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && s.len() <= 203
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Checks the keys.
pub(super) fn validate(storage: &StorageConfig) -> Result<(), ConfigError> {
    let key = |k: &str| format!("storage.{k}");
    storage.access().validate(&key)?;
    for (k, v) in [("svm", &storage.svm), ("aggregate", &storage.aggregate)] {
        if !ontap_name(v) {
            return Err(ConfigError::invalid(
                key(k),
                "must be an ONTAP name (a letter or '_' first, then letters, digits and '_')",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use meridian_common::config::{ConfigError, Validate};

    use super::super::AgentConfig;

    fn load(text: &str) -> Result<AgentConfig, ConfigError> {
        let c: AgentConfig =
            toml::from_str(text).map_err(|e| ConfigError::invalid("toml", e.to_string()))?;
        c.validate()?;
        Ok(c)
    }

    const GOOD: &str = "[storage]\nurl = \"http://127.0.0.1:9\"\nusername = \"admin\"\npassword = \"pw\"\nsvm = \"svm1\"\naggregate = \"aggr1\"\n";

    #[test]
    fn a_good_array_builds_its_driver_and_bad_keys_are_named() {
        let c = load(GOOD).unwrap();
        assert_eq!(c.storage.as_ref().unwrap().svm, "svm1");
        assert!(
            !format!("{:?}", c.storage).contains("\"pw\""),
            "the password is redacted"
        );
        let r = crate::wiring::site_reconciler(&c).unwrap();
        assert!(r.is_some(), "an array alone is something to reconcile");
        for (text, key) in [
            (GOOD.replace("http://", "ftp://"), "storage.url"),
            (
                GOOD.replace("http://127.0.0.1:9", "https://array"),
                "storage.tls_ca_file",
            ),
            (GOOD.replace("svm1", "svm-1"), "storage.svm"),
            (GOOD.replace("aggr1", "1aggr"), "storage.aggregate"),
            (
                GOOD.replace("password = \"pw\"\n", ""),
                "storage.credentials_file",
            ),
            (format!("{GOOD}pool = 3\n"), "pool"),
        ] {
            let e = load(&text).unwrap_err();
            assert!(e.to_string().contains(key), "{key}: {e}");
        }
    }
}
