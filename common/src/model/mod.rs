//! The Meridian domain model: one module per concept, all re-exported here.
//!
//! Wanted, planned and observed state are different types: a [`WorkloadSpec`] is what a
//! tenant asked for, a [`Placement`] what the planner decided, a [`SiteIntent`] what one site
//! must look like, a [`SiteReport`] what a site says it looks like. Every type is plain data
//! (serde, no IO); cross-field rules live in [`crate::validate`].

pub mod claim;
pub mod dataset;
pub mod gpu;
pub mod intent;
pub mod jurisdiction;
pub mod net;
pub mod placement;
pub mod region;
pub mod report;
pub mod reservation;
pub mod server;
pub mod site;
pub mod tenant;
pub mod workload;

pub use claim::{HostKey, NetworkClaim, PublicEndpoint, PublicKey, validate_claim};
pub use dataset::Dataset;
pub use gpu::{
    Gpu, GpuHealth, GpuModel, GpuModelError, MigConfig, MigError, MigGeometry, MigInstance,
    MigProfile, MigProfileSpec,
};
pub use intent::{
    Allocation, AllocationMode, Exposure, PoolAssignment, PowerAction, ServerAction,
    ServerActionKind, SiteIntent, StorageVolume, TenantNetworkIntent,
};
pub use jurisdiction::{
    Jurisdiction, JurisdictionError, JurisdictionGroup, ResidencyRule, ResidencyTerm,
};
pub use net::{Ipv4Net, NetError, Protocol};
pub use placement::{Assignment, GpuSlot, Placement, RejectReason, ScoreBreakdown};
pub use region::Region;
pub use report::{AllocationStatus, ReportBody, ResourceKey, Severity, SiteReport};
pub use reservation::{ReservationState, TransitionError};
pub use server::{BmcEndpoint, BmcVendor, Dpu, DpuMode, Server, ServerState};
pub use site::{Certification, GeoPoint, Site, SiteState, SiteTier};
pub use tenant::{Quotas, ScoreWeights, Tenant, TenantNetwork};
pub use workload::{
    Accelerator, Constraints, LatencyConstraint, PortExposure, Resources, Spread, Workload,
    WorkloadKind, WorkloadSpec,
};
