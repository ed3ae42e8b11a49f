//! Network claims as stored: one key per allocated resource, under `net/`.
//!
//! | key (under `net/`) | holds | listed by |
//! |---|---|---|
//! | `vni/{vni:08}` | the tenant | `vni/` |
//! | `table/{table:010}` | the tenant | `table/` |
//! | `supernet/{a.b.c.d}_{len}` | the tenant | `supernet/` |
//! | `subnet/{tenant}/{a.b.c.d}_{len}` | the site | tenant: `subnet/{tenant}/` |
//! | `host/{tenant}/{a.b.c.d}` | site, workload, replica | tenant: `host/{tenant}/` |
//! | `public/{site}/{a.b.c.d}_{port:05}_{tcp\|udp}` | tenant, workload, replica, backend port | site: `public/{site}/` |
//!
//! The key *is* the resource, so a store-enforced "absent" compare on create makes each one
//! collision-free across publishers; the value names the owner, so the reverse maps are built
//! by listing. Numbers are zero-padded so key order is numeric order. Values are protobuf (a
//! message local to central, [`ClaimWire`]) like every other table.

use std::net::Ipv4Addr;

use meridian_common::convert::{ConvertError, ConvertProblem};
use meridian_common::ids::{SiteId, TenantId, TypedId, WorkloadId};
use meridian_common::model::{Ipv4Net, Protocol};
use meridian_common::validate::{Problem, ValidationError, limits};
use prost::Message;

use super::{HostKey, PublicEndpoint, PublicKey};
use crate::store::tables::{DecodeFailure, KeyPath, Record};

/// One allocated network resource and its owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetworkClaim {
    /// A tenant's VNI.
    Vni {
        /// The VNI.
        vni: u32,
        /// The owner.
        tenant: TenantId,
    },
    /// A tenant's routing table.
    Table {
        /// The table number.
        table: u32,
        /// The owner.
        tenant: TenantId,
    },
    /// A tenant's supernet.
    Supernet {
        /// The prefix.
        supernet: Ipv4Net,
        /// The owner.
        tenant: TenantId,
    },
    /// A tenant's subnet on one site.
    Subnet {
        /// The owner.
        tenant: TenantId,
        /// The prefix (inside the tenant's supernet).
        subnet: Ipv4Net,
        /// The site.
        site: SiteId,
    },
    /// A replica's address in its tenant's subnet.
    Host {
        /// The replica.
        key: HostKey,
        /// Its address.
        address: Ipv4Addr,
    },
    /// A public endpoint on a site's gateway.
    Public {
        /// The exposure.
        key: PublicKey,
        /// The public address and port.
        endpoint: PublicEndpoint,
    },
}

/// The table prefix of claims.
pub const NET_TABLE: &str = "net";

fn net_key(net: &Ipv4Net) -> String {
    format!("{}_{}", net.addr(), net.prefix_len())
}

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    }
}

impl NetworkClaim {
    /// The key path under `net/`.
    pub fn path(&self) -> String {
        match self {
            NetworkClaim::Vni { vni, .. } => format!("vni/{vni:08}"),
            NetworkClaim::Table { table, .. } => format!("table/{table:010}"),
            NetworkClaim::Supernet { supernet, .. } => format!("supernet/{}", net_key(supernet)),
            NetworkClaim::Subnet { tenant, subnet, .. } => {
                format!("subnet/{tenant}/{}", net_key(subnet))
            }
            NetworkClaim::Host { key, address } => format!("host/{}/{address}", key.tenant),
            NetworkClaim::Public { key, endpoint } => format!(
                "public/{}/{}_{:05}_{}",
                key.site,
                endpoint.address,
                endpoint.port,
                protocol_name(key.protocol)
            ),
        }
    }

    /// The tenant that holds it.
    pub fn tenant(&self) -> &TenantId {
        match self {
            NetworkClaim::Vni { tenant, .. }
            | NetworkClaim::Table { tenant, .. }
            | NetworkClaim::Supernet { tenant, .. }
            | NetworkClaim::Subnet { tenant, .. } => tenant,
            NetworkClaim::Host { key, .. } => &key.tenant,
            NetworkClaim::Public { key, .. } => &key.tenant,
        }
    }

    /// The listing parent of every tenant-level claim of one kind (`vni`, `table`,
    /// `supernet`).
    pub fn pool_parents() -> [KeyPath; 3] {
        ["vni", "table", "supernet"].map(|k| KeyPath(k.to_owned()))
    }

    /// The listing parent of a tenant's subnet claims.
    pub fn subnets_of(tenant: &TenantId) -> KeyPath {
        KeyPath(format!("subnet/{tenant}"))
    }

    /// The listing parent of a tenant's host claims.
    pub fn hosts_of(tenant: &TenantId) -> KeyPath {
        KeyPath(format!("host/{tenant}"))
    }

