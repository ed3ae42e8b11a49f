//! Report ingest: deduplicate on (site, sequence), store, acknowledge a high-water mark.
//!
//! The session machine (`meridian_common::channel::session::central`) checks a batch (size,
//! reports that convert, the session's site) and picks its new reports (sequence above the
//! site's mark). Those and the raised mark are written here in one store transaction, guarded
//! by the channel record's revision, so a report is stored exactly once even when an agent
//! replays a batch after a reconnect or a crash (or two sessions of the site overlap), and the
//! mark central acknowledges, once the transaction succeeded, never covers a report that is
//! not durable.
//!
//! Observed state rides in the same transaction: an `Inventory` report replaces the site's
//! servers in `servers/{site}/` (the servers it names as pending — managed by the agent, not
//! inspected yet — keep the record central has; servers in neither list are removed), and a
//! `ServerState` report updates one server's state. Ingest is the only writer of observed
//! state.
//!
//! Usage too: allocations and volumes the reports say started or ended start or end metered
//! spans, and the channel record keeps the newest observation time as the site's mark
//! ([`crate::metering`]).
//!
//! Measured RTTs too: the newest `Rtt` report per region of a batch rewrites the site's
//! `rtts/{site}/{region}` record ([`super::rtts`]), which the planner uses while it is fresh.
//! The channel record written with the batch also carries the session's current QUIC path RTT.

use meridian_common::channel::session::central::ReportWrite;
use meridian_common::ids::SiteId;
use meridian_common::model::SiteReport;

use super::Shared;
use meridian_store::schema::{self as state, SiteChannel, SiteRecord};
use meridian_store::tables::TableError;
use meridian_store::{Compare, Op, Revision, StoreError, Txn};

/// Why a report batch was not ingested.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// The batch breaks the protocol (the session is closed for it).
    #[error("{0}")]
    Protocol(String),
    #[error("store failed")]
    Table(#[from] TableError),
}

impl From<StoreError> for IngestError {
    fn from(e: StoreError) -> Self {
        IngestError::Table(e.into())
    }
}

/// Stores the new reports of a batch with the raised mark, in one transaction guarded by the
/// channel record's revision. Which reports are new, and the checks on the batch, are the
/// session machine's ([`CentralSession`]); this is the write.
///
/// [`CentralSession`]: meridian_common::channel::session::central::CentralSession
pub async fn store(
    shared: &Shared,
    site: &SiteId,
    write: ReportWrite,
    channel: &mut SiteChannel,
    channel_rev: &mut Option<Revision>,
    path_rtt_us: Option<u64>,
) -> Result<(), IngestError> {
    let mut observed = observed_ops(shared, site, write.reports.iter().map(|r| &r.report)).await?;
    observed.extend(
        super::rtts::ops(site, write.reports.iter().map(|r| &r.report))
            .map_err(|e| IngestError::Protocol(e.to_string()))?,
    );
    observed.extend(
        super::utilisation::ops(
            &shared.tables,
            site,
            write.reports.iter().map(|r| &r.report),
        )
        .await?,
    );
    observed.extend(
        super::action_reports::ops(
            &shared.tables,
            site,
            write.reports.iter().map(|r| &r.report),
        )
        .await?,
    );
    let mut next = channel.clone();
    if shared.config.metering {
        let (usage, mark) = crate::metering::record::ops(
            &shared.tables,
            site,
            channel.reports_through_ms,
            write.reports.iter().map(|r| &r.report),
        )
        .await?;
        observed.extend(usage);
        next.reports_through_ms = mark;
    } else if let Some(last) = write.reports.last() {
        next.reports_through_ms = next.reports_through_ms.max(last.report.at.as_millis());
    }
    let store = shared.tables.store();
    let key = state::site_key(site);
    next.report_high_water = write.high_water;
    next.reports_dropped = next.reports_dropped.max(write.dropped);
    next.last_seen_ms = shared.clock.now().as_millis();
    if let Some(us) = path_rtt_us {
        next.path_rtt_us = us;
    }
    let mut txn = Txn::new().when(match channel_rev {
        Some(rev) => Compare::ModRevision(key.clone(), *rev),
        None => Compare::Absent(key.clone()),
    });
    for report in write.reports {
        txn = txn.then(Op::Put {
            key: state::report_key(site, report.sequence),
            value: report.bytes,
        });
    }
    for op in observed {
        txn = txn.then(op);
    }
    txn = txn.then(Op::Put {
        key: key.clone(),
        value: next.encode(),
    });
    let response = store.txn(txn).await?;
    if !response.succeeded {
        return Err(IngestError::Protocol(
            "channel record changed under this session (replaced?)".into(),
        ));
    }
    *channel = next;
    *channel_rev = Some(response.revision);
    Ok(())
}

/// The writes to `servers/` that the fresh reports' observed state calls for. A report naming
/// servers of another site, or an invalid server, is refused like any bad report.
async fn observed_ops<'a>(
    shared: &Shared,
    site: &SiteId,
    reports: impl Iterator<Item = &'a SiteReport>,
) -> Result<Vec<Op>, IngestError> {
    use meridian_common::model::{ReportBody, Server};

    use meridian_store::tables::Table;

    // The newest state per server wins within a batch; an inventory resets the picture.
    let mut servers: Option<std::collections::BTreeMap<String, Server>> = None;
    // Servers the newest inventory names as managed but not inspected yet: kept as they are.
    let mut pending: std::collections::BTreeSet<String> = std::collections::BTreeSet::new();
    let mut states = Vec::new();
    for report in reports {
        match &report.body {
            ReportBody::Inventory {
                servers: list,
                pending: waiting,
            } => {
                let mut map = std::collections::BTreeMap::new();
                for s in list {
                    if &s.site != site {
                        return Err(IngestError::Protocol(format!(
                            "inventory of {site} names server {} of site {}",
                            s.id, s.site
                        )));
                    }
                    meridian_common::validate::validate_server(s).map_err(|e| {
                        IngestError::Protocol(format!("bad server {} in inventory: {e:?}", s.id))
                    })?;
                    map.insert(s.id.to_string(), s.clone());
                }
                servers = Some(map);
                pending = waiting.iter().map(ToString::to_string).collect();
                states.clear();
            }
            ReportBody::ServerState { server, state } => {
                states.push((server.clone(), state.clone()));
            }
            _ => {}
        }
    }
    if servers.is_none() && states.is_empty() {
        return Ok(Vec::new());
    }
    let table = shared.tables.servers();
    let current: std::collections::BTreeMap<String, Server> = table
        .list_all(Some(site), 1000)
        .await?
        .into_iter()
        .map(|s| (s.id.to_string(), s))
        .collect();
    let mut next = servers.clone().unwrap_or_else(|| current.clone());
    if servers.is_some() {
        for id in &pending {
            if let Some(s) = current.get(id) {
                next.entry(id.clone()).or_insert_with(|| s.clone());
            }
        }
    }
    for (server, state) in states {
        if let Some(s) = next.get_mut(server.as_str()) {
            s.state = state;
        }
    }
    let mut ops = Vec::new();
    for (id, s) in &next {
        if current.get(id) != Some(s) {
            ops.push(Table::<Server>::put_op(s).map_err(|e| IngestError::Protocol(e.to_string()))?);
        }
    }
    if servers.is_some() {
        for (id, s) in &current {
            if !next.contains_key(id) {
                ops.push(Op::Delete {
                    key: Table::<Server>::store_key(&format!("{}/{id}", s.site)),
                });
            }
        }
    }
    Ok(ops)
}
