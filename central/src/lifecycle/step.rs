//! The reservation lifecycle's decision for one workload, as a pure function of what the
//! store says about it and the time. The reconciler ([`super::Reconciler`]) carries the step
//! out; running the same step twice is harmless because every write is guarded by the
//! workload's revision.

use meridian_common::ids::Timestamp;
use meridian_common::model::{ReservationState, Workload};

/// What the sites of a placed workload have done with it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Progress {
    /// Every site of the placement has applied an intent that holds the allocation.
    pub applied: bool,
    /// The first site that has not, for the reason text.
    pub waiting_for: Option<String>,
}

/// The next thing to do for a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing now.
    Wait,
    /// Run the planner; approve on success, fail with its explanation otherwise.
    Place,
    /// Approved and applied, and its window has started: mark it active.
    Activate,
    /// Its window has ended: mark it completed and free its capacity.
    Complete,
    /// Mark it failed with this reason and free its capacity.
    Fail(String),
    /// Terminal but still holding capacity (canceled, or a crash between steps): free it.
    Release,
}

/// Decides the next step for `workload` at `now`; `placed` says whether it holds capacity.
pub fn step(workload: &Workload, placed: bool, progress: &Progress, now: Timestamp) -> Step {
    let window = workload.spec.window.as_ref();
    let started = window.is_none_or(|w| w.start() <= now);
    let ended = window.is_some_and(|w| w.end() <= now);
    match &workload.state {
        ReservationState::Pending if ended => {
            Step::Fail("its window ended before it could be placed; submit a new window".into())
        }
        ReservationState::Pending => Step::Place,
        ReservationState::Approved if !placed => Step::Place,
        ReservationState::Approved if ended => Step::Fail(format!(
            "its window ended before the allocation was applied{}",
            progress
                .waiting_for
                .as_ref()
                .map(|s| format!(" (waiting for site {s})"))
                .unwrap_or_default()
        )),
        ReservationState::Approved if started && progress.applied => Step::Activate,
        ReservationState::Approved => Step::Wait,
        ReservationState::Active if ended => Step::Complete,
        ReservationState::Active => Step::Wait,
        ReservationState::Completed
        | ReservationState::Canceled
        | ReservationState::Failed { .. }
            if placed =>
        {
            Step::Release
        }
        _ => Step::Wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meridian_common::ids::TimeWindow;

    fn workload(state: ReservationState, window: Option<(i64, i64)>) -> Workload {
        let mut w: Workload = serde_json::from_value(serde_json::json!({
            "id": "wl-1", "tenant": "acme", "created_at": 0, "state": "pending",
            "spec": {
                "name": "w", "kind": "batch_job", "replicas": 1, "priority": 0,
                "resources": {"accelerator": {"whole_gpus": {"model": "H100-80GB", "count": 1}},
                              "cpu_cores": 1, "memory_mib": 1024, "storage_mib": 0},
                "constraints": {}
            }
        }))
        .expect("test workload");
        w.state = state;
        w.spec.window = window.map(|(a, b)| {
            TimeWindow::new(Timestamp::from_millis(a), Timestamp::from_millis(b)).unwrap()
        });
        w
    }

    /// State, window, placed, progress, now, expected step.
    type Case<'a> = (
        ReservationState,
        Option<(i64, i64)>,
        bool,
        &'a Progress,
        i64,
        Step,
    );

    #[test]
    fn every_state_and_time_gets_the_expected_step() {
        let at = Timestamp::from_millis;
        let applied = Progress {
            applied: true,
            waiting_for: None,
        };
        let waiting = Progress {
            applied: false,
            waiting_for: Some("fra-1".into()),
        };
        use ReservationState::*;
        let cases: Vec<Case> = vec![
            (Pending, None, false, &waiting, 5, Step::Place),
            (Pending, Some((10, 20)), false, &waiting, 5, Step::Place),
            (
                Pending,
                Some((10, 20)),
                false,
                &waiting,
                20,
                Step::Fail(
                    "its window ended before it could be placed; submit a new window".into(),
                ),
            ),
            (Approved, None, true, &waiting, 5, Step::Wait),
            (Approved, None, true, &applied, 5, Step::Activate),
            (Approved, None, false, &applied, 5, Step::Place),
            (Approved, Some((10, 20)), true, &applied, 5, Step::Wait),
            (Approved, Some((10, 20)), true, &applied, 10, Step::Activate),
            (
                Approved,
                Some((10, 20)),
                true,
                &waiting,
                25,
                Step::Fail(
                    "its window ended before the allocation was applied (waiting for site fra-1)"
                        .into(),
                ),
            ),
            (Active, None, true, &applied, 5, Step::Wait),
            (Active, Some((10, 20)), true, &applied, 19, Step::Wait),
            (Active, Some((10, 20)), true, &applied, 20, Step::Complete),
            (Canceled, None, true, &applied, 5, Step::Release),
            (Canceled, None, false, &applied, 5, Step::Wait),
            (Completed, None, true, &applied, 5, Step::Release),
            (
                Failed { reason: "x".into() },
                None,
                false,
                &applied,
                5,
                Step::Wait,
            ),
        ];
        for (state, window, placed, progress, now, expected) in cases {
            let w = workload(state.clone(), window);
            assert_eq!(
                step(&w, placed, progress, at(now)),
                expected,
                "{state:?} window {window:?} placed {placed} at {now}"
            );
        }
    }
}
