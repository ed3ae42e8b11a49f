//! Jurisdictions, jurisdiction groups and residency rules: the model in [`model`], the
//! parsers every message naming a country or a residency rule uses in `wire.rs`. Raw residency
//! input is checked by `check/raw.rs`.

pub mod model;
pub(crate) mod wire;

pub(crate) use model::shown;
pub use model::{Jurisdiction, JurisdictionError, JurisdictionGroup, ResidencyRule, ResidencyTerm};
