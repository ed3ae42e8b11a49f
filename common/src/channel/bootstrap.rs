//! The bootstrap file a site's ISO carries to enrol: central's address(es), the SHA-256
//! fingerprint of central's CA, the site id and a one-time token. TOML on disk:
//!
//! ```toml
//! central_addresses = ["central.example.net:7443"]
//! ca_fingerprint_sha256 = "3f9c...64 lowercase hex digits"
//! site = "edge-de-0001"
//! token = "btk-....<secret>"
//! expires_at = 1767225600000   # unix millis; informational, central enforces it
//! ```

use serde::{Deserialize, Serialize};

use crate::ids::{SiteId, Timestamp};

/// Longest token accepted in a bootstrap file.
pub const MAX_TOKEN_LEN: usize = 256;
/// Most central addresses in one file.
pub const MAX_ADDRESSES: usize = 16;

/// A parsed, validated bootstrap file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapFile {
    /// `host:port` endpoints of central, tried in order.
    pub central_addresses: Vec<String>,
    /// SHA-256 of central's CA certificate (DER).
    pub ca_fingerprint: [u8; 32],
    /// The site this file enrols.
    pub site: SiteId,
    /// The one-time token secret.
    pub token: String,
    /// When the token expires.
    pub expires_at: Timestamp,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    central_addresses: Vec<String>,
    ca_fingerprint_sha256: String,
    site: String,
    token: String,
    #[serde(default)]
    expires_at: i64,
}

/// Why a bootstrap file was refused. Each variant names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// Not TOML, or a field is missing, unknown or of the wrong type.
    #[error("bootstrap file is not valid: {0}")]
    Syntax(String),
    /// A field has a bad value.
    #[error("bootstrap file field `{field}`: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
}

fn field(field: &'static str, message: impl Into<String>) -> BootstrapError {
    BootstrapError::Field {
        field,
        message: message.into(),
    }
}

/// Checks one `host:port` address.
fn check_address(addr: &str) -> Result<(), String> {
    let (host, port) = addr
        .rsplit_once(':')
        .ok_or_else(|| format!("{addr:?} is not host:port"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || host.len() > 253 || host.chars().any(|c| c.is_whitespace()) {
        return Err(format!("{addr:?} has no valid host"));
    }
    match port.parse::<u16>() {
        Ok(p) if p != 0 => Ok(()),
        _ => Err(format!("{addr:?} has no valid port (1..=65535)")),
    }
}

/// Parses a fingerprint: 64 lowercase hex digits (colons allowed between bytes).
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let clean: String = text.chars().filter(|c| *c != ':').collect();
    if clean.len() != 64 || clean.chars().any(|c| c.is_ascii_uppercase()) {
        return None;
    }
    let bytes = hex::decode(&clean).ok()?;
    bytes.try_into().ok()
}

impl BootstrapFile {
    /// Parses and validates the TOML text of a bootstrap file.
    pub fn parse(text: &str) -> Result<Self, BootstrapError> {
        let raw: Raw = toml::from_str(text)
            .map_err(|e| BootstrapError::Syntax(e.to_string().trim().to_owned()))?;
        if raw.central_addresses.is_empty() {
            return Err(field(
                "central_addresses",
                "must list at least one host:port",
            ));
        }
        if raw.central_addresses.len() > MAX_ADDRESSES {
            return Err(field(
                "central_addresses",
                format!("at most {MAX_ADDRESSES} addresses are allowed"),
            ));
        }
        for addr in &raw.central_addresses {
            check_address(addr).map_err(|m| field("central_addresses", m))?;
        }
        let ca_fingerprint = parse_fingerprint(&raw.ca_fingerprint_sha256).ok_or_else(|| {
            field(
                "ca_fingerprint_sha256",
                "must be 64 lowercase hex digits (SHA-256 of the CA certificate)",
            )
        })?;
        let site = SiteId::parse(&raw.site).map_err(|e| field("site", e.to_string()))?;
        if raw.token.is_empty() || raw.token.len() > MAX_TOKEN_LEN {
            return Err(field(
                "token",
                format!("must be 1 to {MAX_TOKEN_LEN} characters"),
            ));
        }
        if !raw
            .token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_')
        {
            return Err(field("token", "may hold only a-z, A-Z, 0-9, '-', '.', '_'"));
        }
        Ok(BootstrapFile {
            central_addresses: raw.central_addresses,
            ca_fingerprint,
            site,
            token: raw.token,
            expires_at: Timestamp::from_millis(raw.expires_at),
        })
    }

    /// Renders the file as TOML (parses back to the same value).
    pub fn render(&self) -> String {
        let raw = Raw {
            central_addresses: self.central_addresses.clone(),
            ca_fingerprint_sha256: hex::encode(self.ca_fingerprint),
            site: self.site.as_str().to_owned(),
            token: self.token.clone(),
            expires_at: self.expires_at.as_millis(),
        };
        format!(
            "# Meridian bootstrap file: enrols site {} once. Keep it secret.\n{}",
            self.site,
            toml::to_string(&raw).expect("plain strings and numbers serialise")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sample() -> BootstrapFile {
        BootstrapFile {
            central_addresses: vec!["127.0.0.1:7443".into(), "central.example.net:7443".into()],
            ca_fingerprint: [0xab; 32],
            site: SiteId::parse("edge-de-0001").unwrap(),
            token: "btk-1.abcdef".into(),
            expires_at: Timestamp::from_millis(1_700_000_000_000),
        }
    }

    #[test]
    fn render_parses_back() {
        let f = sample();
        assert_eq!(BootstrapFile::parse(&f.render()).unwrap(), f);
    }

    #[test]
    fn bad_fields_are_named() {
        let good = sample().render();
        let cases = [
            (
                good.replace("127.0.0.1:7443", "127.0.0.1"),
                "central_addresses",
            ),
            (
                good.replace("central.example.net:7443", "x:0"),
                "central_addresses",
            ),
            (
                good.replace(&"ab".repeat(32), &"AB".repeat(32)),
                "ca_fingerprint_sha256",
            ),
            (
                good.replace(&"ab".repeat(32), "abc"),
                "ca_fingerprint_sha256",
            ),
            (good.replace("edge-de-0001", "Edge_1"), "site"),
            (good.replace("btk-1.abcdef", "bad token"), "token"),
        ];
        for (text, name) in cases {
            match BootstrapFile::parse(&text) {
                Err(BootstrapError::Field { field, .. }) => assert_eq!(field, name, "{text}"),
                other => panic!("expected an error for {name}, got {other:?}"),
            }
        }
        assert!(matches!(
            BootstrapFile::parse("site = 1"),
            Err(BootstrapError::Syntax(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in ".{0,200}") {
            let _ = BootstrapFile::parse(&text);
        }
    }
}
