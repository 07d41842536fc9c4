//! `/v1/messages`.

use axum::Json;
use axum::extract::State;
use http::StatusCode;
use serde::Deserialize;
use tracing::Instrument as _;
use utoipa::IntoParams;

use super::model::{MessageCreatedOut, MessageDetailOut, MessageIn, MessagePage, ReplayIn, ReplayOut};
use super::{ApiJson, ApiPath, ApiQuery};
use crate::admin::message::{self as admin, ListQuery};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;
use outhook_dispatcher::Event;

/// Query of `GET /v1/messages`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListParams {
    /// Only this event type.
    pub event_type: Option<String>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,18}$")]
    pub cursor: Option<String>,
    /// Page size, 1 to 250 (default 50).
    #[param(minimum = 1, maximum = 250)]
    pub limit: Option<i64>,
}

/// Send a message: enqueued in one transaction with its fan-out, as an
/// `INSERT` into the outbox would. 201 when new; 200 with `duplicate` when
/// its `event_id` was sent before.
#[utoipa::path(operation_id = "message_create", post, path = "/v1/messages", tag = "messages", request_body = MessageIn,
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "Retries with the same key get the first answer: 1 to 255 visible ASCII characters"),
        ("traceparent" = Option<String>, Header, description = "W3C trace context: the message's delivery attempts join this trace (as children of the enqueue's span when this server exports traces). A value that is not a version-00 traceparent is ignored, as the W3C says")),
    responses((status = 201, body = MessageCreatedOut), (status = 200, body = MessageCreatedOut, description = "the event_id was sent before"),
        (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Caller(scope): Caller,
    headers: axum::http::HeaderMap,
    ApiJson(input): ApiJson<MessageIn>,
) -> Result<(StatusCode, Json<MessageCreatedOut>), Problem> {
    // The enqueue as a span of the caller's trace (its `traceparent`
    // header); the message carries this span's context, or the caller's
    // when traces are not exported here, to its delivery attempts.
    let caller = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .filter(|tp| outhook_dispatcher::trace_context::is_valid(tp));
    let span = tracing::info_span!("enqueue", event_type = %input.event_type, message_id = tracing::field::Empty);
    if let Some(tp) = caller {
        outhook_dispatcher::trace_context::set_parent(&span, tp);
    }
    let traceparent = outhook_dispatcher::trace_context::of(&span).or_else(|| caller.map(str::to_owned));
    create_in(state, scope, input, traceparent.as_deref())
        .instrument(span.clone())
        .await
        .inspect(|(_, Json(out))| {
            span.record("message_id", tracing::field::display(&out.message.uid));
        })
}

async fn create_in(
    state: AppState,
    scope: crate::admin::Scope,
    input: MessageIn,
    traceparent: Option<&str>,
) -> Result<(StatusCode, Json<MessageCreatedOut>), Problem> {
    state
        .schemas()
        .check(
            state.pool(),
            state.config().validate_event_schemas,
            &input.event_type,
            input.payload.get(),
        )
        .await?;
    let done = state
        .ingest()
        .create(
            state.pool(),
            &scope,
            Event {
                event_type: &input.event_type,
                payload: input.payload.get(),
                owner: input.owner.as_deref(),
                endpoint_id: input.endpoint_id,
                event_id: input.event_id.as_deref(),
                traceparent,
            },
        )
        .await?;
    let status = if done.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((
        status,
        Json(MessageCreatedOut {
            message: done.message.into(),
            deliveries: done.deliveries,
            duplicate: done.duplicate,
        }),
    ))
}

/// List messages, newest first.
#[utoipa::path(operation_id = "message_list", get, path = "/v1/messages", tag = "messages", params(ListParams),
    responses((status = 200, body = MessagePage), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(q): ApiQuery<ListParams>,
) -> Result<Json<MessagePage>, Problem> {
    let page = admin::list(
        state.pool(),
        &scope,
        ListQuery {
            event_type: q.event_type,
            cursor: q.cursor,
            limit: q.limit,
        },
    )
    .await?;
    Ok(Json(MessagePage {
        data: page.data.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Read a message with its deliveries.
#[utoipa::path(operation_id = "message_get", get, path = "/v1/messages/{id}", tag = "messages", params(("id" = i64, Path)),
    responses((status = 200, body = MessageDetailOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<MessageDetailOut>, Problem> {
    let (message, deliveries) = admin::get(state.pool(), &scope, id).await?;
    Ok(Json(MessageDetailOut {
        message: message.into(),
        deliveries: deliveries.into_iter().map(Into::into).collect(),
    }))
}

/// Send a message to an endpoint again, with a fresh retry cycle.
#[utoipa::path(operation_id = "message_replay", post, path = "/v1/messages/{id}/replay", tag = "messages", params(("id" = i64, Path),
        ("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = r"^[!-~]([ -~]*[!-~])?$", description = "Retries with the same key get the first answer: 1 to 255 visible ASCII characters")),
    request_body = ReplayIn,
    responses((status = 202, body = ReplayOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn replay(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<i64>,
    ApiJson(input): ApiJson<ReplayIn>,
) -> Result<(StatusCode, Json<ReplayOut>), Problem> {
    let delivery_id = admin::replay(state.pool(), &scope, id, input.endpoint_id).await?;
    Ok((StatusCode::ACCEPTED, Json(ReplayOut { delivery_id })))
}
