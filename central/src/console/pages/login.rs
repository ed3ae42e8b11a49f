//! Login (password or API token), logout, and the root redirect.

use axum::extract::{Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::console::layout;
use crate::console::serve::Peer;
use crate::console::session::{
    Credential, LOGIN_COOKIE, SESSION_COOKIE, random_token, same_secret,
};
use crate::console::web::{Console, PageError, PageResult, User, cookie, set_cookie};
use crate::services::ApiError;

/// `/`: the user's first page, or the login form.
pub async fn root(user: Option<User>) -> Redirect {
    match user {
        Some(u) => Redirect::to(layout::home(&u)),
        None => Redirect::to("/login"),
    }
}

fn login_page(csrf: &str, error: Option<&str>) -> Markup {
    layout::bare(
        "Log in",
        html! {
            @if let Some(e) = error { p.error role="alert" id="login-error" { (e) } }
            form.stack method="post" action="/login" aria-label="Log in with a password" {
                input type="hidden" name="csrf" value=(csrf);
                label for="user" { "User" input id="user" name="user" type="text" autocomplete="username" required; }
                label for="password" { "Password" input id="password" name="password" type="password" autocomplete="current-password" required; }
                button type="submit" id="login-password" { "Log in" }
            }
            h2 { "Or with an API token" }
            form.stack method="post" action="/login" aria-label="Log in with an API token" {
                input type="hidden" name="csrf" value=(csrf);
                label for="token" { "API token" input id="token" name="token" type="password" autocomplete="off" required; }
                button type="submit" id="login-token" { "Log in with token" }
            }
        },
    )
}

/// `GET /login`: the form, with a fresh login CSRF cookie.
pub async fn form(user: Option<User>) -> Response {
    if let Some(u) = user {
        return Redirect::to(layout::home(&u)).into_response();
    }
    let csrf = random_token();
    (
        [(
            header::SET_COOKIE,
            set_cookie(LOGIN_COOKIE, &csrf, Some(3600)),
        )],
        login_page(&csrf, None),
    )
        .into_response()
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

/// `POST /login`: a new session under a fresh ID (whatever cookie came with the request).
pub async fn submit(
    State(state): State<Console>,
    peer: Option<axum::Extension<Peer>>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> PageResult {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or("");
    if expected.is_empty() || !same_secret(&form.csrf, expected) {
        return Err(PageError::Csrf);
    }
    let source = peer.map(|p| p.0.0.ip());
    let result = if !form.token.trim().is_empty() {
        state
            .services
            .authenticate(source, Ok(form.token.trim()))
            .await
            .map(|c| (c, Credential::Token(form.token.trim().to_owned())))
    } else if form.user.trim().is_empty() {
        Err(ApiError::invalid("user", "is required"))
    } else {
        state
            .services
            .authenticate_password(source, form.user.trim(), &form.password)
            .await
            .map(|c| (c, Credential::Password))
    };
    match result {
        Ok((caller, credential)) => {
            if let Some(old) = cookie(&headers, SESSION_COOKIE) {
                state.sessions.remove(old);
            }
            let id = state
                .sessions
                .create(caller, credential, state.services.now());
            let session = state.sessions.get(&id).ok_or(PageError::Login)?;
            let home = layout::home(&User { session });
            let mut response = Redirect::to(home).into_response();
            let h = response.headers_mut();
            h.append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, &id, None));
            h.append(header::SET_COOKIE, set_cookie(LOGIN_COOKIE, "", Some(0)));
            Ok(response)
        }
        Err(e) => {
            let status = match &e {
                ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                ApiError::Invalid(_) => StatusCode::BAD_REQUEST,
                _ => StatusCode::UNAUTHORIZED,
            };
            let message = match &e {
                ApiError::RateLimited { .. } | ApiError::Invalid(_) => e.to_string(),
                _ => "Wrong user, password or token.".to_owned(),
            };
            Ok((status, login_page(expected, Some(&message))).into_response())
        }
    }
}

/// The logout form's fields.
#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    pub csrf: String,
}

/// `POST /logout`: ends the session on the server; its cookie no longer works.
pub async fn logout(
    State(state): State<Console>,
    user: User,
    headers: HeaderMap,
    Form(form): Form<CsrfForm>,
) -> PageResult {
    user.check_csrf(&form.csrf)?;
    if let Some(id) = cookie(&headers, SESSION_COOKIE) {
        state.sessions.remove(id);
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .append(header::SET_COOKIE, set_cookie(SESSION_COOKIE, "", Some(0)));
    Ok(response)
}
