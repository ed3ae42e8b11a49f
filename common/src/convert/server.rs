//! [`Server`] and its parts: BMC, DPU, GPUs, MIG layout, provisioning state.

use meridian_proto::v1 as proto;

use super::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, failable_state, gpu_model, id, list,
    list_with, mig_profile, narrow, optional, required, to_wire, wire_enum,
};
use crate::model::jurisdiction::shown;
use crate::model::{BmcEndpoint, BmcVendor, Dpu, Gpu, GpuModel, MigConfig, MigInstance, Server};

wire_enum!(DpuMode <=> DpuMode { Dpu, Nic });
wire_enum!(GpuHealth <=> GpuHealth {
    Healthy, Degraded, Failed,
});
failable_state!(ServerState <=> ServerState {
    phase: ServerPhase, Discovered, Inspecting, Available, Allocated, Cleaning,
});

/// Every BMC vendor (`BmcEndpoint.vendor` is a string on the wire; see [`vendor_name`]).
pub(super) const BMC_VENDORS: [BmcVendor; 6] = [
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

impl From<MigInstance> for proto::MigInstance {
    fn from(m: MigInstance) -> Self {
        Self {
            profile: m.profile.name().to_owned(),
            placement: m.placement.into(),
        }
    }
}

/// A MIG instance whose profile is checked against `model` when known.
fn mig_instance(
    m: proto::MigInstance,
    model: Option<GpuModel>,
) -> Result<MigInstance, ConvertError> {
    Ok(MigInstance {
        profile: mig_profile(model, &m.profile).at("profile")?,
        placement: narrow(m.placement).at("placement")?,
    })
}

impl TryFrom<proto::MigInstance> for MigInstance {
    type Error = ConvertError;

    /// Without a GPU model at hand the profile is checked against every model's catalogue.
    fn try_from(m: proto::MigInstance) -> Result<Self, ConvertError> {
        mig_instance(m, None)
    }
}

impl From<MigConfig> for proto::MigConfig {
    fn from(m: MigConfig) -> Self {
        match m {
            MigConfig::Disabled => Self {
                enabled: false,
                instances: Vec::new(),
            },
            MigConfig::Enabled { instances } => Self {
                enabled: true,
                instances: to_wire(instances),
            },
        }
    }
}

/// A MIG configuration whose profiles are checked against `model` when known.
fn mig_config(m: proto::MigConfig, model: Option<GpuModel>) -> Result<MigConfig, ConvertError> {
    if !m.enabled {
        if !m.instances.is_empty() {
            return Err(ConvertProblem::Invalid(
                "must be empty when enabled is false (MIG off has no instances)".into(),
            ))
            .at("instances");
        }
        return Ok(MigConfig::Disabled);
    }
    let instances = list_with(m.instances, "instances", |i| mig_instance(i, model))?;
    Ok(MigConfig::Enabled { instances })
}

impl TryFrom<proto::MigConfig> for MigConfig {
    type Error = ConvertError;

    /// Without a GPU model at hand the profiles are checked against every model's catalogue.
    fn try_from(m: proto::MigConfig) -> Result<Self, ConvertError> {
        mig_config(m, None)
    }
}

impl From<Gpu> for proto::Gpu {
    fn from(g: Gpu) -> Self {
        Self {
            index: g.index,
            model: g.model.as_str().to_owned(),
            memory_mib: g.memory_mib,
            mig: Some(g.mig.into()),
            health: enum_out(g.health),
        }
    }
}

impl TryFrom<proto::Gpu> for Gpu {
    type Error = ConvertError;

    /// MIG profiles are checked against this GPU's model.
    fn try_from(g: proto::Gpu) -> Result<Self, ConvertError> {
        let model = gpu_model(&g.model).at("model")?;
        let mig = g.mig.ok_or(ConvertProblem::Missing).at("mig")?;
        Ok(Self {
            index: g.index,
            model,
            memory_mib: g.memory_mib,
            mig: mig_config(mig, Some(model)).at("mig")?,
            health: enum_in(g.health).at("health")?,
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
