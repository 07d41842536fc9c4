//! `Idempotency-Key` on every POST: a retried request with the same key
//! (in the same scope) gets the first answer, stored in PostgreSQL so that
//! every server process agrees. A key reused for a different request, or
//! while its first request is still running, is a 409 problem. A first
//! request that ends in a server error frees its key, so a retry runs.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, Method, StatusCode, header};
use outhook_dispatcher::db::idempotency::{
    IdempotencyState, idempotency_complete, idempotency_release, idempotency_reserve,
};
use sha2::{Digest, Sha256};

use crate::auth::{Caller, scope_of};
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// The request header.
pub const HEADER: &str = "idempotency-key";

/// Stored answers larger than this are not replayed (the key is freed).
const MAX_STORED: usize = 1024 * 1024;

/// The middleware.
pub async fn layer(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if request.method() != Method::POST {
        return next.run(request).await;
    }
    let Some(key) = request.headers().get(HEADER).cloned() else {
        return next.run(request).await;
    };
    // Who asks comes first: a request without a valid token is a 401,
    // whatever else is wrong with it.
    let scope = match scope_of(&state, request.headers()).await {
        Ok(s) => s,
        Err(p) => return p.into_response(),
    };
    // The rule of the document: 1 to 255 visible ASCII characters, with
    // spaces only inside (no tab, which a header value may hold).
    let bytes = key.as_bytes();
    let valid = (1..=255).contains(&bytes.len())
        && bytes.iter().all(|b| (b' '..=b'~').contains(b))
        && bytes.first() != Some(&b' ')
        && bytes.last() != Some(&b' ');
    let key = match key.to_str() {
        Ok(k) if valid => k.to_owned(),
        _ => {
            return Problem::new(
                ProblemKind::InvalidParameter,
                "Idempotency-Key must be 1 to 255 visible ASCII characters",
            )
            .into_response();
        }
    };
    let (mut parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, state.config().max_body_bytes).await {
        Ok(b) => b,
        Err(_) => {
            return Problem::new(ProblemKind::PayloadTooLarge, "the request body is over the size limit")
                .into_response();
        }
    };
    let mut hasher = Sha256::new();
    hasher.update(parts.uri.path().as_bytes());
    hasher.update(b"\0");
    hasher.update(parts.uri.query().unwrap_or("").as_bytes());
    hasher.update(b"\0");
    hasher.update(&bytes);
    let fingerprint = hasher.finalize().to_vec();
    let scope_key = scope.key();
    let pool = state.pool();
    match idempotency_reserve(pool, &scope_key, &key, &fingerprint).await {
        Err(e) => Problem::from(crate::admin::Error::from(e)).into_response(),
        Ok(IdempotencyState::InProgress { .. }) => Problem::new(
            ProblemKind::IdempotencyConflict,
            "a request with this Idempotency-Key is still running",
        )
        .into_response(),
        Ok(IdempotencyState::Done {
            fingerprint: first,
            status,
            body,
        }) => {
            if first != fingerprint {
                return Problem::new(
                    ProblemKind::IdempotencyConflict,
                    "this Idempotency-Key was used for a different request",
                )
                .into_response();
            }
            replay(status, body)
        }
        Ok(IdempotencyState::Reserved) => {
            parts.extensions.insert(Caller(scope));
            let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
            let status = response.status();
            let (head, body) = response.into_parts();
            let body = match axum::body::to_bytes(body, MAX_STORED).await {
                Ok(b) => b,
                Err(_) => {
                    let _ = idempotency_release(pool, &scope_key, &key).await;
                    return Problem::new(ProblemKind::Internal, "the response could not be read").into_response();
                }
            };
            let stored = if status.is_server_error() {
                idempotency_release(pool, &scope_key, &key).await
            } else {
                idempotency_complete(pool, &scope_key, &key, status.as_u16(), &body).await
            };
            if let Err(e) = stored {
                tracing::warn!(error = %e, "could not record an idempotent answer");
            }
            Response::from_parts(head, Body::from(body))
        }
    }
}

/// The stored first answer.
fn replay(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let content_type = if status.is_success() {
        "application/json"
    } else {
        "application/problem+json"
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    response
}
