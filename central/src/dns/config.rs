//! The `[dns]` table of central's configuration: the zone endpoint names are published in, the
//! provider's authoritative server, and the TSIG key that signs the updates.
//!
//! [`DnsConfig`] is what the file says; [`DnsConfig::settings`] checks every value (reading
//! the secret file) and returns the [`DnsSettings`] the publisher runs with. Every problem
//! names its key (`dns.zone`, `dns.tsig_secret_file`, ...).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use base64::Engine;
use meridian_common::config::ConfigError;
use serde::Deserialize;

use super::names;

/// Longest zone accepted: room for `<workload>.<tenant>.` (two labels of up to 63 characters
/// and their dots) in front of it within a name's 253 characters.
pub const MAX_ZONE_LEN: usize = 253 - 2 * (63 + 1);

/// Shortest TSIG secret accepted, bytes (RFC 8945 section 6: at least half the HMAC's
/// output; `tsig-keygen` makes 32 for hmac-sha256 and 64 for hmac-sha512).
pub const MIN_SECRET_BYTES: usize = 16;

/// Longest record TTL accepted, seconds (one day).
pub const MAX_TTL_S: u32 = 86_400;

/// The `[dns]` table as written. Absent: no endpoint names.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// The zone names are published in (`endpoints.example.net`); the server must be its
    /// primary and let the key update it.
    pub zone: String,
    /// `ip:port` of the zone's primary (authoritative) server; updates go there over TCP.
    pub server: String,
    /// The TSIG key's name, as the server knows it (`key "<name>" { ... }` in BIND).
    pub tsig_key_name: String,
    /// `hmac-sha256` (default), `hmac-sha384` or `hmac-sha512`.
    pub tsig_algorithm: String,
    /// A file holding the key's base64 secret: the secret alone, or a BIND key clause as
    /// `tsig-keygen` writes it (`secret "...";`).
    pub tsig_secret_file: PathBuf,
    /// TTL of the published A records, seconds.
    pub ttl_s: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            zone: String::new(),
            server: String::new(),
            tsig_key_name: String::new(),
            tsig_algorithm: "hmac-sha256".into(),
            tsig_secret_file: PathBuf::new(),
            ttl_s: 60,
        }
    }
}

/// The TSIG algorithms central signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsigAlgorithm {
    HmacSha256,
    HmacSha384,
    HmacSha512,
}

impl TsigAlgorithm {
    /// The algorithm's name in configuration and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            TsigAlgorithm::HmacSha256 => "hmac-sha256",
            TsigAlgorithm::HmacSha384 => "hmac-sha384",
            TsigAlgorithm::HmacSha512 => "hmac-sha512",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s.to_ascii_lowercase().as_str() {
            "hmac-sha256" => Some(TsigAlgorithm::HmacSha256),
            "hmac-sha384" => Some(TsigAlgorithm::HmacSha384),
            "hmac-sha512" => Some(TsigAlgorithm::HmacSha512),
            _ => None,
        }
    }
}

/// A checked `[dns]` table: what the publisher runs with.
#[derive(Clone, PartialEq, Eq)]
pub struct DnsSettings {
    /// The zone, lower case, without a trailing dot.
    pub zone: String,
    /// The zone's primary server.
    pub server: SocketAddr,
    /// The TSIG key's name, lower case, without a trailing dot.
    pub key_name: String,
    pub algorithm: TsigAlgorithm,
    /// The decoded secret.
    pub secret: Vec<u8>,
    /// TTL of the published records, seconds.
    pub ttl_s: u32,
}

impl std::fmt::Debug for DnsSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DnsSettings")
            .field("zone", &self.zone)
            .field("server", &self.server)
            .field("key_name", &self.key_name)
            .field("algorithm", &self.algorithm)
            .field("secret", &format_args!("<{} bytes>", self.secret.len()))
            .field("ttl_s", &self.ttl_s)
            .finish()
    }
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::invalid(format!("dns.{key}"), message)
}

