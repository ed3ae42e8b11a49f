//! What every console handler shares: the state, the logged-in user (from the session cookie),
//! the CSRF check of forms, and errors turned into pages.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OptionalFromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};

use super::events::SiteEvents;
use super::layout;
use super::session::{Credential, SESSION_COOKIE, Session, Sessions, same_secret};
use crate::services::{ApiError, Services};

/// The console's shared state.
#[derive(Debug, Clone)]
pub struct Console {
    pub services: Arc<Services>,
    pub sessions: Arc<Sessions>,
    pub events: SiteEvents,
    pub streams: Arc<tokio::sync::Semaphore>,
}

/// A cookie's value from the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for a console cookie (`HttpOnly; Secure; SameSite=Strict; Path=/`);
/// `max_age` 0 deletes it.
pub fn set_cookie(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let age = match max_age {
        Some(s) => format!("; Max-Age={s}"),
        None => String::new(),
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/{age}"
    ))
    .expect("cookie values are hex")
}

/// The logged-in user of a request: its session, re-checked against the credential it logged
/// in with (a revoked or expired API token ends a token session on its next request).
#[derive(Debug, Clone)]
pub struct User {
    pub session: Session,
}

impl User {
    /// The caller to admit calls for.
    pub fn caller(&self) -> &crate::services::Caller {
        &self.session.caller
    }

    /// Checks a form's CSRF token against the session's.
    pub fn check_csrf(&self, presented: &str) -> Result<(), PageError> {
        if same_secret(presented, &self.session.csrf) {
            Ok(())
        } else {
            Err(PageError::Csrf)
        }
    }
}

/// Why a request got no page.
#[derive(Debug)]
pub enum PageError {
    /// No live session: go and log in.
    Login,
    /// A form without the session's CSRF token.
    Csrf,
    /// A service refused or failed.
    Api(ApiError),
}

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> Self {
        match e {
            ApiError::Unauthenticated(_) => PageError::Login,
            other => PageError::Api(other),
        }
    }
}

impl From<meridian_store::tables::TableError> for PageError {
    fn from(e: meridian_store::tables::TableError) -> Self {
        PageError::Api(e.into())
    }
}

/// The HTTP status a service error is answered with.
pub fn status_of(e: &ApiError) -> StatusCode {
    match e {
        ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        ApiError::PermissionDenied(_) => StatusCode::FORBIDDEN,
        ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
        ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
        ApiError::AlreadyExists { .. } | ApiError::Conflict(_) => StatusCode::CONFLICT,
        ApiError::FailedPrecondition(_) => StatusCode::CONFLICT,
        ApiError::RateLimited { .. } | ApiError::Exhausted(_) => StatusCode::TOO_MANY_REQUESTS,
        ApiError::Store(_) | ApiError::AuditUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            PageError::Login => return Redirect::to("/login").into_response(),
            PageError::Csrf => (
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The form's CSRF token is missing or wrong; nothing was changed. Reload the page and try again.".to_owned(),
            ),
            PageError::Api(e) => {
                let status = status_of(&e);
                let title = match status {
                    StatusCode::NOT_FOUND => "Not found",
                    StatusCode::FORBIDDEN => "Forbidden",
                    StatusCode::BAD_REQUEST => "Bad input",
                    StatusCode::TOO_MANY_REQUESTS => "Too many requests",
                    _ => "Error",
                };
                (status, title, e.to_string())
            }
        };
        let body: Markup = html! {
            p.error role="alert" { (message) }
            p { a href="/" { "Back to the console" } }
        };
        (status, layout::bare(title, body)).into_response()
    }
}

/// A page's result.
pub type PageResult = Result<Response, PageError>;

impl FromRequestParts<Console> for User {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &Console) -> Result<Self, PageError> {
        let id = cookie(&parts.headers, SESSION_COOKIE).ok_or(PageError::Login)?;
        let session = state.sessions.get(id).ok_or(PageError::Login)?;
        let valid = match &session.credential {
            Credential::Token(secret) => {
                let peer = parts
                    .extensions
                    .get::<super::serve::Peer>()
                    .map(|p| p.0.ip());
                match state.services.authenticate(peer, Ok(secret.as_str())).await {
                    Ok(_) => true,
                    Err(ApiError::Unauthenticated(_)) => false,
                    Err(e) => return Err(e.into()),
                }
            }
            Credential::Password => {
                state
                    .services
                    .password_session_valid(&session.caller, session.logged_in)
                    .await?
            }
        };
        if !valid {
            state.sessions.remove(id);
            return Err(PageError::Login);
        }
        Ok(User { session })
    }
}

impl OptionalFromRequestParts<Console> for User {
    type Rejection = PageError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Console,
    ) -> Result<Option<Self>, PageError> {
        match <User as FromRequestParts<Console>>::from_request_parts(parts, state).await {
            Ok(u) => Ok(Some(u)),
            Err(PageError::Login) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// The page's number from a `page` query parameter (1-based, bounded).
pub fn page_number(page: Option<usize>) -> usize {
    page.unwrap_or(1).clamp(1, 1_000_000)
}

/// Rows `[from, to)` of page `page` of `size`.
pub fn page_bounds(page: usize, size: usize, total: usize) -> (usize, usize) {
    let from = (page - 1).saturating_mul(size).min(total);
    (from, (from + size).min(total))
}

/// Ends an admitted call with `e` raised by the console itself (bad input), audited like the
/// API's own refusals.
pub async fn refused(call: crate::services::Call<'_>, object: &str, e: ApiError) -> PageError {
    match call.refuse::<()>(object, e).await {
        Err(e) => e.into(),
        Ok(()) => PageError::Api(ApiError::Internal("a refusal succeeded".into())),
    }
}

/// The query string without its `page` parameter (the pager adds its own).
pub fn query_without_page(raw: Option<String>) -> String {
    raw.unwrap_or_default()
        .split('&')
        .filter(|p| !p.starts_with("page=") && !p.is_empty())
        .collect::<Vec<_>>()
        .join("&")
}
