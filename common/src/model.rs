//! The Meridian domain model: every type, re-exported here, with one submodule per concept.
//!
//! Wanted, planned and observed state are different types: a [`WorkloadSpec`] is what a
//! tenant asked for, a [`Placement`] what the planner decided, a [`SiteIntent`] what one site
//! must look like, a [`SiteReport`] what a site says it looks like. Every type is plain data
//! (serde, no IO); cross-field rules live in [`crate::validate`].
//!
//! This module is the stable facade: it only re-exports, and its paths (`model::X` and
//! `model::concept::X`) stay as they are. The types live in the concept folders of this crate
//! (`workload/model.rs`, `tenant/model.rs`, ...; see the crate's layout), which are their
//! home: a new type goes there and gets a line here.

pub use crate::claim::model as claim;
pub use crate::gpu::model as gpu;
pub use crate::intent::model as intent;
pub use crate::jurisdiction::model as jurisdiction;
pub use crate::net::model as net;
pub use crate::placement::model as placement;
pub use crate::report::model as report;
pub use crate::server::model as server;
pub use crate::site::model as site;
pub use crate::tenant::model as tenant;
pub use crate::tenant::{dataset, region};
pub use crate::workload::model as workload;
pub use crate::workload::reservation;

pub use crate::claim::{HostKey, NetworkClaim, PublicEndpoint, PublicKey, validate_claim};
pub use crate::gpu::{
    Gpu, GpuHealth, GpuModel, GpuModelError, MigConfig, MigError, MigGeometry, MigInstance,
    MigProfile, MigProfileSpec,
};
pub use crate::intent::{
    Allocation, AllocationMode, Exposure, PoolAssignment, PowerAction, ServerAction,
    ServerActionKind, SiteIntent, StorageVolume, TenantNetworkIntent, TenantPeer, WorkloadEndpoint,
};
pub use crate::jurisdiction::{
    Jurisdiction, JurisdictionError, JurisdictionGroup, ResidencyRule, ResidencyTerm,
};
pub use crate::net::{Ipv4Net, NetError, Protocol};
pub use crate::placement::{Assignment, GpuSlot, Placement, RejectReason, ScoreBreakdown};
pub use crate::report::{
    ActionPhase, AllocationPhaseKey, AllocationStatus, ReportBody, ResourceKey, Severity,
    SiteReport,
};
pub use crate::report::{GpuUtilisation, MetricsPeriod};
pub use crate::server::{BmcEndpoint, BmcVendor, Dpu, DpuMode, Server, ServerState};
pub use crate::site::{Certification, GeoPoint, Site, SiteState, SiteTier};
pub use crate::tenant::{Dataset, Quotas, Region, ScoreWeights, Tenant, TenantNetwork};
pub use crate::workload::{
    Accelerator, Constraints, LatencyConstraint, PortExposure, ReservationState, Resources, Spread,
    TransitionError, Workload, WorkloadKind, WorkloadSpec,
};
