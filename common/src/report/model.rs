//! Site reports: what a site says it looks like (observed state) and what happened on it.
//!
//! Every [`SiteReport`] names the intent generation it reflects, so central can show drift.
//! State reports (everything but [`ReportBody::Event`]) have a [`ResourceKey`]: a newer state
//! report for the same key supersedes an older one, so a buffer may keep only the latest per
//! key. Events have no key and must each be kept.

use serde::{Deserialize, Serialize};

use crate::ids::{
    Generation, Name, RegionId, RequestId, Sequence, ServerId, SiteId, TenantId, Timestamp,
    WorkloadId,
};
use crate::server::{Server, ServerState};

/// How serious an event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// For the record.
    Info,
    /// Needs a look.
    Warning,
    /// Something failed.
    Error,
}

/// How far an allocation has got on the site.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationStatus {
    /// Known, not yet in place.
    Pending,
    /// In place and running.
    Applied,
    /// Its window ended or it was removed; torn down.
    Ended,
    /// Could not be applied.
    Failed {
        /// Why.
        reason: String,
    },
}

/// How far a server action has got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionPhase {
    /// Started, not finished.
    Running,
    /// Done.
    Done,
    /// Gave up; never retried for this request.
    Failed,
}

impl ActionPhase {
    /// Done or failed: nothing more will happen for the request.
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// What a report says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportBody {
    /// Something happened.
    Event {
        /// How serious.
        severity: Severity,
        /// What it concerns (free text, e.g. `server/srv-1`).
        resource: String,
        /// What happened.
        message: String,
    },
    /// A server's provisioning state.
    ServerState {
        /// The server.
        server: ServerId,
        /// Its state.
        state: ServerState,
    },
    /// The site's full hardware inventory.
    Inventory {
        /// Every server the agent has inspected.
        servers: Vec<Server>,
        /// Servers the agent manages but has not inspected yet: central keeps its records of
        /// them; a server in neither list is no longer the site's.
        pending: Vec<ServerId>,
    },
    /// An allocation's state.
    AllocationState {
        /// The workload.
        workload: WorkloadId,
        /// The server.
        server: ServerId,
        /// Its state.
        state: AllocationStatus,
    },
    /// Measured round trip to a region.
    Rtt {
        /// The region.
        region: RegionId,
        /// Round trip in ms.
        rtt_ms: u32,
    },
    /// Progress of an operator's server action.
    ServerAction {
        /// The request.
        request: RequestId,
        /// The server.
        server: ServerId,
        /// How far it got.
        phase: ActionPhase,
        /// The step under way, what was done, or why it failed.
        detail: String,
    },
    /// A tenant volume as the site's storage array has it.
    Volume {
        /// The owner.
        tenant: TenantId,
        /// The volume's name.
        name: Name,
        /// Its size (and hard quota) on the array, MiB; 0 once deleted.
        size_mib: u64,
        /// On the array as wanted.
        ready: bool,
        /// Why not, when not ready.
        detail: String,
    },
    /// Bytes tenants sent out of the WAN through the site's gateway in one period (a UTC
    /// hour): the period's total so far; a newer report of the same period supersedes it.
    Egress {
        /// The period's start (a whole hour).
        period_start: Timestamp,
        /// Its length, ms.
        period_ms: u64,
        /// Bytes per tenant (tenants that sent nothing are left out).
        tenants: Vec<(TenantId, u64)>,
    },
    /// Site-wide metrics: the GPU utilisation sampled over one period, compacted.
    Metrics {
        /// Mean busy utilisation over the period's busy samples of every GPU, percent.
        gpu_utilisation_pct: f64,
        /// Power draw in watts (0: not measured).
        power_watts: f64,
        /// The period summarised, per GPU; `None` in reports of older agents (a bare sample).
        #[serde(default)]
        period: Option<MetricsPeriod>,
    },
}

