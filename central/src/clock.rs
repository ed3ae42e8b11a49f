//! Time, handed in. Central's services, channel and lifecycle read the time through a
//! [`Clock`] the composition root gives them, so no module reaches into another for it and a
//! test can run them on a clock of its own.

use std::fmt;

use meridian_common::ids::Timestamp;

/// Where the time comes from.
pub trait Clock: fmt::Debug + Send + Sync {
    /// Now, in milliseconds since the Unix epoch (UTC).
    fn now(&self) -> Timestamp;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        now()
    }
}

/// The wall clock as a [`Timestamp`], for binaries, tools and tests; central's parts use the
/// [`Clock`] they are given.
pub fn now() -> Timestamp {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    Timestamp::from_millis(ms)
}
