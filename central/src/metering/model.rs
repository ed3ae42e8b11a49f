//! Metering's types: a span of use, what it holds, and a usage row; with their stored and
//! wire forms.

use meridian_proto::v1 as proto;

/// What is metered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    /// Whole GPUs (detail: the model).
    Gpu,
    /// MIG slices (detail: model and profile).
    MigSlice,
    /// CPU cores.
    CpuCore,
    /// Storage (detail: the volume).
    Storage,
    /// Bytes out of the site's WAN through its gateway.
    Egress,
}

impl Resource {
    /// Every resource.
    pub const ALL: [Resource; 5] = [
        Self::Gpu,
        Self::MigSlice,
        Self::CpuCore,
        Self::Storage,
        Self::Egress,
    ];

    /// The name used in exports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gpu => "gpu",
            Self::MigSlice => "mig_slice",
            Self::CpuCore => "cpu_core",
            Self::Storage => "storage",
            Self::Egress => "egress",
        }
    }

    /// The unit of a usage amount.
    pub fn unit(self) -> &'static str {
        match self {
            Self::Gpu => "gpu_seconds",
            Self::MigSlice => "slice_seconds",
            Self::CpuCore => "core_seconds",
            Self::Storage => "gib_hours",
            Self::Egress => "bytes",
        }
    }

    /// The wire form.
    pub fn to_proto(self) -> proto::UsageResource {
        match self {
            Self::Gpu => proto::UsageResource::Gpu,
            Self::MigSlice => proto::UsageResource::MigSlice,
            Self::CpuCore => proto::UsageResource::CpuCore,
            Self::Storage => proto::UsageResource::Storage,
            Self::Egress => proto::UsageResource::Egress,
        }
    }

    /// From the wire form (`None`: unspecified or unknown).
    pub fn from_proto(raw: i32) -> Option<Self> {
        match proto::UsageResource::try_from(raw).ok()? {
            proto::UsageResource::Gpu => Some(Self::Gpu),
            proto::UsageResource::MigSlice => Some(Self::MigSlice),
            proto::UsageResource::CpuCore => Some(Self::CpuCore),
            proto::UsageResource::Storage => Some(Self::Storage),
            proto::UsageResource::Egress => Some(Self::Egress),
            proto::UsageResource::Unspecified => None,
        }
    }
}

/// How much of a resource a span holds while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Quantity {
    pub resource: Resource,
    pub detail: String,
    /// GPUs, slices, cores or GiB.
    pub amount: f64,
}

/// One span of a tenant's use at a site: an allocation from the time its site reported it
/// applied to the time it reported it ended, or a volume while it existed.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    pub site: String,
    pub tenant: String,
    /// Empty for a volume.
    pub workload: String,
    /// `alloc/{workload}/{server}` or `volume/{tenant}/{name}`.
    pub subject: String,
    /// Site clock, unix ms.
    pub start_ms: i64,
    /// `None` while it runs.
    pub end_ms: Option<i64>,
    pub quantities: Vec<Quantity>,
}

impl From<&Span> for proto::UsageIntervalRecord {
    fn from(s: &Span) -> Self {
        proto::UsageIntervalRecord {
            site: s.site.clone(),
            tenant: s.tenant.clone(),
            workload: s.workload.clone(),
            subject: s.subject.clone(),
            start_ms: s.start_ms,
            end_ms: s.end_ms.unwrap_or(0),
            quantities: s
                .quantities
                .iter()
                .map(|q| proto::UsageQuantity {
                    resource: q.resource.to_proto() as i32,
                    detail: q.detail.clone(),
                    amount: q.amount,
                })
                .collect(),
        }
    }
}

impl From<proto::UsageIntervalRecord> for Span {
    /// A quantity of a resource this version does not know is left out.
    fn from(r: proto::UsageIntervalRecord) -> Self {
        Span {
            site: r.site,
            tenant: r.tenant,
            workload: r.workload,
            subject: r.subject,
            start_ms: r.start_ms,
            end_ms: (r.end_ms != 0).then_some(r.end_ms),
            quantities: r
                .quantities
                .into_iter()
                .filter_map(|q| {
                    Some(Quantity {
                        resource: Resource::from_proto(q.resource)?,
                        detail: q.detail,
                        amount: q.amount,
                    })
                })
                .collect(),
        }
    }
}

/// Bytes one tenant sent out of a site's WAN in one period.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Egress {
    pub site: String,
    pub tenant: String,
    pub period_start_ms: i64,
    pub bytes: u64,
}

impl From<proto::UsageEgressRecord> for Egress {
    fn from(r: proto::UsageEgressRecord) -> Self {
        Egress {
            site: r.site,
            tenant: r.tenant,
            period_start_ms: r.period_start_ms,
            bytes: r.bytes,
        }
    }
}

/// One resource's use by one workload at one site in one period.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageRow {
    pub period_start_ms: i64,
    pub tenant: String,
    pub workload: String,
    pub site: String,
    pub resource: Resource,
    pub detail: String,
    /// In [`Resource::unit`].
    pub amount: f64,
    /// The site's reports cover the whole period.
    pub final_: bool,
}

impl From<&UsageRow> for proto::UsageRow {
    fn from(r: &UsageRow) -> Self {
        proto::UsageRow {
            period_start_ms: r.period_start_ms,
            tenant: r.tenant.clone(),
            workload: r.workload.clone(),
            site: r.site.clone(),
            resource: r.resource.to_proto() as i32,
            detail: r.detail.clone(),
            amount: r.amount,
            r#final: r.final_,
        }
    }
}
