//! Read-only views across many records at once, for the console: the fleet at a glance (every
//! site with its drift, GPUs by model with how many are held), one site's intent and recent
//! reports, reservations on a calendar, and the audit log. Each takes an admitted [`Call`]
//! like every other service method, and scopes tenant objects to the caller.

use std::collections::{BTreeMap, HashMap, HashSet};

use meridian_common::ids::{Generation, ServerId, SiteId, Timestamp};
use meridian_common::model::SiteReport;
use meridian_common::model::{Placement, Server, Site, SiteIntent, SiteTier};
use meridian_proto::v1 as proto;
use meridian_store::schema::{INTENTS_PREFIX, SITES_PREFIX, reports_prefix};
use meridian_store::{RangeRequest, Revision};
use prost::Message;

use super::error::ApiError;
use super::{Call, Services};

/// Only the generation of a stored intent (tag 2 of `SiteIntent`): the rest is skipped
/// unread, so the fleet view does not decode 10,000 whole intents.
#[derive(Clone, PartialEq, prost::Message)]
struct IntentGeneration {
    #[prost(uint64, tag = "2")]
    generation: u64,
}

/// One site in the fleet view.
#[derive(Debug, Clone, PartialEq)]
pub struct SiteRow {
    pub site: Site,
    /// The newest intent compiled for it.
    pub desired: Generation,
    /// The newest its agent applied.
    pub applied: Generation,
    /// When central last heard from it (0: never).
    pub last_seen: Timestamp,
    /// GPUs on its servers.
    pub gpus: u32,
    /// Of which held by a placement now.
    pub held: u32,
}

impl SiteRow {
    /// Whether the site is behind its desired intent.
    pub fn drifting(&self) -> bool {
        self.desired > self.applied
    }
}

/// GPUs of one model in one tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GpuCount {
    pub total: u32,
    pub held: u32,
}

/// The fleet at a glance.
#[derive(Debug, Clone, Default)]
pub struct FleetOverview {
    /// Every site, in ID order.
    pub sites: Vec<SiteRow>,
    /// GPUs by (model, tier).
    pub gpus: BTreeMap<(String, SiteTier), GpuCount>,
    /// The store revision the view was read at (live updates follow from the next one).
    pub revision: Revision,
}

/// Every value under `prefix`, key order, with the read's revision.
async fn raw_range(
    services: &Services,
    prefix: &str,
) -> Result<(Vec<(Vec<u8>, Vec<u8>)>, Revision), ApiError> {
    let store = services.tables.store();
    let mut out = Vec::new();
    let mut after = None;
    let mut revision = None;
    loop {
        let page = store
            .range(RangeRequest {
                prefix: prefix.as_bytes().to_vec(),
                start_after: after.take(),
                limit: 5000,
            })
            .await
            .map_err(|e| ApiError::Store(e.into()))?;
        revision.get_or_insert(page.revision);
        let more = page.more;
        let last = page.kvs.last().map(|kv| kv.key.clone());
        out.extend(page.kvs.into_iter().map(|kv| (kv.key, kv.value)));
        match (more, last) {
            (true, Some(last)) => after = Some(last),
            _ => return Ok((out, revision.unwrap_or_default())),
        }
    }
}

fn site_in(key: &[u8], prefix: &str) -> Option<SiteId> {
    meridian_store::schema::site_of(key, prefix)
}

/// The (site, server, GPU index) triples `placement` holds at `now`.
fn held_gpus(
    placement: &Placement,
    now: Timestamp,
) -> impl Iterator<Item = (SiteId, ServerId, u32)> + '_ {
    let active = placement.window.is_none_or(|w| w.contains(now));
    placement
        .assignments
        .iter()
        .filter(move |_| active)
        .flat_map(|a| {
            a.slot
                .gpu_indices()
                .into_iter()
                .map(move |i| (a.site.clone(), a.server.clone(), i))
        })
}

