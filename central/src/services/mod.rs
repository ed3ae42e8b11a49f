//! Central's public services: placement (workloads, dry runs, watches), tenants (tenants,
//! users, API tokens, quota usage) and the fleet (sites, servers, regions, datasets,
//! bootstrap tokens, revocation). They take and return the domain model; the gRPC layer
//! ([`crate::grpc`]) converts the wire to and from it, and a console calls the same methods.
//!
//! Every call follows one path, whoever the front end is:
//!
//! 1. [`Services::authenticate`]: the front end's credentials (a bearer secret over gRPC)
//!    become a [`Caller`]. A source address past its budget of failed authentications is
//!    refused before its secret is read.
//! 2. [`Services::admit`]: the caller's rate bucket, then the role x RPC table
//!    ([`access::allowed`]). The result, a [`Call`], is what every service method takes, so
//!    no method can be reached without both checks.
//! 3. The method scopes what it touches to the caller's tenant ([`access::Scope`]) and
//!    answers another tenant's object as `NotFound`.
//! 4. [`Call::finish`]: a mutating call appends an audit record (who, what, which object,
//!    result) before its answer leaves, whether it succeeded, was refused or failed. A front
//!    end that cannot even convert a request's input ends the call with [`Call::refuse`],
//!    which audits the same way.
//!
//! A console logs users in with their passwords instead of a bearer secret:
//! [`Services::authenticate_password`] gives the same [`Caller`] (its token is
//! [`access::PASSWORD_LOGIN_TOKEN`]), after the same per-address budget and a per-user one
//! (see [`passwords`]).
//!
//! Limits: a per-tenant rate, a per-address budget of failed authentications, a per-user
//! budget of failed logins, concurrent watches per tenant, page sizes. See `docs/api.md`.

pub mod access;
pub mod actions;
pub mod auth;
mod config;
pub mod cost;
pub mod error;
pub mod fleet;
pub mod overview;
pub mod pages;
pub mod passwords;
pub mod placement;
pub mod ratelimit;
pub mod tenants;
pub mod usage;
pub mod utilisation;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use meridian_common::ids::TenantId;
use meridian_store::Tables;

pub use access::{Caller, PASSWORD_LOGIN_TOKEN, Role, Rpc, Scope};
pub use config::ApiConfig;
pub use error::ApiError;
pub use pages::PageRequest;

pub use crate::audit::Outcome;
use crate::audit::{AuditEntry, Auditor};
use crate::ca::CertificateAuthority;
use crate::clock::Clock;
use crate::lifecycle::LifecycleHandle;
use crate::sites::Sites;
use crate::tokens::Tokens;

/// What the services are built from (handed in by central's composition root).
#[derive(Debug)]
pub struct ServiceParts {
    pub config: ApiConfig,
    /// The zone endpoint names are published in (`[dns]`), if any.
    pub dns_zone: Option<String>,
    pub tables: Tables,
    pub audit: Auditor,
    pub lifecycle: LifecycleHandle,
    pub tokens: Tokens,
    pub sites: Sites,
    pub ca: Arc<CertificateAuthority>,
    pub clock: Arc<dyn Clock>,
    /// Addresses written into bootstrap files.
    pub channel_addresses: Vec<String>,
}

/// The services, over everything they need.
#[derive(Debug)]
pub struct Services {
    config: ApiConfig,
    dns_zone: Option<String>,
    tables: Tables,
    audit: Auditor,
    auth: auth::Authenticator,
    limiter: ratelimit::RateLimiter,
    auth_limiter: ratelimit::RateLimiter,
    auth_failures: ratelimit::AuthFailures,
    logins: passwords::Logins,
    lifecycle: LifecycleHandle,
    tokens: Tokens,
    sites: Sites,
    ca: Arc<CertificateAuthority>,
    clock: Arc<dyn Clock>,
    channel_addresses: Vec<String>,
    watches: Mutex<HashMap<String, usize>>,
}

/// RPCs whose success the callee audits itself (bootstrap tokens, site revocation).
const SELF_AUDITED: [Rpc; 3] = [
    Rpc::CreateBootstrapToken,
    Rpc::RevokeBootstrapToken,
    Rpc::RevokeSite,
];

