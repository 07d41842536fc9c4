//! Portal links: the provider's backend asks for one and hands it to its
//! customer (or puts it in an iframe).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use http::{HeaderMap, StatusCode, header};

use super::ApiJsonOrEmpty;
use super::model::{PortalLinkIn, PortalLinkOut};
use crate::admin::portal as admin;
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// Where clients reach this server: the configured public URL, else the
/// request's `Host` (and `X-Forwarded-Proto`).
fn base_url(state: &AppState, headers: &HeaderMap) -> String {
    if let Some(url) = &state.config().public_url {
        return url.clone();
    }
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("localhost");
    let proto = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https")
        .unwrap_or("http");
    format!("{proto}://{host}")
}

/// Make a short-lived link that opens the delivery portal for one owner.
#[utoipa::path(operation_id = "portal_link_create", post, path = "/v1/portal-links", tag = "portal",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "Retries with the same key get the first answer: 1 to 255 visible ASCII characters")),
    request_body = PortalLinkIn,
    responses((status = 201, body = PortalLinkOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(scope): Caller,
    headers: HeaderMap,
    ApiJsonOrEmpty(input): ApiJsonOrEmpty<PortalLinkIn>,
) -> Result<(StatusCode, Json<PortalLinkOut>), Problem> {
    let link = admin::link(
        state.pool(),
        &scope,
        input.owner.as_deref(),
        input.ttl_seconds.map(Duration::from_secs),
        &base_url(&state, &headers),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(PortalLinkOut {
            url: link.url,
            owner: link.owner,
            expires_at: link.expires_at,
        }),
    ))
}
