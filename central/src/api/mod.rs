//! The tenant and operator gRPC API (tonic): `PlacementService`, `TenantService` and
//! `FleetService` from `proto/meridian/v1`, with server reflection.
//!
//! Every call goes through [`ApiState::begin`]: authenticate the bearer token, take a token
//! from the caller's rate bucket, check the role against the RPC ([`access::allowed`]). Each
//! handler then scopes what it touches to the caller's tenant ([`access::Scope`]) and answers
//! another tenant's object as `NotFound`. Every mutating call goes through
//! [`ApiState::finish`], which appends an audit record (who, what, which object, result)
//! before the answer leaves.
//!
//! Limits: request and response size, HTTP/2 streams per connection, concurrent watches per
//! tenant, a deadline per request, and a per-tenant rate. See `docs/api.md`.

pub mod access;
pub mod auth;
mod config;
pub mod error;
mod fleet;
mod pages;
mod placement;
pub mod ratelimit;
mod server;
mod tenants;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tonic::{Request, Status};

pub use access::{Caller, Role, Rpc, Scope};
pub use config::ApiConfig;
pub use error::ApiError;
pub use server::{Api, ApiStartError};

use crate::audit::{AuditEntry, Auditor, Outcome};
use crate::ca::CertificateAuthority;
use crate::lifecycle::LifecycleHandle;
use crate::tokens::Tokens;
use meridian_store::Tables;

/// Everything the handlers share.
#[derive(Debug)]
pub struct ApiState {
    pub config: ApiConfig,
    pub tables: Tables,
    pub audit: Auditor,
    pub auth: auth::Authenticator,
    pub limiter: ratelimit::RateLimiter,
    /// Failed authentications per source address.
    pub auth_limiter: ratelimit::RateLimiter,
    /// Counts of failed and unread calls.
    pub auth_failures: ratelimit::AuthFailures,
    pub lifecycle: LifecycleHandle,
    pub tokens: Tokens,
    pub ca: Arc<CertificateAuthority>,
    /// Addresses written into bootstrap files.
    pub channel_addresses: Vec<String>,
    watches: Mutex<HashMap<String, usize>>,
}

/// RPCs whose success the callee audits itself (bootstrap tokens, site revocation).
const SELF_AUDITED: [Rpc; 3] = [
    Rpc::CreateBootstrapToken,
    Rpc::RevokeBootstrapToken,
    Rpc::RevokeSite,
];

