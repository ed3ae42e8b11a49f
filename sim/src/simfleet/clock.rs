//! One clock for a whole simulated fleet: central's services, lifecycle and channel and every
//! site reconciler of emulated hardware read the same [`ManualClock`], so a scenario moves
//! simulated hours forward in an instant and metering, windows and reports all agree on the
//! time.

use std::sync::Arc;

use meridian_agent::reconcile::{Clock as AgentClock, ManualClock};
use meridian_common::ids::Timestamp;

/// A [`ManualClock`] as central's clock.
#[derive(Debug, Clone)]
pub struct SharedClock(pub Arc<ManualClock>);

impl meridian_central::clock::Clock for SharedClock {
    fn now(&self) -> Timestamp {
        self.0.now()
    }
}
