//! The provider's public keys, without a token: what a `cometh` receiver
//! fetches to verify. Cacheable, with an ETag.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, StatusCode, header};
use sha2::{Digest, Sha256};

use super::ApiPath;
use crate::admin::key as admin;
use crate::problem::Problem;
use crate::state::AppState;

/// Cached by receivers for five minutes; a rotated key is seen soon after.
const CACHE_CONTROL: &str = "public, max-age=300";

fn cacheable(request: &HeaderMap, content_type: &'static str, body: Vec<u8>) -> Response {
    let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&body)[..16]));
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, body).into_response()
    };
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    response
}

/// Every signing key as a JSON Web Key Set, each key's `kid` its name.
#[utoipa::path(operation_id = "public_key_jwks", get, path = "/.well-known/jwks.json", tag = "public keys",
    responses((status = 200, description = "A JWKS (RFC 7517)", content_type = "application/json", body = Object)))]
pub async fn jwks(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    let keys = admin::list(state.pool()).await?;
    let body = serde_json::to_vec(&admin::jwks(&keys)).map_err(|e| crate::admin::Error::Internal(e.to_string()))?;
    Ok(cacheable(&headers, "application/json", body))
}

/// The names of the signing keys, for `/v1/public-keys/{key}`.
#[utoipa::path(operation_id = "public_key_list", get, path = "/v1/public-keys", tag = "public keys",
    responses((status = 200, description = "The same JWKS as /.well-known/jwks.json", content_type = "application/json", body = Object)))]
pub async fn list(state: State<AppState>, headers: HeaderMap) -> Result<Response, Problem> {
    jwks(state, headers).await
}

/// One signing key's public half as PEM (SubjectPublicKeyInfo), by id or
/// name: what Node's `crypto.createPublicKey` and `createVerify` take.
#[utoipa::path(operation_id = "public_key_pem", get, path = "/v1/public-keys/{key}", tag = "public keys", params(("key" = String, Path, description = "The key's id or name")),
    responses((status = 200, description = "PEM", content_type = "application/x-pem-file", body = String),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn pem(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiPath(key): ApiPath<String>,
) -> Result<Response, Problem> {
    let key = admin::get(state.pool(), &key).await?;
    Ok(cacheable(
        &headers,
        "application/x-pem-file",
        key.public_key_pem.into_bytes(),
    ))
}
