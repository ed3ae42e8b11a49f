//! The schema: every record central stores, its key, and its encoding, in one place.
//! Values are protobuf (`meridian.v1`) throughout, converted through the same checked
//! `TryFrom` as wire input, so a stored record that no longer converts is reported as corrupt,
//! never silently defaulted.
//!
//! | table | key | record |
//! |---|---|---|
//! | `sites/` | site | [`Site`] |
//! | `servers/` | site/server | [`Server`] |
//! | `tenants/` | tenant | [`Tenant`] |
//! | `regions/` | region | [`Region`] |
//! | `datasets/` | tenant/dataset | [`Dataset`] |
//! | `workloads/` | tenant/workload | [`Workload`] |
//! | `placements/` | tenant/workload | [`Placement`] |
//! | `intents/` | site | [`SiteIntent`] |
//! | `tokens/bootstrap/` | token | [`proto::BootstrapTokenRecord`] |
//! | `tokens/api/` | token | [`proto::ApiTokenRecord`] |
//! | `users/` | user | [`proto::User`] |
//! | `passwords/` | user | [`proto::PasswordRecord`]: the user's console password as an argon2id PHC string |
//! | `index/workloads/` | workload | [`WorkloadIndex`] (its tenant) |
//! | `index/datasets/` | dataset/tenant | [`DatasetIndex`] (one per tenant holding the ID) |
//! | `audit/` | sequence (20 digits) | [`proto::AuditRecord`] |
//! | `net/` | kind/... (see [`NetworkClaim`]) | [`NetworkClaim`] (`NetworkClaimRecord`) |
//! | `channel/auth/` | site | [`SiteAuth`] (`SiteAuthRecord`): certificate epoch, revoked |
//! | `channel/sites/` | site | [`SiteChannel`] (`SiteChannelRecord`): acked/applied generations, report high-water, last seen |
//! | `reports/` | site/sequence (20 digits) | `SiteReport` |
//! | `usage/intervals/` | site/subject/start (20 digits) | [`proto::UsageIntervalRecord`]: one span of a tenant's metered use (an allocation or a volume) |
//! | `usage/egress/` | site/tenant/period start (20 digits) | [`proto::UsageEgressRecord`]: bytes a tenant sent out of the site's WAN in one hour |
//! | `rtts/` | site/region | [`proto::MeasuredRttRecord`]: the latest RTT the site's agent measured to the region |
//! | `utilisation/` | hour start (20 digits)/site | [`proto::BusyUtilisationRecord`]: the site's busy GPU utilisation in the hour, per GPU, from its agent's summaries |
//! | `cost/` | `inputs` (one key) | [`proto::CostInputs`]: the provider's cost inputs (GPU costs, throughput, API prices) |
//! | `actions/` | site/request (20 digits) | [`proto::ServerActionRecord`]: an operator's server action and how far it got |
//! | `drains/` | site/server | [`proto::ServerDrainRecord`]: the server takes no new placement |
//! | `counters/server-actions` | (one key) | the last server-action request ID handed out |
//! | `audit-head` | (one key) | the hash of the newest audit record |
//! | `lifecycle/dirty/` | tenant[/workload] | (empty): the tenant's intents need publishing |
//! | `lifecycle/dirty-sites/` | site | (empty): the site's intent needs publishing (its server actions changed) |
//! | `dns/published/` | DNS name | JSON: the A records central published there, confirmed or not (`meridian_central::dns::published`) |
//!
//! Older centrals stored the two channel records as JSON; they still decode (and are
//! rewritten as protobuf on their next change).

use meridian_common::convert::ConvertError;
use meridian_common::ids::{DatasetId, Generation, Sequence, SiteId, TenantId, WorkloadId};
use meridian_common::model::{
    Dataset, NetworkClaim, Placement, Region, Server, Site, SiteIntent, Tenant, Workload,
};
use meridian_common::validate::{self, Problem, ValidationError};
use meridian_proto::v1 as proto;
use prost::Message;

use std::sync::Arc;

