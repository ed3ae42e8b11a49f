//! [`SiteReport`] and every body.

use meridian_proto::v1 as proto;
use proto::site_report::Body;

use super::model::{
    ActionPhase, AllocationStatus, GpuUtilisation, MetricsPeriod, ReportBody, Severity, SiteReport,
};
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
                period,
            } => {
                let (period_start_ms, period_ms, gpus) = match period {
                    None => (0, 0, Vec::new()),
                    Some(p) => (
                        p.start.as_millis(),
                        p.length_ms,
                        p.gpus.into_iter().map(Into::into).collect(),
                    ),
                };
                Body::Metrics(proto::Metrics {
                    gpu_utilisation_pct,
                    power_watts,
                    period_start_ms,
                    period_ms,
                    gpus,
                })
            }
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
            ReportBody::Egress {
                period_start,
                period_ms,
                tenants,
            } => Body::Egress(proto::EgressReport {
                period_start_ms: period_start.as_millis(),
                period_ms,
                tenants: tenants
                    .into_iter()
                    .map(|(tenant, bytes)| proto::TenantBytes {
                        tenant: tenant.into(),
                        bytes,
                    })
                    .collect(),
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
                period: metrics_period(m.period_start_ms, m.period_ms, m.gpus)?,
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
            Body::Egress(e) => {
                if e.period_ms == 0 || e.period_ms > MAX_METRICS_PERIOD_MS {
                    return Err(ConvertError::from(ConvertProblem::Invalid(format!(
                        "a period of {} ms: 1 ms to a day",
                        e.period_ms
                    ))))
                    .at("egress.period_ms");
                }
                if e.period_start_ms <= 0 {
                    return Err(ConvertError::from(ConvertProblem::Invalid(
                        "the period's start is required".into(),
                    )))
                    .at("egress.period_start_ms");
                }
                Self::Egress {
                    period_start: Timestamp::from_millis(e.period_start_ms),
                    period_ms: e.period_ms,
                    tenants: e
                        .tenants
                        .into_iter()
                        .enumerate()
                        .map(|(n, t)| {
                            Ok((
                                id(&t.tenant).at(&format!("egress.tenants[{n}].tenant"))?,
                                t.bytes,
                            ))
                        })
                        .collect::<Result<_, ConvertError>>()?,
                }
            }
        })
    }
}

/// The longest period a metrics summary may cover (a day): longer is a broken agent clock.
const MAX_METRICS_PERIOD_MS: u64 = 86_400_000;

/// The period of a metrics report: none for a bare sample of an older agent (start 0, no
/// length, no GPUs).
fn metrics_period(
    start_ms: i64,
    length_ms: u64,
    gpus: Vec<proto::GpuUtilisation>,
) -> Result<Option<MetricsPeriod>, ConvertError> {
    if start_ms == 0 && length_ms == 0 && gpus.is_empty() {
        return Ok(None);
    }
    if start_ms <= 0 {
        return Err(ConvertProblem::Invalid(
            "a period starts after the epoch (0 only in a report without a period)".into(),
        ))
        .at("metrics.period_start_ms");
    }
    if length_ms == 0 || length_ms > MAX_METRICS_PERIOD_MS {
        return Err(ConvertProblem::Invalid(format!(
            "{length_ms} is not a period length from 1 ms to {MAX_METRICS_PERIOD_MS} ms"
        )))
        .at("metrics.period_ms");
    }
    let gpus = gpus
        .into_iter()
        .enumerate()
        .map(|(i, g)| GpuUtilisation::try_from(g).map_err(|e| e.at_index("metrics.gpus", i)))
        .collect::<Result<_, _>>()?;
    Ok(Some(MetricsPeriod {
        start: Timestamp::from_millis(start_ms),
        length_ms,
        gpus,
    }))
}

impl From<GpuUtilisation> for proto::GpuUtilisation {
    fn from(g: GpuUtilisation) -> Self {
        Self {
            server: g.server.into(),
            gpu: g.gpu,
            mig_slot: g.mig_slot,
            samples: g.samples,
            busy_samples: g.busy_samples,
            busy_pct: g.busy_pct,
            memory_busy_pct: g.memory_busy_pct,
            memory_used_pct: g.memory_used_pct,
        }
    }
}

impl TryFrom<proto::GpuUtilisation> for GpuUtilisation {
    type Error = ConvertError;

