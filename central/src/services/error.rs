//! The services' one error type. Each front end maps it to its own codes (the gRPC layer in
//! `crate::grpc::status`); the variants are the API's error classes (`docs/api.md`).
//!
//! Messages say what is wrong and what to do. A missing object and another tenant's object get
//! the same `NotFound` text, so a probe learns nothing. Store and internal failures are logged
//! in full and answered with a generic message.

use std::time::Duration;

use meridian_common::convert::ConvertError;
use meridian_common::validate::{Problem, ValidationError};

use meridian_store::StoreError;
use meridian_store::tables::TableError;

/// Why an API call failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No, malformed, unknown, expired or revoked credentials.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's role may not do this.
    #[error("{0}")]
    PermissionDenied(String),
    /// No such object, or not the caller's to see.
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// Bad input: every problem, each naming its field.
    #[error("{}", join(.0))]
    Invalid(Vec<Problem>),
    /// The object exists already.
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    /// The object is not in a state that allows this.
    #[error("{0}")]
    FailedPrecondition(String),
    /// Someone else changed the object meanwhile; retry.
    #[error("{0} changed while this request ran; retry")]
    Conflict(String),
    /// Over the caller's request rate.
    #[error("rate limit exceeded for {key}; retry in {} ms", .retry_after.as_millis())]
    RateLimited { key: String, retry_after: Duration },
    /// Too many of something (streams, objects).
    #[error("{0}")]
    Exhausted(String),
    /// The store failed.
    #[error("store unavailable")]
    Store(#[source] TableError),
    /// The audit log could not take the call's record (the call's effect may stand).
    #[error("audit log unavailable; the call's effect may have been applied")]
    AuditUnavailable,
    /// A bug or an invariant broken.
    #[error("internal error: {0}")]
    Internal(String),
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl ApiError {
    /// A single bad field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![Problem::new(field, message)])
    }

    /// `NotFound` for an object kind and id.
    pub fn not_found(kind: &'static str, id: impl std::fmt::Display) -> Self {
        ApiError::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    /// A conversion error of the request message, with `prefix` added to its path.
    pub fn convert(prefix: &str, e: ConvertError) -> Self {
        let e = if prefix.is_empty() { e } else { e.at(prefix) };
        ApiError::invalid(e.field.clone(), e.problem.to_string())
    }

    /// A validation error of the message at `prefix`.
    pub fn validation(prefix: &str, e: ValidationError) -> Self {
        ApiError::Invalid(
            e.0.into_iter()
                .map(|p| Problem {
                    field: match (prefix.is_empty(), p.field.is_empty()) {
                        (true, _) => p.field,
                        (false, true) => prefix.to_owned(),
                        (false, false) => format!("{prefix}.{}", p.field),
                    },
                    message: p.message,
                })
                .collect(),
        )
    }
}

impl From<TableError> for ApiError {
    fn from(e: TableError) -> Self {
        match e {
            TableError::Invalid { source, .. } => ApiError::validation("", source),
            TableError::Conflict { table, key, .. } => ApiError::Conflict(format!("{table}/{key}")),
            other => ApiError::Store(other),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        ApiError::Store(TableError::Store(e))
    }
}
