//! The tenant service: tenants and their policy, users, API tokens, quota usage.

use std::time::Duration;

use meridian_common::ids::{TenantId, TokenId, UserId};
use meridian_common::model::{Accelerator, Quotas, ReservationState, Tenant, Workload};
use meridian_common::validate::validate_tenant;
use meridian_proto::v1 as proto;

use super::access::{Caller, Role, Scope};
use super::error::ApiError;
use super::pages::{self, PageRequest};
use super::{Call, Services, acting_tenant, tenant_filter};

use crate::accounts::{self, DEFAULT_TOKEN_TTL, MAX_TOKEN_TTL};
use meridian_store::tables::{KeyPath, Record, Table};

/// A tenant's quotas and what it uses of them now.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaUsage {
    /// The tenant.
    pub tenant: TenantId,
    /// Its quotas.
    pub limits: Quotas,
    /// What its live reservations hold now.
    pub used: Quotas,
}

/// Fields of a tenant a provider admin may update.
const PROVIDER_FIELDS: [&str; 5] = ["name", "quotas", "residency", "weights", "max_priority"];
/// Fields a tenant admin may update on its own tenant.
const TENANT_FIELDS: [&str; 2] = ["residency", "weights"];

/// A user ID as a caller names it: a tenant's caller may leave out its own tenant.
pub(super) fn scoped_user_id(caller: &Caller, id: &str) -> Result<UserId, ApiError> {
    let invalid = |e: meridian_common::ids::IdError| ApiError::invalid("user", e.to_string());
    match &caller.tenant {
        Some(own) if !id.contains('@') => UserId::scoped(id, Some(own)).map_err(invalid),
        _ => UserId::parse(id).map_err(invalid),
    }
}

pub(super) fn is_admin_of(caller: &Caller, tenant: Option<&TenantId>) -> bool {
    match caller.role {
        Role::ProviderAdmin => true,
        Role::TenantAdmin => caller.tenant.as_ref() == tenant,
        _ => false,
    }
}