impl Services {
    /// The services over `parts`.
    pub fn new(parts: ServiceParts) -> Self {
        let ServiceParts {
            config,
            dns_zone,
            tables,
            audit,
            lifecycle,
            tokens,
            sites,
            ca,
            clock,
            channel_addresses,
        } = parts;
        Services {
            limiter: ratelimit::RateLimiter::new(config.rate_per_second, config.rate_burst),
            auth_limiter: ratelimit::RateLimiter::new(
                config.auth_failures_per_second,
                config.auth_failure_burst,
            ),
            auth_failures: ratelimit::AuthFailures::default(),
            logins: passwords::Logins::new(),
            auth: auth::Authenticator::new(tables.clone()),
            config,
            dns_zone,
            tables,
            audit,
            lifecycle,
            tokens,
            sites,
            ca,
            clock,
            channel_addresses,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// Central's clock now.
    pub fn now(&self) -> meridian_common::ids::Timestamp {
        self.clock.now()
    }

    /// The `[api]` configuration the services run with.
    pub fn config(&self) -> &ApiConfig {
        &self.config
    }

    /// The per-tenant rate limiter (its limits can change while serving).
    pub fn rate_limiter(&self) -> &ratelimit::RateLimiter {
        &self.limiter
    }

    /// Counts of failed authentications and of calls refused unread.
    pub fn auth_failures(&self) -> &ratelimit::AuthFailures {
        &self.auth_failures
    }

    /// The caller presenting `secret` (as the front end read it: `Err` when the request
    /// carried no usable credentials) from `source`.
    ///
    /// A source address that has spent its budget of failed authentications
    /// (`api.auth_failures_per_second`) is refused before the secret is looked at, so a flood
    /// of bad tokens costs neither hashing nor store lookups. Every call takes a token of
    /// that budget first (so concurrent calls cannot overdraw it) and a call that
    /// authenticates gives it back.
    pub async fn authenticate(
        &self,
        source: Option<IpAddr>,
        secret: Result<&str, ApiError>,
    ) -> Result<Caller, ApiError> {
        let source_key = source.map(ratelimit::source_key);
        if let (Some(ip), Some(key)) = (source, &source_key)
            && let Err(retry_after) = self.auth_limiter.check(key, Instant::now())
        {
            self.auth_failures.refuse(ip, Instant::now());
            return Err(self
                .refuse(ApiError::RateLimited {
                    key: format!("address {ip} (failed authentications)"),
                    retry_after,
                })
                .await);
        }
        let result = match secret {
            Ok(secret) => self.auth.authenticate(secret, self.clock.now()).await,
            Err(e) => Err(e),
        };
        match result {
            Err(e @ ApiError::Unauthenticated(_)) => {
                self.auth_failures.fail(source, Instant::now());
                Err(e)
            }
            other => {
                if let Some(key) = &source_key {
                    self.auth_limiter.refund(key);
                }
                other
            }
        }
    }

    /// Admits one call of `rpc` by `caller`: its tenant's (or provider user's) rate, then the
    /// role x RPC table. A refused mutating call is audited as denied.
    pub async fn admit<'a>(&'a self, caller: &'a Caller, rpc: Rpc) -> Result<Call<'a>, ApiError> {
        if let Err(retry_after) = self.limiter.check(&caller.rate_key(), Instant::now()) {
            return Err(self
                .refuse(ApiError::RateLimited {
                    key: caller.rate_key(),
                    retry_after,
                })
                .await);
        }
        if !caller.may_call(rpc) {
            let e = ApiError::PermissionDenied(format!(
                "role {}{} may not call {}",
                caller.role,
                match (&caller.tenant, caller.role) {
                    (Some(t), Role::Viewer) => format!(" (of tenant {t})"),
                    _ => String::new(),
                },
                rpc.name()
            ));
            if rpc.mutating() {
                self.record(caller, rpc, "", Outcome::Denied, &e.to_string())
                    .await?;
            }
            return Err(e);
        }
        Ok(Call {
            services: self,
            caller,
            rpc,
        })
    }

    /// Answers a refused call late: a client flooding in a closed loop then sends at most
    /// (calls in flight / delay) per second, instead of spending the server's CPU on
    /// refusals as fast as it can send them.
    async fn refuse(&self, e: ApiError) -> ApiError {
        tokio::time::sleep(std::time::Duration::from_millis(
            self.config.refusal_delay_ms,
        ))
        .await;
        e
    }

    async fn record(
        &self,
        caller: &Caller,
        rpc: Rpc,
        object: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), ApiError> {
        self.append_audit(&caller.actor(), rpc.name(), object, outcome, detail)
            .await
    }

    /// Appends an audit record of something `caller` did outside the RPCs (a front end's own
    /// actions: a console's logout, say): `action` as `Front/Action` (`Console/Logout`),
    /// `object` as `kind/id`. `detail` must hold no secret. `AuditUnavailable` when the log
    /// cannot take it.
    pub async fn audit_event(
        &self,
        caller: &Caller,
        action: &str,
        object: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), ApiError> {
        self.append_audit(&caller.actor(), action, object, outcome, detail)
            .await
    }

    async fn append_audit(
        &self,
        actor: &str,
        action: &str,
        object: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), ApiError> {
        self.audit
            .append(
                AuditEntry {
                    actor,
                    action,
                    object,
                    outcome,
                    detail,
                },
                self.clock.now(),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "cannot append to the audit log");
                ApiError::AuditUnavailable
            })
    }

