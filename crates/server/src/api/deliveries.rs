//! `/v1/deliveries`, and an endpoint's recovery and stats.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use http::StatusCode;
use outhook_dispatcher::db::delivery::DeliveryStatus;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::model::{DeliveryDetailOut, DeliveryOut, DeliveryPage, RecoverIn, RequeuedOut, StatsOut};
use super::{ApiJson, ApiPath, ApiQuery};
use crate::admin::Error;
use crate::admin::delivery::{self as admin, ListQuery};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// Query of `GET /v1/deliveries`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// `pending`, `delivered` or `dead`.
    #[param(pattern = "^(pending|delivered|dead)$")]
    pub status: Option<String>,
    /// Only this endpoint's.
    pub endpoint_id: Option<Uuid>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only messages enqueued at or after this time (RFC 3339).
    pub since: Option<DateTime<Utc>>,
    /// Only messages enqueued before this time (RFC 3339).
    pub until: Option<DateTime<Utc>>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    pub limit: Option<i64>,
}

/// List deliveries, newest first.
#[utoipa::path(operation_id = "delivery_list", get, path = "/v1/deliveries", tag = "deliveries", params(ListParams),
    responses((status = 200, body = DeliveryPage), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<DeliveryPage>, Problem> {
    let status = q
        .status
        .as_deref()
        .map(|s| s.parse::<DeliveryStatus>())
        .transpose()
        .map_err(|_| Error::parameter("status", "pending, delivered or dead"))?;
    let page = admin::list(
        state.pool(),
        &scope,
        ListQuery {
            status,
            endpoint_id: q.endpoint_id,
            event_type: q.event_type,
            since: q.since,
            until: q.until,
            cursor: q.cursor,
            limit: q.limit,
        },
    )
    .await?;
    Ok(Json(DeliveryPage {
        data: page.data.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Read a delivery with every attempt: request headers as sent, body
/// SHA-256, response excerpt, outcome, duration.
#[utoipa::path(operation_id = "delivery_get", get, path = "/v1/deliveries/{id}", tag = "deliveries", params(("id" = i64, Path)),
    responses((status = 200, body = DeliveryDetailOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<DeliveryDetailOut>, Problem> {
    let (delivery, attempts) = admin::get(state.pool(), &scope, id).await?;
    Ok(Json(DeliveryDetailOut {
        delivery: delivery.into(),
        attempt_log: attempts.into_iter().map(Into::into).collect(),
    }))
}

/// Retry a delivery now with a fresh retry cycle (a dead letter comes back;
/// a delivered one is sent again).
#[utoipa::path(operation_id = "delivery_retry", post, path = "/v1/deliveries/{id}/retry", tag = "deliveries", params(("id" = i64, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "Retries with the same key get the first answer: 1 to 255 visible ASCII characters")),
    responses((status = 202, body = DeliveryOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn retry(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<(StatusCode, Json<DeliveryOut>), Problem> {
    let delivery = admin::retry(state.pool(), &scope, id).await?;
    Ok((StatusCode::ACCEPTED, Json(delivery.into())))
}

/// Re-queue an endpoint's dead letters of messages enqueued since a time.
#[utoipa::path(operation_id = "endpoint_recover", post, path = "/v1/endpoints/{id}/recover", tag = "endpoints", params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "Retries with the same key get the first answer: 1 to 255 visible ASCII characters")),
    request_body = RecoverIn,
    responses((status = 202, body = RequeuedOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn recover(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<RecoverIn>,
) -> Result<(StatusCode, Json<RequeuedOut>), Problem> {
    let requeued = admin::recover(state.pool(), &scope, id, input.since).await?;
    Ok((StatusCode::ACCEPTED, Json(RequeuedOut { requeued })))
}

/// Query of `GET /v1/endpoints/{id}/stats`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatsParams {
    /// `24h` (default) or `7d`.
    #[param(pattern = "^(24h|7d)$")]
    pub period: Option<String>,
}

/// An endpoint's attempts by hour and outcome, over 24 hours or 7 days.
#[utoipa::path(operation_id = "endpoint_stats", get, path = "/v1/endpoints/{id}/stats", tag = "endpoints", params(("id" = Uuid, Path), StatsParams),
    responses((status = 200, body = StatsOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn stats(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiQuery(q): ApiQuery<StatsParams>,
) -> Result<Json<StatsOut>, Problem> {
    let hours = match q.period.as_deref() {
        None | Some("24h") => 24,
        Some("7d") => 168,
        Some(_) => return Err(Error::parameter("period", "24h or 7d").into()),
    };
    let buckets = admin::stats(state.pool(), &scope, id, hours).await?;
    Ok(Json(StatsOut {
        period_hours: hours,
        buckets: buckets.into_iter().map(Into::into).collect(),
    }))
}
