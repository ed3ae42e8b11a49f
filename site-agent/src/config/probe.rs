//! `[[probe]]`: the user regions the agent measures its round trip to, and how. Each round
//! (every `interval_s`) the agent probes every target of a region a few times and reports the
//! median of the best target as `ReportBody::Rtt` (see [`crate::probe`]).

use std::collections::BTreeSet;
use std::net::SocketAddr;

use meridian_common::config::ConfigError;
use meridian_common::ids::RegionId;
use serde::Deserialize;

/// Most targets per region.
pub const MAX_TARGETS: usize = 16;
/// Bounds of `interval_s`.
pub const INTERVAL_S: std::ops::RangeInclusive<u64> = 1..=3_600;
/// Bounds of `timeout_ms`.
pub const TIMEOUT_MS: std::ops::RangeInclusive<u64> = 10..=10_000;

/// How a target is probed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ProbeKind {
    /// A small datagram with a nonce to an RFC 862 echo service (UDP port 7 or another);
    /// the RTT is from sending it to its echo. Replies without the nonce are ignored.
    #[default]
    UdpEcho,
    /// A TCP connection: the RTT is the handshake's (connect) time; nothing is sent.
    Tcp,
}

/// One region's probe.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// The region's ID, as central knows it.
    pub region: String,
    /// `host:port` of servers in the region (an IP or a DNS name, `[v6]:port` for IPv6).
    pub targets: Vec<String>,
    /// `udp-echo` (default) or `tcp`.
    #[serde(default)]
    pub kind: ProbeKind,
    /// Seconds between rounds.
    #[serde(default = "default_interval_s")]
    pub interval_s: u64,
    /// How long one sample waits for its answer.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

fn default_interval_s() -> u64 {
    30
}

fn default_timeout_ms() -> u64 {
    1_000
}

impl ProbeConfig {
    /// The region (checked by [`validate`]).
    pub fn region_id(&self) -> Option<RegionId> {
        RegionId::parse(&self.region).ok()
    }
}

/// A target split into host and port: an IP address and port, or a DNS name and port.
pub fn parse_target(s: &str) -> Result<(String, u16), String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        if addr.port() == 0 {
            return Err(format!("{s}: port 0"));
        }
        return Ok((addr.ip().to_string(), addr.port()));
    }
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(format!("{s}: not host:port"));
    };
    let port: u16 = port
        .parse()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s}: the port must be 1 to 65535"))?;
    let name_ok = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    if !name_ok {
        return Err(format!(
            "{s}: the host must be an IP address ([v6] for IPv6) or a DNS name"
        ));
    }
    Ok((host.to_owned(), port))
}

/// Checks every `[[probe]]` table, naming the key of the first problem (`probe[1].targets`).
pub(super) fn validate(probes: &[ProbeConfig]) -> Result<(), ConfigError> {
    let mut regions = BTreeSet::new();
    for (i, p) in probes.iter().enumerate() {
        let key = |k: &str| format!("probe[{i}].{k}");
        let region = RegionId::parse(&p.region)
            .map_err(|e| ConfigError::invalid(key("region"), e.to_string()))?;
        if !regions.insert(region) {
            return Err(ConfigError::invalid(
                key("region"),
                format!("region {} has a [[probe]] table already", p.region),
            ));
        }
        if p.targets.is_empty() || p.targets.len() > MAX_TARGETS {
            return Err(ConfigError::invalid(
                key("targets"),
                format!("give 1 to {MAX_TARGETS} targets (host:port)"),
            ));
        }
        for t in &p.targets {
            parse_target(t).map_err(|e| ConfigError::invalid(key("targets"), e))?;
        }
        if !INTERVAL_S.contains(&p.interval_s) {
            return Err(ConfigError::invalid(
                key("interval_s"),
                format!(
                    "must be {} to {} seconds",
                    INTERVAL_S.start(),
                    INTERVAL_S.end()
                ),
            ));
        }
        if !TIMEOUT_MS.contains(&p.timeout_ms) {
            return Err(ConfigError::invalid(
                key("timeout_ms"),
                format!("must be {} to {} ms", TIMEOUT_MS.start(), TIMEOUT_MS.end()),
            ));
        }
        if p.timeout_ms > p.interval_s * 1_000 {
            return Err(ConfigError::invalid(
                key("timeout_ms"),
                "must not be longer than interval_s",
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(text: &str) -> Result<Vec<ProbeConfig>, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        std::fs::write(&path, text).unwrap();
        let env: std::collections::BTreeMap<String, String> = Default::default();
        let c: crate::config::AgentConfig =
            meridian_common::config::load(Some(&path), crate::config::ENV_PREFIX, &env)?;
        Ok(c.probe)
    }

    #[test]
    fn probes_are_read_with_their_defaults() {
        let p = probe(
            r#"
            [[probe]]
            region = "paris"
            targets = ["192.0.2.7:7", "echo.paris.example.net:7", "[2001:db8::7]:7"]

            [[probe]]
            region = "berlin"
            targets = ["198.51.100.1:443"]
            kind = "tcp"
            interval_s = 5
            timeout_ms = 500
            "#,
        )
        .unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].kind, ProbeKind::UdpEcho);
        assert_eq!((p[0].interval_s, p[0].timeout_ms), (30, 1_000));
        assert_eq!(p[0].region_id(), RegionId::parse("paris").ok());
        assert_eq!(p[1].kind, ProbeKind::Tcp);
        assert_eq!((p[1].interval_s, p[1].timeout_ms), (5, 500));
        assert!(probe("").unwrap().is_empty());
    }

    #[test]
    fn bad_probes_are_refused_with_the_key() {
        let ok = "[[probe]]\nregion = \"paris\"\ntargets = [\"127.0.0.1:7\"]\n";
        let cases = [
            (ok.replace("paris", "Paris"), "probe[0].region"),
            (format!("{ok}{ok}"), "probe[1].region"),
            (ok.replace("[\"127.0.0.1:7\"]", "[]"), "probe[0].targets"),
            (ok.replace("127.0.0.1:7", "127.0.0.1"), "probe[0].targets"),
            (ok.replace("127.0.0.1:7", "127.0.0.1:0"), "probe[0].targets"),
            (ok.replace("127.0.0.1:7", "bad_host:7"), "probe[0].targets"),
            (
                ok.replace("127.0.0.1:7", "2001:db8::7:7"),
                "probe[0].targets",
            ),
            (ok.replace("127.0.0.1:7", "host:70000"), "probe[0].targets"),
            (format!("{ok}interval_s = 0\n"), "probe[0].interval_s"),
            (format!("{ok}interval_s = 3601\n"), "probe[0].interval_s"),
            (format!("{ok}timeout_ms = 5\n"), "probe[0].timeout_ms"),
            (
                format!("{ok}interval_s = 1\ntimeout_ms = 2000\n"),
                "probe[0].timeout_ms",
            ),
            (format!("{ok}kind = \"icmp\"\n"), "kind"),
            (format!("{ok}samples = 3\n"), "samples"),
        ];
        for (text, key) in cases {
            let e = probe(&text).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn targets_split_into_host_and_port() {
        assert_eq!(parse_target("127.0.0.1:7"), Ok(("127.0.0.1".to_owned(), 7)));
        assert_eq!(parse_target("[::1]:7"), Ok(("::1".to_owned(), 7)));
        assert_eq!(
            parse_target("echo.example.net:7007"),
            Ok(("echo.example.net".to_owned(), 7007))
        );
        assert!(parse_target("echo..example.net:7").is_err());
        assert!(parse_target(":7").is_err());
    }
}
