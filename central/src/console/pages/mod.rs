//! The console's pages, one module per area.

pub mod audit;
pub mod cost;
pub mod fleet;
pub mod login;
pub mod site;
pub mod tenants;
pub mod usage;
pub mod utilisation;
pub mod workloads;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::layout;

/// Any path the console does not serve: the same answer as a missing object.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        layout::bare(
            "Not found",
            html! { p.error role="alert" { "No such page." } p { a href="/" { "Back to the console" } } },
        ),
    )
        .into_response()
}

/// A form's optional text field: `None` when left empty.
pub fn filled(s: &Option<String>) -> Option<&str> {
    s.as_deref().map(str::trim).filter(|s| !s.is_empty())
}
