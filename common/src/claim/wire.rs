//! [`NetworkClaim`] and its stored form, `NetworkClaimRecord`.

use std::net::Ipv4Addr;

use meridian_proto::v1 as proto;

use super::model::{HostKey, NetworkClaim, PublicEndpoint, PublicKey};
use crate::ids::{SiteId, TenantId, TypedId, WorkloadId};
use crate::net::{Ipv4Net, Protocol};
use crate::wire::{ConvertError, ConvertProblem};

impl From<&NetworkClaim> for proto::NetworkClaimRecord {
    fn from(c: &NetworkClaim) -> Self {
        let mut w = proto::NetworkClaimRecord {
            tenant: c.tenant().to_string(),
            ..proto::NetworkClaimRecord::default()
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
                w.protocol = key.protocol.as_str().into();
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

impl TryFrom<proto::NetworkClaimRecord> for NetworkClaim {
    type Error = ConvertError;
    fn try_from(w: proto::NetworkClaimRecord) -> Result<Self, ConvertError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::claim::validate_claim;

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
            assert_eq!(validate_claim(&claim), Ok(()));
            let wire = proto::NetworkClaimRecord::from(&claim);
            assert_eq!(NetworkClaim::try_from(wire).unwrap(), claim);
        }
    }

    #[test]
    fn bad_records_are_refused() {
        let wire = proto::NetworkClaimRecord {
            kind: "bogus".into(),
            tenant: "acme".into(),
            ..Default::default()
        };
        assert_eq!(NetworkClaim::try_from(wire).unwrap_err().field, "kind");
        let wire = proto::NetworkClaimRecord {
            kind: "host".into(),
            tenant: "acme".into(),
            site: "fra-1".into(),
            workload: "w".into(),
            address: "10.0.0.300".into(),
            ..Default::default()
        };
        assert_eq!(NetworkClaim::try_from(wire).unwrap_err().field, "address");
        let table = NetworkClaim::Table {
            table: 254,
            tenant: t("acme"),
        };
        assert!(validate_claim(&table).is_err());
    }
}
