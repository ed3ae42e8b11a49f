//! Report ingest: deduplicate on (site, sequence), store, acknowledge a high-water mark.
//!
//! A batch's new reports (sequence above the site's mark) and the raised mark are written in
//! one store transaction, guarded by the channel record's revision, so a report is stored
//! exactly once even when an agent replays a batch after a reconnect or a crash, and the mark
//! central acknowledges never covers a report that is not durable.

use meridian_common::channel::seq::HighWater;
use meridian_common::ids::{Sequence, SiteId};
use meridian_common::model::SiteReport;
use meridian_proto::v1 as proto;
use prost::Message;

use super::Shared;
use super::session::SessionError;
use super::state::{self, SiteChannel};
use crate::store::{Compare, Op, Revision, Txn};

/// Most reports in one batch (each is one write of one transaction).
pub const MAX_BATCH: usize = 512;

/// Stores the new reports of `batch`; returns the mark to acknowledge.
pub async fn ingest(
    shared: &Shared,
    site: &SiteId,
    batch: proto::ReportBatch,
    high_water: &mut HighWater,
    channel: &mut SiteChannel,
    channel_rev: &mut Option<Revision>,
) -> Result<Sequence, SessionError> {
    if batch.reports.len() > MAX_BATCH {
        return Err(SessionError::Protocol(format!(
            "report batch of {} reports; at most {MAX_BATCH} are allowed",
            batch.reports.len()
        )));
    }
    let mut items = Vec::with_capacity(batch.reports.len());
    for wire in batch.reports {
        let bytes = wire.encode_to_vec();
        let report = SiteReport::try_from(wire)
            .map_err(|e| SessionError::Protocol(format!("bad report: {e}")))?;
        if &report.site != site {
            return Err(SessionError::Protocol(format!(
                "report names site {} on a session of {site}",
                report.site
            )));
        }
        items.push((report.sequence, bytes));
    }
    let fresh = high_water.fresh(&items);
    let Some(last) = fresh.last().map(|(s, _)| *s) else {
        return Ok(high_water.mark());
    };
    let store = shared.tables.store();
    let key = state::site_key(site);
    let mut next = channel.clone();
    next.report_high_water = last;
    next.reports_dropped = next.reports_dropped.max(batch.dropped);
    next.last_seen_ms = super::now().as_millis();
    let mut txn = Txn::new().when(match channel_rev {
        Some(rev) => Compare::ModRevision(key.clone(), *rev),
        None => Compare::Absent(key.clone()),
    });
    for (seq, bytes) in &fresh {
        txn = txn.then(Op::Put {
            key: state::report_key(site, *seq),
            value: bytes.clone(),
        });
    }
    txn = txn.then(Op::Put {
        key: key.clone(),
        value: state::json(&next),
    });
    let response = store.txn(txn).await?;
    if !response.succeeded {
        return Err(SessionError::Protocol(
            "channel record changed under this session (replaced?)".into(),
        ));
    }
    *channel = next;
    *channel_rev = Some(response.revision);
    high_water.advance(last);
    Ok(high_water.mark())
}
