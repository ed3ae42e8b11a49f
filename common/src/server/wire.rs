//! [`Server`] and its parts: BMC, DPU, provisioning state (its GPUs are `gpu/wire.rs`'s).

use meridian_proto::v1 as proto;

use super::model::{BmcEndpoint, BmcVendor, Dpu, DpuMode, Server, ServerState};
use crate::jurisdiction::shown;
use crate::wire::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, failable_state, id, list, optional,
    required, to_wire, wire_enum,
};

wire_enum!(DpuMode <=> DpuMode { Dpu, Nic });
failable_state!(ServerState <=> ServerState {
    phase: ServerPhase, Discovered, Inspecting, Available, Allocated, Cleaning,
});

/// Every BMC vendor (`BmcEndpoint.vendor` is a string on the wire; see [`vendor_name`]).
pub(crate) const BMC_VENDORS: [BmcVendor; 6] = [
    BmcVendor::Dell,
    BmcVendor::Hpe,
    BmcVendor::Lenovo,
    BmcVendor::Supermicro,
    BmcVendor::Nvidia,
    BmcVendor::Generic,
];

/// The wire name of a BMC vendor.
fn vendor_name(vendor: BmcVendor) -> &'static str {
    match vendor {
        BmcVendor::Dell => "Dell",
        BmcVendor::Hpe => "HPE",
        BmcVendor::Lenovo => "Lenovo",
        BmcVendor::Supermicro => "Supermicro",
        BmcVendor::Nvidia => "NVIDIA",
        BmcVendor::Generic => "Generic",
    }
}

fn vendor_from_name(raw: &str) -> Result<BmcVendor, ConvertError> {
    BMC_VENDORS
        .into_iter()
        .find(|v| vendor_name(*v) == raw)
        .ok_or_else(|| {
            ConvertProblem::Invalid(format!(
                "{} is not a known BMC vendor (Dell, HPE, Lenovo, Supermicro, NVIDIA, Generic)",
                shown(raw)
            ))
            .into()
        })
}

impl From<BmcEndpoint> for proto::BmcEndpoint {
    fn from(b: BmcEndpoint) -> Self {
        Self {
            url: b.url,
            vendor: vendor_name(b.vendor).to_owned(),
        }
    }
}

impl TryFrom<proto::BmcEndpoint> for BmcEndpoint {
    type Error = ConvertError;

    fn try_from(b: proto::BmcEndpoint) -> Result<Self, ConvertError> {
        Ok(Self {
            url: b.url,
            vendor: vendor_from_name(&b.vendor).at("vendor")?,
        })
    }
}

impl From<Dpu> for proto::Dpu {
    fn from(d: Dpu) -> Self {
        Self {
            model: d.model,
            serial: d.serial,
            mode: enum_out(d.mode),
        }
    }
}

impl TryFrom<proto::Dpu> for Dpu {
    type Error = ConvertError;

    fn try_from(d: proto::Dpu) -> Result<Self, ConvertError> {
        Ok(Self {
            model: d.model,
            serial: d.serial,
            mode: enum_in(d.mode).at("mode")?,
        })
    }
}

impl From<Server> for proto::Server {
    fn from(s: Server) -> Self {
        Self {
            id: s.id.into(),
            site: s.site.into(),
            bmc: Some(s.bmc.into()),
            serial: s.serial,
            cpu_cores: s.cpu_cores,
            memory_mib: s.memory_mib,
            gpus: to_wire(s.gpus),
            dpu: s.dpu.map(Into::into),
            pool: s.pool.map(Into::into),
            state: Some(s.state.into()),
        }
    }
}

impl TryFrom<proto::Server> for Server {
    type Error = ConvertError;

    fn try_from(s: proto::Server) -> Result<Self, ConvertError> {
        Ok(Self {
            id: id(&s.id).at("id")?,
            site: id(&s.site).at("site")?,
            bmc: required(s.bmc, "bmc")?,
            serial: s.serial,
            cpu_cores: s.cpu_cores,
            memory_mib: s.memory_mib,
            gpus: list(s.gpus, "gpus")?,
            dpu: optional(s.dpu, "dpu")?,
            pool: s.pool.map(|p| id(&p)).transpose().at("pool")?,
            state: required(s.state, "state")?,
        })
    }
}
