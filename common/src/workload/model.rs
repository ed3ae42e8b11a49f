//! Workloads: what a tenant asks for ([`WorkloadSpec`]) and how central stores it
//! ([`Workload`]).
//!
//! A spec read from YAML/TOML/JSON rejects unknown fields, so a typo in a tenant's file is an
//! error rather than a silently ignored constraint. Typed fields (IDs, models, countries,
//! windows) are valid by construction; every cross-field rule (spread vs replicas, MIG profile
//! vs model, bounds) is checked by
//! [`validate_workload_spec`](crate::validate::validate_workload_spec).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::reservation::ReservationState;
use crate::gpu::{GpuModel, MigProfile};
use crate::ids::{
    DatasetId, Name, RegionId, ServerId, TenantId, TimeWindow, Timestamp, WorkloadId,
};
use crate::jurisdiction::ResidencyRule;
use crate::net::Protocol;
use crate::site::{Certification, SiteTier};

/// What kind of thing the workload is; decides how a site runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkloadKind {
    /// A long-running inference service.
    InferenceEndpoint,
    /// Whole servers handed to the tenant.
    BareMetal,
    /// Virtual machines.
    VirtualMachine,
    /// A Kubernetes cluster.
    KubernetesCluster,
    /// A batch job that ends by itself.
    BatchJob,
    /// A radio access network function (latency critical, at the edge).
    RanFunction,
}

/// The accelerator each replica needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Accelerator {
    /// No GPU.
    None,
    /// Whole GPUs of one model.
    WholeGpus {
        /// The model.
        model: GpuModel,
        /// GPUs per replica, `1..=64`.
        count: u32,
    },
    /// One MIG instance.
    Mig {
        /// The model.
        model: GpuModel,
        /// A profile of that model.
        profile: MigProfile,
    },
}

/// Resources per replica.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// GPU needs.
    pub accelerator: Accelerator,
    /// CPU cores, at most 1024.
    #[serde(default)]
    pub cpu_cores: u32,
    /// Memory in MiB, at most 16 TiB.
    #[serde(default)]
    pub memory_mib: u64,
    /// Storage in MiB, at most 1 PiB.
    #[serde(default)]
    pub storage_mib: u64,
}

/// A latency goal: every replica within `max_rtt_ms` of the regions in `from`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LatencyConstraint {
    /// Where the users are (1 to 64 regions).
    pub from: Vec<RegionId>,
    /// Largest acceptable round trip, `1..=10_000` ms.
    pub max_rtt_ms: u32,
}

/// How replicas spread over sites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spread {
    /// At least this many distinct sites.
    pub min_sites: u32,
    /// At most this many replicas on one site.
    pub max_per_site: u32,
}

/// Where a workload may and may not go.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Latency goal, if any.
    #[serde(default)]
    pub latency: Option<LatencyConstraint>,
    /// Allowed jurisdictions (empty: anywhere the tenant's own rule allows).
    #[serde(default)]
    pub residency: ResidencyRule,
    /// Certifications every chosen site must hold.
    #[serde(default)]
    pub certifications: BTreeSet<Certification>,
    /// Datasets it reads (pulls placement towards their replicas).
    #[serde(default)]
    pub datasets: Vec<DatasetId>,
    /// Spread over sites, if any.
    #[serde(default)]
    pub spread: Option<Spread>,
    /// All replicas on one site (e.g. for training).
    #[serde(default)]
    pub colocate: bool,
    /// Only sites of this tier.
    #[serde(default)]
    pub tier: Option<SiteTier>,
    /// Only this server (provider operators only).
    #[serde(default)]
    pub pin_server: Option<ServerId>,
}

/// A port to expose publicly through the site's gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortExposure {
    /// The port, `1..=65535`.
    pub port: u16,
    /// TCP or UDP.
    pub protocol: Protocol,
}

/// What a tenant submits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSpec {
    /// The workload's name.
    pub name: Name,
    /// What it is.
    pub kind: WorkloadKind,
    /// Per-replica resources.
    pub resources: Resources,
    /// How many replicas, `1..=10_000`.
    pub replicas: u32,
    /// Placement constraints.
    #[serde(default)]
    pub constraints: Constraints,
    /// Reservation window; absent means from now on, open-ended.
    #[serde(default)]
    pub window: Option<TimeWindow>,
    /// Priority (higher wins); bounded by the tenant's `max_priority`.
    #[serde(default)]
    pub priority: u32,
    /// Boot or container image URL (`https://`, `http://` or `oci://`).
    #[serde(default)]
    pub image: Option<String>,
    /// Ports to expose publicly.
    #[serde(default)]
    pub expose: Vec<PortExposure>,
}

/// A workload as stored by central.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// The workload's ID.
    pub id: WorkloadId,
    /// Its owner.
    pub tenant: TenantId,
    /// What was asked for.
    pub spec: WorkloadSpec,
    /// Where its reservation is in its life.
    pub state: ReservationState,
    /// When it was submitted.
    pub created_at: Timestamp,
}
