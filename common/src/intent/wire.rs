//! [`SiteIntent`] and all its parts.

use meridian_proto::v1 as proto;
use proto::server_action::{Action, Clean, Provision};

use super::model::{
    Allocation, AllocationMode, Exposure, PoolAssignment, PowerAction, ServerAction,
    ServerActionKind, SiteIntent, StorageVolume, TenantNetworkIntent, TenantPeer, WorkloadEndpoint,
};
use crate::ids::{Generation, RequestId};
use crate::net::wire::ipv4_addr;
use crate::wire::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, id, list, narrow, optional, required,
    to_wire, wire_enum,
};

wire_enum!(AllocationMode <=> AllocationMode { BareMetal, VirtualMachine, Container });
wire_enum!(PowerAction <=> PowerAction { On, Off, Cycle, Reboot });

impl From<TenantNetworkIntent> for proto::TenantNetworkIntent {
    fn from(n: TenantNetworkIntent) -> Self {
        Self {
            tenant: n.tenant.into(),
            vni: n.vni,
            table: n.table,
            subnet: Some(n.subnet.into()),
            gateway: n.gateway.to_string(),
        }
    }
}

impl TryFrom<proto::TenantNetworkIntent> for TenantNetworkIntent {
    type Error = ConvertError;

    fn try_from(n: proto::TenantNetworkIntent) -> Result<Self, ConvertError> {
        Ok(Self {
            tenant: id(&n.tenant).at("tenant")?,
            vni: n.vni,
            table: n.table,
            subnet: required(n.subnet, "subnet")?,
            gateway: ipv4_addr(&n.gateway).at("gateway")?,
        })
    }
}

impl From<TenantPeer> for proto::TenantPeer {
    fn from(p: TenantPeer) -> Self {
        Self {
            tenant: p.tenant.into(),
            site: p.site.into(),
            endpoint: p.endpoint.to_string(),
            subnet: Some(p.subnet.into()),
            gateway: p.gateway.to_string(),
        }
    }
}

impl TryFrom<proto::TenantPeer> for TenantPeer {
    type Error = ConvertError;

    fn try_from(p: proto::TenantPeer) -> Result<Self, ConvertError> {
        Ok(Self {
            tenant: id(&p.tenant).at("tenant")?,
            site: id(&p.site).at("site")?,
            endpoint: ipv4_addr(&p.endpoint).at("endpoint")?,
            subnet: required(p.subnet, "subnet")?,
            gateway: ipv4_addr(&p.gateway).at("gateway")?,
        })
    }
}

impl From<Allocation> for proto::Allocation {
    fn from(a: Allocation) -> Self {
        Self {
            workload: a.workload.into(),
            tenant: a.tenant.into(),
            server: a.server.into(),
            slot: Some(a.slot.into()),
            mode: enum_out(a.mode),
            image: a.image,
            window: a.window.map(Into::into),
            address: a.address.map(|ip| ip.to_string()),
        }
    }
}

impl TryFrom<proto::Allocation> for Allocation {
    type Error = ConvertError;

    fn try_from(a: proto::Allocation) -> Result<Self, ConvertError> {
        Ok(Self {
            workload: id(&a.workload).at("workload")?,
            tenant: id(&a.tenant).at("tenant")?,
            server: id(&a.server).at("server")?,
            slot: required(a.slot, "slot")?,
            mode: enum_in(a.mode).at("mode")?,
            image: a.image,
            window: optional(a.window, "window")?,
            address: a
                .address
                .as_deref()
                .map(ipv4_addr)
                .transpose()
                .at("address")?,
        })
    }
}

impl From<Exposure> for proto::Exposure {
    fn from(e: Exposure) -> Self {
        Self {
            tenant: e.tenant.into(),
            workload: e.workload.into(),
            public_ip: e.public_ip.to_string(),
            public_port: e.public_port.into(),
            protocol: enum_out(e.protocol),
            backend_ip: e.backend_ip.to_string(),
            backend_port: e.backend_port.into(),
        }
    }
}

impl TryFrom<proto::Exposure> for Exposure {
    type Error = ConvertError;

    fn try_from(e: proto::Exposure) -> Result<Self, ConvertError> {
        Ok(Self {
            tenant: id(&e.tenant).at("tenant")?,
            workload: id(&e.workload).at("workload")?,
            public_ip: ipv4_addr(&e.public_ip).at("public_ip")?,
            public_port: narrow(e.public_port).at("public_port")?,
            protocol: enum_in(e.protocol).at("protocol")?,
            backend_ip: ipv4_addr(&e.backend_ip).at("backend_ip")?,
            backend_port: narrow(e.backend_port).at("backend_port")?,
        })
    }
}

