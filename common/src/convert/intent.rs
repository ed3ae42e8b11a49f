//! [`SiteIntent`] and all its parts.

use meridian_proto::v1 as proto;
use proto::server_action::{Action, Clean, Provision};

use super::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, id, ipv4_addr, list, narrow,
    optional, required, to_wire, wire_enum,
};
use crate::ids::Generation;
use crate::model::{
    Allocation, Exposure, PoolAssignment, ServerAction, ServerActionKind, SiteIntent,
    StorageVolume, TenantNetworkIntent,
};

wire_enum!(AllocationMode <=> AllocationMode { BareMetal, VirtualMachine, Container });
wire_enum!(PowerAction <=> PowerAction { On, Off, Cycle });

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
        Ok(Self { server, action })
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
        })
    }
}
