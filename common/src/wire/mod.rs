//! The conversion machinery every concept's `wire.rs` uses: [`ConvertError`] and its
//! [`ConvertProblem`], field paths ([`AtField`]), and helpers for required, optional and
//! repeated message fields, typed IDs, narrow integers and enums (the [`WireEnum`] trait and
//! the `wire_enum!` and `failable_state!` macros), plus the conversion of
//! [`TimeWindow`](crate::ids::TimeWindow).
//!
//! The public paths of the error types are [`crate::convert`]'s, where the conventions every
//! conversion follows are written down. The conversions themselves live with their concept
//! (`workload/wire.rs`, `site/wire.rs`, ...); `tests.rs` here holds the round trips that span
//! several concepts and the tests of this machinery.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use meridian_proto::v1 as proto;

use crate::check::{Problem, ValidationError};
use crate::ids::{TimeWindow, Timestamp, TypedId};

#[cfg(test)]
mod tests;

/// What is wrong with one field of a protobuf message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConvertProblem {
    /// A required message field or a oneof is absent.
    #[error("is required but absent")]
    Missing,
    /// An enum is `*_UNSPECIFIED` (0).
    #[error("is unspecified (0); set one of its values")]
    Unspecified,
    /// An enum number this version does not know.
    #[error("has unknown enum value {0}")]
    UnknownEnum(i32),
    /// A value that does not parse (ID, name, model, profile, country, address, ...).
    #[error("{0}")]
    Invalid(String),
    /// A repeated entry of a field the model holds as a set or map.
    #[error("repeats an earlier entry; list each value once")]
    Duplicate,
    /// A number wider on the wire than in the model that does not fit.
    #[error("{value} is out of range; at most {max} is allowed")]
    OutOfRange {
        /// The value received.
        value: u64,
        /// The largest value the model can hold.
        max: u64,
    },
}

/// A protobuf message that does not convert into the model: where, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConvertError {
    /// Protobuf path of the field from the top message (`spec.expose[0].port`); empty when the
    /// converted value itself is at fault (e.g. an unspecified top-level enum).
    pub field: String,
    /// What is wrong.
    pub problem: ConvertProblem,
}

impl ConvertError {
    /// An error at the value being converted; callers above add the path.
    pub fn new(problem: ConvertProblem) -> Self {
        Self {
            field: String::new(),
            problem,
        }
    }

    /// The same error seen from the message that holds `parent` (`x` becomes `parent.x`).
    #[must_use]
    pub fn at(mut self, parent: &str) -> Self {
        if self.field.is_empty() {
            self.field = parent.to_owned();
        } else if self.field.starts_with('[') {
            self.field.insert_str(0, parent);
        } else {
            self.field = format!("{parent}.{}", self.field);
        }
        self
    }

    /// The same error seen from the message whose repeated field `parent` holds it at
    /// `index` (`x` becomes `parent[index].x`).
    #[must_use]
    pub fn at_index(self, parent: &str, index: usize) -> Self {
        self.at(&format!("{parent}[{index}]"))
    }
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.problem)
        } else {
            write!(f, "{}: {}", self.field, self.problem)
        }
    }
}

impl From<ConvertProblem> for ConvertError {
    fn from(problem: ConvertProblem) -> Self {
        Self::new(problem)
    }
}

impl From<ConvertError> for Problem {
    fn from(e: ConvertError) -> Self {
        Problem::new(e.field, e.problem.to_string())
    }
}

impl From<ConvertError> for ValidationError {
    fn from(e: ConvertError) -> Self {
        ValidationError(vec![e.into()])
    }
}

/// Adds the parent's field to the path of an error on its way up.
pub trait AtField<T> {
    /// Prefixes the error's path with `field`.
    fn at(self, field: &str) -> Result<T, ConvertError>;
    /// Prefixes the error's path with `field[index]`.
    fn at_index(self, field: &str, index: usize) -> Result<T, ConvertError>;
}

impl<T, E: Into<ConvertError>> AtField<T> for Result<T, E> {
    fn at(self, field: &str) -> Result<T, ConvertError> {
        self.map_err(|e| e.into().at(field))
    }

    fn at_index(self, field: &str, index: usize) -> Result<T, ConvertError> {
        self.map_err(|e| e.into().at_index(field, index))
    }
}

/// The `Invalid` problem carrying a parser's own (non-echoing) message.
pub(crate) fn invalid(e: impl fmt::Display) -> ConvertProblem {
    ConvertProblem::Invalid(e.to_string())
}

// ---------------------------------------------------------------------------------------------
// Messages: required, optional, repeated
// ---------------------------------------------------------------------------------------------

/// A required message field: absent is [`ConvertProblem::Missing`] at `field`.
pub(crate) fn required<P, M>(value: Option<P>, field: &str) -> Result<M, ConvertError>
where
    M: TryFrom<P, Error = ConvertError>,
{
    let value = value.ok_or(ConvertProblem::Missing).at(field)?;
    M::try_from(value).at(field)
}

