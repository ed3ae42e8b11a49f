//! Agents' progress on operators' server actions: each `ReportBody::ServerAction` of a batch
//! updates its request's record (`actions/<site>/<request>`) in the same transaction as the
//! reports; a request that became final also marks the site for publishing, so the next
//! intent no longer carries it.

use std::collections::BTreeMap;

use meridian_common::ids::{RequestId, SiteId};
use meridian_common::model::{ActionPhase, ReportBody, SiteReport};
use meridian_proto::v1 as proto;
use meridian_store::Op;
use meridian_store::Tables;
use meridian_store::schema::site_dirty_marker;
use meridian_store::tables::{Table, TableError, TableKey};

use crate::server_actions::fold_report;

/// The writes the batch's action reports call for. A report naming a request this site does
/// not have (another site's, or unknown) is skipped with a warning: an agent cannot change
/// another site's record.
pub(crate) async fn ops<'a>(
    tables: &Tables,
    site: &SiteId,
    reports: impl Iterator<Item = &'a SiteReport>,
) -> Result<Vec<Op>, TableError> {
    let mut latest: BTreeMap<RequestId, (ActionPhase, &str, i64, &str)> = BTreeMap::new();
    for r in reports {
        if let ReportBody::ServerAction {
            request,
            server,
            phase,
            detail,
        } = &r.body
        {
            latest.insert(
                *request,
                (*phase, detail.as_str(), r.at.as_millis(), server.as_str()),
            );
        }
    }
    let mut ops = Vec::new();
    let mut publish = false;
    for (request, (phase, detail, at, server)) in latest {
        let path = format!(
            "{site}/{}",
            meridian_store::tables::AuditSeq(request.get()).path()
        );
        let key = Table::<proto::ServerActionRecord>::store_key(&path);
        let Some(kv) = tables.store().get(&key).await? else {
            tracing::warn!(%site, %request, "a report names a server action this site does not have");
            continue;
        };
        let record = Table::<proto::ServerActionRecord>::decode(&path, &kv.value)?;
        if record.server != server {
            tracing::warn!(%site, %request, server, "a report names the wrong server for its request");
            continue;
        }
        if let Some(next) = fold_report(&record, phase, detail, at) {
            publish |= next.finished_at != 0;
            ops.push(Table::<proto::ServerActionRecord>::put_op(&next)?);
        }
    }
    if publish {
        ops.push(site_dirty_marker(site));
    }
    Ok(ops)
}
