//! `TenantService` over [`Services`](crate::services::Services): tenants, users, API tokens,
//! quota usage.

use meridian_common::model::Tenant;
use meridian_common::role::Role;
use meridian_proto::v1 as proto;
use meridian_proto::v1::tenant_service_server::TenantService;
use tonic::{Request, Response, Status};

use super::{Shared, authenticate, page};
use crate::services::{ApiError, Rpc, object};

/// The service.
#[derive(Debug, Clone)]
pub struct Tenants(pub Shared);

/// A submitted tenant in the model (its network must be unset: Meridian allocates it).
fn tenant(wire: Option<proto::Tenant>) -> Result<Tenant, ApiError> {
    let wire = wire.ok_or_else(|| ApiError::invalid("tenant", "is required"))?;
    if wire.network.is_some() {
        return Err(ApiError::invalid(
            "tenant.network",
            "is allocated by Meridian; leave it unset",
        ));
    }
    Tenant::try_from(wire).map_err(|e| ApiError::convert("tenant", e))
}

#[tonic::async_trait]
impl TenantService for Tenants {
    async fn create_tenant(
        &self,
        request: Request<proto::CreateTenantRequest>,
    ) -> Result<Response<proto::CreateTenantResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::CreateTenant).await?;
        let r = request.into_inner();
        let name = object("tenant", r.tenant.as_ref().map(|t| t.id.as_str()));
        let created = match tenant(r.tenant) {
            Ok(t) => self.0.create_tenant(call, t).await?,
            Err(e) => call.refuse(&name, e).await?,
        };
        Ok(Response::new(proto::CreateTenantResponse {
            tenant: Some(created.into()),
        }))
    }

    async fn get_tenant(
        &self,
        request: Request<proto::GetTenantRequest>,
    ) -> Result<Response<proto::GetTenantResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetTenant).await?;
        let tenant = self.0.get_tenant(call, &request.get_ref().id).await?;
        Ok(Response::new(proto::GetTenantResponse {
            tenant: Some(tenant.into()),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<proto::ListTenantsRequest>,
    ) -> Result<Response<proto::ListTenantsResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListTenants).await?;
        let r = request.into_inner();
        let (tenants, next) = self
            .0
            .list_tenants(call, &page(r.page_token, r.page_size))
            .await?;
        Ok(Response::new(proto::ListTenantsResponse {
            tenants: tenants.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<proto::UpdateTenantRequest>,
    ) -> Result<Response<proto::UpdateTenantResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::UpdateTenant).await?;
        let r = request.into_inner();
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let tenant = match r.tenant {
            Some(wire) => self.0.update_tenant(call, paths, wire).await?,
            None => {
                call.refuse("tenant/", ApiError::invalid("tenant", "is required"))
                    .await?
            }
        };
        Ok(Response::new(proto::UpdateTenantResponse {
            tenant: Some(tenant.into()),
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<proto::DeleteTenantRequest>,
    ) -> Result<Response<proto::DeleteTenantResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::DeleteTenant).await?;
        self.0.delete_tenant(call, &request.get_ref().id).await?;
        Ok(Response::new(proto::DeleteTenantResponse {}))
    }

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::CreateUserResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::CreateUser).await?;
        let user = match request.into_inner().user {
            Some(user) => self.0.create_user(call, user).await?,
            None => {
                call.refuse("user/", ApiError::invalid("user", "is required"))
                    .await?
            }
        };
        Ok(Response::new(proto::CreateUserResponse {
            user: Some(user),
        }))
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListUsers).await?;
        let r = request.into_inner();
        let (users, next) = self
            .0
            .list_users(call, &r.tenant, &page(r.page_token, r.page_size))
            .await?;
        Ok(Response::new(proto::ListUsersResponse {
            users,
            next_page_token: next,
        }))
    }

    async fn delete_user(
        &self,
        request: Request<proto::DeleteUserRequest>,
    ) -> Result<Response<proto::DeleteUserResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::DeleteUser).await?;
        self.0.delete_user(call, &request.get_ref().id).await?;
        Ok(Response::new(proto::DeleteUserResponse {}))
    }

    async fn set_user_password(
        &self,
        request: Request<proto::SetUserPasswordRequest>,
    ) -> Result<Response<proto::SetUserPasswordResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::SetUserPassword).await?;
        let r = request.get_ref();
        self.0.set_user_password(call, &r.user, &r.password).await?;
        Ok(Response::new(proto::SetUserPasswordResponse {}))
    }

    async fn create_api_token(
        &self,
        request: Request<proto::CreateApiTokenRequest>,
    ) -> Result<Response<proto::CreateApiTokenResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::CreateApiToken).await?;
        let r = request.into_inner();
        let role = match r.role.map(Role::try_from).transpose() {
            Ok(role) => role,
            Err(m) => return Err(call.refuse("token", ApiError::invalid("role", m)).await?),
        };
        let new = self
            .0
            .create_api_token(call, &r.user, role, r.ttl_ms)
            .await?;
        Ok(Response::new(proto::CreateApiTokenResponse {
            token: Some(new.token),
            secret: new.secret,
        }))
    }

    async fn list_api_tokens(
        &self,
        request: Request<proto::ListApiTokensRequest>,
    ) -> Result<Response<proto::ListApiTokensResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::ListApiTokens).await?;
        let r = request.into_inner();
        let (tokens, next) = self
            .0
            .list_api_tokens(call, &r.user, &page(r.page_token, r.page_size))
            .await?;
        Ok(Response::new(proto::ListApiTokensResponse {
            tokens,
            next_page_token: next,
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<proto::RevokeApiTokenRequest>,
    ) -> Result<Response<proto::RevokeApiTokenResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::RevokeApiToken).await?;
        let token = self.0.revoke_api_token(call, &request.get_ref().id).await?;
        Ok(Response::new(proto::RevokeApiTokenResponse {
            token: Some(token),
        }))
    }

    async fn get_quota_usage(
        &self,
        request: Request<proto::GetQuotaUsageRequest>,
    ) -> Result<Response<proto::GetQuotaUsageResponse>, Status> {
        let caller = authenticate(&self.0, &request).await?;
        let call = self.0.admit(&caller, Rpc::GetQuotaUsage).await?;
        let usage = self.0.quota_usage(call, &request.get_ref().tenant).await?;
        Ok(Response::new(proto::GetQuotaUsageResponse {
            usage: Some(proto::QuotaUsage {
                tenant: usage.tenant.to_string(),
                limits: Some(usage.limits.into()),
                used: Some(usage.used.into()),
            }),
        }))
    }
}