impl DnsConfig {
    /// Checks every key and reads the secret file; errors name the key under `dns.`.
    pub fn settings(&self) -> Result<DnsSettings, ConfigError> {
        let zone = names::normalize_domain(&self.zone).map_err(|m| bad("zone", m))?;
        if zone.len() > MAX_ZONE_LEN {
            return Err(bad(
                "zone",
                format!(
                    "{} characters long; at most {MAX_ZONE_LEN} leave room for `<workload>.<tenant>.` in front",
                    zone.len()
                ),
            ));
        }
        if self.server.is_empty() {
            return Err(bad(
                "server",
                "required: ip:port of the zone's primary server",
            ));
        }
        let server: SocketAddr = self.server.parse().map_err(|_| {
            bad(
                "server",
                "must be ip:port (an IP address, not a host name, and a port)",
            )
        })?;
        if server.port() == 0 || server.ip().is_unspecified() {
            return Err(bad(
                "server",
                "must name a reachable address and a port other than 0",
            ));
        }
        let key_name = check_key_name(&self.tsig_key_name).map_err(|m| bad("tsig_key_name", m))?;
        let algorithm = TsigAlgorithm::parse(&self.tsig_algorithm).ok_or_else(|| {
            bad(
                "tsig_algorithm",
                "must be hmac-sha256, hmac-sha384 or hmac-sha512",
            )
        })?;
        if self.tsig_secret_file.as_os_str().is_empty() {
            return Err(bad(
                "tsig_secret_file",
                format!("required: a file holding the base64 secret of TSIG key {key_name}"),
            ));
        }
        let secret = read_secret(&self.tsig_secret_file, &key_name, algorithm)
            .map_err(|m| bad("tsig_secret_file", m))?;
        if !(1..=MAX_TTL_S).contains(&self.ttl_s) {
            return Err(bad("ttl_s", format!("must be between 1 and {MAX_TTL_S}")));
        }
        Ok(DnsSettings {
            zone,
            server,
            key_name,
            algorithm,
            secret,
            ttl_s: self.ttl_s,
        })
    }
}

/// A TSIG key name: a domain name (letters, digits, `-` and `_` in labels), lower case.
fn check_key_name(raw: &str) -> Result<String, String> {
    if raw.is_empty() {
        return Err("required: the TSIG key's name as the DNS server knows it".into());
    }
    let name = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    if name.len() > 253 {
        return Err(format!("{} characters long; at most 253", name.len()));
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("each dot-separated part must be 1 to 63 characters".into());
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(format!(
                "has {c:?}; only letters, digits, '-', '_' and '.' are allowed"
            ));
        }
    }
    Ok(name)
}

/// Reads a TSIG secret: the base64 text alone, or a BIND `key` clause, whose name and
/// algorithm must then be the configured ones.
fn read_secret(path: &Path, key: &str, algorithm: TsigAlgorithm) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        format!(
            "cannot read the secret of TSIG key {key} from {}: {e}",
            path.display()
        )
    })?;
    let in_file =
        |what: &str| format!("the secret of TSIG key {key} in {}: {what}", path.display());
    let encoded = match quoted_after(&text, "secret") {
        Some(secret) => {
            if let Some(name) = quoted_after(&text, "key") {
                let name = name.strip_suffix('.').unwrap_or(name);
                if !name.eq_ignore_ascii_case(key) {
                    return Err(in_file(&format!(
                        "the file holds key {name:?}, not {key:?} (dns.tsig_key_name)"
                    )));
                }
            }
            if let Some(alg) = word_after(&text, "algorithm")
                && TsigAlgorithm::parse(alg) != Some(algorithm)
            {
                return Err(in_file(&format!(
                    "the file's key uses {alg}, not {} (dns.tsig_algorithm)",
                    algorithm.as_str()
                )));
            }
            secret.to_owned()
        }
        None => text.split_whitespace().collect::<String>(),
    };
    if encoded.is_empty() {
        return Err(in_file("the file is empty"));
    }
    let secret = base64::engine::general_purpose::STANDARD
        .decode(encoded.as_bytes())
        .map_err(|e| in_file(&format!("not valid base64 ({e})")))?;
    if secret.len() < MIN_SECRET_BYTES {
        return Err(in_file(&format!(
            "{} bytes long; at least {MIN_SECRET_BYTES} are needed (tsig-keygen makes them)",
            secret.len()
        )));
    }
    Ok(secret)
}

/// The text between the double quotes that follow `word` in a BIND clause
/// (`secret "abc=";` -> `abc=`).
fn quoted_after<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = after_word(text, word)?.trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.split_once('"').map(|(inside, _)| inside)
}

/// The bare word that follows `word` in a BIND clause (`algorithm hmac-sha256;`).
fn word_after<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let rest = after_word(text, word)?.trim_start();
    let end = rest
        .find(|c: char| c.is_whitespace() || c == ';')
        .unwrap_or(rest.len());
    Some(&rest[..end]).filter(|w| !w.is_empty())
}

