//! The session state machines' clock at both ends: milliseconds since the session (or the
//! agent's loop) started, on tokio's clock, so a paused test runtime pauses it too.

use std::time::Duration;

use meridian_common::channel::session::Millis;
use tokio::time::Instant;

/// Milliseconds since `start`, as the state machines of `meridian_common::channel::session`
/// count time, and the machine's one timer as a future.
#[derive(Debug, Clone, Copy)]
pub struct SessionClock(Instant);

impl SessionClock {
    /// A clock whose origin is now.
    pub fn start() -> Self {
        SessionClock(Instant::now())
    }

    /// Now, since the origin.
    pub fn now(self) -> Millis {
        Millis(self.0.elapsed().as_millis().min(u128::from(u64::MAX)) as u64)
    }

    /// Completes at `deadline`; never without one.
    pub async fn expiry(self, deadline: Option<Millis>) {
        match deadline {
            Some(t) => tokio::time::sleep_until(self.0 + Duration::from_millis(t.0)).await,
            None => std::future::pending().await,
        }
    }
}
