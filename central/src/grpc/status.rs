//! How a service error becomes a gRPC status: its code, its message, and a `retry-after-ms`
//! trailer for a rate-limited call. Store and internal failures are logged in full and
//! answered with a generic message.

use tonic::{Code, Status};

use crate::services::ApiError;

/// The gRPC code of an error class.
pub fn code(e: &ApiError) -> Code {
    match e {
        ApiError::Unauthenticated(_) => Code::Unauthenticated,
        ApiError::PermissionDenied(_) => Code::PermissionDenied,
        ApiError::NotFound { .. } => Code::NotFound,
        ApiError::Invalid(_) => Code::InvalidArgument,
        ApiError::AlreadyExists { .. } => Code::AlreadyExists,
        ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
        ApiError::Conflict(_) => Code::Aborted,
        ApiError::RateLimited { .. } | ApiError::Exhausted(_) => Code::ResourceExhausted,
        ApiError::Store(_) | ApiError::AuditUnavailable => Code::Unavailable,
        ApiError::Internal(_) => Code::Internal,
    }
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match &e {
            ApiError::Store(inner) => {
                tracing::error!(error = %meridian_common::telemetry::error_chain(inner), "API store failure");
            }
            ApiError::Internal(m) => tracing::error!(error = %m, "API internal error"),
            _ => {}
        }
        let mut status = Status::new(code(&e), e.to_string());
        if let ApiError::RateLimited { retry_after, .. } = &e
            && let Ok(v) = retry_after.as_millis().to_string().parse()
        {
            status.metadata_mut().insert("retry-after-ms", v);
        }
        status
    }
}
