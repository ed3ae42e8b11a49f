//! The reconciler's progress record per server, kept in the agent's journal.
//!
//! The record is a ledger of what has been *done and reported*: each step's record change is
//! committed in the same transaction as the reports describing it
//! ([`crate::store::AgentStore::commit_progress`]). After a crash a step is therefore either
//! recorded and reported, or neither; the next reconcile observes the device, and where the
//! device shows a milestone the record lacks (the step ran, the commit did not), it records and
//! reports it once, without acting again.

use std::collections::{BTreeMap, BTreeSet};

use meridian_common::ids::{Generation, ServerId, TenantId, WorkloadId};
use meridian_common::model::{AllocationStatus, Server, ServerState};
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
