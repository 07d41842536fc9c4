//! The HTTP routes. Handlers are thin: extract, call one function of
//! [`crate::admin`], map the result. Every rejection is problem+json.

pub mod connection;
pub mod deliveries;
pub mod endpoints;
pub mod event_types;
pub mod health;
pub mod keys;
pub mod messages;
pub mod model;
pub mod portal;

use axum::Router;
use axum::extract::rejection::{JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::routing::{get, post};
use http::StatusCode;
use http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// A JSON body whose rejections are problems.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Self(v)),
            Err(JsonRejection::MissingJsonContentType(e)) => {
                Err(Problem::new(ProblemKind::UnsupportedMediaType, e.body_text()))
            }
            Err(JsonRejection::BytesRejection(e)) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(Problem::new(ProblemKind::PayloadTooLarge, e.body_text()))
            }
            Err(e) => Err(Problem::new(ProblemKind::InvalidJson, e.body_text())),
        }
    }
}

/// A JSON body that may be left out (an empty body is `T::default()`).
pub struct ApiJsonOrEmpty<T>(pub T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for ApiJsonOrEmpty<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Problem::new(ProblemKind::PayloadTooLarge, e.body_text())
            } else {
                Problem::new(ProblemKind::InvalidJson, e.body_text())
            }
        })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(Self)
            .map_err(|e| Problem::new(ProblemKind::InvalidJson, e.to_string()))
    }
}

/// A query string whose rejections are problems.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| Self(q.0))
            .map_err(|e: QueryRejection| Problem::new(ProblemKind::InvalidParameter, e.body_text()))
    }
}

/// A path parameter: one that does not parse names nothing that exists.
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| Self(p.0))
            .map_err(|e: PathRejection| Problem::new(ProblemKind::NotFound, e.body_text()))
    }
}

/// `/v1/...`, the public keys, and the health routes.
pub fn routes(state: &AppState) -> Router<AppState> {
    let v1 = Router::new()
        .route("/endpoints", post(endpoints::create).get(endpoints::list))
        .route(
            "/endpoints/{id}",
            get(endpoints::read).patch(endpoints::update).delete(endpoints::delete),
        )
        .route("/endpoints/{id}/secret", get(endpoints::secret))
        .route(
            "/endpoints/{id}/connection",
            get(connection::read).patch(connection::update),
        )
        .route("/endpoints/{id}/secret/rotate", post(endpoints::rotate))
        .route("/endpoints/{id}/recover", post(deliveries::recover))
        .route("/endpoints/{id}/stats", get(deliveries::stats))
        .route("/event-types", get(event_types::list))
        .route(
            "/event-types/{name}",
            get(event_types::read).put(event_types::put).delete(event_types::delete),
        )
        .route(
            "/event-catalog",
            get(event_types::catalog)
                .put(event_types::apply)
                .patch(event_types::update),
        )
        .route("/messages", post(messages::create).get(messages::list))
        .route("/messages/{id}", get(messages::read))
        .route("/messages/{id}/replay", post(messages::replay))
        .route("/deliveries", get(deliveries::list))
        .route("/deliveries/{id}", get(deliveries::read))
        .route("/deliveries/{id}/retry", post(deliveries::retry))
        .route("/portal-links", post(portal::create))
        .route("/public-keys", get(keys::list))
        .route("/public-keys/{key}", get(keys::pem))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::idempotency::layer,
        ));
    Router::new()
        .nest("/v1", v1)
        .route("/.well-known/jwks.json", get(keys::jwks))
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .fallback(|| async { Problem::new(ProblemKind::NotFound, "no such route") })
}
