//! [`WorkloadSpec`] and all its parts, [`Workload`] and its [`ReservationState`].

use meridian_proto::v1 as proto;
use proto::accelerator::{Kind, Mig, NoGpu, WholeGpus};

use super::model::{
    Accelerator, Constraints, LatencyConstraint, PortExposure, Resources, Spread, Workload,
    WorkloadKind, WorkloadSpec,
};
use super::reservation::ReservationState;
use crate::gpu::wire::{gpu_model, mig_profile};
use crate::jurisdiction::wire::{residency, residency_to_wire};
use crate::wire::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, failable_state, id, ids, list,
    narrow, optional, required, to_wire, unique_with, wire_enum,
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

#[cfg(test)]
mod tests {
    use meridian_proto::v1 as proto;

    use crate::testkit::{Mutation, any_invalid, failures, spec, workload};
    use crate::wire::ConvertProblem;
    use crate::workload::{ReservationState, WorkloadSpec};

    fn accel(s: &mut proto::WorkloadSpec) -> &mut proto::Accelerator {
        s.resources.as_mut().unwrap().accelerator.as_mut().unwrap()
    }

    fn constraints(s: &mut proto::WorkloadSpec) -> &mut proto::Constraints {
        s.constraints.as_mut().unwrap()
    }

    #[test]
    fn workload_spec_failures() {
        use ConvertProblem::*;
        use proto::accelerator::{Kind, Mig};
        let huge = "a".repeat(10 * 1024 * 1024);
        let cases: &[(&str, Mutation<proto::WorkloadSpec>, &str, ConvertProblem)] = &[
            ("unknown kind", |s| s.kind = 99, "kind", UnknownEnum(99)),
            ("unspecified kind", |s| s.kind = 0, "kind", Unspecified),
            (
                "unknown certification",
                |s| constraints(s).certifications[1] = 42,
                "constraints.certifications[1]",
                UnknownEnum(42),
            ),
            (
                "unspecified tier",
                |s| constraints(s).tier = Some(0),
                "constraints.tier",
                Unspecified,
            ),
            (
                "unspecified protocol",
                |s| s.expose[1].protocol = 0,
                "expose[1].protocol",
                Unspecified,
            ),
            (
                "missing resources",
                |s| s.resources = None,
                "resources",
                Missing,
            ),
            (
                "missing constraints",
                |s| s.constraints = None,
                "constraints",
                Missing,
            ),
            (
                "absent accelerator oneof",
                |s| accel(s).kind = None,
                "resources.accelerator.kind",
                Missing,
            ),
            (
                "missing accelerator",
                |s| s.resources.as_mut().unwrap().accelerator = None,
                "resources.accelerator",
                Missing,
            ),
            (
                "bad region id",
                |s| {
                    constraints(s).latency.as_mut().unwrap().from_regions[1] = "Berlin".into();
                },
                "constraints.latency.from_regions[1]",
                any_invalid(),
            ),
            (
                "bad pin server",
                |s| constraints(s).pin_server = Some("srv_1".into()),
                "constraints.pin_server",
                any_invalid(),
            ),
            (
                "bad dataset id",
                |s| constraints(s).datasets[0] = String::new(),
                "constraints.datasets[0]",
                any_invalid(),
            ),
            (
                "MIG profile of another model",
                |s| {
                    accel(s).kind = Some(Kind::Mig(Mig {
                        model: "H100-80GB".into(),
                        profile: "1g.5gb".into(),
                    }))
                },
                "resources.accelerator.mig.profile",
                any_invalid(),
            ),
            (
                "MIG on a non-MIG model",
                |s| {
                    accel(s).kind = Some(Kind::Mig(Mig {
                        model: "L40S".into(),
                        profile: "1g.10gb".into(),
                    }))
                },
                "resources.accelerator.mig.profile",
                any_invalid(),
            ),
            (
                "unknown GPU model",
                |s| {
                    accel(s).kind = Some(Kind::Mig(Mig {
                        model: "h100".into(),
                        profile: "1g.10gb".into(),
                    }))
                },
                "resources.accelerator.mig.model",
                any_invalid(),
            ),
            (
                "duplicate certification",
                |s| constraints(s).certifications = vec![1, 4, 1],
                "constraints.certifications[2]",
                Duplicate,
            ),
            (
                "duplicate residency term, spelt differently",
                |s| constraints(s).residency = vec!["DE".into(), "country:DE".into()],
                "constraints.residency[1]",
                Duplicate,
            ),
            (
                "unknown residency term",
                |s| constraints(s).residency[1] = "ATLANTIS".into(),
                "constraints.residency[1]",
                any_invalid(),
            ),
            (
                "port over u16",
                |s| s.expose[0].port = 70_000,
                "expose[0].port",
                OutOfRange {
                    value: 70_000,
                    max: 65_535,
                },
            ),
            (
                "window end before start",
                |s| s.window.as_mut().unwrap().end = 0,
                "window.end",
                any_invalid(),
            ),
            (
                "bad name",
                |s| s.name = "Chat API".into(),
                "name",
                any_invalid(),
            ),
        ];
        failures(spec(), cases);

        // A 10 MB name is refused without echoing it.
        let mut wire = proto::WorkloadSpec::from(spec());
        wire.name = huge;
        let err = WorkloadSpec::try_from(wire).unwrap_err();
        assert_eq!(err.field, "name");
        assert!(err.to_string().len() < 200, "{}", err.to_string().len());
        assert!(err.to_string().contains("10485760"), "{err}");
    }

