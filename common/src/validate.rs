//! Validation of specs and stored objects: one function per type, each returning *every*
//! problem found, not just the first.
//!
//! Typed fields (IDs, names, countries, models, windows, prefixes) are valid by construction;
//! these functions check what types cannot: bounds, cross-field rules and consistency. For
//! input that has not been typed yet (raw strings from a form, a protobuf message, a CLI
//! flag) the [`raw`] entry points turn a hostile value (empty, 10 MB, control characters)
//! into a [`Problem`] instead of a panic. Messages are short, say what is allowed, and never
//! echo a long value.
//!
//! A [`Problem`]'s `field` is a path into the checked value, like
//! `constraints.latency.max_rtt_ms`, `resources.accelerator.profile` or `expose[2].port`.
//!
//! This module is the stable facade: it only re-exports, and its paths stay as they are. The
//! code lives elsewhere in this crate: the problem types, [`raw`] and [`limits`] in `check/`,
//! and each validator with its concept (`workload/validate.rs`, `tenant/validate.rs`,
//! `site/validate.rs`, ...), which is its home.

pub use crate::check::raw::{
    parse_id, parse_mig_profile, parse_residency, validate_name, validate_window,
};
pub use crate::check::{Problem, ValidationError, limits, raw};
pub use crate::claim::validate_claim;
pub use crate::intent::validate_site_intent;
pub use crate::server::validate_server;
pub use crate::site::validate_site;
pub use crate::tenant::{validate_dataset, validate_region, validate_tenant};
pub use crate::workload::validate_workload_spec;
