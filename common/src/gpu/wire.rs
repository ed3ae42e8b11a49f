//! [`Gpu`] and its MIG layout, and the parsers of GPU model and MIG profile names that every
//! message naming a GPU model or a MIG profile uses.

use meridian_proto::v1 as proto;

use super::model::{Gpu, GpuHealth, GpuModel, MigConfig, MigInstance, MigProfile};
use crate::wire::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, invalid, list_with, narrow, to_wire,
    wire_enum,
};

wire_enum!(GpuHealth <=> GpuHealth {
    Healthy, Degraded, Failed,
});

/// A GPU model name.
pub(crate) fn gpu_model(raw: &str) -> Result<GpuModel, ConvertError> {
    GpuModel::parse(raw).map_err(|e| invalid(e).into())
}

/// A MIG profile name: checked against `model` when the message says which GPU model it is
/// for, otherwise against the catalogue of every model.
pub(crate) fn mig_profile(model: Option<GpuModel>, raw: &str) -> Result<MigProfile, ConvertError> {
    match model {
        Some(model) => MigProfile::parse(model, raw),
        None => MigProfile::parse_any(raw),
    }
    .map_err(|e| invalid(e).into())
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
