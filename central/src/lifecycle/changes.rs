//! The lifecycle's call into the intent compiler, and what it does with replicas the compiler
//! could not fit (their workloads fail with the compiler's reason).

use std::collections::BTreeMap;

use meridian_common::ids::{TenantId, Timestamp, WorkloadId};

use crate::publisher::{Changes, PublishSummary, Publisher, Scope};
use meridian_store::Tables;

use super::LifecycleError;

/// Publishes new intents for the sites of the changed workloads (old and new) and releases
/// deleted tenants' networks; returns the workloads some replica of which could not be
/// fitted, with the reason.
pub async fn publish_changes(
    publisher: &Publisher,
    tables: &Tables,
    now: Timestamp,
    changes: Changes,
) -> Result<(PublishSummary, BTreeMap<(TenantId, WorkloadId), String>), LifecycleError> {
    let scope = Scope::Changed(changes);
    let summary = publisher
        .publish(tables, &scope, now)
        .await
        .map_err(|e| LifecycleError::Publish(e.to_string()))?;
    let mut unmet = BTreeMap::new();
    for u in &summary.unmet {
        unmet
            .entry((u.replica.tenant.clone(), u.replica.workload.clone()))
            .or_insert_with(|| {
                format!(
                    "replica {} on site {}: {}",
                    u.replica.replica,
                    u.replica.site,
                    meridian_common::telemetry::error_chain(&u.reason)
                )
            });
    }
    for held in &summary.held_back {
        tracing::error!(
            ?held,
            "a compiled intent failed validation; the site keeps its previous intent"
        );
    }
    Ok((summary, unmet))
}