impl Services {
    /// Every site with its drift and GPUs, and GPUs by model and tier with how many are held
    /// at `now`. Admitted as `ListSites`.
    pub async fn fleet_overview(&self, _call: Call<'_>) -> Result<FleetOverview, ApiError> {
        let now = self.clock.now();
        let sites = self.tables.sites().list_all(None, 5000).await?;
        let servers: Vec<Server> = self.tables.servers().list_all(None, 5000).await?;
        let placements: Vec<Placement> = self.tables.placements().list_all(None, 5000).await?;
        let (intents, _) = raw_range(self, INTENTS_PREFIX).await?;
        let (channels, revision) = raw_range(self, SITES_PREFIX).await?;
        let mut desired: HashMap<SiteId, Generation> = HashMap::with_capacity(intents.len());
        for (key, value) in &intents {
            if let (Some(site), Ok(g)) = (
                site_in(key, INTENTS_PREFIX),
                IntentGeneration::decode(value.as_slice()),
            ) {
                desired.insert(site, Generation::new(g.generation));
            }
        }
        let mut channel: HashMap<SiteId, (Generation, Timestamp)> =
            HashMap::with_capacity(channels.len());
        for (key, value) in &channels {
            if let (Some(site), Ok(r)) = (
                site_in(key, SITES_PREFIX),
                proto::SiteChannelRecord::decode(value.as_slice()),
            ) {
                channel.insert(
                    site,
                    (
                        Generation::new(r.applied_generation),
                        Timestamp::from_millis(r.last_seen_ms),
                    ),
                );
            }
        }
        let held: HashSet<(SiteId, ServerId, u32)> =
            placements.iter().flat_map(|p| held_gpus(p, now)).collect();
        let tiers: HashMap<&SiteId, SiteTier> = sites.iter().map(|s| (&s.id, s.tier)).collect();
        let mut per_site: HashMap<&SiteId, (u32, u32)> = HashMap::new();
        let mut gpus: BTreeMap<(String, SiteTier), GpuCount> = BTreeMap::new();
        for server in &servers {
            let Some(tier) = tiers.get(&server.site) else {
                continue;
            };
            for gpu in &server.gpus {
                let is_held = held.contains(&(server.site.clone(), server.id.clone(), gpu.index));
                let count = gpus.entry((gpu.model.to_string(), *tier)).or_default();
                count.total += 1;
                let site = per_site.entry(&server.site).or_default();
                site.0 += 1;
                if is_held {
                    count.held += 1;
                    site.1 += 1;
                }
            }
        }
        let rows = sites
            .iter()
            .map(|site| {
                let (applied, last_seen) = channel
                    .get(&site.id)
                    .copied()
                    .unwrap_or((Generation::default(), Timestamp::from_millis(0)));
                let (gpus, held) = per_site.get(&site.id).copied().unwrap_or_default();
                SiteRow {
                    desired: desired.get(&site.id).copied().unwrap_or_default(),
                    applied,
                    last_seen,
                    gpus,
                    held,
                    site: site.clone(),
                }
            })
            .collect();
        Ok(FleetOverview {
            sites: rows,
            gpus,
            revision,
        })
    }

    /// A site's current intent (`None` before the first compile). Admitted as `GetSiteDrift`.
    pub async fn site_intent(
        &self,
        _call: Call<'_>,
        site: &SiteId,
    ) -> Result<Option<SiteIntent>, ApiError> {
        Ok(self.tables.intents().get(site).await?.map(|v| v.record))
    }

    /// A site's newest `limit` stored reports, newest first. Admitted as `GetSiteDrift`.
    pub async fn site_reports(
        &self,
        _call: Call<'_>,
        site: &SiteId,
        limit: usize,
    ) -> Result<Vec<SiteReport>, ApiError> {
        let prefix = String::from_utf8(reports_prefix(site)).unwrap_or_default();
        let (kvs, _) = raw_range(self, &prefix).await?;
        Ok(kvs
            .iter()
            .rev()
            .filter_map(|(_, v)| proto::SiteReport::decode(v.as_slice()).ok())
            .filter_map(|r| SiteReport::try_from(r).ok())
            .take(limit)
            .collect())
    }

    /// The placements the caller may see (its tenant's, or every tenant's for provider
    /// users), optionally of one site. Admitted as `ListWorkloads`.
    pub async fn reservations(
        &self,
        call: Call<'_>,
        site: Option<&SiteId>,
    ) -> Result<Vec<Placement>, ApiError> {
        let caller = call.caller();
        let placements: Vec<Placement> = match &caller.tenant {
            Some(t) => self.tables.placements().list_all(Some(t), 5000).await?,
            None => self.tables.placements().list_all(None, 5000).await?,
        };
        Ok(placements
            .into_iter()
            .filter(|p| caller.scope().sees(&p.tenant))
            .filter(|p| site.is_none_or(|s| p.assignments.iter().any(|a| &a.site == s)))
            .collect())
    }

    /// The audit records about `object` (`workload/wl-...`), oldest first. Admitted as
    /// `ListSites`, like the whole log.
    pub async fn audit_of(
        &self,
        _call: Call<'_>,
        object: &str,
    ) -> Result<Vec<proto::AuditRecord>, ApiError> {
        let records =
            crate::audit::list_records::<proto::AuditRecord>(&self.tables, "audit/").await?;
        Ok(records.into_iter().filter(|r| r.object == object).collect())
    }

    /// The audit log, newest first, with the chain's verdict. Admitted as `ListSites`: the
    /// provider users who may see the fleet (no tenant role may).
    pub async fn audit_log(
        &self,
        _call: Call<'_>,
    ) -> Result<(Vec<proto::AuditRecord>, crate::audit::Verdict), ApiError> {
        let (mut records, verdict) = self.audit.read_verified().await?;
        records.reverse();
        Ok((records, verdict))
    }
}
