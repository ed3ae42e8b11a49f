//! [`SiteReport`] and every body.

use meridian_proto::v1 as proto;
use proto::site_report::Body;

use super::model::{ActionPhase, AllocationStatus, ReportBody, Severity, SiteReport};
use crate::ids::{Generation, RequestId, Sequence, Timestamp};
use crate::wire::{
    AtField, ConvertError, ConvertProblem, enum_in, enum_out, failable_state, id, list, required,
    to_wire, wire_enum,
};

wire_enum!(Severity <=> EventSeverity { Info, Warning, Error });
wire_enum!(ActionPhase <=> ActionPhase { Running, Done, Failed });
failable_state!(AllocationStatus <=> AllocationState {
    phase: AllocationPhase, Pending, Applied, Ended,
});

impl From<ReportBody> for Body {
    fn from(b: ReportBody) -> Self {
        match b {
            ReportBody::Event {
                severity,
                resource,
                message,
            } => Body::Event(proto::Event {
                severity: enum_out(severity),
                resource,
                message,
            }),
            ReportBody::ServerState { server, state } => {
                Body::ServerState(proto::ServerStateReport {
                    server: server.into(),
                    state: Some(state.into()),
                })
            }
            ReportBody::Inventory { servers, pending } => Body::Inventory(proto::Inventory {
                servers: to_wire(servers),
                pending: pending.into_iter().map(|s| s.to_string()).collect(),
            }),
            ReportBody::AllocationState {
                workload,
                server,
                state,
            } => Body::AllocationState(proto::AllocationStateReport {
                workload: workload.into(),
                server: server.into(),
                state: Some(state.into()),
            }),
            ReportBody::Rtt { region, rtt_ms } => Body::Rtt(proto::RttReport {
                region: region.into(),
                rtt_ms,
            }),
            ReportBody::Metrics {
                gpu_utilisation_pct,
                power_watts,
            } => Body::Metrics(proto::Metrics {
                gpu_utilisation_pct,
                power_watts,
            }),
            ReportBody::ServerAction {
                request,
                server,
                phase,
                detail,
            } => Body::ServerAction(proto::ServerActionReport {
                request: request.get(),
                server: server.into(),
                phase: enum_out(phase),
                detail,
            }),
            ReportBody::Volume {
                tenant,
                name,
                size_mib,
                ready,
                detail,
            } => Body::Volume(proto::VolumeReport {
                tenant: tenant.into(),
                name: name.into(),
                size_mib,
                ready,
                detail,
            }),
        }
    }
}

impl TryFrom<Body> for ReportBody {
    type Error = ConvertError;

    /// Paths start at the body's oneof member (`server_state.state.phase`).
    fn try_from(b: Body) -> Result<Self, ConvertError> {
        Ok(match b {
            Body::Event(e) => Self::Event {
                severity: enum_in(e.severity).at("event.severity")?,
                resource: e.resource,
                message: e.message,
            },
            Body::ServerState(s) => Self::ServerState {
                server: id(&s.server).at("server_state.server")?,
                state: required(s.state, "server_state.state")?,
            },
            Body::Inventory(i) => Self::Inventory {
                servers: list(i.servers, "inventory.servers")?,
                pending: i
                    .pending
                    .iter()
                    .enumerate()
                    .map(|(n, s)| id(s).at(&format!("inventory.pending[{n}]")))
                    .collect::<Result<_, _>>()?,
            },
            Body::AllocationState(a) => Self::AllocationState {
                workload: id(&a.workload).at("allocation_state.workload")?,
                server: id(&a.server).at("allocation_state.server")?,
                state: required(a.state, "allocation_state.state")?,
            },
            Body::Rtt(r) => Self::Rtt {
                region: id(&r.region).at("rtt.region")?,
                rtt_ms: r.rtt_ms,
            },
            Body::Metrics(m) => Self::Metrics {
                gpu_utilisation_pct: measure(m.gpu_utilisation_pct, 100.0)
                    .at("metrics.gpu_utilisation_pct")?,
                power_watts: measure(m.power_watts, f64::MAX).at("metrics.power_watts")?,
            },
            Body::ServerAction(a) => Self::ServerAction {
                request: match a.request {
                    0 => Err(ConvertError::from(ConvertProblem::Invalid(
                        "a request ID is at least 1".into(),
                    )))
                    .at("server_action.request")?,
                    n => RequestId::new(n),
                },
                server: id(&a.server).at("server_action.server")?,
                phase: enum_in(a.phase).at("server_action.phase")?,
                detail: a.detail,
            },
            Body::Volume(v) => Self::Volume {
                tenant: id(&v.tenant).at("volume.tenant")?,
                name: id(&v.name).at("volume.name")?,
                size_mib: v.size_mib,
                ready: v.ready,
                detail: v.detail,
            },
        })
    }
}