/// What follows the first standalone occurrence of `word`.
fn after_word<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let start = from + i;
        let end = start + word.len();
        let before_ok = text[..start]
            .chars()
            .next_back()
            .is_none_or(|c| c.is_whitespace() || c == '{' || c == ';');
        let after_ok = text[end..].chars().next().is_some_and(char::is_whitespace);
        if before_ok && after_ok {
            return Some(&text[end..]);
        }
        from = end;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LTMyYnk="; // 32 bytes

    fn with_secret(text: &str) -> (tempfile::TempDir, DnsConfig) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("tsig.key");
        std::fs::write(&file, text).unwrap();
        let c = DnsConfig {
            zone: "Endpoints.Example.NET.".into(),
            server: "192.0.2.53:53".into(),
            tsig_key_name: "meridian-update".into(),
            tsig_secret_file: file,
            ..DnsConfig::default()
        };
        (dir, c)
    }

    #[test]
    fn a_good_table_normalises_names_and_decodes_the_secret() {
        let (_dir, c) = with_secret(&format!("{SECRET}\n"));
        let s = c.settings().unwrap();
        assert_eq!(s.zone, "endpoints.example.net");
        assert_eq!(s.key_name, "meridian-update");
        assert_eq!(s.algorithm, TsigAlgorithm::HmacSha256);
        assert_eq!(s.secret.len(), 32);
        assert_eq!(s.ttl_s, 60);
        assert!(
            !format!("{s:?}").contains(SECRET),
            "the secret is never printed"
        );
    }

    #[test]
    fn a_bind_key_clause_is_read_and_must_match_the_key() {
        let clause = format!(
            "key \"meridian-update\" {{\n\talgorithm hmac-sha512;\n\tsecret \"{SECRET}\";\n}};\n"
        );
        let (_dir, mut c) = with_secret(&clause);
        c.tsig_algorithm = "HMAC-SHA512".into();
        assert_eq!(c.settings().unwrap().algorithm, TsigAlgorithm::HmacSha512);
        c.tsig_algorithm = "hmac-sha256".into();
        let e = c.settings().unwrap_err().to_string();
        assert!(
            e.contains("dns.tsig_secret_file") && e.contains("hmac-sha512"),
            "{e}"
        );
        c.tsig_algorithm = "hmac-sha512".into();
        c.tsig_key_name = "other".into();
        let e = c.settings().unwrap_err().to_string();
        assert!(e.contains("holds key \"meridian-update\""), "{e}");
    }

    #[test]
    fn bad_values_name_their_key() {
        type Tweak = fn(&mut DnsConfig);
        let cases: &[(Tweak, &str, &str)] = &[
            (|c| c.zone = String::new(), "dns.zone", "required"),
            (|c| c.zone = "bad_zone.net".into(), "dns.zone", "'_'"),
            (|c| c.zone = "a..net".into(), "dns.zone", "empty"),
            (|c| c.zone = "-a.net".into(), "dns.zone", "'-'"),
            (
                |c| c.zone = format!("{}.net", "a".repeat(64)),
                "dns.zone",
                "63",
            ),
            (
                |c| c.zone = vec!["abcdefghi"; 13].join("."),
                "dns.zone",
                "room",
            ),
            (|c| c.server = String::new(), "dns.server", "required"),
            (
                |c| c.server = "ns1.example.net:53".into(),
                "dns.server",
                "ip:port",
            ),
            (|c| c.server = "192.0.2.1".into(), "dns.server", "ip:port"),
            (|c| c.server = "192.0.2.1:0".into(), "dns.server", "port"),
            (
                |c| c.tsig_key_name = String::new(),
                "dns.tsig_key_name",
                "required",
            ),
            (
                |c| c.tsig_key_name = "a b".into(),
                "dns.tsig_key_name",
                "' '",
            ),
            (
                |c| c.tsig_algorithm = "hmac-md5".into(),
                "dns.tsig_algorithm",
                "hmac-sha256",
            ),
            (
                |c| c.tsig_secret_file = PathBuf::new(),
                "dns.tsig_secret_file",
                "meridian-update",
            ),
            (
                |c| c.tsig_secret_file = "/nonexistent/tsig.key".into(),
                "dns.tsig_secret_file",
                "cannot read the secret of TSIG key meridian-update",
            ),
            (|c| c.ttl_s = 0, "dns.ttl_s", "between"),
            (|c| c.ttl_s = MAX_TTL_S + 1, "dns.ttl_s", "between"),
        ];
        for (tweak, key, needle) in cases {
            let (_dir, mut c) = with_secret(SECRET);
            tweak(&mut c);
            match c.settings() {
                Err(ConfigError::Invalid { key: k, message }) => {
                    assert_eq!(&k, key, "{c:?}: {message}");
                    assert!(
                        message.contains(needle),
                        "{key}: {message:?} lacks {needle:?}"
                    );
                }
                other => panic!("{c:?}: expected an error naming {key}, got {other:?}"),
            }
        }
    }

    #[test]
    fn bad_secrets_name_the_key_and_the_file() {
        for (text, needle) in [
            ("", "empty"),
            ("not base64!", "base64"),
            ("c2hvcnQ=", "at least 16"),
            ("key \"meridian-update\" { secret \"\"; };", "empty"),
        ] {
            let (_dir, c) = with_secret(text);
            let e = c.settings().unwrap_err();
            let ConfigError::Invalid { key, message } = &e else {
                panic!("{e:?}")
            };
            assert_eq!(key, "dns.tsig_secret_file");
            assert!(
                message.contains("TSIG key meridian-update") && message.contains(needle),
                "{text:?}: {message}"
            );
        }
    }
}