    /// The listing parent of a site's public endpoint claims.
    pub fn public_of(site: &SiteId) -> KeyPath {
        KeyPath(format!("public/{site}"))
    }
}

/// The stored form of a [`NetworkClaim`]: which fields are set depends on `kind`.
#[derive(Clone, PartialEq, Message)]
pub struct ClaimWire {
    /// `vni`, `table`, `supernet`, `subnet`, `host` or `public`.
    #[prost(string, tag = "1")]
    pub kind: String,
    /// The owner.
    #[prost(string, tag = "2")]
    pub tenant: String,
    /// VNI or table number.
    #[prost(uint32, tag = "3")]
    pub number: u32,
    /// Supernet or subnet (`a.b.c.d/len`).
    #[prost(string, tag = "4")]
    pub prefix: String,
    /// The site (subnet, host, public).
    #[prost(string, tag = "5")]
    pub site: String,
    /// Host or public address.
    #[prost(string, tag = "6")]
    pub address: String,
    /// The workload (host, public).
    #[prost(string, tag = "7")]
    pub workload: String,
    /// The replica (host, public).
    #[prost(uint32, tag = "8")]
    pub replica: u32,
    /// Public port.
    #[prost(uint32, tag = "9")]
    pub public_port: u32,
    /// Backend port (public).
    #[prost(uint32, tag = "10")]
    pub backend_port: u32,
    /// `tcp` or `udp` (public).
    #[prost(string, tag = "11")]
    pub protocol: String,
}

impl From<&NetworkClaim> for ClaimWire {
    fn from(c: &NetworkClaim) -> Self {
        let mut w = ClaimWire {
            tenant: c.tenant().to_string(),
            ..ClaimWire::default()
        };
        match c {
            NetworkClaim::Vni { vni, .. } => {
                w.kind = "vni".into();
                w.number = *vni;
            }
            NetworkClaim::Table { table, .. } => {
                w.kind = "table".into();
                w.number = *table;
            }
            NetworkClaim::Supernet { supernet, .. } => {
                w.kind = "supernet".into();
                w.prefix = supernet.to_string();
            }
            NetworkClaim::Subnet { subnet, site, .. } => {
                w.kind = "subnet".into();
                w.prefix = subnet.to_string();
                w.site = site.to_string();
            }
            NetworkClaim::Host { key, address } => {
                w.kind = "host".into();
                w.site = key.site.to_string();
                w.workload = key.workload.to_string();
                w.replica = key.replica;
                w.address = address.to_string();
            }
            NetworkClaim::Public { key, endpoint } => {
                w.kind = "public".into();
                w.site = key.site.to_string();
                w.workload = key.workload.to_string();
                w.replica = key.replica;
                w.address = endpoint.address.to_string();
                w.public_port = u32::from(endpoint.port);
                w.backend_port = u32::from(key.port);
                w.protocol = protocol_name(key.protocol).into();
            }
        }
        w
    }
}

fn invalid(field: &str, message: impl Into<String>) -> ConvertError {
    ConvertError::new(ConvertProblem::Invalid(message.into())).at(field)
}

fn id<T: TypedId>(field: &str, raw: &str) -> Result<T, ConvertError> {
    T::parse(raw).map_err(|e| invalid(field, e.to_string()))
}

fn port(field: &str, raw: u32) -> Result<u16, ConvertError> {
    u16::try_from(raw).map_err(|_| {
        ConvertError::new(ConvertProblem::OutOfRange {
            value: u64::from(raw),
            max: u64::from(u16::MAX),
        })
        .at(field)
    })
}

impl TryFrom<ClaimWire> for NetworkClaim {
    type Error = ConvertError;
    fn try_from(w: ClaimWire) -> Result<Self, ConvertError> {
        let tenant: TenantId = id("tenant", &w.tenant)?;
        let prefix = || Ipv4Net::parse(&w.prefix).map_err(|e| invalid("prefix", e.to_string()));
        let address = || {
            w.address
                .parse::<Ipv4Addr>()
                .map_err(|e| invalid("address", e.to_string()))
        };
        let site = || id::<SiteId>("site", &w.site);
        let host = |tenant: TenantId| -> Result<HostKey, ConvertError> {
            Ok(HostKey {
                tenant,
                site: site()?,
                workload: id::<WorkloadId>("workload", &w.workload)?,
                replica: w.replica,
            })
        };
        Ok(match w.kind.as_str() {
            "vni" => NetworkClaim::Vni {
                vni: w.number,
                tenant,
            },
            "table" => NetworkClaim::Table {
                table: w.number,
                tenant,
            },
            "supernet" => NetworkClaim::Supernet {
                supernet: prefix()?,
                tenant,
            },
            "subnet" => NetworkClaim::Subnet {
                tenant,
                subnet: prefix()?,
                site: site()?,
            },
            "host" => NetworkClaim::Host {
                address: address()?,
                key: host(tenant)?,
            },
            "public" => {
                let h = host(tenant)?;
                let protocol = match w.protocol.as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    other => {
                        return Err(invalid("protocol", format!("{other:?} is not tcp or udp")));
                    }
                };
                NetworkClaim::Public {
                    key: PublicKey {
                        site: h.site,
                        tenant: h.tenant,
                        workload: h.workload,
                        replica: h.replica,
                        port: port("backend_port", w.backend_port)?,
                        protocol,
                    },
                    endpoint: PublicEndpoint {
                        address: address()?,
                        port: port("public_port", w.public_port)?,
                    },
                }
            }
            other => return Err(invalid("kind", format!("{other:?} is not a claim kind"))),
        })
    }
}

