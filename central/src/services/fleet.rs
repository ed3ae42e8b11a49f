//! The fleet service: sites, servers, regions, datasets, bootstrap tokens, revocation.

use std::time::Duration;

use meridian_common::channel::bootstrap::BootstrapFile;
use meridian_common::ids::{DatasetId, Generation, ServerId, SiteId, Timestamp, TokenId};
use meridian_common::model::{Dataset, Region, Server, Site, SiteState};
use meridian_common::validate::{validate_dataset, validate_region, validate_site};
use meridian_proto::v1 as proto;
use meridian_store::tables::{TableError, TableKeyDyn};

use super::access::Caller;
use super::error::ApiError;
use super::pages::{self, PageRequest};
use super::{Call, Services, acting_tenant, tenant_filter};
use crate::tokens::{NewToken, TokenError};

/// Site fields an operator may update.
pub const SITE_FIELDS: [&str; 7] = [
    "name",
    "location",
    "certifications",
    "pools",
    "gateway_range",
    "price_per_gpu_hour",
    "storage_mib",
];

/// How far a site's agent is behind central.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteDrift {
    /// The site.
    pub site: SiteId,
    /// The newest intent central compiled for it.
    pub desired: Generation,
    /// The newest intent its agent acknowledged as stored.
    pub acknowledged: Generation,
    /// The newest intent its agent applied.
    pub applied: Generation,
    /// When central last heard from it (0: never).
    pub last_seen: Timestamp,
    /// Why the newest failed generation failed, when it is newer than the applied one.
    pub failure_reason: Option<String>,
    /// The QUIC path RTT of its agent's session as last recorded, microseconds (0: never).
    pub path_rtt_us: u64,
    /// The latest RTT its agent measured to each region it probes.
    pub measured_rtts: Vec<proto::MeasuredRttRecord>,
}

/// A new bootstrap token and the site's bootstrap file (which holds its secret).
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// The token as stored (no secret).
    pub token: NewToken,
    /// What the site's agent needs to enrol.
    pub file: BootstrapFile,
}

fn parse<T: meridian_common::ids::TypedId>(field: &str, s: &str) -> Result<T, ApiError> {
    T::parse(s).map_err(|e| ApiError::invalid(field, e.to_string()))
}

fn already(kind: &'static str, id: impl std::fmt::Display) -> impl FnOnce(TableError) -> ApiError {
    move |e| match e {
        TableError::AlreadyExists { .. } => ApiError::AlreadyExists {
            kind,
            id: id.to_string(),
        },
        other => other.into(),
    }
}

fn token_error(e: TokenError) -> ApiError {
    match e {
        TokenError::NoSuchSite(s) => ApiError::not_found("site", s),
        TokenError::NoSuchToken(t) => ApiError::not_found("bootstrap token", t),
        TokenError::Decommissioned(_) => ApiError::FailedPrecondition(e.to_string()),
        TokenError::BadTtl => ApiError::invalid("ttl_ms", e.to_string()),
        TokenError::Table(t) => t.into(),
    }
}

