//! IPv4 prefixes and transport protocols.
//!
//! An [`Ipv4Net`] is always normalised: host bits are cleared on construction, so
//! `10.1.2.3/8` is stored (and shown) as `10.0.0.0/8`, and two nets are equal exactly when
//! they cover the same addresses. `prefix_len` is always `0..=32`.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::jurisdiction::shown;

/// Why an IPv4 prefix did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetError {
    /// Not of the form `a.b.c.d/len`.
    #[error("{shown} is not an IPv4 prefix (write it as a.b.c.d/len, e.g. 203.0.113.0/24)")]
    Syntax {
        /// The input, quoted, or its length when long.
        shown: String,
    },
    /// The prefix length is over 32.
    #[error("prefix length {len} is over 32")]
    PrefixLen {
        /// The requested length.
        len: u8,
    },
}

/// An IPv4 network prefix, normalised (no host bits set).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix_len: u8,
}

impl Ipv4Net {
    /// The prefix of `addr` with `prefix_len` bits; host bits are cleared.
    pub fn new(addr: Ipv4Addr, prefix_len: u8) -> Result<Self, NetError> {
        if prefix_len > 32 {
            return Err(NetError::PrefixLen { len: prefix_len });
        }
        let addr = Ipv4Addr::from(u32::from(addr) & mask(prefix_len));
        Ok(Self { addr, prefix_len })
    }

    /// Parses `a.b.c.d/len`.
    pub fn parse(s: &str) -> Result<Self, NetError> {
        let syntax = || NetError::Syntax { shown: shown(s) };
        let (addr, len) = s.split_once('/').ok_or_else(syntax)?;
        let addr: Ipv4Addr = addr.parse().map_err(|_| syntax())?;
        if len.is_empty() || len.len() > 2 || !len.bytes().all(|b| b.is_ascii_digit()) {
            return Err(syntax());
        }
        let len: u8 = len.parse().map_err(|_| syntax())?;
        Self::new(addr, len)
    }

    /// The network address.
    pub const fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// The prefix length.
    pub const fn prefix_len(&self) -> u8 {
        self.prefix_len
    }

    /// The netmask as a number.
    pub fn netmask(&self) -> u32 {
        mask(self.prefix_len)
    }

    /// The last address of the prefix.
    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) | !self.netmask())
    }

    /// How many addresses the prefix covers.
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.prefix_len))
    }

    /// Whether `ip` lies in the prefix.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.netmask() == u32::from(self.addr)
    }

    /// Whether `other` lies wholly within this prefix.
    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.prefix_len >= self.prefix_len && self.contains(other.addr)
    }

    /// Whether the two prefixes share any address.
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }
}

fn mask(prefix_len: u8) -> u32 {
    if prefix_len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix_len))
    }
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

impl FromStr for Ipv4Net {
    type Err = NetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl TryFrom<String> for Ipv4Net {
    type Error = NetError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<Ipv4Net> for String {
    fn from(n: Ipv4Net) -> String {
        n.to_string()
    }
}

/// A transport protocol for exposed ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Protocol {
    /// Its lowercase name (`tcp`, `udp`), as nft, the CLI and stored keys write it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_normalise() {
        let n = Ipv4Net::parse("10.1.2.3/8").unwrap();
        assert_eq!(n.to_string(), "10.0.0.0/8");
        assert_eq!(n, Ipv4Net::parse("10.0.0.0/8").unwrap());
        assert_eq!(n.broadcast(), Ipv4Addr::new(10, 255, 255, 255));
        assert_eq!(Ipv4Net::parse("0.0.0.0/0").unwrap().size(), 1 << 32);
        assert_eq!(Ipv4Net::parse("1.2.3.4/32").unwrap().size(), 1);
        for bad in [
            "",
            "10.0.0.0",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0/8",
            "x/8",
            "10.0.0.0/8/8",
            "10.0.0.0/008",
            "256.0.0.0/8",
            " 10.0.0.0/8",
        ] {
            assert!(Ipv4Net::parse(bad).is_err(), "{bad:?}");
        }
        let huge = "1".repeat(10 << 20);
        assert!(Ipv4Net::parse(&huge).unwrap_err().to_string().len() < 200);
        assert_eq!(
            Ipv4Net::new(Ipv4Addr::LOCALHOST, 40),
            Err(NetError::PrefixLen { len: 40 })
        );
    }

    #[test]
    fn containment() {
        let n = Ipv4Net::parse("192.0.2.0/24").unwrap();
        assert!(n.contains(Ipv4Addr::new(192, 0, 2, 0)));
        assert!(n.contains(Ipv4Addr::new(192, 0, 2, 255)));
        assert!(!n.contains(Ipv4Addr::new(192, 0, 3, 0)));
        let sub = Ipv4Net::parse("192.0.2.128/25").unwrap();
        assert!(n.contains_net(&sub) && !sub.contains_net(&n));
        assert!(n.overlaps(&sub) && sub.overlaps(&n));
        assert!(!sub.overlaps(&Ipv4Net::parse("192.0.2.0/25").unwrap()));
        assert!(
            Ipv4Net::parse("0.0.0.0/0")
                .unwrap()
                .contains(Ipv4Addr::BROADCAST)
        );
    }

    #[test]
    fn serde_as_string() {
        #[derive(Debug, PartialEq, Serialize, Deserialize)]
        struct Doc {
            net: Ipv4Net,
        }
        let d: Doc = toml::from_str("net = \"198.51.100.7/24\"").unwrap();
        assert_eq!(
            toml::to_string(&d).unwrap().trim(),
            "net = \"198.51.100.0/24\""
        );
        assert!(toml::from_str::<Doc>("net = \"198.51.100.0/99\"").is_err());
    }
}