impl Record for NetworkClaim {
    const TABLE: &'static str = NET_TABLE;

    fn key_path(&self) -> String {
        self.path()
    }

    fn encode(&self) -> Vec<u8> {
        ClaimWire::from(self).encode_to_vec()
    }

    fn decode(raw: &[u8]) -> Result<Self, DecodeFailure> {
        Ok(NetworkClaim::try_from(ClaimWire::decode(raw)?)?)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let problem =
            |field: &str, message: String| Err(ValidationError(vec![Problem::new(field, message)]));
        match self {
            NetworkClaim::Vni { vni, .. } if *vni == 0 || *vni > limits::MAX_VNI => problem(
                "vni",
                format!("must lie in 1..={}, got {vni}", limits::MAX_VNI),
            ),
            NetworkClaim::Table { table, .. } if limits::RESERVED_TABLES.contains(table) => {
                problem("table", format!("table {table} is reserved (0, 253-255)"))
            }
            NetworkClaim::Public { key, endpoint } if key.port == 0 || endpoint.port == 0 => {
                problem("port", "ports must lie in 1..=65535, got 0".into())
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> TenantId {
        s.parse().unwrap()
    }

    #[test]
    fn keys_and_round_trip() {
        let host = HostKey {
            tenant: t("acme"),
            site: "fra-1".parse().unwrap(),
            workload: "web".parse().unwrap(),
            replica: 3,
        };
        let public = PublicKey {
            site: host.site.clone(),
            tenant: host.tenant.clone(),
            workload: host.workload.clone(),
            replica: 3,
            port: 443,
            protocol: Protocol::Udp,
        };
        let cases = [
            (
                NetworkClaim::Vni {
                    vni: 10_000,
                    tenant: t("acme"),
                },
                "vni/00010000",
            ),
            (
                NetworkClaim::Table {
                    table: 1_000,
                    tenant: t("acme"),
                },
                "table/0000001000",
            ),
            (
                NetworkClaim::Supernet {
                    supernet: "10.1.0.0/16".parse().unwrap(),
                    tenant: t("acme"),
                },
                "supernet/10.1.0.0_16",
            ),
            (
                NetworkClaim::Subnet {
                    tenant: t("acme"),
                    subnet: "10.1.2.0/24".parse().unwrap(),
                    site: "fra-1".parse().unwrap(),
                },
                "subnet/acme/10.1.2.0_24",
            ),
            (
                NetworkClaim::Host {
                    key: host,
                    address: Ipv4Addr::new(10, 1, 2, 2),
                },
                "host/acme/10.1.2.2",
            ),
            (
                NetworkClaim::Public {
                    key: public,
                    endpoint: PublicEndpoint {
                        address: Ipv4Addr::new(203, 0, 113, 2),
                        port: 443,
                    },
                },
                "public/fra-1/203.0.113.2_00443_udp",
            ),
        ];
        for (claim, path) in cases {
            assert_eq!(claim.path(), path);
            assert_eq!(claim.validate(), Ok(()));
            assert_eq!(NetworkClaim::decode(&claim.encode()).unwrap(), claim);
        }
    }

    #[test]
    fn bad_records_are_refused() {
        let wire = ClaimWire {
            kind: "bogus".into(),
            tenant: "acme".into(),
            ..ClaimWire::default()
        };
        assert!(NetworkClaim::decode(&wire.encode_to_vec()).is_err());
        let wire = ClaimWire {
            kind: "host".into(),
            tenant: "acme".into(),
            site: "fra-1".into(),
            workload: "w".into(),
            address: "10.0.0.300".into(),
            ..ClaimWire::default()
        };
        let err = NetworkClaim::decode(&wire.encode_to_vec()).unwrap_err();
        assert!(err.to_string().contains("convert"), "{err}");
        let table = NetworkClaim::Table {
            table: 254,
            tenant: t("acme"),
        };
        assert!(table.validate().is_err());
    }
}
