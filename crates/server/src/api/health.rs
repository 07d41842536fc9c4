//! `/healthz` (the process answers) and `/readyz` (the database answers
//! and its schema is current), and `/metrics`.

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use http::{HeaderValue, header};

use super::model::HealthOut;
use crate::problem::{Problem, ProblemKind};
use crate::state::AppState;

/// The process is up.
#[utoipa::path(operation_id = "healthz", get, path = "/healthz", tag = "health", responses((status = 200, body = HealthOut)))]
pub async fn live() -> Json<HealthOut> {
    Json(HealthOut { status: "ok".into() })
}

/// The database is reachable and every migration is applied.
#[utoipa::path(operation_id = "readyz", get, path = "/readyz", tag = "health",
    responses((status = 200, body = HealthOut), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<HealthOut>, Problem> {
    match outhook_dispatcher::migrations_current(state.pool()).await {
        Ok(true) => Ok(Json(HealthOut { status: "ok".into() })),
        Ok(false) => Err(Problem::new(
            ProblemKind::Unavailable,
            "the database schema is behind this build: run `outhook migrate`",
        )),
        Err(e) => Err(Problem::new(
            ProblemKind::Unavailable,
            format!("database unreachable: {e}"),
        )),
    }
}

/// Prometheus text exposition.
#[utoipa::path(operation_id = "metrics", get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn metrics(State(state): State<AppState>) -> Response {
    match state.metrics() {
        Some(handle) => {
            let mut response = handle.render().into_response();
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            response
        }
        None => Problem::new(ProblemKind::NotFound, "metrics are not enabled").into_response(),
    }
}
