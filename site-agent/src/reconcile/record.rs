//! The reconciler's progress record per server, kept in the agent's journal.
//!
//! The record is a ledger of what has been *done and reported*: each step's record change is
//! committed in the same transaction as the reports describing it
//! ([`crate::store::AgentStore::commit_progress`]). After a crash a step is therefore either
//! recorded and reported, or neither; the next reconcile observes the device, and where the
//! device shows a milestone the record lacks (the step ran, the commit did not), it records and
//! reports it once, without acting again.

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::ids::{Generation, RequestId, ServerId, TenantId, Timestamp, WorkloadId};
use meridian_common::model::{AllocationStatus, Server, ServerActionKind, ServerState};
use serde::{Deserialize, Serialize};

use crate::store::{AgentStore, AgentStoreError};

/// What the server was booted from for its allocations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BootedWith {
    /// The allocation's image, by virtual media (one-time CD boot).
    Image(String),
    /// Its own disk (allocations without an image).
    Disk,
}

/// A MIG device created (or adopted) for one GPU share of an allocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MigClaim {
    pub workload: WorkloadId,
    pub gpu: u32,
    pub profile: String,
    pub uuid: String,
}

/// The last status reported for an allocation on this server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AllocRecord {
    pub tenant: TenantId,
    pub status: AllocationStatus,
}

/// How far an operator's request on the server got, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionStage {
    /// Recorded and reported running; nothing asked of the device yet (it may be asked).
    Started,
    /// Recorded just before the device was asked: whether the BMC took the call is not
    /// confirmed. Never asked again: after a restart (or an unclear error) the request is
    /// finished from what the device shows, else failed as not confirmed.
    Issuing,
    /// The device took the call (confirmed); what is left is waiting for its effect.
    Issued,
    /// Done (final).
    Done,
    /// Gave up (final); never retried for this request.
    Failed,
}

impl ActionStage {
    /// Done or failed.
    pub fn is_final(self) -> bool {
        matches!(self, ActionStage::Done | ActionStage::Failed)
    }
}

/// An operator's request on the server: the durable "done for request N" record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub kind: ServerActionKind,
    pub phase: ActionStage,
    /// The step under way, what was done, or why it failed (as last reported).
    pub detail: String,
    /// When the agent began it (the injected clock).
    pub started_at: Timestamp,
    /// Whether the server was on when the request began (`None`: neither on nor off), to
    /// tell from the device whether an unconfirmed power request happened.
    #[serde(default)]
    pub was_on: Option<bool>,
}

/// How many final requests are kept beyond those the intent still carries: enough that a
/// re-applied (or late) intent never repeats a request, bounded so the record stays small.
pub const KEEP_FINAL_ACTIONS: usize = 64;

/// Forgets final requests the intent no longer carries, except the newest
/// [`KEEP_FINAL_ACTIONS`] final ones. Unfinished requests are always kept.
pub fn prune_actions(
    actions: &mut BTreeMap<RequestId, ActionRecord>,
    wanted: impl Fn(RequestId) -> bool,
) {
    let finals: Vec<RequestId> = actions
        .iter()
        .filter(|(_, a)| a.phase.is_final())
        .map(|(r, _)| *r)
        .collect();
    let keep_from = finals.len().saturating_sub(KEEP_FINAL_ACTIONS);
    for r in &finals[..keep_from] {
        if !wanted(*r) {
            actions.remove(r);
        }
    }
}