/// An optional message field: absent converts to `None`.
pub(crate) fn optional<P, M>(value: Option<P>, field: &str) -> Result<Option<M>, ConvertError>
where
    M: TryFrom<P, Error = ConvertError>,
{
    value.map(M::try_from).transpose().at(field)
}

/// A repeated field converted entry by entry with `f`; errors name `field[i]`.
pub(crate) fn list_with<P, M>(
    items: Vec<P>,
    field: &str,
    mut f: impl FnMut(P) -> Result<M, ConvertError>,
) -> Result<Vec<M>, ConvertError> {
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| f(item).at_index(field, i))
        .collect()
}

/// A repeated message field.
pub(crate) fn list<P, M>(items: Vec<P>, field: &str) -> Result<Vec<M>, ConvertError>
where
    M: TryFrom<P, Error = ConvertError>,
{
    list_with(items, field, M::try_from)
}

/// Model values to their wire form, in order.
pub(crate) fn to_wire<M, P: From<M>>(items: impl IntoIterator<Item = M>) -> Vec<P> {
    items.into_iter().map(P::from).collect()
}

/// A collection that refuses a second entry with the same key.
pub(crate) trait UniqueInsert<T>: Default {
    /// Inserts `item`; `false` (and no change) when its key is already present.
    fn insert_unique(&mut self, item: T) -> bool;
}

impl<T: Ord> UniqueInsert<T> for BTreeSet<T> {
    fn insert_unique(&mut self, item: T) -> bool {
        self.insert(item)
    }
}

impl<K: Ord, V> UniqueInsert<(K, V)> for BTreeMap<K, V> {
    fn insert_unique(&mut self, (key, value): (K, V)) -> bool {
        if self.contains_key(&key) {
            return false;
        }
        self.insert(key, value);
        true
    }
}