impl Services {
    /// Creates a tenant (its network is allocated by Meridian on first use).
    pub async fn create_tenant(&self, call: Call<'_>, tenant: Tenant) -> Result<Tenant, ApiError> {
        let object = format!("tenant/{}", tenant.id);
        let result = async {
            if tenant.network.is_some() {
                return Err(ApiError::invalid(
                    "tenant.network",
                    "is allocated by Meridian; leave it unset",
                ));
            }
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
        .await;
        call.finish(&object, result).await
    }

    /// A tenant the caller may see.
    pub async fn get_tenant(&self, call: Call<'_>, id: &str) -> Result<Tenant, ApiError> {
        Ok(self.visible_tenant(call.caller(), id).await?.0)
    }

    /// A page of the tenants the caller sees (its own, for a tenant's caller).
    pub async fn list_tenants(
        &self,
        call: Call<'_>,
        page: &PageRequest,
    ) -> Result<(Vec<Tenant>, String), ApiError> {
        let scope = call.caller().scope();
        pages::page(
            &self.tables.tenants(),
            None,
            page,
            self.config.max_page_size,
            |t: &Tenant| scope.sees(&t.id),
        )
        .await
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

    /// Changes the fields of a tenant that `paths` names, taking them from `submitted` (the
    /// tenant as the API writes it; only the named fields are read, and only they are checked).
    pub async fn update_tenant(
        &self,
        call: Call<'_>,
        paths: Vec<String>,
        submitted: proto::Tenant,
    ) -> Result<Tenant, ApiError> {
        let object = format!("tenant/{}", submitted.id);
        let result = self
            .update_tenant_fields(call.caller(), paths, submitted)
            .await;
        call.finish(&object, result).await
    }

    async fn update_tenant_fields(
        &self,
        caller: &Caller,
        paths: Vec<String>,
        wire: proto::Tenant,
    ) -> Result<Tenant, ApiError> {
        let (current, revision) = self.visible_tenant(caller, &wire.id).await?;
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

    /// Deletes a tenant with no live workloads, datasets or held capacity, and its users.
    pub async fn delete_tenant(&self, call: Call<'_>, id: &str) -> Result<(), ApiError> {
        let result = self.delete_tenant_record(id).await;
        call.finish(&format!("tenant/{id}"), result).await
    }

    async fn delete_tenant_record(&self, id: &str) -> Result<(), ApiError> {
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

    /// Revokes every token of `user` and deletes it with its password, in one transaction.
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
        let mut txn = meridian_store::Txn::new();
        txn.success
            .extend(Table::<proto::User>::delete_ops(&user.id));
        txn.success
            .extend(Table::<proto::PasswordRecord>::delete_ops(&user.id));
        self.tables.store().txn(txn).await?;
        if let Ok(id) = UserId::parse(&user.id) {
            self.auth.forget_user(&id);
        }
        Ok(())
    }

    /// A user the caller may see (`NotFound` otherwise). A tenant's caller may name its
    /// tenant's users by their plain name (`bob` for `bob@acme`).
    async fn visible_user(&self, caller: &Caller, id: &str) -> Result<proto::User, ApiError> {
        Ok(self.visible_user_at(caller, id).await?.0)
    }

    /// [`Services::visible_user`] with the revision it was read at.
    pub(super) async fn visible_user_at(
        &self,
        caller: &Caller,
        id: &str,
    ) -> Result<(proto::User, meridian_store::Revision), ApiError> {
        let parsed = scoped_user_id(caller, id)?;
        let user = self
            .tables
            .users()
            .get(&KeyPath(parsed.to_string()))
            .await?
            .ok_or_else(|| ApiError::not_found("user", &parsed))?;
        let visible = match caller.scope() {
            Scope::All => true,
            Scope::Tenant(t) => user.record.tenant == t.as_str(),
        };
        if !visible {
            return Err(ApiError::not_found("user", &parsed));
        }
        Ok((user.record, user.revision))
    }

    /// Creates a user. User IDs are scoped per tenant: a tenant's user `bob` is `bob@tenant`.
    pub async fn create_user(
        &self,
        call: Call<'_>,
        user: proto::User,
    ) -> Result<proto::User, ApiError> {
        let object = format!("user/{}", user.id);
        let result = self.create_user_record(call.caller(), user).await;
        call.finish(&object, result).await
    }

    async fn create_user_record(
        &self,
        caller: &Caller,
        mut user: proto::User,
    ) -> Result<proto::User, ApiError> {
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
        user.created_at = self.clock.now().as_millis();
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

    /// Creates an API token for `user` (empty: the caller) with `role` (absent: the user's),
    /// living `ttl_ms` (0: 30 days); the secret is in the answer only.
    pub async fn create_api_token(
        &self,
        call: Call<'_>,
        user: &str,
        role: Option<Role>,
        ttl_ms: i64,
    ) -> Result<accounts::NewApiToken, ApiError> {
        let result = self
            .create_token_record(call.caller(), user, role, ttl_ms)
            .await;
        let object = result
            .as_ref()
            .map(|t| format!("token/{}", t.token.id))
            .unwrap_or_else(|_| "token".into());
        call.finish(&object, result).await
    }

    async fn create_token_record(
        &self,
        caller: &Caller,
        user: &str,
        role: Option<Role>,
        ttl_ms: i64,
    ) -> Result<accounts::NewApiToken, ApiError> {
        let user_id = if user.is_empty() {
            caller.user.to_string()
        } else {
            user.to_owned()
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
        let role = role.unwrap_or(user_role);
        if !user_role.may_grant(role) || !caller.role.may_grant(role) {
            return Err(ApiError::PermissionDenied(format!(
                "role: a token of user {} ({user_role}) created by a {} cannot be {role}",
                user.id, caller.role
            )));
        }
        let ttl = match ttl_ms {
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
        Ok(accounts::create_token(&self.tables, &user, role, ttl, self.clock.now()).await?)
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

    /// Revokes an API token the caller may see (its own, or any in its scope for an admin).
    pub async fn revoke_api_token(
        &self,
        call: Call<'_>,
        id: &str,
    ) -> Result<proto::ApiToken, ApiError> {
        let result = self.revoke_token_record(call.caller(), id).await;
        call.finish(&format!("token/{id}"), result).await
    }

    async fn revoke_token_record(
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

    /// A tenant's quotas and its use of them now (`tenant` empty: the caller's own).
    pub async fn quota_usage(&self, call: Call<'_>, tenant: &str) -> Result<QuotaUsage, ApiError> {
        let tenant = acting_tenant(call.caller(), tenant, "tenant")?;
        let tenant = self.tenant_record(&tenant).await?;
        let now = self.clock.now();
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
                used.storage_mib = used
                    .storage_mib
                    .saturating_add(w.spec.resources.storage_mib);
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
        Ok(QuotaUsage {
            tenant: tenant.id,
            limits: tenant.quotas,
            used,
        })
    }

    /// A page of the users the caller sees (one tenant's, or every user for a provider
    /// caller naming no tenant).
    pub async fn list_users(
        &self,
        call: Call<'_>,
        tenant: &str,
        page: &PageRequest,
    ) -> Result<(Vec<proto::User>, String), ApiError> {
        let tenant = tenant_filter(call.caller(), tenant, "tenant")?;
        pages::page(
            &self.tables.users(),
            None,
            page,
            self.config.max_page_size,
            |u: &proto::User| tenant.as_ref().is_none_or(|t| u.tenant == t.as_str()),
        )
        .await
    }

    /// Deletes a user the caller administers, revoking its tokens.
    pub async fn delete_user(&self, call: Call<'_>, id: &str) -> Result<(), ApiError> {
        let caller = call.caller();
        let result = async {
            let user = self.visible_user(caller, id).await?;
            let tenant = TenantId::parse(&user.tenant).ok();
            if !is_admin_of(caller, tenant.as_ref()) {
                return Err(ApiError::PermissionDenied(format!(
                    "a {} cannot delete provider users",
                    caller.role
                )));
            }
            self.remove_user(&user).await
        }
        .await;
        call.finish(&format!("user/{id}"), result).await
    }

    /// A page of the API tokens the caller sees (of `user` only, when named).
    pub async fn list_api_tokens(
        &self,
        call: Call<'_>,
        user: &str,
        page: &PageRequest,
    ) -> Result<(Vec<proto::ApiToken>, String), ApiError> {
        let caller = call.caller();
        let user = (!user.is_empty())
            .then(|| scoped_user_id(caller, user))
            .transpose()?;
        let tokens: Vec<proto::ApiToken> = self
            .visible_tokens(caller)
            .await?
            .into_iter()
            .filter_map(|t| t.token)
            .filter(|t| user.as_ref().is_none_or(|u| t.user == u.as_str()))
            .collect();
        pages::page_of(tokens, page, self.config.max_page_size, |t| t.id.as_str())
    }
}
