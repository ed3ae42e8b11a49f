//! Lossless conversions between the domain model ([`crate::model`]) and its protobuf twin
//! ([`meridian_proto::v1`]).
//!
//! # Convention
//!
//! Both directions take their input **by value** (strings and lists are moved, not cloned):
//!
//! - `impl From<model::X> for proto::X`: infallible; every model value has a wire form.
//! - `impl TryFrom<proto::X> for model::X` with `Error = ConvertError`: the *structural*
//!   check. Required message fields and oneofs must be present; enums must be known and not
//!   `*_UNSPECIFIED`; IDs, names, GPU models, MIG profiles (against the GPU model where the
//!   message carries one), jurisdictions, residency terms, IPv4 addresses and prefixes are
//!   parsed with the model's own parsers; numbers wider on the wire than in the model are
//!   range-checked; repeated fields the model holds as sets (certifications, residency terms,
//!   rejection reasons) must not repeat a value. Nothing is defaulted silently.
//!
//! The *semantic* rules (bounds, cross-field consistency) are not repeated here: they live in
//! [`crate::validate`], which a caller runs on the converted value:
//!
//! ```
//! use meridian_common::convert::ConvertError;
//! use meridian_common::model::WorkloadSpec;
//! use meridian_common::validate::{ValidationError, validate_workload_spec};
//! use meridian_proto::v1 as proto;
//!
//! fn accept(wire: proto::WorkloadSpec) -> Result<WorkloadSpec, ValidationError> {
//!     let spec = WorkloadSpec::try_from(wire)?; // ConvertError -> ValidationError
//!     validate_workload_spec(&spec)?;
//!     Ok(spec)
//! }
//! # let _ = accept;
//! ```
//!
//! A [`ConvertError`] names the failing field by its protobuf path from the top message,
//! e.g. `spec.constraints.latency.max_rtt_ms` or `allocations[3].slot.mig.profile` (a oneof
//! member is named by its field, an absent oneof by the oneof's name). Nested conversions
//! build that path with [`AtField::at`] and [`AtField::at_index`]. Messages never echo a long
//! input.
//!
//! This module is the stable facade: it only re-exports, and its paths stay as they are. The
//! code lives elsewhere in this crate: the error types and the helpers every conversion uses
//! in `wire/`, and each conversion with its concept (`workload/wire.rs`, `tenant/wire.rs`,
//! `site/wire.rs`, ...), which is its home.

pub use crate::wire::{AtField, ConvertError, ConvertProblem};
