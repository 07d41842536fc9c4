#![doc = include_str!("../README.md")]

pub mod admin;
mod api;
mod auth;
mod idempotency;
pub mod metrics;
mod openapi;
mod portal;
pub mod problem;
mod state;

pub use crate::api::model;
pub use crate::openapi::{openapi, openapi_json};
pub use crate::portal::{Brand, BrandError, Logo};
pub use crate::state::{AppState, ServerConfig};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::get;

/// The API as an axum [`Router`]: mount it in an application with
/// `.merge(...)` or `.nest("/webhooks", ...)`. Routes: `/v1/...`,
/// `/.well-known/jwks.json`, `/healthz`, `/readyz`, `/metrics`,
/// `/openapi.json` and the portal under `/portal`.
pub fn router(state: AppState) -> Router {
    let limit = state.config().max_body_bytes;
    api::routes(&state)
        .merge(portal::routes(&state))
        .route(
            "/openapi.json",
            get(|| async { ([(http::header::CONTENT_TYPE, "application/json")], openapi_json()) }),
        )
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
