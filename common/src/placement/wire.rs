//! [`Placement`] and its parts: assignments, GPU slots, score, rejections.

use std::collections::BTreeMap;

use meridian_proto::v1 as proto;
use proto::gpu_slot::{Kind, Mig, NoGpu, WholeGpus};

use super::model::{Assignment, GpuSlot, Placement, RejectReason, ScoreBreakdown};
use crate::gpu::wire::mig_profile;
use crate::ids::Timestamp;
use crate::wire::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, id, list, narrow, optional, required,
    to_wire, unique_with, wire_enum,
};

wire_enum!(RejectReason <=> RejectReason {
    SiteNotOnline, Residency, DatasetResidency, Certification, Tier, Latency, Capacity, Spread,
    Colocation, Quota, Hardware,
});

impl From<GpuSlot> for proto::GpuSlot {
    fn from(s: GpuSlot) -> Self {
        let kind = match s {
            GpuSlot::None => Kind::None(NoGpu {}),
            GpuSlot::WholeGpus { indices } => Kind::WholeGpus(WholeGpus { indices }),
            GpuSlot::Mig {
                gpu_index,
                profile,
                placement,
            } => Kind::Mig(Mig {
                gpu_index,
                profile: profile.name().to_owned(),
                placement: placement.into(),
            }),
        };
        Self { kind: Some(kind) }
    }
}

impl TryFrom<proto::GpuSlot> for GpuSlot {
    type Error = ConvertError;

    /// The slot does not say the GPU's model, so a MIG profile is checked against the
    /// catalogue of every model; whether it fits the server's GPU is validation's question.
    fn try_from(s: proto::GpuSlot) -> Result<Self, ConvertError> {
        match s.kind.ok_or(ConvertProblem::Missing).at("kind")? {
            Kind::None(NoGpu {}) => Ok(Self::None),
            Kind::WholeGpus(w) => Ok(Self::WholeGpus { indices: w.indices }),
            Kind::Mig(m) => Ok(Self::Mig {
                gpu_index: m.gpu_index,
                profile: mig_profile(None, &m.profile).at("mig.profile")?,
                placement: narrow(m.placement).at("mig.placement")?,
            }),
        }
    }
}

impl From<Assignment> for proto::Assignment {
    fn from(a: Assignment) -> Self {
        Self {
            replica: a.replica,
            site: a.site.into(),
            server: a.server.into(),
            slot: Some(a.slot.into()),
        }
    }
}

impl TryFrom<proto::Assignment> for Assignment {
    type Error = ConvertError;

    fn try_from(a: proto::Assignment) -> Result<Self, ConvertError> {
        Ok(Self {
            replica: a.replica,
            site: id(&a.site).at("site")?,
            server: id(&a.server).at("server")?,
            slot: required(a.slot, "slot")?,
        })
    }
}

impl From<ScoreBreakdown> for proto::ScoreBreakdown {
    fn from(s: ScoreBreakdown) -> Self {
        Self {
            total: s.total,
            latency: s.latency,
            data: s.data,
            price: s.price,
            packing: s.packing,
        }
    }
}

impl TryFrom<proto::ScoreBreakdown> for ScoreBreakdown {
    type Error = ConvertError;

    /// Never fails.
    fn try_from(s: proto::ScoreBreakdown) -> Result<Self, ConvertError> {
        Ok(Self {
            total: s.total,
            latency: s.latency,
            data: s.data,
            price: s.price,
            packing: s.packing,
        })
    }
}

/// The model's `rejections` map as the wire's list, one entry per reason in reason order.
fn rejections_to_wire(map: BTreeMap<RejectReason, u32>) -> Vec<proto::Rejection> {
    map.into_iter()
        .map(|(reason, count)| proto::Rejection {
            reason: enum_out(reason),
            count,
        })
        .collect()
}

/// The wire's rejection list as the model's map; a reason listed twice is a duplicate.
fn rejections(
    list: Vec<proto::Rejection>,
    field: &str,
) -> Result<BTreeMap<RejectReason, u32>, ConvertError> {
    unique_with(list, field, "reason", |r| {
        Ok((enum_in(r.reason).at("reason")?, r.count))
    })
}

impl From<Placement> for proto::Placement {
    fn from(p: Placement) -> Self {
        Self {
            workload: p.workload.into(),
            tenant: p.tenant.into(),
            assignments: to_wire(p.assignments),
            window: p.window.map(Into::into),
            score: Some(p.score.into()),
            rejections: rejections_to_wire(p.rejections),
            explanation: p.explanation,
            decided_at: p.decided_at.as_millis(),
        }
    }
}

impl TryFrom<proto::Placement> for Placement {
    type Error = ConvertError;

    fn try_from(p: proto::Placement) -> Result<Self, ConvertError> {
        Ok(Self {
            workload: id(&p.workload).at("workload")?,
            tenant: id(&p.tenant).at("tenant")?,
            assignments: list(p.assignments, "assignments")?,
            window: optional(p.window, "window")?,
            score: required(p.score, "score")?,
            rejections: rejections(p.rejections, "rejections")?,
            explanation: p.explanation,
            decided_at: Timestamp::from_millis(p.decided_at),
        })
    }
}

#[cfg(test)]
mod tests {
    use meridian_proto::v1 as proto;

    use crate::testkit::{Mutation, any_invalid, failures, placement};
    use crate::wire::ConvertProblem;

    #[test]
    fn placement_failures() {
        use ConvertProblem::*;
        use proto::gpu_slot::Kind;
        let cases: &[(&str, Mutation<proto::Placement>, &str, ConvertProblem)] = &[
            (
                "duplicate rejection reason",
                |p| {
                    p.rejections.push(proto::Rejection {
                        reason: proto::RejectReason::Capacity.into(),
                        count: 1,
                    })
                },
                "rejections[3].reason",
                Duplicate,
            ),
            (
                "unspecified rejection reason",
                |p| p.rejections[0].reason = 0,
                "rejections[0].reason",
                Unspecified,
            ),
            ("missing score", |p| p.score = None, "score", Missing),
            (
                "absent slot oneof",
                |p| p.assignments[2].slot.as_mut().unwrap().kind = None,
                "assignments[2].slot.kind",
                Missing,
            ),
            (
                "unknown MIG profile",
                |p| {
                    if let Some(Kind::Mig(m)) = &mut p.assignments[0].slot.as_mut().unwrap().kind {
                        m.profile = "9g.1tb".into();
                    }
                },
                "assignments[0].slot.mig.profile",
                any_invalid(),
            ),
            (
                "MIG placement over u8",
                |p| {
                    if let Some(Kind::Mig(m)) = &mut p.assignments[0].slot.as_mut().unwrap().kind {
                        m.placement = 1 << 20;
                    }
                },
                "assignments[0].slot.mig.placement",
                OutOfRange {
                    value: 1 << 20,
                    max: 255,
                },
            ),
        ];
        failures(placement(), cases);
    }
}