/// A measured quantity: finite, from 0 to `max` (NaN would also never compare equal to itself,
/// so a stored report could not be matched against its resend).
fn measure(v: f64, max: f64) -> Result<f64, ConvertProblem> {
    if v.is_finite() && (0.0..=max).contains(&v) {
        Ok(v)
    } else if max < f64::MAX {
        Err(ConvertProblem::Invalid(format!(
            "{v} is not a number from 0 to {max}"
        )))
    } else {
        Err(ConvertProblem::Invalid(format!(
            "{v} is not a finite number of at least 0"
        )))
    }
}

impl From<SiteReport> for proto::SiteReport {
    fn from(r: SiteReport) -> Self {
        Self {
            site: r.site.into(),
            sequence: r.sequence.get(),
            generation: r.generation.get(),
            at: r.at.as_millis(),
            body: Some(r.body.into()),
        }
    }
}

impl TryFrom<proto::SiteReport> for SiteReport {
    type Error = ConvertError;

    fn try_from(r: proto::SiteReport) -> Result<Self, ConvertError> {
        let body = r.body.ok_or(ConvertProblem::Missing).at("body")?;
        Ok(Self {
            site: id(&r.site).at("site")?,
            sequence: Sequence::new(r.sequence),
            generation: Generation::new(r.generation),
            at: Timestamp::from_millis(r.at),
            body: ReportBody::try_from(body)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use meridian_proto::v1 as proto;

    use crate::report::ReportBody;
    use crate::testkit::{Mutation, any_invalid, bare_server, failures, report, server};
    use crate::wire::ConvertProblem;

    #[test]
    fn report_failures() {
        use ConvertProblem::*;
        use proto::site_report::Body;
        fn inventory(r: &mut proto::SiteReport) -> &mut proto::Inventory {
            match r.body.as_mut() {
                Some(Body::Inventory(i)) => i,
                _ => unreachable!(),
            }
        }
        let cases: &[(&str, Mutation<proto::SiteReport>, &str, ConvertProblem)] = &[
            ("absent body oneof", |r| r.body = None, "body", Missing),
            (
                "deep MIG profile",
                |r| {
                    let mig = inventory(r).servers[0].gpus[0].mig.as_mut().unwrap();
                    mig.instances[0].profile = "3g.47gb".into();
                },
                "inventory.servers[0].gpus[0].mig.instances[0].profile",
                any_invalid(),
            ),
            (
                "deep missing state",
                |r| inventory(r).servers[1].state = None,
                "inventory.servers[1].state",
                Missing,
            ),
            (
                "unknown severity",
                |r| {
                    r.body = Some(Body::Event(proto::Event {
                        severity: 9,
                        resource: "gateway".into(),
                        message: "x".into(),
                    }))
                },
                "event.severity",
                UnknownEnum(9),
            ),
            (
                "allocation reason without FAILED",
                |r| {
                    r.body = Some(Body::AllocationState(proto::AllocationStateReport {
                        workload: "wl-1".into(),
                        server: "srv-1".into(),
                        state: Some(proto::AllocationState {
                            phase: proto::AllocationPhase::Applied.into(),
                            failure_reason: "oops".into(),
                        }),
                    }))
                },
                "allocation_state.state.failure_reason",
                any_invalid(),
            ),
            (
                "server state missing",
                |r| {
                    r.body = Some(Body::ServerState(proto::ServerStateReport {
                        server: "srv-1".into(),
                        state: None,
                    }))
                },
                "server_state.state",
                Missing,
            ),
            (
                "bad region",
                |r| {
                    r.body = Some(Body::Rtt(proto::RttReport {
                        region: "Paris".into(),
                        rtt_ms: 3,
                    }))
                },
                "rtt.region",
                any_invalid(),
            ),
            (
                "NaN utilisation",
                |r| {
                    r.body = Some(Body::Metrics(proto::Metrics {
                        gpu_utilisation_pct: f64::NAN,
                        power_watts: 1.0,
                    }))
                },
                "metrics.gpu_utilisation_pct",
                any_invalid(),
            ),
            (
                "utilisation over 100 %",
                |r| {
                    r.body = Some(Body::Metrics(proto::Metrics {
                        gpu_utilisation_pct: 150.0,
                        power_watts: 1.0,
                    }))
                },
                "metrics.gpu_utilisation_pct",
                any_invalid(),
            ),
            (
                "negative power",
                |r| {
                    r.body = Some(Body::Metrics(proto::Metrics {
                        gpu_utilisation_pct: 50.0,
                        power_watts: -3.0,
                    }))
                },
                "metrics.power_watts",
                any_invalid(),
            ),
            (
                "infinite power",
                |r| {
                    r.body = Some(Body::Metrics(proto::Metrics {
                        gpu_utilisation_pct: 50.0,
                        power_watts: f64::INFINITY,
                    }))
                },
                "metrics.power_watts",
                any_invalid(),
            ),
        ];
        let inventory_report = report(ReportBody::Inventory {
            pending: vec![],
            servers: vec![server(), bare_server()],
        });
        failures(inventory_report, cases);
    }
}