use crate::tables::{AuditSeq, DecodeFailure, Record, Table, TableError, TableKey};
use crate::{Op, RangeRequest, Revision, Store, StoreError, Txn};

macro_rules! model_record {
    ($model:ty, $wire:ty, $table:literal, |$r:ident| $key:expr, $validate:expr, index: $index:ty) => {
        model_record!(@impl $model, $wire, $table, |$r| $key, $validate,
            fn index_entry(path: &str) -> Option<(Vec<u8>, Vec<u8>)> {
                <$index>::of_owner_path(path)
            }
        );
    };
    ($model:ty, $wire:ty, $table:literal, |$r:ident| $key:expr, $validate:expr) => {
        model_record!(@impl $model, $wire, $table, |$r| $key, $validate,);
    };
    (@impl $model:ty, $wire:ty, $table:literal, |$r:ident| $key:expr, $validate:expr, $($extra:item)*) => {
        impl Record for $model {
            const TABLE: &'static str = $table;
            fn key_path(&self) -> String {
                let $r = self;
                $key
            }
            fn encode(&self) -> Vec<u8> {
                <$wire>::from(self.clone()).encode_to_vec()
            }
            fn decode(raw: &[u8]) -> Result<Self, DecodeFailure> {
                Ok(Self::try_from(<$wire>::decode(raw)?)?)
            }
            fn validate(&self) -> Result<(), ValidationError> {
                ($validate)(self)
            }
            $($extra)*
        }
    };
}

model_record!(
    Site,
    proto::Site,
    "sites",
    |r| r.id.path(),
    validate::validate_site
);
model_record!(
    Server,
    proto::Server,
    "servers",
    |r| (&r.site, &r.id).path(),
    validate::validate_server
);
model_record!(
    Tenant,
    proto::Tenant,
    "tenants",
    |r| r.id.path(),
    validate::validate_tenant
);
model_record!(
    Region,
    proto::Region,
    "regions",
    |r| r.id.path(),
    validate::validate_region
);
model_record!(
    Dataset,
    proto::Dataset,
    "datasets",
    |r| (&r.tenant, &r.id).path(),
    validate::validate_dataset,
    index: DatasetIndex
);
model_record!(
    Workload,
    proto::Workload,
    "workloads",
    |r| (&r.tenant, &r.id).path(),
    |w: &Workload| validate::validate_workload_spec(&w.spec),
    index: WorkloadIndex
);
model_record!(
    Placement,
    proto::Placement,
    "placements",
    |r| (&r.tenant, &r.workload).path(),
    |_: &Placement| Ok(())
);
model_record!(
    SiteIntent,
    proto::SiteIntent,
    "intents",
    |r| r.site.path(),
    validate::validate_site_intent
);

/// A protobuf message stored as it is, with a required field holding its key.
macro_rules! wire_record {
    ($wire:ty, $table:literal, |$r:ident| $key:expr) => {
        impl Record for $wire {
            const TABLE: &'static str = $table;
            fn key_path(&self) -> String {
                let $r = self;
                $key
            }
            fn encode(&self) -> Vec<u8> {
                self.encode_to_vec()
            }
            fn decode(raw: &[u8]) -> Result<Self, DecodeFailure> {
                Ok(<$wire as Message>::decode(raw)?)
            }
            fn validate(&self) -> Result<(), ValidationError> {
                if self.key_path().is_empty() {
                    return Err(ValidationError(vec![Problem::new(
                        "id",
                        "is required: the record's key field is empty",
                    )]));
                }
                Ok(())
            }
        }
    };
}

wire_record!(proto::BootstrapTokenRecord, "tokens/bootstrap", |r| r
    .token
    .as_ref()
    .map_or_else(String::new, |t| t.id.clone()));
wire_record!(proto::ApiTokenRecord, "tokens/api", |r| r
    .token
    .as_ref()
    .map_or_else(String::new, |t| t.id.clone()));