/// A repeated field the model holds as a set or map: each entry is converted with `f`, and an
/// entry whose key repeats an earlier one is [`ConvertProblem::Duplicate`] at `field[i]`, or
/// at `field[i].key_field` when `key_field` is not empty.
pub(crate) fn unique_with<P, T, C: UniqueInsert<T>>(
    items: Vec<P>,
    field: &str,
    key_field: &str,
    mut f: impl FnMut(P) -> Result<T, ConvertError>,
) -> Result<C, ConvertError> {
    let mut out = C::default();
    for (i, item) in items.into_iter().enumerate() {
        let value = f(item).at_index(field, i)?;
        if !out.insert_unique(value) {
            let dup = ConvertError::new(ConvertProblem::Duplicate);
            let dup = if key_field.is_empty() {
                dup
            } else {
                dup.at(key_field)
            };
            return Err(dup.at_index(field, i));
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Scalars
// ---------------------------------------------------------------------------------------------

/// Any typed ID or [`Name`](crate::ids::Name), parsed with its own rule.
pub(crate) fn id<T: TypedId>(raw: &str) -> Result<T, ConvertError> {
    T::parse(raw).map_err(|e| invalid(e).into())
}

/// A list of typed IDs.
pub(crate) fn ids<T: TypedId>(raw: Vec<String>, field: &str) -> Result<Vec<T>, ConvertError> {
    list_with(raw, field, |s| id(&s))
}

/// A model integer narrower than the wire's `uint32`.
pub(crate) trait Narrow: TryFrom<u32> + Into<u32> {
    /// The largest value.
    const MAX: Self;
}

impl Narrow for u8 {
    const MAX: Self = u8::MAX;
}

impl Narrow for u16 {
    const MAX: Self = u16::MAX;
}

/// A `uint32` narrowed to the model's width; too large is [`ConvertProblem::OutOfRange`].
pub(crate) fn narrow<N: Narrow>(value: u32) -> Result<N, ConvertError> {
    N::try_from(value).map_err(|_| {
        ConvertProblem::OutOfRange {
            value: value.into(),
            max: u64::from(N::MAX.into()),
        }
        .into()
    })
}

// ---------------------------------------------------------------------------------------------
// Time windows
// ---------------------------------------------------------------------------------------------

impl From<TimeWindow> for proto::TimeWindow {
    fn from(w: TimeWindow) -> Self {
        Self {
            start: w.start().as_millis(),
            end: w.end().as_millis(),
        }
    }
}

impl TryFrom<proto::TimeWindow> for TimeWindow {
    type Error = ConvertError;

    /// `end` must be after `start` (the model's invariant); the length limit is validation's.
    fn try_from(w: proto::TimeWindow) -> Result<Self, ConvertError> {
        TimeWindow::new(
            Timestamp::from_millis(w.start),
            Timestamp::from_millis(w.end),
        )
        .map_err(invalid)
        .at("end")
    }
}

// ---------------------------------------------------------------------------------------------
// Enums
// ---------------------------------------------------------------------------------------------

/// A model enum whose twin is a protobuf enum with the same variants plus `Unspecified`.
pub(crate) trait WireEnum: Sized {
    /// The generated protobuf enum.
    type Proto: TryFrom<i32> + Into<i32>;
    /// The wire variant.
    fn to_proto(self) -> Self::Proto;
    /// The model variant; `None` for `Unspecified`.
    fn from_proto(proto: Self::Proto) -> Option<Self>;
}

/// Decodes a raw enum number into the generated enum; unknown is an error.
pub(crate) fn proto_enum<P: TryFrom<i32>>(raw: i32) -> Result<P, ConvertError> {
    P::try_from(raw).map_err(|_| ConvertProblem::UnknownEnum(raw).into())
}

/// A raw enum field into the model; unknown or unspecified is an error.
pub(crate) fn enum_in<M: WireEnum>(raw: i32) -> Result<M, ConvertError> {
    M::from_proto(proto_enum(raw)?).ok_or_else(|| ConvertProblem::Unspecified.into())
}

/// A model enum as a raw enum field.
pub(crate) fn enum_out<M: WireEnum>(value: M) -> i32 {
    value.to_proto().into()
}

/// Maps a field-less model enum onto the protobuf enum of the given name, variant by variant
/// (the names agree); implements [`WireEnum`], `From` and `TryFrom` for the pair. The model
/// enum is named as it is in scope where the macro is used.
macro_rules! wire_enum {
    ($model:ident <=> $proto:ident { $($variant:ident),+ $(,)? }) => {
        impl $crate::wire::WireEnum for $model {
            type Proto = ::meridian_proto::v1::$proto;

            fn to_proto(self) -> Self::Proto {
                match self {
                    $($model::$variant => ::meridian_proto::v1::$proto::$variant,)+
                }
            }

            fn from_proto(proto: Self::Proto) -> Option<Self> {
                match proto {
                    ::meridian_proto::v1::$proto::Unspecified => None,
                    $(::meridian_proto::v1::$proto::$variant => {
                        Some($model::$variant)
                    })+
                }
            }
        }

        impl From<$model> for ::meridian_proto::v1::$proto {
            fn from(value: $model) -> Self {
                $crate::wire::WireEnum::to_proto(value)
            }
        }

        impl TryFrom<::meridian_proto::v1::$proto> for $model {
            type Error = $crate::wire::ConvertError;

            fn try_from(
                proto: ::meridian_proto::v1::$proto,
            ) -> Result<Self, $crate::wire::ConvertError> {
                <Self as $crate::wire::WireEnum>::from_proto(proto)
                    .ok_or_else(|| $crate::wire::ConvertProblem::Unspecified.into())
            }
        }
    };
}

/// Maps a model state enum (unit variants plus `Failed { reason }`) onto its protobuf message
/// `{ phase, failure_reason }`. A reason on any phase but `FAILED` is an error (it would be
/// lost); an empty reason on `FAILED` is kept as the empty string the model allows. The model
/// enum is named as it is in scope where the macro is used.
macro_rules! failable_state {
    ($model:ident <=> $proto:ident { phase: $phase:ident, $($variant:ident),+ $(,)? }) => {
        impl From<$model> for ::meridian_proto::v1::$proto {
            fn from(state: $model) -> Self {
                use ::meridian_proto::v1::$phase as Phase;
                let (phase, failure_reason) = match state {
                    $($model::$variant => (Phase::$variant, String::new()),)+
                    $model::Failed { reason } => (Phase::Failed, reason),
                };
                Self {
                    phase: phase.into(),
                    failure_reason,
                }
            }
        }

        impl TryFrom<::meridian_proto::v1::$proto> for $model {
            type Error = $crate::wire::ConvertError;

            fn try_from(
                proto: ::meridian_proto::v1::$proto,
            ) -> Result<Self, $crate::wire::ConvertError> {
                use ::meridian_proto::v1::$phase as Phase;
                use $crate::wire::{AtField, ConvertProblem};
                let phase: Phase = $crate::wire::proto_enum(proto.phase).at("phase")?;
                let state = match phase {
                    Phase::Unspecified => return Err(ConvertProblem::Unspecified).at("phase"),
                    Phase::Failed => {
                        return Ok($model::Failed {
                            reason: proto.failure_reason,
                        });
                    }
                    $(Phase::$variant => $model::$variant,)+
                };
                if !proto.failure_reason.is_empty() {
                    return Err(ConvertProblem::Invalid(
                        "must be empty unless phase is FAILED".into(),
                    ))
                    .at("failure_reason");
                }
                Ok(state)
            }
        }
    };
}

pub(crate) use {failable_state, wire_enum};
