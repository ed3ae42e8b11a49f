//! Operators' server-action records and the site intent: which requests the site's agent must
//! still carry out, the intent action for each, and an agent's progress report folded into
//! its record. The API that creates them is [`crate::services::actions`].

use meridian_common::ids::{ServerId, SiteId};
use meridian_common::model::{ActionPhase, PowerAction, ServerAction, ServerActionKind};
use meridian_proto::v1 as proto;
use meridian_store::Tables;
use meridian_store::tables::TableError;

/// The intent action that carries out an agent request; `None` for central's own (drain,
/// undrain) and for records that do not decode.
pub fn intent_action(record: &proto::ServerActionRecord) -> Option<ServerAction> {
    let kind = match proto::ServerOp::try_from(record.op).ok()? {
        proto::ServerOp::Reboot => ServerActionKind::Power(PowerAction::Reboot),
        proto::ServerOp::PowerCycle => ServerActionKind::Power(PowerAction::Cycle),
        proto::ServerOp::Reprovision => ServerActionKind::Clean,
        proto::ServerOp::Drain | proto::ServerOp::Undrain | proto::ServerOp::Unspecified => {
            return None;
        }
    };
    Some(ServerAction {
        server: ServerId::parse(&record.server).ok()?,
        action: kind,
        request: record.request.into(),
    })
}

/// Whether the record's request is still to be carried out by the agent.
pub fn pending_at_agent(record: &proto::ServerActionRecord) -> bool {
    let fin = proto::ActionPhase::try_from(record.phase)
        .is_ok_and(|p| matches!(p, proto::ActionPhase::Done | proto::ActionPhase::Failed));
    !fin && intent_action(record).is_some()
}

/// The agent's progress report folded into the stored record: the new record, or `None`
/// when it changes nothing (or the record is final already: a final request never moves).
pub fn fold_report(
    record: &proto::ServerActionRecord,
    phase: ActionPhase,
    detail: &str,
    at_ms: i64,
) -> Option<proto::ServerActionRecord> {
    let now = match phase {
        ActionPhase::Running => proto::ActionPhase::Running,
        ActionPhase::Done => proto::ActionPhase::Done,
        ActionPhase::Failed => proto::ActionPhase::Failed,
    } as i32;
    let was_final = record.finished_at != 0;
    if was_final || (record.phase == now && record.detail == detail) {
        return None;
    }
    let mut next = record.clone();
    next.phase = now;
    next.detail = detail.to_owned();
    if phase.is_final() {
        next.finished_at = at_ms.max(1);
    }
    Some(next)
}

/// The requests of `site` its agent must still carry out, as intent actions.
pub async fn pending(tables: &Tables, site: &SiteId) -> Result<Vec<ServerAction>, TableError> {
    Ok(tables
        .actions()
        .list_all(Some(site), 1000)
        .await?
        .iter()
        .filter(|r| pending_at_agent(r))
        .filter_map(intent_action)
        .collect())
}

/// [`pending`] for every site, in one read of the table (a full publish).
pub async fn pending_by_site(
    tables: &Tables,
) -> Result<std::collections::BTreeMap<SiteId, Vec<ServerAction>>, TableError> {
    let mut out: std::collections::BTreeMap<SiteId, Vec<ServerAction>> = Default::default();
    for r in tables.actions().list_all(None, 1000).await? {
        if let (true, Some(action), Ok(site)) = (
            pending_at_agent(&r),
            intent_action(&r),
            SiteId::parse(&r.site),
        ) {
            out.entry(site).or_default().push(action);
        }
    }
    Ok(out)
}
