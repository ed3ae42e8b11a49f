//! [`WorkloadSpec`] and all its parts, [`Workload`] and its
//! [`ReservationState`](crate::model::ReservationState).

use meridian_proto::v1 as proto;
use proto::accelerator::{Kind, Mig, NoGpu, WholeGpus};

use super::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, failable_state, gpu_model, id, ids,
    list, mig_profile, narrow, optional, required, residency, residency_to_wire, to_wire,
    unique_with, wire_enum,
};
use crate::model::{
    Accelerator, Constraints, LatencyConstraint, PortExposure, Resources, Spread, Workload,
    WorkloadSpec,
};

wire_enum!(WorkloadKind <=> WorkloadKind {
    InferenceEndpoint, BareMetal, VirtualMachine, KubernetesCluster, BatchJob, RanFunction,
});
failable_state!(ReservationState <=> ReservationState {
    phase: ReservationPhase, Pending, Approved, Active, Completed, Canceled,
});

impl From<Accelerator> for proto::Accelerator {
    fn from(a: Accelerator) -> Self {
        let kind = match a {
            Accelerator::None => Kind::None(NoGpu {}),
            Accelerator::WholeGpus { model, count } => Kind::WholeGpus(WholeGpus {
                model: model.as_str().to_owned(),
                count,
            }),
            Accelerator::Mig { model, profile } => Kind::Mig(Mig {
                model: model.as_str().to_owned(),
                profile: profile.name().to_owned(),
            }),
        };
        Self { kind: Some(kind) }
    }
}

impl TryFrom<proto::Accelerator> for Accelerator {
    type Error = ConvertError;

    /// The MIG profile is checked against the model.
    fn try_from(a: proto::Accelerator) -> Result<Self, ConvertError> {
        match a.kind.ok_or(ConvertProblem::Missing).at("kind")? {
            Kind::None(NoGpu {}) => Ok(Self::None),
            Kind::WholeGpus(w) => Ok(Self::WholeGpus {
                model: gpu_model(&w.model).at("whole_gpus.model")?,
                count: w.count,
            }),
            Kind::Mig(m) => {
                let model = gpu_model(&m.model).at("mig.model")?;
                let profile = mig_profile(Some(model), &m.profile).at("mig.profile")?;
                Ok(Self::Mig { model, profile })
            }
        }
    }
}

impl From<Resources> for proto::Resources {
    fn from(r: Resources) -> Self {
        Self {
            accelerator: Some(r.accelerator.into()),
            cpu_cores: r.cpu_cores,
            memory_mib: r.memory_mib,
            storage_mib: r.storage_mib,
        }
    }
}

impl TryFrom<proto::Resources> for Resources {
    type Error = ConvertError;

    fn try_from(r: proto::Resources) -> Result<Self, ConvertError> {
        Ok(Self {
            accelerator: required(r.accelerator, "accelerator")?,
            cpu_cores: r.cpu_cores,
            memory_mib: r.memory_mib,
            storage_mib: r.storage_mib,
        })
    }
}

impl From<LatencyConstraint> for proto::LatencyConstraint {
    fn from(l: LatencyConstraint) -> Self {
        Self {
            from_regions: to_wire(l.from),
            max_rtt_ms: l.max_rtt_ms,
        }
    }
}

impl TryFrom<proto::LatencyConstraint> for LatencyConstraint {
    type Error = ConvertError;

    fn try_from(l: proto::LatencyConstraint) -> Result<Self, ConvertError> {
        Ok(Self {
            from: ids(l.from_regions, "from_regions")?,
            max_rtt_ms: l.max_rtt_ms,
        })
    }
}

impl From<Spread> for proto::Spread {
    fn from(s: Spread) -> Self {
        Self {
            min_sites: s.min_sites,
            max_per_site: s.max_per_site,
        }
    }
}

impl TryFrom<proto::Spread> for Spread {
    type Error = ConvertError;

    /// Never fails: the rules on spread are [`validate`](crate::validate)'s.
    fn try_from(s: proto::Spread) -> Result<Self, ConvertError> {
        Ok(Self {
            min_sites: s.min_sites,
            max_per_site: s.max_per_site,
        })
    }
}

impl From<Constraints> for proto::Constraints {
    fn from(c: Constraints) -> Self {
        Self {
            latency: c.latency.map(Into::into),
            residency: residency_to_wire(c.residency),
            certifications: c.certifications.into_iter().map(enum_out).collect(),
            datasets: to_wire(c.datasets),
            spread: c.spread.map(Into::into),
            colocate: c.colocate,
            tier: c.tier.map(enum_out),
            pin_server: c.pin_server.map(Into::into),
        }
    }
}

impl TryFrom<proto::Constraints> for Constraints {
    type Error = ConvertError;

    fn try_from(c: proto::Constraints) -> Result<Self, ConvertError> {
        Ok(Self {
            latency: optional(c.latency, "latency")?,
            residency: residency(c.residency, "residency")?,
            certifications: unique_with(c.certifications, "certifications", "", enum_in)?,
            datasets: ids(c.datasets, "datasets")?,
            spread: optional(c.spread, "spread")?,
            colocate: c.colocate,
            tier: c.tier.map(enum_in).transpose().at("tier")?,
            pin_server: c.pin_server.map(|s| id(&s)).transpose().at("pin_server")?,
        })
    }
}

impl From<PortExposure> for proto::PortExposure {
    fn from(p: PortExposure) -> Self {
        Self {
            port: p.port.into(),
            protocol: enum_out(p.protocol),
        }
    }
}

impl TryFrom<proto::PortExposure> for PortExposure {
    type Error = ConvertError;

    fn try_from(p: proto::PortExposure) -> Result<Self, ConvertError> {
        Ok(Self {
            port: narrow(p.port).at("port")?,
            protocol: enum_in(p.protocol).at("protocol")?,
        })
    }
}

impl From<WorkloadSpec> for proto::WorkloadSpec {
    fn from(s: WorkloadSpec) -> Self {
        Self {
            name: s.name.into(),
            kind: enum_out(s.kind),
            resources: Some(s.resources.into()),
            replicas: s.replicas,
            constraints: Some(s.constraints.into()),
            window: s.window.map(Into::into),
            priority: s.priority,
            image: s.image,
            expose: to_wire(s.expose),
        }
    }
}

impl TryFrom<proto::WorkloadSpec> for WorkloadSpec {
    type Error = ConvertError;

    fn try_from(s: proto::WorkloadSpec) -> Result<Self, ConvertError> {
        Ok(Self {
            name: id(&s.name).at("name")?,
            kind: enum_in(s.kind).at("kind")?,
            resources: required(s.resources, "resources")?,
            replicas: s.replicas,
            constraints: required(s.constraints, "constraints")?,
            window: optional(s.window, "window")?,
            priority: s.priority,
            image: s.image,
            expose: list(s.expose, "expose")?,
        })
    }
}

impl From<Workload> for proto::Workload {
    fn from(w: Workload) -> Self {
        Self {
            id: w.id.into(),
            tenant: w.tenant.into(),
            spec: Some(w.spec.into()),
            state: Some(w.state.into()),
            created_at: w.created_at.as_millis(),
        }
    }
}

impl TryFrom<proto::Workload> for Workload {
    type Error = ConvertError;

    fn try_from(w: proto::Workload) -> Result<Self, ConvertError> {
        Ok(Self {
            id: id(&w.id).at("id")?,
            tenant: id(&w.tenant).at("tenant")?,
            spec: required(w.spec, "spec")?,
            state: required(w.state, "state")?,
            created_at: crate::ids::Timestamp::from_millis(w.created_at),
        })
    }
}