wire_record!(proto::AuditRecord, "audit", |r| AuditSeq(r.seq).path());
wire_record!(proto::User, "users", |r| r.id.clone());
wire_record!(proto::PasswordRecord, "passwords", |r| r.user.clone());
wire_record!(proto::ServerActionRecord, "actions", |r| {
    if r.site.is_empty() || r.request == 0 {
        String::new()
    } else {
        format!("{}/{}", r.site, AuditSeq(r.request).path())
    }
});
wire_record!(proto::ServerDrainRecord, "drains", |r| {
    if r.site.is_empty() || r.server.is_empty() {
        String::new()
    } else {
        format!("{}/{}", r.site, r.server)
    }
});

/// The counter of server-action request IDs (the last one handed out, 8 bytes big-endian).
pub const ACTION_COUNTER_KEY: &[u8] = b"counters/server-actions";
wire_record!(
    proto::MeasuredRttRecord,
    "rtts",
    |r| if r.site.is_empty() || r.region.is_empty() {
        String::new()
    } else {
        format!("{}/{}", r.site, r.region)
    }
);

wire_record!(
    proto::UsageIntervalRecord,
    "usage/intervals",
    |r| if r.site.is_empty() || r.subject.is_empty() {
        String::new()
    } else {
        format!(
            "{}/{}/{}",
            r.site,
            r.subject,
            AuditSeq(r.start_ms.max(0) as u64).path()
        )
    }
);

wire_record!(
    proto::BusyUtilisationRecord,
    "utilisation",
    |r| if r.site.is_empty() {
        String::new()
    } else {
        format!(
            "{}/{}",
            AuditSeq(r.hour_start_ms.max(0) as u64).path(),
            r.site
        )
    }
);

/// The key path of the provider's cost inputs (`cost/inputs`).
pub const COST_INPUTS_PATH: &str = "inputs";
wire_record!(proto::CostInputs, "cost", |_r| COST_INPUTS_PATH.to_owned());

wire_record!(
    proto::UsageEgressRecord,
    "usage/egress",
    |r| if r.site.is_empty() || r.tenant.is_empty() {
        String::new()
    } else {
        format!(
            "{}/{}/{}",
            r.site,
            r.tenant,
            AuditSeq(r.period_start_ms.max(0) as u64).path()
        )
    }
);

/// Which tenant owns a workload, so an ID alone finds the record (`index/workloads/{id}`).
/// Workload IDs are assigned by central, so one ID names one workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadIndex {
    /// The workload.
    pub workload: WorkloadId,
    /// Its tenant.
    pub tenant: TenantId,
}

/// Which tenants hold a dataset of a given ID (`index/datasets/{id}/{tenant}`). Dataset IDs
/// are chosen by tenants and scoped per tenant, so an ID may be held by several tenants; a
/// provider caller naming only an ID is answered from here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetIndex {
    /// The dataset.
    pub dataset: DatasetId,
    /// Its tenant.
    pub tenant: TenantId,
}

impl WorkloadIndex {
    fn entry_key(&self) -> String {
        self.workload.path()
    }
}

impl DatasetIndex {
    fn entry_key(&self) -> String {
        (&self.dataset, &self.tenant).path()
    }
}

macro_rules! index_record {
    ($ty:ident, $id:ident, $idty:ty, $table:literal) => {
        impl Record for $ty {
            const TABLE: &'static str = $table;
            fn key_path(&self) -> String {
                self.entry_key()
            }
            /// Stored as `{id} {tenant}`, so an entry reads back whole.
            fn encode(&self) -> Vec<u8> {
                format!("{} {}", self.$id, self.tenant).into_bytes()
            }
            fn decode(raw: &[u8]) -> Result<Self, DecodeFailure> {
                let bad = || {
                    DecodeFailure::Convert(ConvertError::new(
                        meridian_common::convert::ConvertProblem::Invalid(
                            "index entry is not `{id} {tenant}`".into(),
                        ),
                    ))
                };
                let text = std::str::from_utf8(raw).map_err(|_| bad())?;
                let (id, tenant) = text.split_once(' ').ok_or_else(bad)?;
                Ok($ty {
                    $id: <$idty>::parse(id).map_err(|_| bad())?,
                    tenant: TenantId::parse(tenant).map_err(|_| bad())?,
                })
            }
            fn validate(&self) -> Result<(), ValidationError> {
                Ok(())
            }
        }

        impl $ty {
            /// The index entry of the owner record at key path `{tenant}/{id}`.
            fn of_owner_path(path: &str) -> Option<(Vec<u8>, Vec<u8>)> {
                let (tenant, id) = path.split_once('/')?;
                let entry = $ty {
                    $id: <$idty>::parse(id).ok()?,
                    tenant: TenantId::parse(tenant).ok()?,
                };
                Some((Table::<$ty>::store_key(&entry.key_path()), entry.encode()))
            }
        }
    };
}
index_record!(WorkloadIndex, workload, WorkloadId, "index/workloads");
index_record!(DatasetIndex, dataset, DatasetId, "index/datasets");

