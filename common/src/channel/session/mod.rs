//! The agent channel's session logic as pure state machines, one per end: [`agent::AgentSession`]
//! (hello, pushes with generation fencing, reports until acknowledged, heartbeats, reconnect
//! back-off) and [`central::CentralSession`] (hello checks, newest-only pushes through the push
//! window, acknowledgement tracking, report deduplication, protocol violations).
//!
//! Neither machine touches a socket, a store or a clock. The IO layer (quinn and the journal
//! in `meridian-agent`, quinn and the store in `meridian-central`, an in-memory wire in the
//! tests) feeds each machine events with the current time, `handle(now, event)`, and then
//! executes what [`agent::AgentSession::poll_action`] / [`central::CentralSession::poll_action`]
//! hand out, in order: send a message, persist an intent, store reports, set the timer, close.
//! An action that needs an answer (persist, load reports, read the newest intent, ...) is
//! always the last one a call queues, and the machine does nothing else until the IO layer
//! feeds the answer back as an event, so executing actions one by one and feeding answers as
//! they come keeps the order the protocol needs (persist, then acknowledge).
//!
//! Each machine has one timer: `SetTimer(deadline)` replaces it, `CancelTimer` clears it; when
//! it expires the IO layer feeds `Timer`. Time is [`Millis`], milliseconds from an origin the
//! IO layer picks (its start), so tests run on a fake clock.

pub mod agent;
pub mod central;

use std::time::Duration;

use meridian_proto::v1 as proto;

use crate::ids::Generation;

/// A point in time: milliseconds since an origin the IO layer chooses (monotonic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// The time `d` after this one (saturating).
    #[must_use]
    pub fn after(self, d: Duration) -> Millis {
        Millis(
            self.0
                .saturating_add(d.as_millis().min(u128::from(u64::MAX)) as u64),
        )
    }

    /// How long after `earlier` this is (zero if it is not after it).
    pub fn since(self, earlier: Millis) -> Duration {
        Duration::from_millis(self.0.saturating_sub(earlier.0))
    }
}

impl std::fmt::Display for Millis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// What a reconciler concluded about a generation (the agent acknowledges it `APPLIED` or
/// `FAILED`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The site is as the generation asks.
    Applied(Generation),
    /// The generation cannot be brought about: why.
    Failed {
        generation: Generation,
        reason: String,
    },
}

impl Outcome {
    /// The generation it is about.
    pub fn generation(&self) -> Generation {
        match self {
            Outcome::Applied(g) => *g,
            Outcome::Failed { generation, .. } => *generation,
        }
    }
}

/// Longest failure reason central keeps, in characters.
pub const MAX_FAILED_REASON_CHARS: usize = 512;

/// One intent acknowledgement as central records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckUpdate {
    /// The generation acknowledged.
    pub generation: Generation,
    /// `RECEIVED`, `APPLIED`, `FAILED` (or an unknown status, which changes nothing).
    pub status: proto::IntentAckStatus,
    /// Why it failed (only kept with `FAILED`), at most [`MAX_FAILED_REASON_CHARS`].
    pub reason: String,
}

impl AckUpdate {
    /// From the wire (an unknown status reads as `UNSPECIFIED`; the reason is cut to
    /// [`MAX_FAILED_REASON_CHARS`]).
    pub fn from_wire(ack: &proto::IntentAck) -> Self {
        AckUpdate {
            generation: Generation::new(ack.generation),
            status: proto::IntentAckStatus::try_from(ack.status)
                .unwrap_or(proto::IntentAckStatus::Unspecified),
            reason: ack.reason.chars().take(MAX_FAILED_REASON_CHARS).collect(),
        }
    }
}

/// Which generations a site acknowledged. Every field only grows: an acknowledgement of an
/// older generation than one already recorded changes nothing but (for `FAILED`) the reason.
/// Central applies it to its view in the session and, inside its compare-and-swap loop, to
/// the stored channel record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Acked {
    /// Newest generation the agent holds (persisted).
    pub received: Generation,
    /// Newest generation the agent applied.
    pub applied: Generation,
    /// Newest generation the agent refused or could not apply.
    pub failed: Generation,
}

impl Acked {
    /// Raises the marks for `ack`; returns the failure reason to record, if `ack` is a
    /// `FAILED` one (recorded whatever the generation, as the latest word on failures).
    pub fn apply<'a>(&mut self, ack: &'a AckUpdate) -> Option<&'a str> {
        use proto::IntentAckStatus as S;
        match ack.status {
            S::Received => {
                self.received = self.received.max(ack.generation);
                None
            }
            S::Applied => {
                self.received = self.received.max(ack.generation);
                self.applied = self.applied.max(ack.generation);
                None
            }
            S::Failed => {
                self.failed = self.failed.max(ack.generation);
                Some(&ack.reason)
            }
            S::Unspecified => None,
        }
    }

    /// Raises the marks for what a `Hello` says the agent holds and applied.
    pub fn hello(&mut self, held: Generation, applied: Generation) {
        self.received = self.received.max(held);
        self.applied = self.applied.max(applied);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(g: u64, status: proto::IntentAckStatus) -> AckUpdate {
        AckUpdate {
            generation: Generation::new(g),
            status,
            reason: "why".into(),
        }
    }

    #[test]
    fn acked_generations_never_regress() {
        use proto::IntentAckStatus as S;
        let mut a = Acked::default();
        a.apply(&ack(5, S::Applied));
        a.apply(&ack(3, S::Received));
        a.apply(&ack(4, S::Applied));
        assert_eq!(a.received, Generation::new(5));
        assert_eq!(a.applied, Generation::new(5));
        assert_eq!(a.apply(&ack(2, S::Failed)), Some("why"));
        assert_eq!(a.failed, Generation::new(2));
        a.apply(&ack(1, S::Failed));
        assert_eq!(a.failed, Generation::new(2));
        a.hello(Generation::new(1), Generation::new(9));
        assert_eq!(
            (a.received, a.applied),
            (Generation::new(5), Generation::new(9))
        );
        assert_eq!(a.apply(&ack(7, S::Unspecified)), None);
        assert_eq!(a.received, Generation::new(5));
    }

    #[test]
    fn wire_acks_cut_long_reasons_and_read_unknown_statuses_as_unspecified() {
        let long = proto::IntentAck {
            generation: 3,
            status: 99,
            reason: "x".repeat(600),
        };
        let a = AckUpdate::from_wire(&long);
        assert_eq!(a.status, proto::IntentAckStatus::Unspecified);
        assert_eq!(a.reason.chars().count(), MAX_FAILED_REASON_CHARS);
    }

    #[test]
    fn millis_arithmetic_saturates() {
        assert_eq!(Millis(5).after(Duration::from_millis(7)), Millis(12));
        assert_eq!(Millis(5).since(Millis(9)), Duration::ZERO);
        assert_eq!(
            Millis(u64::MAX).after(Duration::from_secs(1)),
            Millis(u64::MAX)
        );
    }
}