    fn try_from(g: proto::GpuUtilisation) -> Result<Self, ConvertError> {
        if g.busy_samples > g.samples {
            return Err(ConvertProblem::Invalid(format!(
                "{} busy samples of {} samples",
                g.busy_samples, g.samples
            )))
            .at("busy_samples");
        }
        Ok(Self {
            server: id(&g.server).at("server")?,
            gpu: g.gpu,
            mig_slot: g.mig_slot,
            samples: g.samples,
            busy_samples: g.busy_samples,
            busy_pct: measure(g.busy_pct, 100.0).at("busy_pct")?,
            memory_busy_pct: measure(g.memory_busy_pct, 100.0).at("memory_busy_pct")?,
            memory_used_pct: measure(g.memory_used_pct, 100.0).at("memory_used_pct")?,
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
    use proto::site_report::Body;

    use crate::report::ReportBody;
    use crate::testkit::{Mutation, any_invalid, bare_server, failures, report, server};
    use crate::wire::ConvertProblem;

    #[test]
    fn report_failures() {
        use ConvertProblem::*;
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
                        ..Default::default()
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
                        ..Default::default()
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
                        ..Default::default()
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
                        ..Default::default()
                    }))
                },
                "metrics.power_watts",
                any_invalid(),
            ),
            (
                "period without a start",
                |r| r.body = Some(Body::Metrics(period(|m| m.period_start_ms = 0))),
                "metrics.period_start_ms",
                any_invalid(),
            ),
            (
                "period of no length",
                |r| r.body = Some(Body::Metrics(period(|m| m.period_ms = 0))),
                "metrics.period_ms",
                any_invalid(),
            ),
            (
                "period over a day",
                |r| r.body = Some(Body::Metrics(period(|m| m.period_ms = 86_400_001))),
                "metrics.period_ms",
                any_invalid(),
            ),
            (
                "bad server of a GPU",
                |r| r.body = Some(Body::Metrics(period(|m| m.gpus[1].server = "Srv 1".into()))),
                "metrics.gpus[1].server",
                any_invalid(),
            ),
            (
                "busy over 100 %",
                |r| r.body = Some(Body::Metrics(period(|m| m.gpus[0].busy_pct = 100.5))),
                "metrics.gpus[0].busy_pct",
                any_invalid(),
            ),
            (
                "more busy samples than samples",
                |r| r.body = Some(Body::Metrics(period(|m| m.gpus[0].busy_samples = 13))),
                "metrics.gpus[0].busy_samples",
                any_invalid(),
            ),
            (
                "NaN memory in use",
                |r| {
                    r.body = Some(Body::Metrics(period(|m| {
                        m.gpus[1].memory_used_pct = f64::NAN
                    })))
                },
                "metrics.gpus[1].memory_used_pct",
                any_invalid(),
            ),
        ];
        let inventory_report = report(ReportBody::Inventory {
            pending: vec![],
            servers: vec![server(), bare_server()],
        });
        failures(inventory_report, cases);
    }

    /// A good metrics period (two GPUs, the second a MIG device), changed by `f`.
    fn period(f: impl FnOnce(&mut proto::Metrics)) -> proto::Metrics {
        let gpu = |gpu, mig_slot, busy_samples| proto::GpuUtilisation {
            server: "srv-1".into(),
            gpu,
            mig_slot,
            samples: 12,
            busy_samples,
            busy_pct: if busy_samples > 0 { 40.0 } else { 0.0 },
            memory_busy_pct: if busy_samples > 0 { 10.0 } else { 0.0 },
            memory_used_pct: 25.0,
        };
        let mut m = proto::Metrics {
            gpu_utilisation_pct: 40.0,
            power_watts: 0.0,
            period_start_ms: 1_800_000_000_000,
            period_ms: 60_000,
            gpus: vec![gpu(0, None, 12), gpu(1, Some(3), 0)],
        };
        f(&mut m);
        m
    }

    #[test]
    fn metrics_periods_round_trip_and_bare_samples_have_none() {
        let wire = period(|_| {});
        let body = ReportBody::try_from(Body::Metrics(wire.clone())).unwrap();
        let ReportBody::Metrics {
            period: Some(p), ..
        } = &body
        else {
            panic!("{body:?}")
        };
        assert_eq!(p.gpus.len(), 2);
        assert_eq!(p.gpus[1].mig_slot, Some(3));
        assert_eq!(p.end().as_millis(), 1_800_000_060_000);
        assert_eq!(Body::from(body), Body::Metrics(wire));
        let bare = ReportBody::try_from(Body::Metrics(proto::Metrics {
            gpu_utilisation_pct: 12.0,
            power_watts: 3.0,
            ..Default::default()
        }))
        .unwrap();
        assert!(matches!(bare, ReportBody::Metrics { period: None, .. }));
    }
}