impl Record for NetworkClaim {
    const TABLE: &'static str = "net";

    fn key_path(&self) -> String {
        self.path()
    }

    fn encode(&self) -> Vec<u8> {
        proto::NetworkClaimRecord::from(self).encode_to_vec()
    }

    fn decode(raw: &[u8]) -> Result<Self, DecodeFailure> {
        Ok(NetworkClaim::try_from(proto::NetworkClaimRecord::decode(
            raw,
        )?)?)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        meridian_common::model::validate_claim(self)
    }
}

/// The key of the audit chain's head: the hash of the newest record, written in the same
/// transaction as each record.
pub const AUDIT_HEAD_KEY: &[u8] = b"audit-head";

/// Prefix of the lifecycle's markers: a tenant whose intents need publishing.
pub const DIRTY_PREFIX: &str = "lifecycle/dirty/";

/// The marker that has the compiler publish `tenant` (and release a deleted tenant's
/// network).
pub fn tenant_dirty_marker(tenant: &TenantId) -> Op {
    Op::Put {
        key: format!("{DIRTY_PREFIX}{tenant}").into_bytes(),
        value: Vec::new(),
    }
}

/// The marker of one workload's change (its tenant is published).
pub fn workload_dirty_marker(tenant: &TenantId, workload: &WorkloadId) -> Op {
    Op::Put {
        key: format!("{DIRTY_PREFIX}{tenant}/{workload}").into_bytes(),
        value: Vec::new(),
    }
}

/// Prefix of the lifecycle's markers of sites whose intent needs publishing.
pub const SITE_DIRTY_PREFIX: &str = "lifecycle/dirty-sites/";

/// The marker that has the compiler publish `site` (its server actions changed).
pub fn site_dirty_marker(site: &SiteId) -> Op {
    Op::Put {
        key: format!("{SITE_DIRTY_PREFIX}{site}").into_bytes(),
        value: Vec::new(),
    }
}

/// Prefix of the channel's auth records.
pub const AUTH_PREFIX: &str = "channel/auth/";
/// Prefix of the channel's per-site records.
pub const SITES_PREFIX: &str = "channel/sites/";
/// Prefix of stored reports.
pub const REPORTS_PREFIX: &str = "reports/";
/// Prefix of the site intents (the distributor watches it).
pub const INTENTS_PREFIX: &str = "intents/";

/// Whether a site may hold a session, and with which certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SiteAuth {
    /// Certificates of a lower epoch are refused. Revocation bumps it.
    pub epoch: u64,
    /// Revoked: refused at the handshake until it enrols again with a new token.
    pub revoked: bool,
}

