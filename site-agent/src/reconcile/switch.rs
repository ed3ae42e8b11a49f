//! A leaf switch as a [`Resource`]: its want is what the intent asks of it now
//! ([`fabric::fabric_want`], windows applied), its observation the differences between the
//! switch's applied configuration and that want (read through its [`SwitchFabric`] driver),
//! the plan applies the whole rendering when anything differs, and the driver applies it as one
//! revision. Drift made behind the agent's back is found at every resync and put back.
//!
//! [`SwitchFabric`]: meridian_drivers::SwitchFabric

use async_trait::async_trait;
use meridian_common::ids::{Generation, Timestamp};
use meridian_common::model::{Severity, SiteIntent};
use meridian_drivers::ChangeReport;

use super::fabric::{self, FabricWant, FabricWantError, ManagedSwitch};
use super::resource::{Cx, NodeBook, Resource};
use super::{Action, ReconcileError};

/// What the held intent asks of one switch at one instant.
#[derive(Debug)]
pub struct SwitchWant {
    pub generation: Generation,
    /// The rendering, or why the intent cannot be rendered with this switch's layout.
    pub fabric: Result<FabricWant, FabricWantError>,
}

/// The next step for a switch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwitchStep {
    /// The switch carries the want: nothing to send.
    Converged,
    /// Apply the whole rendering; these differences were seen.
    Apply { drift: Vec<String> },
}

/// The plan for a switch: apply when anything differs. Pure.
pub fn plan(drift: &[String]) -> SwitchStep {
    if drift.is_empty() {
        SwitchStep::Converged
    } else {
        SwitchStep::Apply {
            drift: drift.to_vec(),
        }
    }
}

/// One managed switch and what its worker remembers between passes.
#[derive(Debug)]
pub(crate) struct SwitchInstance {
    switch: ManagedSwitch,
    resource: String,
    /// The error policy's bookkeeping, how the current pass ended and the events to report.
    book: NodeBook,
}

impl SwitchInstance {
    pub(crate) fn new(switch: ManagedSwitch) -> Self {
        SwitchInstance {
            resource: format!("switch/{}", switch.name),
            switch,
            book: NodeBook::default(),
        }
    }
}

fn switch_error(
    step: &'static str,
) -> impl FnOnce(meridian_drivers::FabricError) -> ReconcileError {
    move |source| ReconcileError::Switch { step, source }
}

#[async_trait]
impl Resource for SwitchInstance {
    type Want = SwitchWant;
    type Observed = Vec<String>;
    type Step = SwitchStep;
    const KIND: &'static str = "switch";
    const DRIVER: &'static str = "nvue";

    fn step_driver(step: &SwitchStep) -> Option<&'static str> {
        matches!(step, SwitchStep::Apply { .. }).then_some(Self::DRIVER)
    }

    fn want(&self, intent: Option<&SiteIntent>, now: Timestamp) -> Option<SwitchWant> {
        let intent = intent?;
        Some(SwitchWant {
            generation: intent.generation,
            fabric: fabric::fabric_want(intent, &self.switch.layout, now),
        })
    }

    fn next_change(want: &SwitchWant) -> Option<Timestamp> {
        want.fabric.as_ref().ok().and_then(|f| f.next_change)
    }

    async fn observe(
        &mut self,
        want: &SwitchWant,
        _cx: &Cx<'_>,
    ) -> Result<Vec<String>, ReconcileError> {
        self.book.start_pass();
        let fabric = want.fabric.as_ref().map_err(|e| e.clone())?;
        for (server, tenants) in &fabric.shared_servers {
            let names: Vec<&str> = tenants.iter().map(|t| t.as_str()).collect();
            self.book.events.push((
                Severity::Warning,
                format!(
                    "server {server} carries tenants {} at once: its access port \
                     stays out of every tenant VLAN",
                    names.join(", ")
                ),
            ));
        }
        self.switch
            .driver
            .drift(&fabric.spec)
            .await
            .map_err(switch_error("read the applied fabric"))
    }

    fn plan(&self, _want: &SwitchWant, drift: &Vec<String>) -> SwitchStep {
        plan(drift)
    }

    async fn execute(
        &mut self,
        step: SwitchStep,
        want: &SwitchWant,
        _drift: Vec<String>,
        _cx: &Cx<'_>,
    ) -> Result<Action, ReconcileError> {
        let report = match (&step, &want.fabric) {
            (SwitchStep::Apply { drift }, Ok(fabric)) => {
                tracing::debug!(switch = %self.switch.name, ?drift, "switch differs from the intent");
                self.switch
                    .driver
                    .apply(&fabric.spec)
                    .await
                    .map_err(switch_error("apply the tenant fabric"))?
            }
            _ => ChangeReport::default(),
        };
        self.book.converged(
            want.generation,
            report.changed().then(|| report.to_string()),
        );
        Ok(Action::AwaitChange)
    }

    fn failed(&mut self, want: &SwitchWant, error: ReconcileError, cx: &Cx<'_>) -> Action {
        let action = self
            .book
            .failed(&error, want.generation, &cx.env.config.retry);
        tracing::warn!(switch = %self.switch.name, error = %meridian_common::telemetry::error_chain(&error), failures = self.book.failures(), "switch not in line with the intent");
        action
    }

    fn report(&mut self, _want: &SwitchWant, _action: Action, cx: &Cx<'_>) {
        cx.report_events(&self.resource, &mut self.book.events);
        if let Some(status) = self.book.outcome.take() {
            let name = self.switch.name.clone();
            cx.env.status.send_modify(|s| {
                s.switches.insert(name, status);
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_switch_is_applied_only_when_something_differs() {
        assert_eq!(plan(&[]), SwitchStep::Converged);
        let drift = vec!["vrf.acme: missing".to_owned()];
        assert_eq!(
            plan(&drift),
            SwitchStep::Apply {
                drift: drift.clone()
            }
        );
    }

    #[test]
    fn an_unrenderable_intent_is_a_permanent_error() {
        let e = ReconcileError::SwitchLayout(FabricWantError::TooManyTenants(4_000));
        assert!(!e.is_transient());
    }
}
