//! `FleetService`: sites, servers, regions, datasets, bootstrap tokens, revocation.

use std::sync::Arc;
use std::time::Duration;

use meridian_common::ids::{DatasetId, ServerId, SiteId, TokenId};
use meridian_common::model::{Dataset, Region, Server, Site, SiteState};
use meridian_common::validate::{validate_dataset, validate_region, validate_site};
use meridian_proto::v1 as proto;
use meridian_proto::v1::fleet_service_server::FleetService;
use tonic::{Request, Response, Status};

use super::access::{Caller, Rpc};
use super::error::ApiError;
use super::{ApiState, acting_tenant, pages, tenant_filter};
use crate::tokens::TokenError;
use meridian_store::tables::{TableError, TableKeyDyn};

/// The service.
#[derive(Debug, Clone)]
pub struct Fleet(pub Arc<ApiState>);

/// Site fields an operator may update.
const SITE_FIELDS: [&str; 6] = [
    "name",
    "location",
    "certifications",
    "pools",
    "gateway_range",
    "price_per_gpu_hour",
];

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

impl ApiState {
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

    async fn create_site(&self, request: proto::CreateSiteRequest) -> Result<Site, ApiError> {
        let mut wire = request
            .site
            .ok_or_else(|| ApiError::invalid("site", "is required"))?;
        match proto::SiteState::try_from(wire.state) {
            Ok(proto::SiteState::Unspecified | proto::SiteState::Pending) => {
                wire.state = proto::SiteState::Pending as i32;
            }
            _ => {
                return Err(ApiError::invalid(
                    "site.state",
                    "is managed by Meridian; leave it unset (a new site starts PENDING)",
                ));
            }
        }
        let site = Site::try_from(wire).map_err(|e| ApiError::convert("site", e))?;
        validate_site(&site).map_err(|e| ApiError::validation("site", e))?;
        self.tables
            .sites()
            .create(&site)
            .await
            .map_err(already("site", &site.id))?;
        self.lifecycle.fleet_changed();
        Ok(site)
    }