    /// Counts a new watch stream of `key`, or refuses it over the limit. The guard releases it.
    fn open_watch(self: &Arc<Self>, key: String) -> Result<WatchSlot, ApiError> {
        let mut map = self.watches.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(key.clone()).or_default();
        if *n >= self.config.max_watches_per_tenant {
            return Err(ApiError::Exhausted(format!(
                "at most {} concurrent watches per tenant; close one first",
                self.config.max_watches_per_tenant
            )));
        }
        *n += 1;
        Ok(WatchSlot {
            services: Arc::clone(self),
            key,
        })
    }

    /// The tenant record a call acts for (not found for a tenant that does not exist).
    async fn tenant_record(
        &self,
        id: &TenantId,
    ) -> Result<meridian_common::model::Tenant, ApiError> {
        Ok(self
            .tables
            .tenants()
            .get(id)
            .await?
            .ok_or_else(|| ApiError::not_found("tenant", id))?
            .record)
    }
}

/// One admitted call: the caller passed its rate limit and may call the RPC. Every service
/// method takes one; [`Call::finish`] audits a mutating call's outcome.
#[derive(Debug)]
pub struct Call<'a> {
    services: &'a Services,
    caller: &'a Caller,
    rpc: Rpc,
}

impl<'a> Call<'a> {
    /// Who is calling.
    pub fn caller(&self) -> &'a Caller {
        self.caller
    }

    /// Ends the call on `object` with `result`: a mutating call is audited (success, denied
    /// or failed) before the result is handed back.
    pub async fn finish<R>(self, object: &str, result: Result<R, ApiError>) -> Result<R, ApiError> {
        if !self.rpc.mutating() {
            return result;
        }
        let (outcome, detail) = match &result {
            Ok(_) if SELF_AUDITED.contains(&self.rpc) => return result,
            Ok(_) => (Outcome::Success, String::new()),
            Err(
                e @ (ApiError::NotFound { .. }
                | ApiError::PermissionDenied(_)
                | ApiError::Unauthenticated(_)),
            ) => (Outcome::Denied, e.to_string()),
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        self.services
            .record(self.caller, self.rpc, object, outcome, &detail)
            .await?;
        result
    }

    /// Ends the call with `e`, raised before the service was reached (input that does not
    /// convert, say); audited like any other failure.
    pub async fn refuse<R>(self, object: &str, e: ApiError) -> Result<R, ApiError> {
        self.finish(object, Err(e)).await
    }
}

/// One open watch stream; dropping it frees the slot.
#[derive(Debug)]
struct WatchSlot {
    services: Arc<Services>,
    key: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut map = self
            .services
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                map.remove(&self.key);
            }
        }
    }
}

/// The tenant a call acts for: a tenant-scoped caller's own (a different tenant named in the
/// request is answered as not found), or, for a provider caller, the one it names.
pub fn acting_tenant(caller: &Caller, requested: &str, field: &str) -> Result<TenantId, ApiError> {
    match &caller.tenant {
        Some(own) if requested.is_empty() || requested == own.as_str() => Ok(own.clone()),
        Some(_) => Err(ApiError::not_found("tenant", requested)),
        None if requested.is_empty() => Err(ApiError::invalid(
            field,
            "is required for provider users: name the tenant to act for",
        )),
        None => TenantId::parse(requested).map_err(|e| ApiError::invalid(field, e.to_string())),
    }
}

/// A tenant filter of a list call: `None` for every tenant (provider callers only).
pub fn tenant_filter(
    caller: &Caller,
    requested: &str,
    field: &str,
) -> Result<Option<TenantId>, ApiError> {
    if caller.tenant.is_none() && requested.is_empty() {
        return Ok(None);
    }
    acting_tenant(caller, requested, field).map(Some)
}

/// The audit log's name of an object: `kind/id` (`kind/` when the request named none).
pub fn object(kind: &str, id: Option<&str>) -> String {
    format!("{kind}/{}", id.unwrap_or(""))
}
