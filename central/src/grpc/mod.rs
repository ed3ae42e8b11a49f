//! The tenant and operator gRPC API (tonic): `PlacementService`, `TenantService`,
//! `FleetService` and `UsageService` from `proto/meridian/v1`, with server reflection and health checks.
//!
//! Thin adapters over [`crate::services`]: each call reads its bearer token and source
//! address ([`authenticate`]), is admitted by the services (rate, role), converts its
//! request into the domain model (a request that does not convert ends the admitted call
//! through [`Call::refuse`](crate::services::Call::refuse), audited), calls the service and
//! converts the answer back. The transport's own limits (message size, streams per
//! connection, deadlines) are set in [`server`].

mod auth;
mod cost;
mod fleet;
mod placement;
mod server;
pub use server::ServerIdentity;
mod status;
mod tenants;
mod usage;

use std::sync::Arc;

use tonic::{Request, Status};

pub use auth::bearer_token;
pub use server::{Api, ApiStartError};
pub use status::code;

use crate::services::{ApiError, Caller, Services};

/// The caller of a gRPC request: its bearer token, presented from its peer address.
pub async fn authenticate<T>(services: &Services, request: &Request<T>) -> Result<Caller, Status> {
    let source = request.remote_addr().map(|a| a.ip());
    Ok(services
        .authenticate(source, bearer_token(request.metadata()))
        .await?)
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

/// The page a list request asks for.
fn page(token: String, size: u32) -> crate::services::PageRequest {
    crate::services::PageRequest { token, size }
}

/// The services behind every adapter.
type Shared = Arc<Services>;
