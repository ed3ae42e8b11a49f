//! The lifecycle's call into the intent compiler.

use std::collections::BTreeSet;

use meridian_common::ids::{TenantId, Timestamp};

use crate::store::tables::{TableError, Tables};

/// Publishes new intents for the sites of `tenants`.
pub async fn publish(
    tables: &Tables,
    now: Timestamp,
    tenants: &BTreeSet<TenantId>,
) -> Result<(), TableError> {
    let _ = (tables, now, tenants);
    Ok(())
}