impl ApiState {
    /// Shared state for the handlers.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: ApiConfig,
        tables: Tables,
        audit: Auditor,
        lifecycle: LifecycleHandle,
        tokens: Tokens,
        ca: Arc<CertificateAuthority>,
        channel_addresses: Vec<String>,
    ) -> Self {
        ApiState {
            limiter: ratelimit::RateLimiter::new(config.rate_per_second, config.rate_burst),
            auth_limiter: ratelimit::RateLimiter::new(
                config.auth_failures_per_second,
                config.auth_failure_burst,
            ),
            auth_failures: ratelimit::AuthFailures::default(),
            auth: auth::Authenticator::new(tables.clone()),
            config,
            tables,
            audit,
            lifecycle,
            tokens,
            ca,
            channel_addresses,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// Authenticates, rate-limits and authorises one call of `rpc`.
    ///
    /// A source address that has spent its budget of failed authentications
    /// (`api.auth_failures_per_second`) is refused before its credentials are read, so a
    /// flood of bad tokens costs neither hashing nor store lookups. Every call takes a token
    /// of that budget before its credentials are read (so concurrent calls cannot overdraw
    /// it) and a call that authenticates gives it back. An authenticated caller is then held
    /// to its tenant's rate.
    pub async fn begin<T>(&self, request: &Request<T>, rpc: Rpc) -> Result<Caller, Status> {
        let source = request.remote_addr().map(|a| a.ip());
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
        let caller = match self
            .auth
            .authenticate(request.metadata(), crate::channel::now())
            .await
        {
            Err(e @ ApiError::Unauthenticated(_)) => {
                self.auth_failures.fail(source, Instant::now());
                return Err(e.into());
            }
            other => {
                if let Some(key) = &source_key {
                    self.auth_limiter.refund(key);
                }
                other?
            }
        };
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
                self.record(&caller, rpc, "", Outcome::Denied, &e.to_string())
                    .await?;
            }
            return Err(e.into());
        }
        Ok(caller)
    }

    /// Answers a refused call late: a client flooding in a closed loop then sends at most
    /// (calls in flight / delay) per second, instead of spending the server's CPU on
    /// refusals as fast as it can send them.
    async fn refuse(&self, e: ApiError) -> Status {
        tokio::time::sleep(std::time::Duration::from_millis(
            self.config.refusal_delay_ms,
        ))
        .await;
        e.into()
    }

    /// Audits the end of a mutating call on `object`, then answers.
    pub async fn finish<R>(
        &self,
        caller: &Caller,
        rpc: Rpc,
        object: &str,
        result: Result<R, ApiError>,
    ) -> Result<R, Status> {
        let (outcome, detail) = match &result {
            Ok(_) if SELF_AUDITED.contains(&rpc) => return result.map_err(Status::from),
            Ok(_) => (Outcome::Success, String::new()),
            Err(
                e @ (ApiError::NotFound { .. }
                | ApiError::PermissionDenied(_)
                | ApiError::Unauthenticated(_)),
            ) => (Outcome::Denied, e.to_string()),
            Err(e) => (Outcome::Failed, e.to_string()),
        };
        self.record(caller, rpc, object, outcome, &detail).await?;
        result.map_err(Status::from)
    }

    async fn record(
        &self,
        caller: &Caller,
        rpc: Rpc,
        object: &str,
        outcome: Outcome,
        detail: &str,
    ) -> Result<(), Status> {
        let actor = caller.actor();
        self.audit
            .append(
                AuditEntry {
                    actor: &actor,
                    action: rpc.name(),
                    object,
                    outcome,
                    detail,
                },
                crate::channel::now(),
            )
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::error!(error = %meridian_common::telemetry::error_chain(&e), "cannot append to the audit log");
                Status::unavailable("audit log unavailable; the call's effect may have been applied")
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
            state: Arc::clone(self),
            key,
        })
    }
}

/// One open watch stream; dropping it frees the slot.
#[derive(Debug)]
struct WatchSlot {
    state: Arc<ApiState>,
    key: String,
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut map = self.state.watches.lock().unwrap_or_else(|p| p.into_inner());
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
pub fn acting_tenant(
    caller: &Caller,
    requested: &str,
    field: &str,
) -> Result<meridian_common::ids::TenantId, ApiError> {
    match &caller.tenant {
        Some(own) if requested.is_empty() || requested == own.as_str() => Ok(own.clone()),
        Some(_) => Err(ApiError::not_found("tenant", requested)),
        None if requested.is_empty() => Err(ApiError::invalid(
            field,
            "is required for provider users: name the tenant to act for",
        )),
        None => meridian_common::ids::TenantId::parse(requested)
            .map_err(|e| ApiError::invalid(field, e.to_string())),
    }
}

/// A tenant filter of a list call: `None` for every tenant (provider callers only).
pub fn tenant_filter(
    caller: &Caller,
    requested: &str,
    field: &str,
) -> Result<Option<meridian_common::ids::TenantId>, ApiError> {
    if caller.tenant.is_none() && requested.is_empty() {
        return Ok(None);
    }
    acting_tenant(caller, requested, field).map(Some)
}

/// An optional enum filter of a list call: absent means any; a value the enum does not know
/// (or its UNSPECIFIED zero) is refused naming `field` and the values allowed.
pub fn enum_filter<E: TryFrom<i32>>(
    field: &str,
    value: Option<i32>,
    allowed: &str,
) -> Result<Option<E>, ApiError> {
    match value {
        None => Ok(None),
        Some(v) => match E::try_from(v) {
            Ok(e) if v != 0 => Ok(Some(e)),
            _ => Err(ApiError::invalid(
                field,
                format!("{v} is not a known value; use {allowed}"),
            )),
        },
    }
}

/// The audit log's name of an object: `kind/id` (`kind/` when the request named none).
pub fn object(kind: &str, id: Option<&str>) -> String {
    format!("{kind}/{}", id.unwrap_or(""))
}
