//! `TenantService`: tenants and their policy, users, API tokens, quota usage.

use std::sync::Arc;
use std::time::Duration;

use meridian_common::ids::{TenantId, TokenId, UserId};
use meridian_common::model::{Accelerator, Quotas, ReservationState, Tenant, Workload};
use meridian_common::validate::validate_tenant;
use meridian_proto::v1 as proto;
use meridian_proto::v1::tenant_service_server::TenantService;
use tonic::{Request, Response, Status};

use super::access::{Caller, Role, Rpc, Scope};
use super::error::ApiError;
use super::{ApiState, acting_tenant, pages, tenant_filter};
use crate::accounts::{self, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
use meridian_store::tables::{KeyPath, Record, Table};

/// The service.
#[derive(Debug, Clone)]
pub struct Tenants(pub Arc<ApiState>);

/// Fields of a tenant a provider admin may update.
const PROVIDER_FIELDS: [&str; 5] = ["name", "quotas", "residency", "weights", "max_priority"];
/// Fields a tenant admin may update on its own tenant.
const TENANT_FIELDS: [&str; 2] = ["residency", "weights"];

/// A user ID as a caller names it: a tenant's caller may leave out its own tenant.
fn scoped_user_id(caller: &Caller, id: &str) -> Result<UserId, ApiError> {
    let invalid = |e: meridian_common::ids::IdError| ApiError::invalid("user", e.to_string());
    match &caller.tenant {
        Some(own) if !id.contains('@') => UserId::scoped(id, Some(own)).map_err(invalid),
        _ => UserId::parse(id).map_err(invalid),
    }
}

fn is_admin_of(caller: &Caller, tenant: Option<&TenantId>) -> bool {
    match caller.role {
        Role::ProviderAdmin => true,
        Role::TenantAdmin => caller.tenant.as_ref() == tenant,
        _ => false,
    }
}

impl ApiState {
    async fn create_tenant(&self, request: proto::CreateTenantRequest) -> Result<Tenant, ApiError> {
        let wire = request
            .tenant
            .ok_or_else(|| ApiError::invalid("tenant", "is required"))?;
        if wire.network.is_some() {
            return Err(ApiError::invalid(
                "tenant.network",
                "is allocated by Meridian; leave it unset",
            ));
        }
        let tenant = Tenant::try_from(wire).map_err(|e| ApiError::convert("tenant", e))?;
        validate_tenant(&tenant).map_err(|e| ApiError::validation("tenant", e))?;
        match self.tables.tenants().create(&tenant).await {
            Err(meridian_store::tables::TableError::AlreadyExists { .. }) => {
                return Err(ApiError::AlreadyExists {
                    kind: "tenant",
                    id: tenant.id.to_string(),
                });
            }
            other => other?,
        };
        self.lifecycle.tenant_changed(tenant.clone());
        Ok(tenant)
    }

    /// A tenant by id, if the caller may see it.
    async fn visible_tenant(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(Tenant, meridian_store::Revision), ApiError> {
        let id = TenantId::parse(id).map_err(|e| ApiError::invalid("id", e.to_string()))?;
        if !caller.scope().sees(&id) {
            return Err(ApiError::not_found("tenant", &id));
        }
        let v = self
            .tables
            .tenants()
            .get(&id)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant", &id))?;
        Ok((v.record, v.revision))
    }

    async fn update_tenant(
        &self,
        caller: &Caller,
        request: proto::UpdateTenantRequest,
    ) -> Result<Tenant, ApiError> {
        let wire = request
            .tenant
            .ok_or_else(|| ApiError::invalid("tenant", "is required"))?;
        let (current, revision) = self.visible_tenant(caller, &wire.id).await?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        if paths.is_empty() {
            return Err(ApiError::invalid(
                "update_mask",
                format!("list the fields to change: {}", PROVIDER_FIELDS.join(", ")),
            ));
        }
        let allowed: &[&str] = if caller.role == Role::ProviderAdmin {
            &PROVIDER_FIELDS
        } else {
            &TENANT_FIELDS
        };
        for (i, path) in paths.iter().enumerate() {
            if !PROVIDER_FIELDS.contains(&path.as_str()) {
                return Err(ApiError::invalid(
                    format!("update_mask.paths[{i}]"),
                    format!(
                        "`{path}` is not an updatable field; use {}",
                        PROVIDER_FIELDS.join(", ")
                    ),
                ));
            }
            if !allowed.contains(&path.as_str()) {
                return Err(ApiError::PermissionDenied(format!(
                    "update_mask.paths[{i}]: `{path}` is set by the provider; a tenant admin may change {}",
                    TENANT_FIELDS.join(", ")
                )));
            }
        }
        // Only the masked fields are taken from the request, over the current record, so an
        // update is checked for what it changes and nothing else.
        let mut merged = proto::Tenant::from(current);
        for path in &paths {
            match path.as_str() {
                "name" => merged.name = wire.name.clone(),
                "quotas" => merged.quotas = wire.quotas.clone(),
                "residency" => merged.residency = wire.residency.clone(),
                "weights" => merged.weights = wire.weights,
                "max_priority" => merged.max_priority = wire.max_priority,
                _ => unreachable!("checked above"),
            }
        }
        let next = Tenant::try_from(merged).map_err(|e| ApiError::convert("tenant", e))?;
        validate_tenant(&next).map_err(|e| ApiError::validation("tenant", e))?;
        self.tables.tenants().update(&next, revision).await?;
        self.lifecycle.tenant_changed(next.clone());
        Ok(next)
    }

    async fn delete_tenant(&self, id: &str) -> Result<(), ApiError> {
        let id = TenantId::parse(id).map_err(|e| ApiError::invalid("id", e.to_string()))?;
        let Some(current) = self.tables.tenants().get(&id).await? else {
            return Err(ApiError::not_found("tenant", &id));
        };
        let live = self
            .tables
            .workloads()
            .list_all(Some(&id), 1000)
            .await?
            .into_iter()
            .filter(|w| !w.state.is_terminal())
            .count();
        let datasets = self
            .tables
            .datasets()
            .list(Some(&id), None, 1)
            .await?
            .items
            .len();
        // A canceled workload keeps its placement until the lifecycle has released it.
        let held = self
            .tables
            .placements()
            .list(Some(&id), None, 1)
            .await?
            .items
            .len();
        if held > 0 {
            return Err(ApiError::FailedPrecondition(format!(
                "tenant {id} still holds capacity being released; retry in a second"
            )));
        }
        if live > 0 || datasets > 0 {
            return Err(ApiError::FailedPrecondition(format!(
                "tenant {id} still has {live} live workload(s) and {datasets}+ dataset(s); \
                 delete them first"
            )));
        }
        for user in self.users_of(Some(&id)).await? {
            self.remove_user(&user).await?;
        }
        // The tenant's finished workloads go with it; the record goes with a marker that has
        // the lifecycle's next publish release the tenant's network.
        let mut txn = meridian_store::Txn::new().when(meridian_store::Compare::ModRevision(
            meridian_store::tables::Table::<Tenant>::store_key(id.as_str()),
            current.revision,
        ));
        for w in self.tables.workloads().list_all(Some(&id), 1000).await? {
            txn.success
                .extend(Table::<Workload>::delete_ops(&w.key_path()));
        }
        txn = txn
            .then(meridian_store::Op::Delete {
                key: meridian_store::tables::Table::<Tenant>::store_key(id.as_str()),
            })
            .then(meridian_store::schema::tenant_dirty_marker(&id));
        if !self.tables.store().txn(txn).await?.succeeded {
            return Err(ApiError::Conflict(format!("tenant {id}")));
        }
        self.lifecycle.wake();
        Ok(())
    }

    async fn users_of(&self, tenant: Option<&TenantId>) -> Result<Vec<proto::User>, ApiError> {
        Ok(self
            .tables
            .users()
            .list_all(None, 1000)
            .await?
            .into_iter()
            .filter(|u| tenant.is_none_or(|t| u.tenant == t.as_str()))
            .collect())
    }

    /// Revokes every token of `user` and deletes it.
    async fn remove_user(&self, user: &proto::User) -> Result<(), ApiError> {
        let tokens = self.tables.api_tokens().list_all(None, 1000).await?;
        for mut record in tokens {
            let Some(token) = record.token.as_mut() else {
                continue;
            };
            if token.user == user.id && !token.revoked {
                token.revoked = true;
                self.tables.api_tokens().upsert(&record).await?;
            }
        }
        self.tables
            .users()
            .delete(&KeyPath(user.id.clone()), None)
            .await?;
        if let Ok(id) = UserId::parse(&user.id) {
            self.auth.forget_user(&id);
        }
        Ok(())
    }

    /// A user the caller may see (`NotFound` otherwise). A tenant's caller may name its
    /// tenant's users by their plain name (`bob` for `bob@acme`).
    async fn visible_user(&self, caller: &Caller, id: &str) -> Result<proto::User, ApiError> {
        let parsed = scoped_user_id(caller, id)?;
        let user = self
            .tables
            .users()
            .get(&KeyPath(parsed.to_string()))
            .await?
            .map(|v| v.record)
            .ok_or_else(|| ApiError::not_found("user", &parsed))?;
        let visible = match caller.scope() {
            Scope::All => true,
            Scope::Tenant(t) => user.tenant == t.as_str(),
        };
        if !visible {
            return Err(ApiError::not_found("user", &parsed));
        }
        Ok(user)
    }

    async fn create_user(
        &self,
        caller: &Caller,
        request: proto::CreateUserRequest,
    ) -> Result<proto::User, ApiError> {
        let mut user = request
            .user
            .ok_or_else(|| ApiError::invalid("user", "is required"))?;
        if caller.tenant.is_some() && user.tenant.is_empty() {
            // A tenant admin's users are its tenant's.
            user.tenant = caller
                .tenant
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
        }
        let (id, tenant, role) = accounts::check_user(&user).map_err(|problems| {
            ApiError::Invalid(
                problems
                    .into_iter()
                    .map(|p| {
                        meridian_common::validate::Problem::new(
                            format!("user.{}", p.field),
                            p.message,
                        )
                    })
                    .collect(),
            )
        })?;
        if let Some(t) = &tenant {
            if !caller.scope().sees(t) {
                return Err(ApiError::not_found("tenant", t));
            }
            self.tenant_record(t).await?;
        } else if caller.tenant.is_some() {
            return Err(ApiError::PermissionDenied(
                "user.tenant: a tenant admin can only create users of its own tenant".into(),
            ));
        }
        if !caller.role.may_grant(role) {
            return Err(ApiError::PermissionDenied(format!(
                "user.role: a {} cannot create a {role}",
                caller.role
            )));
        }
        user.id = id.to_string();
        user.tenant = tenant.as_ref().map(ToString::to_string).unwrap_or_default();
        user.created_at = crate::channel::now().as_millis();
        match self.tables.users().create(&user).await {
            Err(meridian_store::tables::TableError::AlreadyExists { .. }) => {
                Err(ApiError::AlreadyExists {
                    kind: "user",
                    id: id.to_string(),
                })
            }
            other => {
                other?;
                Ok(user)
            }
        }
    }

    async fn create_api_token(
        &self,
        caller: &Caller,
        request: proto::CreateApiTokenRequest,
    ) -> Result<accounts::NewApiToken, ApiError> {
        let user_id = if request.user.is_empty() {
            caller.user.to_string()
        } else {
            request.user.clone()
        };
        let user = self.visible_user(caller, &user_id).await?;
        let for_self = user.id == caller.user.as_str();
        let tenant = TenantId::parse(&user.tenant).ok();
        if !for_self && !is_admin_of(caller, tenant.as_ref()) {
            return Err(ApiError::PermissionDenied(format!(
                "user: only an admin may create tokens for another user ({} asked for {})",
                caller.user, user.id
            )));
        }
        let user_role = Role::try_from(user.role)
            .map_err(|m| ApiError::Internal(format!("stored user role {m}")))?;
        let role = match request.role {
            None => user_role,
            Some(r) => Role::try_from(r).map_err(|m| ApiError::invalid("role", m))?,
        };
        if !user_role.may_grant(role) || !caller.role.may_grant(role) {
            return Err(ApiError::PermissionDenied(format!(
                "role: a token of user {} ({user_role}) created by a {} cannot be {role}",
                user.id, caller.role
            )));
        }
        let ttl = match request.ttl_ms {
            0 => DEFAULT_TOKEN_TTL,
            ms if ms < 0 || ms as u128 > MAX_TOKEN_TTL.as_millis() => {
                return Err(ApiError::invalid(
                    "ttl_ms",
                    format!(
                        "must be between 1 and {} ms (0: 30 days)",
                        MAX_TOKEN_TTL.as_millis()
                    ),
                ));
            }
            ms => Duration::from_millis(ms as u64),
        };
        Ok(accounts::create_token(&self.tables, &user, role, ttl, crate::channel::now()).await?)
    }

    /// Tokens the caller may see: admins every token in scope, others their own.
    async fn visible_tokens(
        &self,
        caller: &Caller,
    ) -> Result<Vec<proto::ApiTokenRecord>, ApiError> {
        Ok(self
            .tables
            .api_tokens()
            .list_all(None, 1000)
            .await?
            .into_iter()
            .filter(|r| {
                let own = r
                    .token
                    .as_ref()
                    .is_some_and(|t| t.user == caller.user.as_str());
                let tenant = TenantId::parse(&r.tenant).ok();
                let in_scope = match caller.scope() {
                    Scope::All => true,
                    Scope::Tenant(t) => r.tenant == t.as_str(),
                };
                own || (in_scope && is_admin_of(caller, tenant.as_ref()))
            })
            .collect())
    }

    async fn revoke_api_token(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<proto::ApiToken, ApiError> {
        let id = TokenId::parse(id).map_err(|e| ApiError::invalid("id", e.to_string()))?;
        let mut record = self
            .visible_tokens(caller)
            .await?
            .into_iter()
            .find(|r| r.token.as_ref().is_some_and(|t| t.id == id.as_str()))
            .ok_or_else(|| ApiError::not_found("token", &id))?;
        if let Some(t) = record.token.as_mut() {
            t.revoked = true;
        }
        self.tables.api_tokens().upsert(&record).await?;
        self.auth.forget(&id);
        Ok(record.token.unwrap_or_default())
    }

    async fn quota_usage(&self, tenant: &Tenant) -> Result<proto::QuotaUsage, ApiError> {
        let now = crate::channel::now();
        let workloads: Vec<Workload> = self
            .tables
            .workloads()
            .list_all(Some(&tenant.id), 1000)
            .await?;
        let placements = self
            .tables
            .placements()
            .list_all(Some(&tenant.id), 1000)
            .await?;
        let mut used = Quotas::default();
        let mut sites = std::collections::BTreeSet::new();
        for w in &workloads {
            if matches!(
                w.state,
                ReservationState::Pending | ReservationState::Approved | ReservationState::Active
            ) {
                used.concurrent_reservations += 1;
            }
            let Some(p) = placements.iter().find(|p| p.workload == w.id) else {
                continue;
            };
            if !p.window.as_ref().is_none_or(|win| win.contains(now)) {
                continue;
            }
            for a in &p.assignments {
                sites.insert(a.site.clone());
                match w.spec.resources.accelerator {
                    Accelerator::WholeGpus { model, count } => {
                        *used.gpus_per_model.entry(model).or_default() += count;
                    }
                    Accelerator::Mig { model, profile } => {
                        used.mig_slices += profile
                            .spec_for(model)
                            .map_or(0, |s| u32::from(s.compute_slices));
                    }
                    Accelerator::None => {}
                }
            }
        }
        used.sites = sites.len() as u32;
        Ok(proto::QuotaUsage {
            tenant: tenant.id.to_string(),
            limits: Some(tenant.quotas.clone().into()),
            used: Some(used.into()),
        })
    }
}

#[tonic::async_trait]
impl TenantService for Tenants {
    async fn create_tenant(
        &self,
        request: Request<proto::CreateTenantRequest>,
    ) -> Result<Response<proto::CreateTenantResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::CreateTenant).await?;
        let object = super::object(
            "tenant",
            request.get_ref().tenant.as_ref().map(|x| x.id.as_str()),
        );
        let result = self.0.create_tenant(request.into_inner()).await;
        let tenant = self
            .0
            .finish(&caller, Rpc::CreateTenant, &object, result)
            .await?;
        Ok(Response::new(proto::CreateTenantResponse {
            tenant: Some(tenant.into()),
        }))
    }

    async fn get_tenant(
        &self,
        request: Request<proto::GetTenantRequest>,
    ) -> Result<Response<proto::GetTenantResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::GetTenant).await?;
        let (tenant, _) = self
            .0
            .visible_tenant(&caller, &request.get_ref().id)
            .await?;
        Ok(Response::new(proto::GetTenantResponse {
            tenant: Some(tenant.into()),
        }))
    }

    async fn list_tenants(
        &self,
        request: Request<proto::ListTenantsRequest>,
    ) -> Result<Response<proto::ListTenantsResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::ListTenants).await?;
        let r = request.into_inner();
        let scope = caller.scope();
        let (items, next) = pages::page(
            &self.0.tables.tenants(),
            None,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |t: &Tenant| scope.sees(&t.id),
        )
        .await?;
        Ok(Response::new(proto::ListTenantsResponse {
            tenants: items.into_iter().map(Into::into).collect(),
            next_page_token: next,
        }))
    }

    async fn update_tenant(
        &self,
        request: Request<proto::UpdateTenantRequest>,
    ) -> Result<Response<proto::UpdateTenantResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::UpdateTenant).await?;
        let object = super::object(
            "tenant",
            request.get_ref().tenant.as_ref().map(|x| x.id.as_str()),
        );
        let result = self.0.update_tenant(&caller, request.into_inner()).await;
        let tenant = self
            .0
            .finish(&caller, Rpc::UpdateTenant, &object, result)
            .await?;
        Ok(Response::new(proto::UpdateTenantResponse {
            tenant: Some(tenant.into()),
        }))
    }

    async fn delete_tenant(
        &self,
        request: Request<proto::DeleteTenantRequest>,
    ) -> Result<Response<proto::DeleteTenantResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::DeleteTenant).await?;
        let id = request.into_inner().id;
        let result = self.0.delete_tenant(&id).await;
        self.0
            .finish(&caller, Rpc::DeleteTenant, &format!("tenant/{id}"), result)
            .await?;
        Ok(Response::new(proto::DeleteTenantResponse {}))
    }

    async fn create_user(
        &self,
        request: Request<proto::CreateUserRequest>,
    ) -> Result<Response<proto::CreateUserResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::CreateUser).await?;
        let object = super::object(
            "user",
            request.get_ref().user.as_ref().map(|x| x.id.as_str()),
        );
        let result = self.0.create_user(&caller, request.into_inner()).await;
        let user = self
            .0
            .finish(&caller, Rpc::CreateUser, &object, result)
            .await?;
        Ok(Response::new(proto::CreateUserResponse {
            user: Some(user),
        }))
    }

    async fn list_users(
        &self,
        request: Request<proto::ListUsersRequest>,
    ) -> Result<Response<proto::ListUsersResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::ListUsers).await?;
        let r = request.into_inner();
        let tenant = tenant_filter(&caller, &r.tenant, "tenant")?;
        let (items, next) = pages::page(
            &self.0.tables.users(),
            None,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |u: &proto::User| tenant.as_ref().is_none_or(|t| u.tenant == t.as_str()),
        )
        .await?;
        Ok(Response::new(proto::ListUsersResponse {
            users: items,
            next_page_token: next,
        }))
    }

    async fn delete_user(
        &self,
        request: Request<proto::DeleteUserRequest>,
    ) -> Result<Response<proto::DeleteUserResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::DeleteUser).await?;
        let id = request.into_inner().id;
        let result = async {
            let user = self.0.visible_user(&caller, &id).await?;
            let tenant = TenantId::parse(&user.tenant).ok();
            if !is_admin_of(&caller, tenant.as_ref()) {
                return Err(ApiError::PermissionDenied(format!(
                    "a {} cannot delete provider users",
                    caller.role
                )));
            }
            self.0.remove_user(&user).await
        }
        .await;
        self.0
            .finish(&caller, Rpc::DeleteUser, &format!("user/{id}"), result)
            .await?;
        Ok(Response::new(proto::DeleteUserResponse {}))
    }

    async fn create_api_token(
        &self,
        request: Request<proto::CreateApiTokenRequest>,
    ) -> Result<Response<proto::CreateApiTokenResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::CreateApiToken).await?;
        let result = self.0.create_api_token(&caller, request.into_inner()).await;
        let object = result
            .as_ref()
            .map(|t| format!("token/{}", t.token.id))
            .unwrap_or_else(|_| "token".into());
        let new = self
            .0
            .finish(&caller, Rpc::CreateApiToken, &object, result)
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
        let caller = self.0.begin(&request, Rpc::ListApiTokens).await?;
        let r = request.into_inner();
        let user = (!r.user.is_empty())
            .then(|| scoped_user_id(&caller, &r.user))
            .transpose()?;
        let tokens: Vec<proto::ApiToken> = self
            .0
            .visible_tokens(&caller)
            .await?
            .into_iter()
            .filter_map(|t| t.token)
            .filter(|t| user.as_ref().is_none_or(|u| t.user == u.as_str()))
            .collect();
        let (tokens, next) = pages::page_of(
            tokens,
            &r.page_token,
            r.page_size,
            self.0.config.max_page_size,
            |t| t.id.as_str(),
        )?;
        Ok(Response::new(proto::ListApiTokensResponse {
            tokens,
            next_page_token: next,
        }))
    }

    async fn revoke_api_token(
        &self,
        request: Request<proto::RevokeApiTokenRequest>,
    ) -> Result<Response<proto::RevokeApiTokenResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::RevokeApiToken).await?;
        let id = request.into_inner().id;
        let result = self.0.revoke_api_token(&caller, &id).await;
        let token = self
            .0
            .finish(&caller, Rpc::RevokeApiToken, &format!("token/{id}"), result)
            .await?;
        Ok(Response::new(proto::RevokeApiTokenResponse {
            token: Some(token),
        }))
    }

    async fn get_quota_usage(
        &self,
        request: Request<proto::GetQuotaUsageRequest>,
    ) -> Result<Response<proto::GetQuotaUsageResponse>, Status> {
        let caller = self.0.begin(&request, Rpc::GetQuotaUsage).await?;
        let tenant = acting_tenant(&caller, &request.get_ref().tenant, "tenant")?;
        let tenant = self.0.tenant_record(&tenant).await?;
        Ok(Response::new(proto::GetQuotaUsageResponse {
            usage: Some(self.0.quota_usage(&tenant).await?),
        }))
    }
}
