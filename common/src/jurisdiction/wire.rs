//! The parsers of jurisdictions and residency rules that every message naming a country or a
//! residency rule uses.

use super::model::{Jurisdiction, ResidencyRule, ResidencyTerm};
use crate::wire::{ConvertError, invalid, unique_with};

/// An ISO 3166-1 alpha-2 country code.
pub(crate) fn jurisdiction(raw: &str) -> Result<Jurisdiction, ConvertError> {
    Jurisdiction::parse(raw).map_err(|e| invalid(e).into())
}

/// Residency terms (a set: a term equal to an earlier one, even spelt differently such as
/// `DE` and `country:DE`, is a duplicate).
pub(crate) fn residency(raw: Vec<String>, field: &str) -> Result<ResidencyRule, ConvertError> {
    let terms = unique_with(raw, field, "", |s| {
        ResidencyTerm::parse(&s).map_err(|e| invalid(e).into())
    })?;
    Ok(ResidencyRule { terms })
}

/// A residency rule's wire form (its terms in order, `country:NA` for Namibia).
pub(crate) fn residency_to_wire(rule: ResidencyRule) -> Vec<String> {
    rule.terms.iter().map(ToString::to_string).collect()
}