/// One server's progress.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRecord {
    /// The lifecycle state last reported.
    pub state: ServerState,
    /// What inspection found (`None` until inspected).
    pub inventory: Option<Server>,
    /// The image recorded as inserted by us.
    pub media: Option<String>,
    /// A one-time CD boot is recorded as armed.
    pub boot_armed: bool,
    /// What the server was recorded booted from for its allocations.
    pub booted: Option<BootedWith>,
    /// GPUs recorded with MIG mode in force.
    pub mig_on: BTreeSet<u32>,
    /// MIG devices owned by allocations, by slot key ([`super::desired::slot_key`]).
    pub mig: BTreeMap<String, MigClaim>,
    /// Allocations and their last reported status.
    pub allocations: BTreeMap<WorkloadId, AllocRecord>,
    /// Consecutive failed steps.
    pub failures: u32,
    /// Whether one of them was not transient.
    pub permanent_failure: bool,
    /// The last error, for the operator.
    pub last_error: Option<String>,
    /// The generation in force when the server failed; a newer one retries it.
    pub failed_generation: Generation,
    /// Operator requests on this server, by request number (final ones kept, bounded by
    /// [`prune_actions`], so a re-applied intent never repeats them).
    #[serde(default)]
    pub actions: BTreeMap<RequestId, ActionRecord>,
}

impl Default for ServerRecord {
    fn default() -> Self {
        ServerRecord {
            state: ServerState::Discovered,
            inventory: None,
            media: None,
            boot_armed: false,
            booted: None,
            mig_on: BTreeSet::new(),
            mig: BTreeMap::new(),
            allocations: BTreeMap::new(),
            failures: 0,
            permanent_failure: false,
            last_error: None,
            failed_generation: Generation::new(0),
            actions: BTreeMap::new(),
        }
    }
}

/// The key of a server's record in the progress tree.
pub fn key(server: &ServerId) -> Vec<u8> {
    format!("server/{server}").into_bytes()
}

/// Reads a server's record (the default, `Discovered`, when there is none).
pub fn load(store: &AgentStore, server: &ServerId) -> Result<ServerRecord, AgentStoreError> {
    match store.progress(&key(server))? {
        None => Ok(ServerRecord::default()),
        Some(raw) => serde_json::from_slice(&raw).map_err(|e| AgentStoreError::Corrupt {
            key: format!("reconcile/server/{server}"),
            reason: e.to_string(),
        }),
    }
}

/// The record as a progress entry for [`AgentStore::commit_progress`].
pub fn entry(server: &ServerId, record: &ServerRecord) -> (Vec<u8>, Option<Vec<u8>>) {
    (
        key(server),
        Some(serde_json::to_vec(record).expect("plain record serialises")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::model::PowerAction;

    fn action(phase: ActionStage) -> ActionRecord {
        ActionRecord {
            kind: ServerActionKind::Power(PowerAction::Reboot),
            phase,
            detail: String::new(),
            started_at: Timestamp::from_millis(1),
            was_on: Some(true),
        }
    }

    #[test]
    fn a_record_without_actions_still_reads_and_actions_round_trip() {
        // A record written before server actions existed.
        let mut old = serde_json::to_value(ServerRecord::default()).unwrap();
        old.as_object_mut().unwrap().remove("actions");
        let rec: ServerRecord = serde_json::from_value(old).unwrap();
        assert!(rec.actions.is_empty());
        let mut rec = ServerRecord::default();
        rec.actions
            .insert(RequestId::new(7), action(ActionStage::Issuing));
        let raw = serde_json::to_vec(&rec).unwrap();
        assert_eq!(serde_json::from_slice::<ServerRecord>(&raw).unwrap(), rec);
    }

    #[test]
    fn pruning_keeps_unfinished_wanted_and_the_newest_final_requests() {
        let mut actions = BTreeMap::new();
        for r in 1..=100 {
            actions.insert(RequestId::new(r), action(ActionStage::Done));
        }
        actions.insert(RequestId::new(3), action(ActionStage::Issued));
        // Request 5 is still in the intent.
        prune_actions(&mut actions, |r| r == RequestId::new(5));
        let kept: Vec<u64> = actions.keys().map(|r| r.get()).collect();
        assert_eq!(kept.len(), 2 + KEEP_FINAL_ACTIONS);
        assert!(kept.contains(&3) && kept.contains(&5) && kept.contains(&100));
        assert!(!kept.contains(&4) && !kept.contains(&36));
        assert!(kept.contains(&37));
    }
}