/// The period a [`ReportBody::Metrics`] summarises. Agents report one per period, at least
/// every `utilisation_report_interval` of their clock, also when they have no GPUs (an empty
/// list): central reads how far a site's reports reach from them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsPeriod {
    /// When it started (agent clock).
    pub start: Timestamp,
    /// How long it lasted, ms.
    pub length_ms: u64,
    /// Per GPU and MIG device of the servers in service.
    #[serde(default)]
    pub gpus: Vec<GpuUtilisation>,
}

impl MetricsPeriod {
    /// When it ended.
    pub fn end(&self) -> Timestamp {
        self.start
            .saturating_add_millis(i64::try_from(self.length_ms).unwrap_or(i64::MAX))
    }
}

/// One GPU's (or MIG device's) utilisation over a metrics period, from NVML samples.
///
/// **Busy utilisation** is NVML's GPU utilisation (the percentage of time a kernel ran)
/// averaged over the samples; NVML gives none for a GPU in MIG mode or a MIG device
/// (`nvmlDeviceGetUtilizationRates` answers `NOT_SUPPORTED`), so those have `busy_samples`
/// 0 and only memory in use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuUtilisation {
    /// The server.
    pub server: ServerId,
    /// The GPU's NVML index on the server.
    pub gpu: u32,
    /// The MIG device's NVML slot; `None` for the whole GPU.
    #[serde(default)]
    pub mig_slot: Option<u32>,
    /// Samples taken.
    pub samples: u32,
    /// Samples with utilisation rates (at most `samples`).
    pub busy_samples: u32,
    /// Mean GPU utilisation over the busy samples, percent (0 without any).
    pub busy_pct: f64,
    /// Mean memory utilisation (time memory was read or written) over the busy samples,
    /// percent.
    pub memory_busy_pct: f64,
    /// Mean framebuffer memory in use over all samples, percent of the total.
    pub memory_used_pct: f64,
}

/// The phase part of an allocation's [`ResourceKey`]: a newer report supersedes an older
/// one only within the same phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllocationPhaseKey {
    /// Known, not yet in place.
    Pending,
    /// In place and running: the start of its use.
    Applied,
    /// Ended or failed: the end of its use.
    Stopped,
}

impl AllocationPhaseKey {
    /// The phase a status belongs to.
    pub fn of(status: &AllocationStatus) -> Self {
        match status {
            AllocationStatus::Pending => Self::Pending,
            AllocationStatus::Applied => Self::Applied,
            AllocationStatus::Ended | AllocationStatus::Failed { .. } => Self::Stopped,
        }
    }
}

/// What a state report is about; a newer report with the same key supersedes an older one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKey {
    /// A server's state.
    Server(ServerId),
    /// The site's inventory.
    Inventory,
    /// One allocation (workload on server) in one phase. The phase is part of the key so that
    /// an allocation's start (applied) and its end (ended or failed) both reach central even
    /// when the site was cut off in between: metering needs both times.
    Allocation(WorkloadId, ServerId, AllocationPhaseKey),
    /// RTT to one region.
    Rtt(RegionId),
    /// The site's metrics of the period starting at this time (0: a bare sample of an older
    /// agent, which has no period): one summary per period survives in a buffer, and a newer
    /// summary of the same period supersedes the older one.
    Metrics(Timestamp),
    /// One period's egress bytes (its start).
    Egress(Timestamp),
    /// One server action request.
    ServerAction(RequestId),
    /// One tenant volume.
    Volume(TenantId, Name),
}

/// One report from a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteReport {
    /// The reporting site.
    pub site: SiteId,
    /// Per-site sequence number, growing.
    pub sequence: Sequence,
    /// The intent generation the site had applied when it reported.
    pub generation: Generation,
    /// When it was observed.
    pub at: Timestamp,
    /// What it says.
    pub body: ReportBody,
}

impl SiteReport {
    /// The resource a state report is about; `None` for events.
    pub fn resource_key(&self) -> Option<ResourceKey> {
        self.body.resource_key()
    }
}

