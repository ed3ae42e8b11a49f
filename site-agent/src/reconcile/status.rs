//! What the workers last reported of each resource: the site's status, which the coordinator
//! reads to decide when a generation is applied or failed. Plain data.

use std::collections::BTreeMap;

use meridian_common::ids::{Generation, RequestId, ServerId, Timestamp};
use meridian_common::model::ServerState;

/// One server as its worker last left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerStatus {
    /// The generation its last reconcile worked towards.
    pub generation: Generation,
    /// The clock when it computed the want.
    pub at: Timestamp,
    pub state: ServerState,
    /// Its last reconcile found nothing to do.
    pub converged: bool,
    /// It failed and the intent wants something of it.
    pub blocking_failure: Option<String>,
    /// Allocations of the intent that cannot be put in place on it, with why.
    pub rejected: Vec<String>,
    /// Operator requests not finished yet (requested, or under way), with what they are at;
    /// the server is not converged while any is.
    pub actions: BTreeMap<RequestId, String>,
    /// Reconciles done.
    pub reconciles: u64,
}

/// One switch as its worker last left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwitchStatus {
    /// The generation its last apply worked towards.
    pub generation: Generation,
    /// The switch carries what that generation asks of it now.
    pub converged: bool,
    /// It could not be brought there (after the error policy's attempts), with why.
    pub failure: Option<String>,
    /// Applies that changed the switch.
    pub changes: u64,
}

/// The gateway node as its worker last left it: the same fields as a switch's.
pub type GatewayStatus = SwitchStatus;

/// Every server's, switch's and the gateway's status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteStatus {
    pub servers: BTreeMap<ServerId, ServerStatus>,
    /// By switch name.
    pub switches: BTreeMap<String, SwitchStatus>,
    /// The gateway node, when the agent manages one.
    pub gateway: Option<GatewayStatus>,
    /// The container/VM hosts, by server.
    pub hosts: BTreeMap<ServerId, GatewayStatus>,
    /// The storage array, when the agent manages one.
    pub storage: Option<GatewayStatus>,
}

impl SiteStatus {
    /// Whether every server converged on `generation` at or after `at` (failed servers the
    /// intent needs count as settled, not converged).
    pub fn settled(&self, generation: Generation, at: Timestamp, servers: usize) -> bool {
        self.servers.len() == servers
            && self.servers.values().all(|s| {
                s.generation == generation
                    && s.at >= at
                    && (s.converged || s.blocking_failure.is_some())
                    && s.actions.is_empty()
            })
    }
}
