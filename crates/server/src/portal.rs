//! The delivery portal at `/portal`: server-rendered pages where a
//! provider's customers see what was sent to them and what their servers
//! answered, and where operators see every owner.
//!
//! Customers arrive through a signed, short-lived link the provider makes
//! (`POST /v1/portal-links`); operators sign in with an API token. Both get
//! a signed session cookie. Every page and action goes through
//! [`crate::admin`] with the session's [`Scope`], exactly as the API does.
//! Pages carry no script: forms post (with a CSRF token) and redirect.

mod brand;
mod connection;
mod deliveries;
mod endpoints;
mod layout;
mod self_service;
mod session;
mod verify;

use axum::Router;
use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::request::Parts;
use http::{HeaderValue, Method, StatusCode, header};

pub use brand::{Brand, BrandError, Logo};

use crate::admin::Scope;
use crate::admin::portal::{Session, csrf_check, csrf_token, session_open};
use crate::state::AppState;

/// The session cookie's name.
const COOKIE: &str = "outhook_portal";

/// The portal's routes, under `/portal`.
pub(crate) fn routes(state: &AppState) -> Router<AppState> {
    Router::new()
        .route("/portal", get(endpoints::overview))
        .route(
            "/portal/",
            get(|ctx: Base| async move { Redirect::to(&ctx.href("/portal")) }),
        )
        .route("/portal/login", get(session::login_form).post(session::login))
        .route("/portal/link", get(session::open_link))
        .route("/portal/logout", post(session::logout))
        .route("/portal/endpoints", post(self_service::create))
        .route("/portal/endpoints/new", get(self_service::new))
        .route("/portal/endpoints/{id}", get(endpoints::show))
        .route(
            "/portal/endpoints/{id}/edit",
            get(self_service::edit).post(self_service::update),
        )
        .route(
            "/portal/endpoints/{id}/delete",
            get(self_service::confirm_delete).post(self_service::delete),
        )
        .route("/portal/endpoints/{id}/example", post(self_service::send_example))
        .route("/portal/endpoints/{id}/verify", get(verify::show))
        .route(
            "/portal/endpoints/{id}/connection",
            get(connection::show).post(connection::update),
        )
        .route("/portal/endpoints/{id}/rotate", post(endpoints::rotate))
        .route("/portal/endpoints/{id}/enable", post(endpoints::enable))
        .route("/portal/endpoints/{id}/disable", post(endpoints::disable))
        .route("/portal/endpoints/{id}/test", post(endpoints::send_test))
        .route("/portal/endpoints/{id}/recover", post(endpoints::recover))
        .route("/portal/deliveries", get(deliveries::list))
        .route("/portal/deliveries/{id}", get(deliveries::show))
        .route("/portal/deliveries/{id}/retry", post(deliveries::retry))
        .route("/portal/deliveries/{id}/replay", post(deliveries::replay))
        .route("/portal/assets/portal.css", get(css))
        .route("/portal/assets/brand.css", get(brand_css))
        .route("/portal/assets/logo", get(logo))
        .layer(middleware::from_fn_with_state(state.clone(), security_headers))
}

/// The stylesheet, compiled into the binary.
async fn css() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        include_str!("portal/portal.css"),
    )
}

/// The brand's stylesheet: its primary colour.
async fn brand_css(State(state): State<AppState>) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        state.config().portal_brand.css(),
    )
}