/// The channel's view of one site.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct SiteChannel {
    /// Highest generation the agent acknowledged as persisted.
    pub received_generation: Generation,
    /// Highest generation the agent reported applied.
    pub applied_generation: Generation,
    /// Highest generation the agent reported failed, with the reason.
    pub failed_generation: Generation,
    #[serde(default)]
    pub failed_reason: String,
    /// Every report with a sequence up to this is stored.
    pub report_high_water: Sequence,
    /// Reports the agent's buffer dropped (cumulative, as the agent reports it).
    pub reports_dropped: u64,
    /// When central last wrote this record on hearing from the site, unix millis.
    pub last_seen_ms: i64,
    /// Expiry of the certificate the site last presented, unix millis.
    pub cert_not_after_ms: i64,
    /// The QUIC path RTT of the site's session as central last recorded it, microseconds
    /// (0: never recorded).
    #[serde(default)]
    pub path_rtt_us: u64,
    /// The newest observation time among the site's stored reports (site clock), unix millis:
    /// its reports are complete up to here (0: none yet). Metering's finality.
    #[serde(default)]
    pub reports_through_ms: i64,
}

/// A record the channel keeps per site under its own key (not a [`Table`]: the site is the
/// key, not a field).
pub trait SiteRecord: Sized + serde::de::DeserializeOwned {
    /// The stored bytes.
    fn encode(&self) -> Vec<u8>;
    /// Back from stored protobuf bytes.
    fn decode_proto(raw: &[u8]) -> Result<Self, prost::DecodeError>;

    /// Back from stored bytes: protobuf, or the JSON an older central wrote (which always
    /// starts with `{`, a byte no record of these fields starts with).
    fn decode(key: &[u8], raw: &[u8]) -> Result<Self, StoreError> {
        let corrupt = |reason: String| StoreError::Corrupt {
            key: crate::display_key(key),
            reason,
        };
        if raw.first() == Some(&b'{') {
            serde_json::from_slice(raw).map_err(|e| corrupt(e.to_string()))
        } else {
            Self::decode_proto(raw).map_err(|e| corrupt(e.to_string()))
        }
    }
}

impl SiteRecord for SiteAuth {
    fn encode(&self) -> Vec<u8> {
        proto::SiteAuthRecord {
            epoch: self.epoch,
            revoked: self.revoked,
        }
        .encode_to_vec()
    }
    fn decode_proto(raw: &[u8]) -> Result<Self, prost::DecodeError> {
        let r = proto::SiteAuthRecord::decode(raw)?;
        Ok(SiteAuth {
            epoch: r.epoch,
            revoked: r.revoked,
        })
    }
}

impl SiteRecord for SiteChannel {
    fn encode(&self) -> Vec<u8> {
        proto::SiteChannelRecord {
            received_generation: self.received_generation.get(),
            applied_generation: self.applied_generation.get(),
            failed_generation: self.failed_generation.get(),
            failed_reason: self.failed_reason.clone(),
            report_high_water: self.report_high_water.get(),
            reports_dropped: self.reports_dropped,
            last_seen_ms: self.last_seen_ms,
            cert_not_after_ms: self.cert_not_after_ms,
            path_rtt_us: self.path_rtt_us,
            reports_through_ms: self.reports_through_ms,
        }
        .encode_to_vec()
    }
    fn decode_proto(raw: &[u8]) -> Result<Self, prost::DecodeError> {
        let r = proto::SiteChannelRecord::decode(raw)?;
        Ok(SiteChannel {
            received_generation: Generation::new(r.received_generation),
            applied_generation: Generation::new(r.applied_generation),
            failed_generation: Generation::new(r.failed_generation),
            failed_reason: r.failed_reason,
            report_high_water: Sequence::new(r.report_high_water),
            reports_dropped: r.reports_dropped,
            last_seen_ms: r.last_seen_ms,
            cert_not_after_ms: r.cert_not_after_ms,
            path_rtt_us: r.path_rtt_us,
            reports_through_ms: r.reports_through_ms,
        })
    }
}

/// Key of a site's auth record.
pub fn auth_key(site: &SiteId) -> Vec<u8> {
    format!("{AUTH_PREFIX}{site}").into_bytes()
}

/// Key of a site's channel record.
pub fn site_key(site: &SiteId) -> Vec<u8> {
    format!("{SITES_PREFIX}{site}").into_bytes()
}

/// Key of one stored report.
pub fn report_key(site: &SiteId, seq: Sequence) -> Vec<u8> {
    format!("{REPORTS_PREFIX}{site}/{:020}", seq.get()).into_bytes()
}