impl ReportBody {
    /// The resource a state report is about; `None` for events.
    pub fn resource_key(&self) -> Option<ResourceKey> {
        match self {
            Self::Event { .. } => None,
            Self::ServerState { server, .. } => Some(ResourceKey::Server(server.clone())),
            Self::Inventory { .. } => Some(ResourceKey::Inventory),
            Self::AllocationState {
                workload,
                server,
                state,
            } => Some(ResourceKey::Allocation(
                workload.clone(),
                server.clone(),
                AllocationPhaseKey::of(state),
            )),
            Self::Rtt { region, .. } => Some(ResourceKey::Rtt(region.clone())),
            Self::Metrics { period, .. } => Some(ResourceKey::Metrics(
                period
                    .as_ref()
                    .map_or(Timestamp::from_millis(0), |p| p.start),
            )),
            Self::ServerAction { request, .. } => Some(ResourceKey::ServerAction(*request)),
            Self::Egress { period_start, .. } => Some(ResourceKey::Egress(*period_start)),
            Self::Volume { tenant, name, .. } => {
                Some(ResourceKey::Volume(tenant.clone(), name.clone()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(body: ReportBody) -> SiteReport {
        SiteReport {
            site: SiteId::parse("fra-1").unwrap(),
            sequence: Sequence::new(7),
            generation: Generation::new(3),
            at: Timestamp::from_millis(1_700_000_000_000),
            body,
        }
    }

    #[test]
    fn resource_keys() {
        let srv = ServerId::parse("srv-1").unwrap();
        let wl = WorkloadId::parse("wl-1").unwrap();
        let event = report(ReportBody::Event {
            severity: Severity::Warning,
            resource: "server/srv-1".into(),
            message: "fan".into(),
        });
        assert_eq!(event.resource_key(), None);
        let cases = [
            (
                ReportBody::ServerState {
                    server: srv.clone(),
                    state: ServerState::Available,
                },
                ResourceKey::Server(srv.clone()),
            ),
            (
                ReportBody::Inventory {
                    servers: vec![],
                    pending: vec![],
                },
                ResourceKey::Inventory,
            ),
            (
                ReportBody::AllocationState {
                    workload: wl.clone(),
                    server: srv.clone(),
                    state: AllocationStatus::Applied,
                },
                ResourceKey::Allocation(wl, srv.clone(), AllocationPhaseKey::Applied),
            ),
            (
                ReportBody::Rtt {
                    region: RegionId::parse("paris").unwrap(),
                    rtt_ms: 4,
                },
                ResourceKey::Rtt(RegionId::parse("paris").unwrap()),
            ),
            (
                ReportBody::Metrics {
                    gpu_utilisation_pct: 50.0,
                    power_watts: 1e4,
                    period: None,
                },
                ResourceKey::Metrics(Timestamp::from_millis(0)),
            ),
            (
                ReportBody::Metrics {
                    gpu_utilisation_pct: 50.0,
                    power_watts: 0.0,
                    period: Some(MetricsPeriod {
                        start: Timestamp::from_millis(60_000),
                        length_ms: 60_000,
                        gpus: vec![],
                    }),
                },
                ResourceKey::Metrics(Timestamp::from_millis(60_000)),
            ),
            (
                ReportBody::ServerAction {
                    request: RequestId::new(9),
                    server: srv.clone(),
                    phase: ActionPhase::Running,
                    detail: "reboot".into(),
                },
                ResourceKey::ServerAction(RequestId::new(9)),
            ),
        ];
        for (body, key) in cases {
            assert_eq!(report(body).resource_key(), Some(key));
        }
    }

    #[test]
    fn report_serde() {
        let r = report(ReportBody::AllocationState {
            workload: WorkloadId::parse("wl-1").unwrap(),
            server: ServerId::parse("srv-1").unwrap(),
            state: AllocationStatus::Failed {
                reason: "image".into(),
            },
        });
        let text = toml::to_string(&r).unwrap();
        assert_eq!(toml::from_str::<SiteReport>(&text).unwrap(), r);
    }
}
