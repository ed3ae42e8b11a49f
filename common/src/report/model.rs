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
    /// Site-wide metrics.
    Metrics {
        /// Mean GPU utilisation, percent.
        gpu_utilisation_pct: f64,
        /// Power draw in watts.
        power_watts: f64,
    },
}

/// What a state report is about; a newer report with the same key supersedes an older one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceKey {
    /// A server's state.
    Server(ServerId),
    /// The site's inventory.
    Inventory,
    /// One allocation (workload on server).
    Allocation(WorkloadId, ServerId),
    /// RTT to one region.
    Rtt(RegionId),
    /// The site's metrics.
    Metrics,
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
                workload, server, ..
            } => Some(ResourceKey::Allocation(workload.clone(), server.clone())),
            Self::Rtt { region, .. } => Some(ResourceKey::Rtt(region.clone())),
            Self::Metrics { .. } => Some(ResourceKey::Metrics),
            Self::ServerAction { request, .. } => Some(ResourceKey::ServerAction(*request)),
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
                ResourceKey::Allocation(wl, srv.clone()),
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
                },
                ResourceKey::Metrics,
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