/// Prefix of one site's stored reports.
pub fn reports_prefix(site: &SiteId) -> Vec<u8> {
    format!("{REPORTS_PREFIX}{site}/").into_bytes()
}

/// The site id after `prefix` in a key.
pub fn site_of(key: &[u8], prefix: &str) -> Option<SiteId> {
    let rest = key.strip_prefix(prefix.as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    SiteId::parse(rest.split('/').next()?).ok()
}

/// Reads a per-site record with its revision.
pub async fn read_site_record<T: SiteRecord>(
    store: &dyn Store,
    key: &[u8],
) -> Result<Option<(T, Revision)>, StoreError> {
    match store.get(key).await? {
        Some(kv) => Ok(Some((T::decode(key, &kv.value)?, kv.mod_revision))),
        None => Ok(None),
    }
}

/// The channel's stored view of a site (the default before it first connects).
pub async fn site_channel(store: &dyn Store, site: &SiteId) -> Result<SiteChannel, StoreError> {
    Ok(read_site_record(store, &site_key(site))
        .await?
        .map(|(c, _)| c)
        .unwrap_or_default())
}

/// Every site's auth record; returns them with the revision to watch from.
pub async fn site_auths(
    store: &dyn Store,
) -> Result<(Vec<(SiteId, SiteAuth)>, Revision), StoreError> {
    let response = store.range(RangeRequest::prefix(AUTH_PREFIX)).await?;
    let mut out = Vec::with_capacity(response.kvs.len());
    for kv in &response.kvs {
        if let Some(site) = site_of(&kv.key, AUTH_PREFIX) {
            out.push((site, SiteAuth::decode(&kv.key, &kv.value)?));
        }
    }
    Ok((out, Revision(response.revision.0 + 1)))
}

/// Every table of central, over one store.
#[derive(Debug, Clone)]
pub struct Tables {
    store: Arc<dyn Store>,
}

impl Tables {
    /// The tables over `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Tables { store }
    }
    /// The store underneath, for multi-table transactions.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }
    /// Any table by record type.
    pub fn table<R: Record>(&self) -> Table<R> {
        Table::new(Arc::clone(&self.store))
    }
    pub fn sites(&self) -> Table<Site> {
        self.table()
    }
    pub fn servers(&self) -> Table<Server> {
        self.table()
    }
    pub fn tenants(&self) -> Table<Tenant> {
        self.table()
    }
    pub fn regions(&self) -> Table<Region> {
        self.table()
    }
    pub fn datasets(&self) -> Table<Dataset> {
        self.table()
    }
    pub fn workloads(&self) -> Table<Workload> {
        self.table()
    }
    pub fn placements(&self) -> Table<Placement> {
        self.table()
    }
    pub fn intents(&self) -> Table<SiteIntent> {
        self.table()
    }
    pub fn bootstrap_tokens(&self) -> Table<proto::BootstrapTokenRecord> {
        self.table()
    }
    pub fn api_tokens(&self) -> Table<proto::ApiTokenRecord> {
        self.table()
    }
    pub fn users(&self) -> Table<proto::User> {
        self.table()
    }
    /// Users' console passwords (hashes only), one per user, keyed by user ID.
    pub fn passwords(&self) -> Table<proto::PasswordRecord> {
        self.table()
    }
    pub fn workload_index(&self) -> Table<WorkloadIndex> {
        self.table()
    }
    pub fn dataset_index(&self) -> Table<DatasetIndex> {
        self.table()
    }
    pub fn audit(&self) -> Table<proto::AuditRecord> {
        self.table()
    }
    /// Operators' server-action requests, per site.
    pub fn actions(&self) -> Table<proto::ServerActionRecord> {
        self.table()
    }
    /// Drained servers, per site.
    pub fn drains(&self) -> Table<proto::ServerDrainRecord> {
        self.table()
    }
    /// Metered spans of use: a tenant's allocations and volumes at a site, from applied to
    /// ended (`meridian_central::metering`).
    pub fn usage_intervals(&self) -> Table<proto::UsageIntervalRecord> {
        self.table()
    }
    /// Metered egress: bytes per (site, tenant, hour) as the sites' gateways counted them.
    pub fn usage_egress(&self) -> Table<proto::UsageEgressRecord> {
        self.table()
    }
    /// The latest RTT per (site, region) the sites' agents measured.
    pub fn rtts(&self) -> Table<proto::MeasuredRttRecord> {
        self.table()
    }
    /// Busy GPU utilisation per hour and site, from the agents' summaries.
    pub fn busy_utilisation(&self) -> Table<proto::BusyUtilisationRecord> {
        self.table()
    }
    /// The provider's cost inputs (one record, at [`COST_INPUTS_PATH`]).
    pub fn cost_inputs(&self) -> Table<proto::CostInputs> {
        self.table()
    }
    /// The tenants holding a dataset with ID `id` (dataset IDs are scoped per tenant).
    pub async fn dataset_holders(&self, id: &DatasetId) -> Result<Vec<TenantId>, TableError> {
        Ok(self
            .dataset_index()
            .list_all(Some(id), 1000)
            .await?
            .into_iter()
            .map(|e| e.tenant)
            .collect())
    }

    /// Brings records written by an older central to the current layout; returns how many
    /// it rewrote. Today: dataset index entries keyed by ID alone (`index/datasets/{id}`,
    /// from when dataset IDs were global) move to `index/datasets/{id}/{tenant}`. Idempotent;
    /// each entry moves in one transaction, so a crash midway leaves every entry in one
    /// layout or the other and the next start finishes.
    pub async fn upgrade_layout(&self) -> Result<usize, TableError> {
        let prefix = format!("{}/", DatasetIndex::TABLE);
        let old = self
            .store
            .range(RangeRequest {
                prefix: prefix.clone().into_bytes(),
                start_after: None,
                limit: 0,
            })
            .await?;
        let mut moved = 0;
        for kv in old.kvs {
            let path = String::from_utf8_lossy(&kv.key[prefix.len()..]).into_owned();
            if path.contains('/') {
                continue;
            }
            let entry = Table::<DatasetIndex>::decode(&path, &kv.value)?;
            let txn = Txn::new()
                .when(crate::Compare::ModRevision(kv.key.clone(), kv.mod_revision))
                .then(Op::Delete { key: kv.key })
                .then(Table::<DatasetIndex>::put_op(&entry)?);
            if self.store.txn(txn).await?.succeeded {
                moved += 1;
            }
        }
        Ok(moved)
    }

    /// Network claims (VNIs, tables, subnets, addresses, public endpoints).
    pub fn network_claims(&self) -> Table<NetworkClaim> {
        self.table()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_records_round_trip_and_read_the_json_of_older_centrals() {
        let channel = SiteChannel {
            received_generation: Generation::new(7),
            applied_generation: Generation::new(6),
            failed_generation: Generation::new(5),
            failed_reason: "no such GPU".into(),
            report_high_water: Sequence::new(42),
            reports_dropped: 3,
            last_seen_ms: 1_700_000_000_000,
            cert_not_after_ms: 1_700_086_400_000,
            path_rtt_us: 1_250,
            reports_through_ms: 1_699_999_999_000,
        };
        let key = site_key(&SiteId::parse("edge-1").unwrap());
        assert_eq!(
            SiteChannel::decode(&key, &channel.encode()).unwrap(),
            channel
        );
        let legacy = serde_json::to_vec(&channel).unwrap();
        assert_eq!(SiteChannel::decode(&key, &legacy).unwrap(), channel);
        let auth = SiteAuth {
            epoch: 4,
            revoked: true,
        };
        assert_eq!(SiteAuth::decode(&key, &auth.encode()).unwrap(), auth);
        let legacy = serde_json::to_vec(&auth).unwrap();
        assert_eq!(SiteAuth::decode(&key, &legacy).unwrap(), auth);
        assert!(matches!(
            SiteAuth::decode(&key, b"{not json"),
            Err(StoreError::Corrupt { .. })
        ));
    }
}
