//! The reservation lifecycle of a workload, as a state machine.
//!
//! `Pending -> Approved | Failed | Canceled`, `Approved -> Active | Failed | Canceled`,
//! `Active -> Completed | Failed | Canceled`; `Completed`, `Canceled` and `Failed` are
//! terminal. [`ReservationState::transition`] is the only sanctioned way to move, and it
//! refuses every other step (including staying put) with an error naming both states.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a workload's reservation is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReservationState {
    /// Submitted, not yet placed.
    Pending,
    /// Placed; capacity is held for its window.
    Approved,
    /// Running.
    Active,
    /// Ran to the end of its window or finished.
    Completed,
    /// Canceled by the tenant or an operator.
    Canceled,
    /// Could not be placed or could not run.
    Failed {
        /// Why.
        reason: String,
    },
}

/// A refused state change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a reservation cannot go from {from} to {to}")]
pub struct TransitionError {
    /// The current state's name.
    pub from: &'static str,
    /// The requested state's name.
    pub to: &'static str,
}

impl ReservationState {
    /// The state's name (`pending`, `failed`, ...), without any reason.
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Canceled => "canceled",
            Self::Failed { .. } => "failed",
        }
    }

    /// Whether no transition leaves this state.
    pub const fn is_terminal(&self) -> bool {
        matches!(self, Self::Completed | Self::Canceled | Self::Failed { .. })
    }

    /// Whether the lifecycle allows going from `self` to `next`.
    pub const fn can_transition_to(&self, next: &ReservationState) -> bool {
        use ReservationState::*;
        matches!(
            (self, next),
            (Pending, Approved | Failed { .. } | Canceled)
                | (Approved, Active | Failed { .. } | Canceled)
                | (Active, Completed | Failed { .. } | Canceled)
        )
    }

    /// Moves to `next`, or says why not.
    pub fn transition(self, next: ReservationState) -> Result<ReservationState, TransitionError> {
        if self.can_transition_to(&next) {
            Ok(next)
        } else {
            Err(TransitionError {
                from: self.name(),
                to: next.name(),
            })
        }
    }
}

impl fmt::Display for ReservationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::ReservationState::*;
    use super::*;

    fn failed() -> ReservationState {
        Failed {
            reason: "no capacity".into(),
        }
    }

    #[test]
    fn transition_table() {
        let all = [Pending, Approved, Active, Completed, Canceled, failed()];
        let allowed = [
            (Pending, Approved),
            (Pending, failed()),
            (Pending, Canceled),
            (Approved, Active),
            (Approved, failed()),
            (Approved, Canceled),
            (Active, Completed),
            (Active, failed()),
            (Active, Canceled),
        ];
        for from in &all {
            for to in &all {
                let want = allowed.contains(&(from.clone(), to.clone()));
                assert_eq!(from.can_transition_to(to), want, "{from} -> {to}");
                assert_eq!(from.clone().transition(to.clone()).is_ok(), want);
            }
        }
        for terminal in [Completed, Canceled, failed()] {
            assert!(terminal.is_terminal());
            assert!(all.iter().all(|to| !terminal.can_transition_to(to)));
        }
    }

    #[test]
    fn error_names_both_states() {
        let err = Completed.transition(Active).unwrap_err();
        assert_eq!(
            err,
            TransitionError {
                from: "completed",
                to: "active"
            }
        );
        assert_eq!(
            err.to_string(),
            "a reservation cannot go from completed to active"
        );
        let err = failed().transition(Pending).unwrap_err();
        assert_eq!((err.from, err.to), ("failed", "pending"));
    }

    #[test]
    fn happy_path() {
        let s = Pending.transition(Approved).unwrap();
        let s = s.transition(Active).unwrap();
        assert_eq!(s.transition(Completed).unwrap(), Completed);
    }
}
