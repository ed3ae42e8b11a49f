//! `FleetService` over [`Services`](crate::services::Services): sites, servers, regions,
//! datasets, bootstrap tokens, revocation.

use std::time::Duration;

use meridian_common::model::{Dataset, Region, Server, Site};
use meridian_proto::v1 as proto;
use meridian_proto::v1::fleet_service_server::FleetService;
use tonic::{Request, Response, Status};

use super::{Shared, authenticate, enum_filter, page};
use crate::services::fleet::dataset_tenant;
use crate::services::{ApiError, Rpc, object};

/// The service.
#[derive(Debug, Clone)]
pub struct Fleet(pub Shared);

/// A new site in the model: its state is Meridian's to manage (unset means `PENDING`).
fn new_site(wire: Option<proto::Site>) -> Result<Site, ApiError> {
    let mut wire = wire.ok_or_else(|| ApiError::invalid("site", "is required"))?;
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
    Site::try_from(wire).map_err(|e| ApiError::convert("site", e))
}

#[tonic::async_trait]
impl FleetService for Fleet {
    async fn create_site(
        &self,
        request: Request<proto::CreateSiteRequest>,
    ) -> Result<Response<proto::CreateSiteResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::CreateSite).await?;
        let r = request.into_inner();
        let name = object("site", r.site.as_ref().map(|s| s.id.as_str()));
        let site = match new_site(r.site) {
            Ok(site) => self.0.create_site(call, site).await?,
            Err(e) => call.refuse(&name, e).await?,
        };
        Ok(Response::new(proto::CreateSiteResponse {
            site: Some(site.into()),
        }))
    }

    async fn get_site(
        &self,
        request: Request<proto::GetSiteRequest>,
    ) -> Result<Response<proto::GetSiteResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetSite).await?;
        let site = self.0.get_site(call, &request.get_ref().id).await?;
        Ok(Response::new(proto::GetSiteResponse {
            site: Some(site.into()),
        }))
    }

    async fn list_sites(
        &self,
        request: Request<proto::ListSitesRequest>,
    ) -> Result<Response<proto::ListSitesResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListSites).await?;
        let r = request.into_inner();
        enum_filter::<proto::SiteState>(
            "state",
            r.state,
            "1 (pending) to 6 (decommissioned), or leave it unset",
        )?;
        enum_filter::<proto::SiteTier>("tier", r.tier, "1 (edge) or 2 (core), or leave it unset")?;
        let keep = |s: &Site| {
            let wire = proto::Site::from(s.clone());
            r.state.is_none_or(|st| wire.state == st)
                && r.tier.is_none_or(|t| wire.tier == t)
                && (r.country.is_empty() || wire.country == r.country)
        };
        let (sites, next) = self
            .0
            .list_sites(call, keep, &page(r.page_token.clone(), r.page_size))
            .await?;
        Ok(Response::new(proto::ListSitesResponse {
            sites: sites.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn update_site(
        &self,
        request: Request<proto::UpdateSiteRequest>,
    ) -> Result<Response<proto::UpdateSiteResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::UpdateSite).await?;
        let r = request.into_inner();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let site = match r.site {
            Some(wire) => self.0.update_site(call, paths, wire).await?,
            None => {
                call.refuse("site/", ApiError::invalid("site", "is required"))
                    .await?
            }
        };
        Ok(Response::new(proto::UpdateSiteResponse {
            site: Some(site.into()),
        }))
    }

    async fn decommission_site(
        &self,
        request: Request<proto::DecommissionSiteRequest>,
    ) -> Result<Response<proto::DecommissionSiteResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::DecommissionSite).await?;
        let site = self
            .0
            .decommission_site(call, &request.get_ref().id)
            .await?;
        Ok(Response::new(proto::DecommissionSiteResponse {
            site: Some(site.into()),
        }))
    }

    async fn revoke_site(
        &self,
        request: Request<proto::RevokeSiteRequest>,
    ) -> Result<Response<proto::RevokeSiteResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::RevokeSite).await?;
        let (site, at) = self.0.revoke_site(call, &request.get_ref().id).await?;
        Ok(Response::new(proto::RevokeSiteResponse {
            site: Some(site.into()),
            revoked_at: at.as_millis(),
        }))
    }

    async fn get_site_drift(
        &self,
        request: Request<proto::GetSiteDriftRequest>,
    ) -> Result<Response<proto::GetSiteDriftResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetSiteDrift).await?;
        let d = self.0.site_drift(call, &request.get_ref().site).await?;
        Ok(Response::new(proto::GetSiteDriftResponse {
            drift: Some(proto::SiteDrift {
                site: d.site.to_string(),
                desired_generation: d.desired.get(),
                acknowledged_generation: d.acknowledged.get(),
                applied_generation: d.applied.get(),
                last_seen_at: d.last_seen.as_millis(),
                failure_reason: d.failure_reason.unwrap_or_default(),
                path_rtt_us: d.path_rtt_us,
                measured_rtts: d.measured_rtts,
            }),
        }))
    }

    async fn list_servers(
        &self,
        request: Request<proto::ListServersRequest>,
    ) -> Result<Response<proto::ListServersResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListServers).await?;
        let r = request.into_inner();
        enum_filter::<proto::ServerPhase>(
            "phase",
            r.phase,
            "1 (discovered) to 6 (failed), or leave it unset",
        )?;
        let keep = |s: &Server| {
            r.phase.is_none_or(|p| {
                proto::Server::from(s.clone())
                    .state
                    .is_some_and(|st| st.phase == p)
            })
        };
        let (servers, next) = self
            .0
            .list_servers(
                call,
                &r.site,
                keep,
                &page(r.page_token.clone(), r.page_size),
            )
            .await?;
        Ok(Response::new(proto::ListServersResponse {
            servers: servers.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn get_server(
        &self,
        request: Request<proto::GetServerRequest>,
    ) -> Result<Response<proto::GetServerResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetServer).await?;
        let r = request.get_ref();
        let server = self.0.get_server(call, &r.site, &r.id).await?;
        let (drain, actions) = self
            .0
            .server_actions_and_drain(&server.site, &server.id)
            .await?;
        Ok(Response::new(proto::GetServerResponse {
            server: Some(server.into()),
            drain: Some(drain),
            actions,
        }))
    }

    async fn request_server_action(
        &self,
        request: Request<proto::RequestServerActionRequest>,
    ) -> Result<Response<proto::RequestServerActionResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::RequestServerAction).await?;
        let r = request.get_ref();
        let action = self
            .0
            .request_server_action(call, &r.site, &r.server, r.op)
            .await?;
        Ok(Response::new(proto::RequestServerActionResponse {
            action: Some(action),
        }))
    }

    async fn list_server_actions(
        &self,
        request: Request<proto::ListServerActionsRequest>,
    ) -> Result<Response<proto::ListServerActionsResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListServerActions).await?;
        let r = request.get_ref();
        let actions = self.0.list_server_actions(call, &r.site, &r.server).await?;
        Ok(Response::new(proto::ListServerActionsResponse { actions }))
    }

    async fn create_region(
        &self,
        request: Request<proto::CreateRegionRequest>,
    ) -> Result<Response<proto::CreateRegionResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::CreateRegion).await?;
        let r = request.into_inner();
        let name = object("region", r.region.as_ref().map(|x| x.id.as_str()));
        let region = r
            .region
            .ok_or_else(|| ApiError::invalid("region", "is required"))
            .and_then(|w| Region::try_from(w).map_err(|e| ApiError::convert("region", e)));
        let region = match region {
            Ok(region) => self.0.create_region(call, region).await?,
            Err(e) => call.refuse(&name, e).await?,
        };
        Ok(Response::new(proto::CreateRegionResponse {
            region: Some(region.into()),
        }))
    }

    async fn list_regions(
        &self,
        request: Request<proto::ListRegionsRequest>,
    ) -> Result<Response<proto::ListRegionsResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListRegions).await?;
        let r = request.into_inner();
        let (regions, next) = self
            .0
            .list_regions(call, &page(r.page_token, r.page_size))
            .await?;
        Ok(Response::new(proto::ListRegionsResponse {
            regions: regions.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn create_dataset(
        &self,
        request: Request<proto::CreateDatasetRequest>,
    ) -> Result<Response<proto::CreateDatasetResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::CreateDataset).await?;
        let r = request.into_inner();
        let name = object("dataset", r.dataset.as_ref().map(|x| x.id.as_str()));
        let dataset = r
            .dataset
            .ok_or_else(|| ApiError::invalid("dataset", "is required"))
            .and_then(|mut wire| {
                wire.tenant = dataset_tenant(&caller, &wire.tenant)?;
                Dataset::try_from(wire).map_err(|e| ApiError::convert("dataset", e))
            });
        let dataset = match dataset {
            Ok(dataset) => self.0.create_dataset(call, dataset).await?,
            Err(e) => call.refuse(&name, e).await?,
        };
        Ok(Response::new(proto::CreateDatasetResponse {
            dataset: Some(dataset.into()),
        }))
    }

    async fn get_dataset(
        &self,
        request: Request<proto::GetDatasetRequest>,
    ) -> Result<Response<proto::GetDatasetResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetDataset).await?;
        let r = request.get_ref();
        let dataset = self.0.get_dataset(call, &r.id, &r.tenant).await?;
        Ok(Response::new(proto::GetDatasetResponse {
            dataset: Some(dataset.into()),
        }))
    }

    async fn list_datasets(
        &self,
        request: Request<proto::ListDatasetsRequest>,
    ) -> Result<Response<proto::ListDatasetsResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListDatasets).await?;
        let r = request.into_inner();
        let (datasets, next) = self
            .0
            .list_datasets(call, &r.tenant, &page(r.page_token, r.page_size))
            .await?;
        Ok(Response::new(proto::ListDatasetsResponse {
            datasets: datasets.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn delete_dataset(
        &self,
        request: Request<proto::DeleteDatasetRequest>,
    ) -> Result<Response<proto::DeleteDatasetResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::DeleteDataset).await?;
        let r = request.get_ref();
        self.0.delete_dataset(call, &r.id, &r.tenant).await?;
        Ok(Response::new(proto::DeleteDatasetResponse {}))
    }

    async fn create_bootstrap_token(
        &self,
        request: Request<proto::CreateBootstrapTokenRequest>,
    ) -> Result<Response<proto::CreateBootstrapTokenResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::CreateBootstrapToken).await?;
        let r = request.into_inner();
        let ttl = match r.ttl_ms {
            0 => None,
            ms if ms < 0 => {
                return Err(call
                    .refuse(
                        &format!("site/{}", r.site),
                        ApiError::invalid("ttl_ms", "must not be negative"),
                    )
                    .await?);
            }
            ms => Some(Duration::from_millis(ms as u64)),
        };
        let new = self.0.create_bootstrap_token(call, &r.site, ttl).await?;
        let file = new.file;
        Ok(Response::new(proto::CreateBootstrapTokenResponse {
            token: Some(new.token.token),
            secret: new.token.secret,
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
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListBootstrapTokens).await?;
        let r = request.into_inner();
        let (tokens, next) = self
            .0
            .list_bootstrap_tokens(call, &r.site, &page(r.page_token, r.page_size))
            .await?;
        Ok(Response::new(proto::ListBootstrapTokensResponse {
            tokens,
            next_page_token: next,
        }))
    }

    async fn revoke_bootstrap_token(
        &self,
        request: Request<proto::RevokeBootstrapTokenRequest>,
    ) -> Result<Response<proto::RevokeBootstrapTokenResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::RevokeBootstrapToken).await?;
        let token = self
            .0
            .revoke_bootstrap_token(call, &request.get_ref().id)
            .await?;
        Ok(Response::new(proto::RevokeBootstrapTokenResponse {
            token: Some(token),
        }))
    }
}
