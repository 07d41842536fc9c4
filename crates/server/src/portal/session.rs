//! Getting in and out: an operator's sign-in with an API token, a
//! customer's portal link, signing out.

use axum::Form;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::{HeaderValue, StatusCode, header};
use maud::html;
use serde::Deserialize;

use super::layout::{bare, brand_mark};
use super::{Base, COOKIE, Ctx, PageResult, PortalError};
use crate::admin::portal::{link_open, session_issue};
use crate::admin::{Scope, token};
use crate::state::AppState;

/// The session cookie for `value`, lasting `max_age` seconds (0 clears it).
/// `HttpOnly` always; `Secure` behind TLS; `SameSite=Lax`, or, when the
/// portal may be framed by other sites and TLS is on, `SameSite=None` with
/// `Partitioned`, which a cross-site iframe needs.
fn cookie(state: &AppState, base: &Base, value: &str, max_age: u64) -> Option<HeaderValue> {
    let framed = !state.config().portal_frame_ancestors.is_empty();
    let site = match (framed, base.secure) {
        (true, true) => "; Secure; SameSite=None; Partitioned",
        (false, true) => "; Secure; SameSite=Lax",
        (_, false) => "; SameSite=Lax",
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path={}; HttpOnly; Max-Age={max_age}{site}",
        base.href("/portal")
    ))
    .ok()
}

/// Signs `scope` in and sends it to the portal's first page.
fn signed_in(
    state: &AppState,
    base: &Base,
    scope: &Scope,
    token: Option<uuid::Uuid>,
    key: &crate::admin::portal::PortalKey,
) -> PageResult {
    let ttl = state.config().portal_session_ttl;
    let (_, value) = session_issue(key, scope, token, ttl)?;
    let mut response = Redirect::to(&base.href("/portal")).into_response();
    if let Some(c) = cookie(state, base, &value, ttl.as_secs()) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}

fn login_page(state: &AppState, base: &Base, error: Option<&str>) -> maud::Markup {
    let brand = &state.config().portal_brand;
    bare(
        &base.href("/portal/assets/portal.css"),
        brand,
        "Sign in",
        html! {
            (brand_mark(brand, &base.href("/portal/assets/logo")))
            h1 { "Sign in" }
            p.muted { "Operators sign in with an API token (" code { "outhook token new --admin" } "). Customers open the portal through the link their provider gives them." }
            @if let Some(e) = error {
                div.error role="alert" { (e) }
            }
            form.stack method="post" action=(base.href("/portal/login")) {
                label for="token" { "API token" }
                input #token type="password" name="token" autocomplete="off" required placeholder="oh_…";
                button.primary type="submit" { "Sign in" }
            }
        },
    )
}

/// `GET /portal/login`.
pub async fn login_form(State(state): State<AppState>, base: Base) -> Response {
    login_page(&state, &base, None).into_response()
}

/// The sign-in form.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
}

/// `POST /portal/login`: a valid token opens a session of its scope.
pub async fn login(State(state): State<AppState>, base: Base, Form(form): Form<LoginForm>) -> PageResult {
    let key = state.portal_key().await?;
    let token_text = form.token.trim();
    let Some(scope) = token::authenticate(state.pool(), token_text).await? else {
        return Ok((
            StatusCode::UNAUTHORIZED,
            login_page(&state, &base, Some("That token is unknown, revoked or expired.")),
        )
            .into_response());
    };
    let token_id = token::id_of(token_text);
    signed_in(&state, &base, &scope, token_id, key)
}

/// A portal link's query.
#[derive(Deserialize)]
pub struct LinkQuery {
    token: Option<String>,
}

/// `GET /portal/link?token=…`: a genuine, unexpired link opens a session
/// for its owner; the redirect drops the token from the address bar.
pub async fn open_link(State(state): State<AppState>, base: Base, Query(q): Query<LinkQuery>) -> PageResult {
    let key = state.portal_key().await?;
    let Some(owner) = q.token.as_deref().and_then(|t| link_open(key, t, chrono::Utc::now())) else {
        return Err(PortalError::new(
            StatusCode::FORBIDDEN,
            "This link is invalid or has expired. Ask for a new one from the dashboard that sent you here.",
        ));
    };
    signed_in(&state, &base, &Scope::Owner(owner), None, key)
}

/// The sign-out form.
#[derive(Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// `POST /portal/logout`.
pub async fn logout(State(state): State<AppState>, ctx: Ctx, Form(form): Form<CsrfForm>) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, &form.csrf)?;
    let mut response = Redirect::to(&ctx.href("/portal/login")).into_response();
    if let Some(c) = cookie(&state, &ctx.base, "", 0) {
        response.headers_mut().insert(header::SET_COOKIE, c);
    }
    Ok(response)
}
