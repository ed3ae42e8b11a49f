//! Stub.
use std::fmt;

use serde::Deserialize;

use super::{Check, Overrides, ScenarioError};
use crate::simfleet::Progress;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Spec {
    pub sites: usize,
}

#[derive(Debug, Clone)]
pub struct Outcome;

impl fmt::Display for Outcome {
    fn fmt(&self, _f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

pub async fn run(
    _spec: &Spec,
    _overrides: &Overrides,
    _progress: &Progress,
) -> Result<(Outcome, Vec<Check>), ScenarioError> {
    Err(ScenarioError::Invalid("not yet".into()))
}
