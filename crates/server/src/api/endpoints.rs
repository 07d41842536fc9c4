//! `/v1/endpoints`.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use outhook_dispatcher::db::endpoint::Limits;
use outhook_signer::Secret;
use serde::Deserialize;
use utoipa::IntoParams;
use uuid::Uuid;

use super::model::{
    EndpointCreatedOut, EndpointIn, EndpointOut, EndpointPage, EndpointPatchIn, RotateIn, RotateOut, SecretOut,
    SecretsOut,
};
use super::{ApiJson, ApiJsonOrEmpty, ApiPath, ApiQuery};
use crate::admin::endpoint::{self as admin, EndpointInput, EndpointPatch, ListQuery};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// Query of `GET /v1/endpoints`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this owner's (admin tokens).
    pub owner: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) endpoints.
    pub enabled: Option<bool>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,16}_[0-9a-f]{32}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    pub limit: Option<i64>,
}

/// Create an endpoint. Its secret is in the answer, this once.
#[utoipa::path(operation_id = "endpoint_create", post, path = "/v1/endpoints", tag = "endpoints", request_body = EndpointIn,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "Retries with the same key get the first answer: 1 to 255 visible ASCII characters")),
    responses((status = 201, body = EndpointCreatedOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiJson(input): ApiJson<EndpointIn>,
) -> Result<(StatusCode, Json<EndpointCreatedOut>), Problem> {
    let created = admin::create_limited(
        state.pool(),
        &scope,
        &state.config().addresses,
        Some(state.config().max_endpoints_per_owner),
        EndpointInput {
            owner: input.owner,
            url: input.url,
            scheme: input.scheme,
            scheme_settings: input.scheme_settings,
            event_types: input.event_types,
            headers: input.headers,
            description: input.description,
            secret: input.secret.map(Secret::new),
            signing_key: input.signing_key,
            message_id_header: input.message_id_header,
            auto_disable_after: input.auto_disable_after_seconds.map(std::time::Duration::from_secs),
            fifo: input.fifo,
            limits: Limits {
                rate: input.rate_limit.filter(|r| *r != 0.0),
                burst: input.rate_limit_burst.filter(|b| *b != 0),
                max_in_flight: input.max_in_flight.filter(|m| *m != 0),
            },
            filter: input.filter,
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(EndpointCreatedOut {
            endpoint: created.endpoint.into(),
            secret: created.secret.map(|s| s.expose().to_owned()),
        }),
    ))
}

/// List endpoints, oldest first.
#[utoipa::path(operation_id = "endpoint_list", get, path = "/v1/endpoints", tag = "endpoints", params(ListParams),
    responses((status = 200, body = EndpointPage), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<EndpointPage>, Problem> {
    let page = admin::list(
        state.pool(),
        &scope,
        ListQuery {
            owner: q.owner,
            enabled: q.enabled,
            cursor: q.cursor,
            limit: q.limit,
        },
    )
    .await?;
    Ok(Json(EndpointPage {
        data: page.data.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Read an endpoint.
#[utoipa::path(operation_id = "endpoint_get", get, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = Uuid, Path)),
    responses((status = 200, body = EndpointOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<EndpointOut>, Problem> {
    Ok(Json(admin::get(state.pool(), &scope, id).await?.into()))
}

/// Change an endpoint: URL, event types, static headers, scheme settings,
/// description, enabled.
#[utoipa::path(operation_id = "endpoint_update", patch, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = Uuid, Path)), request_body = EndpointPatchIn,
    responses((status = 200, body = EndpointOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(patch): ApiJson<EndpointPatchIn>,
) -> Result<Json<EndpointOut>, Problem> {
    let endpoint = admin::update(
        state.pool(),
        &scope,
        &state.config().addresses,
        id,
        EndpointPatch {
            url: patch.url,
            event_types: patch.event_types,
            headers: patch.headers,
            scheme_settings: patch.scheme_settings,
            description: patch.description,
            enabled: patch.enabled,
            disabled_reason: patch.disabled_reason,
            message_id_header: patch.message_id_header,
            auto_disable_after: patch.auto_disable_after_seconds.map(std::time::Duration::from_secs),
            fifo: patch.fifo,
            rate_limit: patch.rate_limit,
            rate_limit_burst: patch.rate_limit_burst,
            max_in_flight: patch.max_in_flight,
            filter: patch.filter,
        },
    )
    .await?;
    Ok(Json(endpoint.into()))
}

/// Delete an endpoint; its pending deliveries become dead letters.
#[utoipa::path(operation_id = "endpoint_delete", delete, path = "/v1/endpoints/{id}", tag = "endpoints", params(("id" = Uuid, Path)),
    responses((status = 204), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<StatusCode, Problem> {
    admin::delete(state.pool(), &scope, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read what the endpoint's owner verifies with: its unexpired secrets.
#[utoipa::path(operation_id = "endpoint_secret_get", get, path = "/v1/endpoints/{id}/secret", tag = "endpoints", params(("id" = Uuid, Path)),
    responses((status = 200, body = SecretsOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn secret(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<SecretsOut>, Problem> {
    let keys = admin::secrets(state.pool(), &scope, id).await?;
    Ok(Json(SecretsOut {
        secrets: keys
            .secrets
            .into_iter()
            .map(|(s, expires_at)| SecretOut {
                secret: s.expose().to_owned(),
                expires_at,
            })
            .collect(),
        signing_key_id: keys.signing_key_id,
    }))
}

/// Add a new secret; the current ones keep signing for the grace period.
#[utoipa::path(operation_id = "endpoint_secret_rotate", post, path = "/v1/endpoints/{id}/secret/rotate", tag = "endpoints", params(("id" = Uuid, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "Retries with the same key get the first answer: 1 to 255 visible ASCII characters")),
    request_body = RotateIn,
    responses((status = 200, body = RotateOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn rotate(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJsonOrEmpty(input): ApiJsonOrEmpty<RotateIn>,
) -> Result<Json<RotateOut>, Problem> {
    let grace = Duration::from_secs(input.grace_period_seconds.unwrap_or(86_400));
    let secret = admin::rotate_secret(state.pool(), &scope, id, grace, input.secret.map(Secret::new)).await?;
    Ok(Json(RotateOut {
        secret: secret.expose().to_owned(),
    }))
}