impl From<WorkloadEndpoint> for proto::Endpoint {
    fn from(e: WorkloadEndpoint) -> Self {
        Self {
            site: e.site.into(),
            exposure: Some(e.exposure.into()),
            generation: e.generation.get(),
            applied: e.applied,
            dns_name: e.dns_name.unwrap_or_default(),
        }
    }
}

impl TryFrom<proto::Endpoint> for WorkloadEndpoint {
    type Error = ConvertError;

    fn try_from(e: proto::Endpoint) -> Result<Self, ConvertError> {
        Ok(Self {
            site: id(&e.site).at("site")?,
            exposure: required(e.exposure, "exposure")?,
            generation: Generation::new(e.generation),
            applied: e.applied,
            dns_name: Some(e.dns_name).filter(|n| !n.is_empty()),
        })
    }
}

impl From<StorageVolume> for proto::StorageVolume {
    fn from(v: StorageVolume) -> Self {
        Self {
            tenant: v.tenant.into(),
            name: v.name.into(),
            size_mib: v.size_mib,
        }
    }
}

impl TryFrom<proto::StorageVolume> for StorageVolume {
    type Error = ConvertError;

    fn try_from(v: proto::StorageVolume) -> Result<Self, ConvertError> {
        Ok(Self {
            tenant: id(&v.tenant).at("tenant")?,
            name: id(&v.name).at("name")?,
            size_mib: v.size_mib,
        })
    }
}

impl From<ServerAction> for proto::ServerAction {
    fn from(a: ServerAction) -> Self {
        let action = match a.action {
            ServerActionKind::Power(p) => Action::Power(enum_out(p)),
            ServerActionKind::Provision { image } => Action::Provision(Provision { image }),
            ServerActionKind::Clean => Action::Clean(Clean {}),
        };
        Self {
            server: a.server.into(),
            action: Some(action),
            request: a.request.get(),
        }
    }
}

impl TryFrom<proto::ServerAction> for ServerAction {
    type Error = ConvertError;

    fn try_from(a: proto::ServerAction) -> Result<Self, ConvertError> {
        let server = id(&a.server).at("server")?;
        let action = match a.action.ok_or(ConvertProblem::Missing).at("action")? {
            Action::Power(p) => ServerActionKind::Power(enum_in(p).at("power")?),
            Action::Provision(Provision { image }) => ServerActionKind::Provision { image },
            Action::Clean(Clean {}) => ServerActionKind::Clean,
        };
        Ok(Self {
            server,
            action,
            request: RequestId::new(a.request),
        })
    }
}

impl From<PoolAssignment> for proto::PoolAssignment {
    fn from(p: PoolAssignment) -> Self {
        Self {
            server: p.server.into(),
            pool: p.pool.into(),
        }
    }
}

impl TryFrom<proto::PoolAssignment> for PoolAssignment {
    type Error = ConvertError;

    fn try_from(p: proto::PoolAssignment) -> Result<Self, ConvertError> {
        Ok(Self {
            server: id(&p.server).at("server")?,
            pool: id(&p.pool).at("pool")?,
        })
    }
}

impl From<SiteIntent> for proto::SiteIntent {
    fn from(i: SiteIntent) -> Self {
        Self {
            site: i.site.into(),
            generation: i.generation.get(),
            networks: to_wire(i.networks),
            allocations: to_wire(i.allocations),
            exposures: to_wire(i.exposures),
            volumes: to_wire(i.volumes),
            server_actions: to_wire(i.server_actions),
            pools: to_wire(i.pools),
            tunnel_endpoint: i.tunnel_endpoint.map(|ip| ip.to_string()),
            peers: to_wire(i.peers),
        }
    }
}

impl TryFrom<proto::SiteIntent> for SiteIntent {
    type Error = ConvertError;