    async fn update_site(&self, request: proto::UpdateSiteRequest) -> Result<Site, ApiError> {
        let wire = request
            .site
            .ok_or_else(|| ApiError::invalid("site", "is required"))?;
        let (current, revision) = self.site(&wire.id).await?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
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
                _ => unreachable!("checked above"),
            }
        }
        let next = Site::try_from(merged).map_err(|e| ApiError::convert("site", e))?;
        validate_site(&next).map_err(|e| ApiError::validation("site", e))?;
        self.tables.sites().update(&next, revision).await?;
        self.lifecycle.fleet_changed();
        Ok(next)
    }

    async fn decommission_site(&self, caller: &Caller, id: &str) -> Result<Site, ApiError> {
        let (mut site, revision) = self.site(id).await?;
        if site.state != SiteState::Decommissioned {
            site.state = SiteState::Decommissioned;
            self.tables.sites().update(&site, revision).await?;
            crate::channel::revoke_site(
                &self.tables,
                &site.id,
                &caller.actor(),
                crate::channel::now(),
            )
            .await?;
            self.lifecycle.fleet_changed();
        }
        Ok(site)
    }

    async fn drift(&self, id: &str) -> Result<proto::SiteDrift, ApiError> {
        let (site, _) = self.site(id).await?;
        let intent = self.tables.intents().get(&site.id).await?;
        let channel =
            meridian_store::schema::site_channel(self.tables.store().as_ref(), &site.id).await?;
        Ok(proto::SiteDrift {
            site: site.id.to_string(),
            desired_generation: intent.map_or(0, |i| i.record.generation.get()),
            acknowledged_generation: channel.received_generation.get(),
            applied_generation: channel.applied_generation.get(),
            last_seen_at: channel.last_seen_ms,
            failure_reason: if channel.failed_generation > channel.applied_generation {
                channel.failed_reason
            } else {
                String::new()
            },
        })
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

    async fn create_dataset(
        &self,
        caller: &Caller,
        request: proto::CreateDatasetRequest,
    ) -> Result<Dataset, ApiError> {
        let mut wire = request
            .dataset
            .ok_or_else(|| ApiError::invalid("dataset", "is required"))?;
        let tenant = acting_tenant(caller, &wire.tenant, "dataset.tenant")?;
        self.tenant_record(&tenant).await?;
        wire.tenant = tenant.to_string();
        let dataset = Dataset::try_from(wire).map_err(|e| ApiError::convert("dataset", e))?;
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

    async fn delete_dataset(
        &self,
        caller: &Caller,
        request: proto::DeleteDatasetRequest,
    ) -> Result<(), ApiError> {
        let (dataset, revision) = self
            .visible_dataset(caller, &request.id, &request.tenant)
            .await?;
        let in_use = self
            .tables
            .workloads()
            .list_all(Some(&dataset.tenant), 1000)
            .await?
            .into_iter()
            .filter(|w| !w.state.is_terminal() && w.spec.constraints.datasets.contains(&dataset.id))
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
}

#[tonic::async_trait]
impl FleetService for Fleet {
    async fn create_site(
        &self,
        request: Request<proto::CreateSiteRequest>,
    ) -> Result<Response<proto::CreateSiteResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::CreateSite).await?;
        let object = super::object(
            "site",
            request.get_ref().site.as_ref().map(|x| x.id.as_str()),
        );
        let result = self.0.create_site(request.into_inner()).await;
        let site = self
            .0
            .finish(&caller, Rpc::CreateSite, &object, result)
            .await?;
        Ok(Response::new(proto::CreateSiteResponse {
            site: Some(site.into()),
        }))
    }

    async fn get_site(
        &self,
        request: Request<proto::GetSiteRequest>,
    ) -> Result<Response<proto::GetSiteResponse>, Status> {
        self.0.begin(&request, Rpc::GetSite).await?;
        let (site, _) = self.0.site(&request.get_ref().id).await?;
        Ok(Response::new(proto::GetSiteResponse {
            site: Some(site.into()),
        }))
    }

    async fn list_sites(
        &self,
        request: Request<proto::ListSitesRequest>,
    ) -> Result<Response<proto::ListSitesResponse>, Status> {
        self.0.begin(&request, Rpc::ListSites).await?;
        let r = request.into_inner();
        super::enum_filter::<proto::SiteState>(
            "state",
            r.state,
            "1 (pending) to 6 (decommissioned), or leave it unset",
        )?;
        super::enum_filter::<proto::SiteTier>(
            "tier",
            r.tier,
            "1 (edge) or 2 (core), or leave it unset",
        )?;
        let (items, next) = pages::page(
            &self.0.tables.sites(),
            None,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |s: &Site| {
                let wire = proto::Site::from(s.clone());
                r.state.is_none_or(|st| wire.state == st)
                    && r.tier.is_none_or(|t| wire.tier == t)
                    && (r.country.is_empty() || wire.country == r.country)
            },
        )
        .await?;
        Ok(Response::new(proto::ListSitesResponse {
            sites: items.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn update_site(
        &self,
        request: Request<proto::UpdateSiteRequest>,
    ) -> Result<Response<proto::UpdateSiteResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::UpdateSite).await?;
        let object = super::object(
            "site",
            request.get_ref().site.as_ref().map(|x| x.id.as_str()),
        );
        let result = self.0.update_site(request.into_inner()).await;
        let site = self
            .0
            .finish(&caller, Rpc::UpdateSite, &object, result)
            .await?;
        Ok(Response::new(proto::UpdateSiteResponse {
            site: Some(site.into()),
        }))
    }

    async fn decommission_site(
        &self,
        request: Request<proto::DecommissionSiteRequest>,
    ) -> Result<Response<proto::DecommissionSiteResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::DecommissionSite).await?;
        let id = request.into_inner().id;
        let result = self.0.decommission_site(&caller, &id).await;
        let site = self
            .0
            .finish(
                &caller,
                Rpc::DecommissionSite,
                &format!("site/{id}"),
                result,
            )
            .await?;
        Ok(Response::new(proto::DecommissionSiteResponse {
            site: Some(site.into()),
        }))
    }

    async fn revoke_site(
        &self,
        request: Request<proto::RevokeSiteRequest>,
    ) -> Result<Response<proto::RevokeSiteResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::RevokeSite).await?;
        let id = request.into_inner().id;
        let now = crate::channel::now();
        let result = async {
            let (site, _) = self.0.site(&id).await?;
            crate::channel::revoke_site(&self.0.tables, &site.id, &caller.actor(), now).await?;
            Ok(site)
        }
        .await;
        let site = self
            .0
            .finish(&caller, Rpc::RevokeSite, &format!("site/{id}"), result)
            .await?;
        Ok(Response::new(proto::RevokeSiteResponse {
            site: Some(site.into()),
            revoked_at: now.as_millis(),
        }))
    }

    async fn get_site_drift(
        &self,
        request: Request<proto::GetSiteDriftRequest>,
    ) -> Result<Response<proto::GetSiteDriftResponse>, Status> {
        self.0.begin(&request, Rpc::GetSiteDrift).await?;
        let drift = self.0.drift(&request.get_ref().site).await?;
        Ok(Response::new(proto::GetSiteDriftResponse {
            drift: Some(drift),
        }))
    }

    async fn list_servers(
        &self,
        request: Request<proto::ListServersRequest>,
    ) -> Result<Response<proto::ListServersResponse>, Status> {
        self.0.begin(&request, Rpc::ListServers).await?;
        let r = request.into_inner();
        super::enum_filter::<proto::ServerPhase>(
            "phase",
            r.phase,
            "1 (discovered) to 6 (failed), or leave it unset",
        )?;
        let site: Option<SiteId> = if r.site.is_empty() {
            None
        } else {
            Some(parse("site", &r.site)?)
        };
        let parent = site.as_ref().map(|s| s as &(dyn TableKeyDyn + Sync));
        let (items, next) = pages::page(
            &self.0.tables.servers(),
            parent,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |s: &Server| {
                r.phase.is_none_or(|p| {
                    proto::Server::from(s.clone())
                        .state
                        .is_some_and(|st| st.phase == p)
                })
            },
        )
        .await?;
        Ok(Response::new(proto::ListServersResponse {
            servers: items.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn get_server(
        &self,
        request: Request<proto::GetServerRequest>,
    ) -> Result<Response<proto::GetServerResponse>, Status> {
        self.0.begin(&request, Rpc::GetServer).await?;
        let r = request.get_ref();
        let site: SiteId = parse("site", &r.site)?;
        let id: ServerId = parse("id", &r.id)?;
        let server = self
            .0
            .tables
            .servers()
            .get(&(&site, &id))
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| ApiError::not_found("server", format!("{site}/{id}")))?;
        Ok(Response::new(proto::GetServerResponse {
            server: Some(server.record.into()),
        }))
    }

    async fn create_region(
        &self,
        request: Request<proto::CreateRegionRequest>,
    ) -> Result<Response<proto::CreateRegionResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::CreateRegion).await?;
        let object = super::object(
            "region",
            request.get_ref().region.as_ref().map(|x| x.id.as_str()),
        );
        let result = async {
            let wire = request
                .into_inner()
                .region
                .ok_or_else(|| ApiError::invalid("region", "is required"))?;
            let region = Region::try_from(wire).map_err(|e| ApiError::convert("region", e))?;
            validate_region(&region).map_err(|e| ApiError::validation("region", e))?;
            self.0
                .tables
                .regions()
                .create(&region)
                .await
                .map_err(already("region", &region.id))?;
            self.0.lifecycle.fleet_changed();
            Ok(region)
        }
        .await;
        let region = self
            .0
            .finish(&caller, Rpc::CreateRegion, &object, result)
            .await?;
        Ok(Response::new(proto::CreateRegionResponse {
            region: Some(region.into()),
        }))
    }

    async fn list_regions(
        &self,
        request: Request<proto::ListRegionsRequest>,
    ) -> Result<Response<proto::ListRegionsResponse>, Status> {
        self.0.begin(&request, Rpc::ListRegions).await?;
        let r = request.into_inner();
        let (items, next) = pages::page(
            &self.0.tables.regions(),
            None,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |_: &Region| true,
        )
        .await?;
        Ok(Response::new(proto::ListRegionsResponse {
            regions: items.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn create_dataset(
        &self,
        request: Request<proto::CreateDatasetRequest>,
    ) -> Result<Response<proto::CreateDatasetResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::CreateDataset).await?;
        let object = super::object(
            "dataset",
            request.get_ref().dataset.as_ref().map(|x| x.id.as_str()),
        );
        let result = self.0.create_dataset(&caller, request.into_inner()).await;
        let dataset = self
            .0
            .finish(&caller, Rpc::CreateDataset, &object, result)
            .await?;
        Ok(Response::new(proto::CreateDatasetResponse {
            dataset: Some(dataset.into()),
        }))
    }

    async fn get_dataset(
        &self,
        request: Request<proto::GetDatasetRequest>,
    ) -> Result<Response<proto::GetDatasetResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::GetDataset).await?;
        let (dataset, _) = self
            .0
            .visible_dataset(&caller, &request.get_ref().id, &request.get_ref().tenant)
            .await?;
        Ok(Response::new(proto::GetDatasetResponse {
            dataset: Some(dataset.into()),
        }))
    }

    async fn list_datasets(
        &self,
        request: Request<proto::ListDatasetsRequest>,
    ) -> Result<Response<proto::ListDatasetsResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::ListDatasets).await?;
        let r = request.into_inner();
        let tenant = tenant_filter(&caller, &r.tenant, "tenant")?;
        let parent = tenant.as_ref().map(|t| t as &(dyn TableKeyDyn + Sync));
        let (items, next) = pages::page(
            &self.0.tables.datasets(),
            parent,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |_: &Dataset| true,
        )
        .await?;
        Ok(Response::new(proto::ListDatasetsResponse {
            datasets: items.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn delete_dataset(
        &self,
        request: Request<proto::DeleteDatasetRequest>,
    ) -> Result<Response<proto::DeleteDatasetResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::DeleteDataset).await?;
        let request = request.into_inner();
        let id = request.id.clone();
        let result = self.0.delete_dataset(&caller, request).await;
        self.0
            .finish(
                &caller,
                Rpc::DeleteDataset,
                &format!("dataset/{id}"),
                result,
            )
            .await?;
        Ok(Response::new(proto::DeleteDatasetResponse {}))
    }

    async fn create_bootstrap_token(
        &self,
        request: Request<proto::CreateBootstrapTokenRequest>,
    ) -> Result<Response<proto::CreateBootstrapTokenResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::CreateBootstrapToken).await?;
        let r = request.into_inner();
        let result = async {
            let site: SiteId = parse("site", &r.site)?;
            let ttl = match r.ttl_ms {
                0 => crate::tokens::DEFAULT_TTL,
                ms if ms < 0 => return Err(ApiError::invalid("ttl_ms", "must not be negative")),
                ms => Duration::from_millis(ms as u64),
            };
            self.0
                .tokens
                .create(&site, ttl, crate::channel::now(), &caller.actor())
                .await
                .map_err(token_error)
        }
        .await;
        let new = self
            .0
            .finish(
                &caller,
                Rpc::CreateBootstrapToken,
                &format!("site/{}", r.site),
                result,
            )
            .await?;
        let file = new.bootstrap_file(self.0.channel_addresses.clone(), self.0.ca.fingerprint());
        Ok(Response::new(proto::CreateBootstrapTokenResponse {
            token: Some(new.token),
            secret: new.secret,
            bootstrap_file: Some(proto::BootstrapFile {
                central_addresses: file.central_addresses,
                ca_fingerprint_sha256: hex::encode(file.ca_fingerprint),
                site: file.site.to_string(),
                token: file.token,
                expires_at: file.expires_at.as_millis(),
            }),
        }))
    }

    async fn list_bootstrap_tokens(
        &self,
        request: Request<proto::ListBootstrapTokensRequest>,
    ) -> Result<Response<proto::ListBootstrapTokensResponse>, Status> {
        self.0.begin(&request, Rpc::ListBootstrapTokens).await?;
        let r = request.into_inner();
        let site: Option<SiteId> = if r.site.is_empty() {
            None
        } else {
            Some(parse("site", &r.site)?)
        };
        let tokens = self
            .0
            .tokens
            .list(site.as_ref())
            .await
            .map_err(token_error)?;
        let (tokens, next) = pages::page_of(
            tokens,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |t| t.id.as_str(),
        )?;
        Ok(Response::new(proto::ListBootstrapTokensResponse {
            tokens,
            next_page_token: next,
        }))
    }

    async fn revoke_bootstrap_token(
        &self,
        request: Request<proto::RevokeBootstrapTokenRequest>,
    ) -> Result<Response<proto::RevokeBootstrapTokenResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::RevokeBootstrapToken).await?;
        let id = request.into_inner().id;
        let result = async {
            let token: TokenId = parse("id", &id)?;
            self.0
                .tokens
                .revoke(&token, crate::channel::now(), &caller.actor())
                .await
                .map_err(token_error)?;
            let all = self.0.tokens.list(None).await.map_err(token_error)?;
            all.into_iter()
                .find(|t| t.id == token.as_str())
                .ok_or_else(|| ApiError::not_found("bootstrap token", &token))
        }
        .await;
        let token = self
            .0
            .finish(
                &caller,
                Rpc::RevokeBootstrapToken,
                &format!("token/{id}"),
                result,
            )
            .await?;
        Ok(Response::new(proto::RevokeBootstrapTokenResponse {
            token: Some(token),
        }))
    }
}