/// The brand's logo, served from the server itself (the CSP allows no
/// other origin).
async fn logo(State(state): State<AppState>) -> Response {
    match &state.config().portal_brand.logo {
        Some(l) => (
            [
                (header::CONTENT_TYPE, l.content_type),
                (header::CACHE_CONTROL, "public, max-age=3600"),
            ],
            l.bytes.clone(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Headers on every portal response: a strict CSP (no script at all, the
/// allowed parent origins for iframes), no caching of pages that may show
/// secrets, no referrer (a link's token must not leak).
async fn security_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let is_asset = request.uri().path().starts_with("/portal/assets/");
    let prefix = match request.extensions().get::<OriginalUri>() {
        Some(OriginalUri(original)) => original
            .path()
            .strip_suffix(request.uri().path())
            .unwrap_or("")
            .to_owned(),
        None => String::new(),
    };
    let mut response = next.run(request).await;
    if let Some(e) = response.extensions_mut().remove::<PortalError>() {
        // Errors are drawn here, where the stylesheet's address is known.
        let title = e.status.canonical_reason().unwrap_or("Error");
        let css = format!("{prefix}/portal/assets/portal.css");
        response = (
            e.status,
            layout::error_page(&css, &state.config().portal_brand, title, &e.message),
        )
            .into_response();
    }
    let ancestors = &state.config().portal_frame_ancestors;
    let frame_ancestors = if ancestors.is_empty() {
        "'none'".to_owned()
    } else {
        ancestors.join(" ")
    };
    let csp = format!(
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors {frame_ancestors}"
    );
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    if ancestors.is_empty() {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !is_asset {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Where the portal is mounted: `/portal` under whatever prefix the router
/// was nested at.
#[derive(Debug, Clone)]
pub(crate) struct Base {
    /// The prefix before `/portal` (empty when not nested).
    prefix: String,
    /// Whether cookies must be `Secure` (served over TLS).
    secure: bool,
}

impl Base {
    /// A path of the portal (starting `/portal`) under the prefix.
    pub fn href(&self, path: &str) -> String {
        format!("{}{path}", self.prefix)
    }
}

impl FromRequestParts<AppState> for Base {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let inner = parts.uri.path().to_owned();
        let original = match OriginalUri::from_request_parts(parts, state).await {
            Ok(OriginalUri(uri)) => uri.path().to_owned(),
            Err(never) => match never {},
        };
        let prefix = original.strip_suffix(&inner).unwrap_or("").to_owned();
        let forwarded_tls = parts
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.eq_ignore_ascii_case("https"));
        let public_tls = state
            .config()
            .public_url
            .as_deref()
            .is_some_and(|u| u.starts_with("https://"));
        Ok(Self {
            prefix,
            secure: forwarded_tls || public_tls,
        })
    }
}

/// A signed-in portal user: the session, its scope and its CSRF token.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// Where the portal is.
    pub base: Base,
    /// The session.
    pub session: Session,
    /// What it may see and do.
    pub scope: Scope,
    /// The token its forms carry.
    pub csrf: String,
    /// The provider's brand.
    pub brand: std::sync::Arc<Brand>,
}

impl Ctx {
    /// A path of the portal under its prefix.
    pub fn href(&self, path: &str) -> String {
        self.base.href(path)
    }

    /// Refuses a form whose CSRF token is not this session's.
    pub fn check_csrf(&self, key: &crate::admin::portal::PortalKey, presented: &str) -> Result<(), PortalError> {
        if csrf_check(key, &self.session, presented) {
            Ok(())
        } else {
            Err(PortalError::new(
                StatusCode::FORBIDDEN,
                "This form has expired or did not come from this page. Go back, reload and try again.",
            ))
        }
    }
}

/// The value of the session cookie, if the request carries one.
fn cookie_value(headers: &http::HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl FromRequestParts<AppState> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let Ok(base) = Base::from_request_parts(parts, state).await;
        let key = state
            .portal_key()
            .await
            .map_err(|e| PortalError::from(e).into_response())?;
        let session = match cookie_value(&parts.headers) {
            Some(cookie) => session_open(state.pool(), key, cookie)
                .await
                .map_err(|e| PortalError::from(e).into_response())?,
            None => None,
        };
        let Some(session) = session else {
            return Err(if parts.method == Method::GET {
                Redirect::to(&base.href("/portal/login")).into_response()
            } else {
                PortalError::new(StatusCode::UNAUTHORIZED, "Your session has ended. Sign in again.").into_response()
            });
        };
        Ok(Self {
            scope: session.scope(),
            brand: state.config().portal_brand.clone(),
            csrf: csrf_token(key, &session),
            session,
            base,
        })
    }
}

/// A page that could not be shown, rendered as a page.
#[derive(Debug, Clone)]
pub(crate) struct PortalError {
    status: StatusCode,
    message: String,
}

impl PortalError {
    /// An error page with this status and text.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
}

impl From<crate::admin::Error> for PortalError {
    fn from(e: crate::admin::Error) -> Self {
        use crate::admin::Error as E;
        let status = match &e {
            E::NotFound(_) => StatusCode::NOT_FOUND,
            E::Database(_) | E::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            E::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        if status.is_server_error() {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "portal request failed");
            return Self::new(status, "Something went wrong on our side. Try again in a moment.");
        }
        let mut message = e.to_string();
        if let Some(first) = message.get_mut(0..1) {
            first.make_ascii_uppercase();
        }
        Self::new(status, message)
    }
}

impl IntoResponse for PortalError {
    fn into_response(self) -> Response {
        // Rendered by `security_headers`, which knows the portal's prefix.
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// A page's result.
pub(crate) type PageResult = Result<Response, PortalError>;