    fn try_from(i: proto::SiteIntent) -> Result<Self, ConvertError> {
        Ok(Self {
            site: id(&i.site).at("site")?,
            generation: Generation::new(i.generation),
            networks: list(i.networks, "networks")?,
            allocations: list(i.allocations, "allocations")?,
            exposures: list(i.exposures, "exposures")?,
            volumes: list(i.volumes, "volumes")?,
            server_actions: list(i.server_actions, "server_actions")?,
            pools: list(i.pools, "pools")?,
            tunnel_endpoint: i
                .tunnel_endpoint
                .as_deref()
                .map(ipv4_addr)
                .transpose()
                .at("tunnel_endpoint")?,
            peers: list(i.peers, "peers")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use meridian_proto::v1 as proto;

    use crate::testkit::{Mutation, any_invalid, failures, intent};
    use crate::wire::ConvertProblem;

    #[test]
    fn a_workload_endpoint_round_trips_and_needs_its_exposure() {
        use crate::intent::WorkloadEndpoint;
        let i = intent();
        let e = WorkloadEndpoint {
            site: i.site.clone(),
            exposure: i.exposures[0].clone(),
            generation: i.generation,
            applied: true,
            dns_name: None,
        };
        let wire = proto::Endpoint::from(e.clone());
        assert_eq!(wire.dns_name, "", "no name: empty on the wire");
        assert_eq!(WorkloadEndpoint::try_from(wire.clone()).unwrap(), e);
        let named = WorkloadEndpoint {
            dns_name: Some("wl-1.acme.endpoints.example.net".into()),
            ..e.clone()
        };
        let named_wire = proto::Endpoint::from(named.clone());
        assert_eq!(WorkloadEndpoint::try_from(named_wire).unwrap(), named);
        let missing = WorkloadEndpoint::try_from(proto::Endpoint {
            exposure: None,
            ..wire
        })
        .unwrap_err();
        assert!(missing.to_string().contains("exposure"), "{missing}");
    }

    #[test]
    fn intent_failures() {
        use ConvertProblem::*;
        use proto::gpu_slot::Kind;
        let cases: &[(&str, Mutation<proto::SiteIntent>, &str, ConvertProblem)] = &[
            (
                "bad server id",
                |i| i.allocations[1].server = "Srv_2".into(),
                "allocations[1].server",
                any_invalid(),
            ),
            (
                "MIG profile unknown to every model",
                |i| {
                    if let Some(Kind::Mig(m)) = &mut i.allocations[0].slot.as_mut().unwrap().kind {
                        m.profile = "3g.41gb".into();
                    }
                },
                "allocations[0].slot.mig.profile",
                any_invalid(),
            ),
            (
                "bad allocation address",
                |i| i.allocations[0].address = Some("10.64.3".into()),
                "allocations[0].address",
                any_invalid(),
            ),
            (
                "bad tunnel endpoint",
                |i| i.tunnel_endpoint = Some("198.51.100.300".into()),
                "tunnel_endpoint",
                any_invalid(),
            ),
            (
                "bad peer endpoint",
                |i| i.peers[0].endpoint = String::new(),
                "peers[0].endpoint",
                any_invalid(),
            ),
            (
                "peer without a subnet",
                |i| i.peers[0].subnet = None,
                "peers[0].subnet",
                Missing,
            ),
            (
                "unspecified mode",
                |i| i.allocations[2].mode = 0,
                "allocations[2].mode",
                Unspecified,
            ),
            (
                "missing slot",
                |i| i.allocations[2].slot = None,
                "allocations[2].slot",
                Missing,
            ),
            (
                "public port over u16",
                |i| i.exposures[0].public_port = 65_536,
                "exposures[0].public_port",
                OutOfRange {
                    value: 65_536,
                    max: 65_535,
                },
            ),
            (
                "backend port over u16",
                |i| i.exposures[0].backend_port = u32::MAX,
                "exposures[0].backend_port",
                OutOfRange {
                    value: u64::from(u32::MAX),
                    max: 65_535,
                },
            ),
            (
                "bad backend address",
                |i| i.exposures[0].backend_ip = "10.64.3".into(),
                "exposures[0].backend_ip",
                any_invalid(),
            ),
            (
                "bad gateway",
                |i| i.networks[0].gateway = String::new(),
                "networks[0].gateway",
                any_invalid(),
            ),
            (
                "missing subnet",
                |i| i.networks[0].subnet = None,
                "networks[0].subnet",
                Missing,
            ),
            (
                "bad subnet",
                |i| i.networks[0].subnet.as_mut().unwrap().addr = "10.64.3.9".into(),
                "networks[0].subnet.addr",
                any_invalid(),
            ),
            (
                "absent action oneof",
                |i| i.server_actions[2].action = None,
                "server_actions[2].action",
                Missing,
            ),
            (
                "unspecified power action",
                |i| i.server_actions[0].action = Some(proto::server_action::Action::Power(0)),
                "server_actions[0].power",
                Unspecified,
            ),
            (
                "unknown power action",
                |i| i.server_actions[0].action = Some(proto::server_action::Action::Power(5)),
                "server_actions[0].power",
                UnknownEnum(5),
            ),
            (
                "bad volume name",
                |i| i.volumes[0].name = "x".repeat(64),
                "volumes[0].name",
                any_invalid(),
            ),
            (
                "bad pool",
                |i| i.pools[0].pool = "-".into(),
                "pools[0].pool",
                any_invalid(),
            ),
            (
                "bad site",
                |i| i.site = "FRA-1".into(),
                "site",
                any_invalid(),
            ),
        ];
        failures(intent(), cases);
    }

    mod prop {
        use super::*;
        use proptest::collection::vec;
        use proptest::option;
        use proptest::prelude::*;
        use proptest::sample::select;

        use crate::ids::{Generation, Name, PoolId, ServerId, SiteId, TenantId, WorkloadId};
        use crate::intent::{
            Allocation, AllocationMode, Exposure, PoolAssignment, PowerAction, ServerAction,
            ServerActionKind, SiteIntent, StorageVolume, TenantNetworkIntent,
        };
        use crate::net::Ipv4Net;
        use crate::testkit::assert_round_trip;
        use crate::testkit::strategy::{ipv4, protocol, slot, typed, window};

        fn intent() -> impl Strategy<Value = SiteIntent> {
            let network = (
                typed::<TenantId>(),
                any::<u32>(),
                any::<u32>(),
                (ipv4(), 0u8..=32),
                ipv4(),
            )
                .prop_map(|(tenant, vni, table, (addr, len), gateway)| {
                    TenantNetworkIntent {
                        tenant,
                        vni,
                        table,
                        subnet: Ipv4Net::new(addr, len).unwrap(),
                        gateway,
                    }
                });
            let allocation = (
                typed::<WorkloadId>(),
                typed::<TenantId>(),
                typed::<ServerId>(),
                slot(),
                select(vec![
                    AllocationMode::BareMetal,
                    AllocationMode::VirtualMachine,
                    AllocationMode::Container,
                ]),
                option::of(".{0,30}"),
                option::of(window()),
            )
                .prop_map(
                    |(workload, tenant, server, slot, mode, image, window)| Allocation {
                        address: None,
                        workload,
                        tenant,
                        server,
                        slot,
                        mode,
                        image,
                        window,
                    },
                );
            let exposure = (
                typed::<TenantId>(),
                typed::<WorkloadId>(),
                (ipv4(), any::<u16>()),
                protocol(),
                (ipv4(), any::<u16>()),
            )
                .prop_map(
                    |(
                        tenant,
                        workload,
                        (public_ip, public_port),
                        protocol,
                        (backend_ip, backend_port),
                    )| {
                        Exposure {
                            tenant,
                            workload,
                            public_ip,
                            public_port,
                            protocol,
                            backend_ip,
                            backend_port,
                        }
                    },
                );
            let volume = (typed::<TenantId>(), typed::<Name>(), any::<u64>()).prop_map(
                |(tenant, name, size_mib)| StorageVolume {
                    tenant,
                    name,
                    size_mib,
                },
            );
            let action_kind = prop_oneof![
                select(vec![
                    PowerAction::On,
                    PowerAction::Off,
                    PowerAction::Cycle,
                    PowerAction::Reboot
                ])
                .prop_map(ServerActionKind::Power),
                ".{0,30}".prop_map(|image| ServerActionKind::Provision { image }),
                Just(ServerActionKind::Clean),
            ];
            let action =
                (typed::<ServerId>(), action_kind, 1u64..).prop_map(|(server, action, request)| {
                    ServerAction {
                        server,
                        action,
                        request: request.into(),
                    }
                });
            let pool = (typed::<ServerId>(), typed::<PoolId>())
                .prop_map(|(server, pool)| PoolAssignment { server, pool });
            (
                typed::<SiteId>(),
                any::<u64>(),
                vec(network, 0..3),
                vec(allocation, 0..4),
                vec(exposure, 0..3),
                vec(volume, 0..3),
                vec(action, 0..3),
                vec(pool, 0..3),
            )
                .prop_map(
                    |(
                        site,
                        generation,
                        networks,
                        allocations,
                        exposures,
                        volumes,
                        server_actions,
                        pools,
                    )| {
                        SiteIntent {
                            peers: vec![],
                            tunnel_endpoint: None,
                            site,
                            generation: Generation::new(generation),
                            networks,
                            allocations,
                            exposures,
                            volumes,
                            server_actions,
                            pools,
                        }
                    },
                )
        }

        proptest! {
            #[test]
            fn site_intent_round_trips(intent in intent()) {
                assert_round_trip::<_, proto::SiteIntent>(intent);
            }
        }
    }
}