    #[test]
    fn workload_failures_nest_paths() {
        let cases: &[(&str, Mutation<proto::Workload>, &str, ConvertProblem)] = &[
            (
                "latency region deep inside",
                |w| {
                    let c = w.spec.as_mut().unwrap().constraints.as_mut().unwrap();
                    c.latency.as_mut().unwrap().from_regions[0] = "-x".into();
                },
                "spec.constraints.latency.from_regions[0]",
                any_invalid(),
            ),
            (
                "unknown phase",
                |w| w.state.as_mut().unwrap().phase = 17,
                "state.phase",
                ConvertProblem::UnknownEnum(17),
            ),
            (
                "reason without FAILED",
                |w| w.state.as_mut().unwrap().failure_reason = "why".into(),
                "state.failure_reason",
                any_invalid(),
            ),
            (
                "missing state",
                |w| w.state = None,
                "state",
                ConvertProblem::Missing,
            ),
            (
                "missing spec",
                |w| w.spec = None,
                "spec",
                ConvertProblem::Missing,
            ),
            ("bad id", |w| w.id = "WL-1".into(), "id", any_invalid()),
        ];
        failures(workload(ReservationState::Approved), cases);
    }

    mod prop {
        use super::*;
        use proptest::collection::vec;
        use proptest::option;
        use proptest::prelude::*;
        use proptest::sample::select;

        use crate::ids::{DatasetId, Name, RegionId, ServerId};
        use crate::site::SiteTier;
        use crate::testkit::assert_round_trip;
        use crate::testkit::strategy::{
            certifications, mig_pair, model, protocol, residency_rule, typed, window,
        };
        use crate::workload::{
            Accelerator, Constraints, LatencyConstraint, PortExposure, Resources, Spread,
            WorkloadKind,
        };

        fn accelerator() -> impl Strategy<Value = Accelerator> {
            prop_oneof![
                Just(Accelerator::None),
                (model(), any::<u32>())
                    .prop_map(|(model, count)| Accelerator::WholeGpus { model, count }),
                mig_pair().prop_map(|(model, profile)| Accelerator::Mig { model, profile }),
            ]
        }

        fn constraints() -> impl Strategy<Value = Constraints> {
            (
                option::of(
                    (vec(typed::<RegionId>(), 0..4), any::<u32>())
                        .prop_map(|(from, max_rtt_ms)| LatencyConstraint { from, max_rtt_ms }),
                ),
                residency_rule(),
                certifications(),
                vec(typed::<DatasetId>(), 0..4),
                option::of(
                    (any::<u32>(), any::<u32>()).prop_map(|(min_sites, max_per_site)| Spread {
                        min_sites,
                        max_per_site,
                    }),
                ),
                any::<bool>(),
                option::of(select(vec![SiteTier::Edge, SiteTier::Core])),
                option::of(typed::<ServerId>()),
            )
                .prop_map(
                    |(
                        latency,
                        residency,
                        certifications,
                        datasets,
                        spread,
                        colocate,
                        tier,
                        pin,
                    )| {
                        Constraints {
                            latency,
                            residency,
                            certifications,
                            datasets,
                            spread,
                            colocate,
                            tier,
                            pin_server: pin,
                        }
                    },
                )
        }

        fn spec() -> impl Strategy<Value = WorkloadSpec> {
            use WorkloadKind::*;
            (
                typed::<Name>(),
                select(vec![
                    InferenceEndpoint,
                    BareMetal,
                    VirtualMachine,
                    KubernetesCluster,
                    BatchJob,
                    RanFunction,
                ]),
                (accelerator(), any::<u32>(), any::<u64>(), any::<u64>()),
                any::<u32>(),
                constraints(),
                option::of(window()),
                any::<u32>(),
                option::of(".{0,40}"),
                vec(
                    (any::<u16>(), protocol())
                        .prop_map(|(port, protocol)| PortExposure { port, protocol }),
                    0..4,
                ),
            )
                .prop_map(
                    |(
                        name,
                        kind,
                        (accelerator, cpu_cores, memory_mib, storage_mib),
                        replicas,
                        constraints,
                        window,
                        priority,
                        image,
                        expose,
                    )| {
                        WorkloadSpec {
                            name,
                            kind,
                            resources: Resources {
                                accelerator,
                                cpu_cores,
                                memory_mib,
                                storage_mib,
                            },
                            replicas,
                            constraints,
                            window,
                            priority,
                            image,
                            expose,
                        }
                    },
                )
        }

        proptest! {
            #[test]
            fn workload_spec_round_trips(spec in spec()) {
                assert_round_trip::<_, proto::WorkloadSpec>(spec);
            }

            /// Any enum number and any string in an ID field: an error or a value, never a panic,
            /// and an error always names a field.
            #[test]
            fn hostile_wire_values_never_panic(
                kind in any::<i32>(),
                name in "\\PC{0,80}",
                port in any::<u32>(),
            ) {
                let mut wire = proto::WorkloadSpec::from(super::spec());
                wire.kind = kind;
                wire.name = name;
                wire.expose[0].port = port;
                if let Err(e) = WorkloadSpec::try_from(wire) {
                    prop_assert!(!e.field.is_empty());
                    prop_assert!(e.to_string().len() < 400);
                }
            }
        }
    }
}