impl Services {
    async fn site(&self, id: &str) -> Result<(Site, meridian_store::Revision), ApiError> {
        let id: SiteId = parse("id", id)?;
        let v = self
            .tables
            .sites()
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("site", &id))?;
        Ok((v.record, v.revision))
    }

    /// Creates a site; it starts `Pending` until its agent enrols.
    pub async fn create_site(&self, call: Call<'_>, site: Site) -> Result<Site, ApiError> {
        let object = format!("site/{}", site.id);
        let result = async {
            if site.state != SiteState::Pending {
                return Err(ApiError::invalid(
                    "site.state",
                    "is managed by Meridian; leave it unset (a new site starts PENDING)",
                ));
            }
            validate_site(&site).map_err(|e| ApiError::validation("site", e))?;
            self.tables
                .sites()
                .create(&site)
                .await
                .map_err(already("site", &site.id))?;
            self.lifecycle.fleet_changed();
            Ok(site)
        }
        .await;
        call.finish(&object, result).await
    }

    /// A site.
    pub async fn get_site(&self, _call: Call<'_>, id: &str) -> Result<Site, ApiError> {
        Ok(self.site(id).await?.0)
    }

    /// A page of the sites for which `keep` holds.
    pub async fn list_sites(
        &self,
        _call: Call<'_>,
        keep: impl Fn(&Site) -> bool,
        page: &PageRequest,
    ) -> Result<(Vec<Site>, String), ApiError> {
        pages::page(
            &self.tables.sites(),
            None,
            page,
            self.config.max_page_size,
            keep,
        )
        .await
    }

    /// Changes the fields of a site that `paths` names, taking them from `submitted` (the
    /// site as the API writes it; only the named fields are read, and only they are checked).
    pub async fn update_site(
        &self,
        call: Call<'_>,
        paths: Vec<String>,
        submitted: proto::Site,
    ) -> Result<Site, ApiError> {
        let object = format!("site/{}", submitted.id);
        let result = self.update_site_fields(paths, submitted).await;
        call.finish(&object, result).await
    }

    async fn update_site_fields(
        &self,
        paths: Vec<String>,
        wire: proto::Site,
    ) -> Result<Site, ApiError> {
        let (current, revision) = self.site(&wire.id).await?;
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                format!("list the fields to change: {}", SITE_FIELDS.join(", ")),
            ));
        }
        for (i, path) in paths.iter().enumerate() {
            if !SITE_FIELDS.contains(&path.as_str()) {
                return Err(ApiError::invalid(
                    format!("update_mask.paths[{i}]"),
                    format!("`{path}` is not updatable; use {}", SITE_FIELDS.join(", ")),
                ));
            }
        }
        // Only the masked fields are taken from the request, over the current record.
        let mut merged = proto::Site::from(current);
        for path in &paths {
            match path.as_str() {
                "name" => merged.name = wire.name.clone(),
                "location" => merged.location = wire.location,
                "certifications" => merged.certifications = wire.certifications.clone(),
                "pools" => merged.pools = wire.pools.clone(),
                "gateway_range" => merged.gateway_range = wire.gateway_range.clone(),
                "price_per_gpu_hour" => merged.price_per_gpu_hour = wire.price_per_gpu_hour,
                "storage_mib" => merged.storage_mib = wire.storage_mib,
                _ => unreachable!("checked above"),
            }
        }
        let next = Site::try_from(merged).map_err(|e| ApiError::convert("site", e))?;
        validate_site(&next).map_err(|e| ApiError::validation("site", e))?;
        self.tables.sites().update(&next, revision).await?;
        self.lifecycle.fleet_changed();
        Ok(next)
    }

    /// Takes a site out of service for good: decommissioned, and its certificates revoked.
    pub async fn decommission_site(&self, call: Call<'_>, id: &str) -> Result<Site, ApiError> {
        let caller = call.caller();
        let result = async {
            let (mut site, revision) = self.site(id).await?;
            if site.state != SiteState::Decommissioned {
                site.state = SiteState::Decommissioned;
                self.tables.sites().update(&site, revision).await?;
                self.sites
                    .revoke(&site.id, &caller.actor(), self.clock.now())
                    .await?;
                self.lifecycle.fleet_changed();
            }
            Ok(site)
        }
        .await;
        call.finish(&format!("site/{id}"), result).await
    }

    /// Refuses the site's certificates until it enrols again; returns the site and when.
    pub async fn revoke_site(
        &self,
        call: Call<'_>,
        id: &str,
    ) -> Result<(Site, Timestamp), ApiError> {
        let caller = call.caller();
        let now = self.clock.now();
        let result = async {
            let (site, _) = self.site(id).await?;
            self.sites.revoke(&site.id, &caller.actor(), now).await?;
            Ok((site, now))
        }
        .await;
        call.finish(&format!("site/{id}"), result).await
    }

    /// How far the site's agent is behind central.
    pub async fn site_drift(&self, _call: Call<'_>, id: &str) -> Result<SiteDrift, ApiError> {
        let (site, _) = self.site(id).await?;
        let intent = self.tables.intents().get(&site.id).await?;
        let channel =
            meridian_store::schema::site_channel(self.tables.store().as_ref(), &site.id).await?;
        Ok(SiteDrift {
            desired: intent.map_or(Generation::default(), |i| i.record.generation),
            acknowledged: channel.received_generation,
            applied: channel.applied_generation,
            last_seen: Timestamp::from_millis(channel.last_seen_ms),
            failure_reason: (channel.failed_generation > channel.applied_generation)
                .then_some(channel.failed_reason),
            path_rtt_us: channel.path_rtt_us,
            measured_rtts: crate::channel::rtts::of_site(&self.tables, &site.id).await?,
            site: site.id,
        })
    }

    /// A page of the servers (of `site`, when named) for which `keep` holds.
    pub async fn list_servers(
        &self,
        _call: Call<'_>,
        site: &str,
        keep: impl Fn(&Server) -> bool,
        page: &PageRequest,
    ) -> Result<(Vec<Server>, String), ApiError> {
        let site: Option<SiteId> = if site.is_empty() {
            None
        } else {
            Some(parse("site", site)?)
        };
        let parent = site.as_ref().map(|s| s as &(dyn TableKeyDyn + Sync));
        pages::page(
            &self.tables.servers(),
            parent,
            page,
            self.config.max_page_size,
            keep,
        )
        .await
    }

    /// One server of a site.
    pub async fn get_server(
        &self,
        _call: Call<'_>,
        site: &str,
        id: &str,
    ) -> Result<Server, ApiError> {
        let site: SiteId = parse("site", site)?;
        let id: ServerId = parse("id", id)?;
        Ok(self
            .tables
            .servers()
            .get(&(&site, &id))
            .await?
            .ok_or_else(|| ApiError::not_found("server", format!("{site}/{id}")))?
            .record)
    }

    /// Creates a region (a population of users, for latency goals).
    pub async fn create_region(&self, call: Call<'_>, region: Region) -> Result<Region, ApiError> {
        let object = format!("region/{}", region.id);
        let result = async {
            validate_region(&region).map_err(|e| ApiError::validation("region", e))?;
            self.tables
                .regions()
                .create(&region)
                .await
                .map_err(already("region", &region.id))?;
            self.lifecycle.fleet_changed();
            Ok(region)
        }
        .await;
        call.finish(&object, result).await
    }

    /// A page of the regions.
    pub async fn list_regions(
        &self,
        _call: Call<'_>,
        page: &PageRequest,
    ) -> Result<(Vec<Region>, String), ApiError> {
        pages::page(
            &self.tables.regions(),
            None,
            page,
            self.config.max_page_size,
            |_: &Region| true,
        )
        .await
    }

    /// A dataset by id, if the caller may see it. Dataset IDs are scoped per tenant: a
    /// tenant's caller means its own; a provider caller names the tenant, or may leave it out
    /// when only one tenant holds a dataset with that ID.
    async fn visible_dataset(
        &self,
        caller: &Caller,
        id: &str,
        tenant: &str,
    ) -> Result<(Dataset, meridian_store::Revision), ApiError> {
        let id: DatasetId = parse("id", id)?;
        let tenant = match tenant_filter(caller, tenant, "tenant")? {
            Some(t) => t,
            None => {
                let mut holders = self.tables.dataset_holders(&id).await?;
                match holders.len() {
                    0 => return Err(ApiError::not_found("dataset", &id)),
                    1 => holders.remove(0),
                    _ => {
                        let names: Vec<String> = holders.iter().map(ToString::to_string).collect();
                        return Err(ApiError::invalid(
                            "tenant",
                            format!(
                                "is required: tenants {} each hold a dataset {id}; name one",
                                names.join(", ")
                            ),
                        ));
                    }
                }
            }
        };
        let v = self
            .tables
            .datasets()
            .get(&(&tenant, &id))
            .await?
            .ok_or_else(|| ApiError::not_found("dataset", &id))?;
        Ok((v.record, v.revision))
    }

    /// Registers a dataset of the caller's tenant (a provider caller names the tenant in
    /// `dataset.tenant`; see [`dataset_tenant`] for filling it in before conversion).
    pub async fn create_dataset(
        &self,
        call: Call<'_>,
        dataset: Dataset,
    ) -> Result<Dataset, ApiError> {
        let object = format!("dataset/{}", dataset.id);
        let result = async {
            let tenant = acting_tenant(call.caller(), dataset.tenant.as_str(), "dataset.tenant")?;
            self.tenant_record(&tenant).await?;
            validate_dataset(&dataset).map_err(|e| ApiError::validation("dataset", e))?;
            for (i, site) in dataset.replicas.iter().enumerate() {
                if self.tables.sites().get(site).await?.is_none() {
                    return Err(ApiError::invalid(
                        format!("dataset.replicas[{i}]"),
                        format!("site {site} not found"),
                    ));
                }
            }
            // Scoped per tenant: only this tenant's own datasets can make the ID taken.
            self.tables
                .datasets()
                .create(&dataset)
                .await
                .map_err(already("dataset", &dataset.id))?;
            self.lifecycle.fleet_changed();
            Ok(dataset)
        }
        .await;
        call.finish(&object, result).await
    }

    /// A dataset the caller may see.
    pub async fn get_dataset(
        &self,
        call: Call<'_>,
        id: &str,
        tenant: &str,
    ) -> Result<Dataset, ApiError> {
        Ok(self.visible_dataset(call.caller(), id, tenant).await?.0)
    }

    /// A page of the datasets the caller sees (one tenant's, or every tenant's for a
    /// provider caller naming none).
    pub async fn list_datasets(
        &self,
        call: Call<'_>,
        tenant: &str,
        page: &PageRequest,
    ) -> Result<(Vec<Dataset>, String), ApiError> {
        let tenant = tenant_filter(call.caller(), tenant, "tenant")?;
        let parent = tenant.as_ref().map(|t| t as &(dyn TableKeyDyn + Sync));
        pages::page(
            &self.tables.datasets(),
            parent,
            page,
            self.config.max_page_size,
            |_: &Dataset| true,
        )
        .await
    }

    /// Deletes a dataset no live workload reads.
    pub async fn delete_dataset(
        &self,
        call: Call<'_>,
        id: &str,
        tenant: &str,
    ) -> Result<(), ApiError> {
        let result = async {
            let (dataset, revision) = self.visible_dataset(call.caller(), id, tenant).await?;
            let in_use = self
                .tables
                .workloads()
                .list_all(Some(&dataset.tenant), 1000)
                .await?
                .into_iter()
                .filter(|w| {
                    !w.state.is_terminal() && w.spec.constraints.datasets.contains(&dataset.id)
                })
                .count();
            if in_use > 0 {
                return Err(ApiError::FailedPrecondition(format!(
                    "dataset {} is read by {in_use} live workload(s); delete them first",
                    dataset.id
                )));
            }
            match self
                .tables
                .datasets()
                .delete(&(&dataset.tenant, &dataset.id), Some(revision))
                .await
            {
                Ok(_) => {}
                Err(TableError::Conflict { .. } | TableError::NotFound { .. }) => {
                    return Err(ApiError::Conflict(format!("dataset {}", dataset.id)));
                }
                Err(e) => return Err(e.into()),
            }
            self.lifecycle.fleet_changed();
            Ok(())
        }
        .await;
        call.finish(&format!("dataset/{id}"), result).await
    }

    /// A one-time bootstrap token for `site`, living `ttl` (`None`: the default), and the
    /// site's bootstrap file.
    pub async fn create_bootstrap_token(
        &self,
        call: Call<'_>,
        site: &str,
        ttl: Option<Duration>,
    ) -> Result<Bootstrap, ApiError> {
        let caller = call.caller();
        let result = async {
            let site: SiteId = parse("site", site)?;
            self.tokens
                .create(
                    &site,
                    ttl.unwrap_or(crate::tokens::DEFAULT_TTL),
                    self.clock.now(),
                    &caller.actor(),
                )
                .await
                .map_err(token_error)
        }
        .await;
        let token = call.finish(&format!("site/{site}"), result).await?;
        let file = token.bootstrap_file(self.channel_addresses.clone(), self.ca.fingerprint());
        Ok(Bootstrap { token, file })
    }

    /// A page of the bootstrap tokens (of `site`, when named); never their secrets.
    pub async fn list_bootstrap_tokens(
        &self,
        _call: Call<'_>,
        site: &str,
        page: &PageRequest,
    ) -> Result<(Vec<proto::BootstrapToken>, String), ApiError> {
        let site: Option<SiteId> = if site.is_empty() {
            None
        } else {
            Some(parse("site", site)?)
        };
        let tokens = self.tokens.list(site.as_ref()).await.map_err(token_error)?;
        pages::page_of(tokens, page, self.config.max_page_size, |t| t.id.as_str())
    }

    /// Revokes a bootstrap token.
    pub async fn revoke_bootstrap_token(
        &self,
        call: Call<'_>,
        id: &str,
    ) -> Result<proto::BootstrapToken, ApiError> {
        let caller = call.caller();
        let result = async {
            let token: TokenId = parse("id", id)?;
            self.tokens
                .revoke(&token, self.clock.now(), &caller.actor())
                .await
                .map_err(token_error)?;
            let all = self.tokens.list(None).await.map_err(token_error)?;
            all.into_iter()
                .find(|t| t.id == token.as_str())
                .ok_or_else(|| ApiError::not_found("bootstrap token", &token))
        }
        .await;
        call.finish(&format!("token/{id}"), result).await
    }
}

/// The tenant a submitted dataset belongs to, as its wire form names it (empty: the caller's
/// own): front ends fill it in before converting, since the model has no dataset without one.
pub fn dataset_tenant(caller: &Caller, named: &str) -> Result<String, ApiError> {
    acting_tenant(caller, named, "dataset.tenant").map(|t| t.to_string())
}
