//! Redfish error answers: a status, a Base registry message and the headers that go with it
//! (`Retry-After`, `Allow`, `WWW-Authenticate`).

use hyper::StatusCode;
use serde_json::{Value, json};

/// The Base message registry version the emulator cites.
pub(crate) const BASE: &str = "Base.1.18";

/// An error answer.
#[derive(Debug, Clone)]
pub(crate) struct RfError {
    pub status: StatusCode,
    /// The Base registry message key (`ResourceNotFound`).
    pub key: &'static str,
    pub message: String,
    pub resolution: &'static str,
    pub retry_after: Option<u64>,
    pub allow: Option<String>,
    pub authenticate: bool,
}

pub(crate) type RfResult<T> = Result<T, RfError>;

impl RfError {
    pub fn new(status: StatusCode, key: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            key,
            message: message.into(),
            resolution: "None.",
            retry_after: None,
            allow: None,
            authenticate: false,
        }
    }

    pub fn resolution(mut self, r: &'static str) -> Self {
        self.resolution = r;
        self
    }

    pub fn retry_after(mut self, secs: u64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    pub fn not_found(uri: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "ResourceNotFound",
            format!("The requested resource of type Resource named '{uri}' was not found."),
        )
        .resolution("Provide a valid resource identifier and resubmit the request.")
    }

    pub fn method_not_allowed(method: &str, allow: &str) -> Self {
        let mut e = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "OperationNotAllowed",
            format!("The {method} method is not allowed on this resource."),
        )
        .resolution("Use one of the methods in the Allow header.");
        e.allow = Some(allow.to_owned());
        e
    }

    pub fn unauthorized() -> Self {
        let mut e = Self::new(
            StatusCode::UNAUTHORIZED,
            "NoValidSession",
            "There is no valid session established with the implementation.",
        )
        .resolution("Establish a session before attempting any operations.");
        e.authenticate = true;
        e
    }

    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "InsufficientPrivilege",
            "There are insufficient privileges for the account or credentials associated with \
             the current session to perform the requested operation.",
        )
        .resolution("Either abandon the operation or change the associated access rights.")
    }

    pub fn busy(secs: u64, why: &str) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceTemporarilyUnavailable",
            format!("The service is temporarily unavailable ({why}). Retry in {secs} seconds."),
        )
        .resolution("Wait for the indicated retry duration and retry the operation.")
        .retry_after(secs)
    }

    pub fn bad_request(key: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, key, message)
    }

    pub fn conflict(key: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, key, message)
    }

    pub fn value_not_in_list(prop: &str, value: &Value) -> Self {
        Self::bad_request(
            "PropertyValueNotInList",
            format!("The value {value} for the property {prop} is not in the list of acceptable values."),
        )
        .resolution("Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.")
    }

    pub fn param_not_in_list(param: &str, action: &str, value: &Value) -> Self {
        Self::bad_request(
            "ActionParameterValueNotInList",
            format!("The value {value} for the parameter {param} in the action {action} is not in the list of acceptable values."),
        )
        .resolution("Choose a value from the enumeration list that the implementation can support and resubmit the request if the operation failed.")
    }

    pub fn param_missing(param: &str, action: &str) -> Self {
        Self::bad_request(
            "ActionParameterMissing",
            format!("The action {action} requires the parameter {param} to be present in the request body."),
        )
        .resolution("Supply the action with the required parameter in the request body when the request is resubmitted.")
    }

    pub fn malformed() -> Self {
        Self::bad_request(
            "MalformedJSON",
            "The request body submitted was malformed JSON and could not be parsed by the receiving service.",
        )
        .resolution("Ensure that the request body is valid JSON and resubmit the request.")
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", message).resolution(
            "Resubmit the request. If the problem persists, consider resetting the service.",
        )
    }

    /// The Redfish error body.
    pub fn body(&self) -> Value {
        error_body(&[message(
            self.key,
            &self.message,
            severity(self.status),
            self.resolution,
        )])
    }
}

fn severity(status: StatusCode) -> &'static str {
    if status.is_success() {
        "OK"
    } else {
        "Critical"
    }
}

/// One `Message` object of the Base registry.
pub(crate) fn message(key: &str, text: &str, severity: &str, resolution: &str) -> Value {
    json!({
        "@odata.type": "#Message.v1_3_0.Message",
        "MessageId": format!("{BASE}.{key}"),
        "Message": text,
        "MessageSeverity": severity,
        "Resolution": resolution,
    })
}

/// `{"error": {...}}` from its extended messages; the first gives `code` and `message`.
pub(crate) fn error_body(messages: &[Value]) -> Value {
    let first = messages.first().cloned().unwrap_or(Value::Null);
    json!({
        "error": {
            "code": first.get("MessageId").cloned().unwrap_or_else(|| json!(format!("{BASE}.GeneralError"))),
            "message": first.get("Message").cloned().unwrap_or_else(|| json!("A general error has occurred.")),
            "@Message.ExtendedInfo": messages,
        }
    })
}
