//! Validation of a [`NetworkClaim`] before it is stored.

use super::model::NetworkClaim;
use crate::check::{Problem, ValidationError, limits};

/// Semantic checks of a claim before it is stored.
pub fn validate_claim(claim: &NetworkClaim) -> Result<(), ValidationError> {
    let problem =
        |field: &str, message: String| Err(ValidationError(vec![Problem::new(field, message)]));
    match claim {
        NetworkClaim::Vni { vni, .. } if *vni == 0 || *vni > limits::MAX_VNI => problem(
            "vni",
            format!("must lie in 1..={}, got {vni}", limits::MAX_VNI),
        ),
        NetworkClaim::Table { table, .. } if limits::RESERVED_TABLES.contains(table) => {
            problem("table", format!("table {table} is reserved (0, 253-255)"))
        }
        NetworkClaim::Public { key, endpoint } if key.port == 0 || endpoint.port == 0 => {
            problem("port", "ports must lie in 1..=65535, got 0".into())
        }
        _ => Ok(()),
    }
}
