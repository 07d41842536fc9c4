//! `/v1/event-types` and `/v1/event-catalog`: the provider's event catalog.
//! Admin tokens write it; every token reads it.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use http::StatusCode;
use outhook_dispatcher::db::event_type::EventType;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};

use super::{ApiJson, ApiPath, ApiQuery};
use crate::admin::event_type::{self as admin, CatalogFile, EventTypeInput};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// An event type to add or replace (its name is in the path).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EventTypeIn {
    /// What it means, for the provider's customers.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// The group it is listed under.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub group: String,
    /// A JSON Schema its payloads follow.
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<serde_json::Value>,
    /// Example payloads (objects or arrays), kept byte for byte.
    #[serde(default)]
    #[schema(value_type = Vec<serde_json::Value>, max_items = 20)]
    pub examples: Vec<Box<RawValue>>,
    /// Check payloads of this type against the schema at the API.
    #[serde(default)]
    pub validate: bool,
    /// No longer offered to new subscriptions (still sent).
    #[serde(default)]
    pub deprecated: bool,
}

/// An event type in the catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeOut {
    /// Its name.
    pub name: String,
    /// What it means.
    pub description: String,
    /// The group it is listed under (empty: none).
    pub group: String,
    /// A JSON Schema its payloads follow.
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<serde_json::Value>,
    /// Example payloads, byte for byte as given.
    #[schema(value_type = Vec<serde_json::Value>)]
    pub examples: Vec<Box<RawValue>>,
    /// Whether the API checks payloads against the schema.
    pub validate: bool,
    /// No longer offered to new subscriptions.
    pub deprecated: bool,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<EventType> for EventTypeOut {
    fn from(t: EventType) -> Self {
        Self {
            name: t.name,
            description: t.description,
            group: t.group,
            schema: t.schema,
            examples: t.examples,
            validate: t.validate,
            deprecated: t.deprecated,
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

/// The catalog's event types.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventTypeList {
    /// Every event type, by group and name.
    pub data: Vec<EventTypeOut>,
}

/// The catalog as a whole: its strict mode and its event types.
#[derive(Debug, Serialize, ToSchema)]
pub struct CatalogOut {
    /// Events of types not in the catalog are refused, on every path.
    pub strict: bool,
    /// Every event type, by group and name.
    pub event_types: Vec<EventTypeOut>,
}

/// One event type of a catalog file.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntryIn {
    /// Its name.
    #[schema(min_length = 1, max_length = 128, pattern = "^[A-Za-z0-9][A-Za-z0-9._:-]*$")]
    pub name: String,
    /// What it means.
    #[serde(default)]
    #[schema(max_length = 2000)]
    pub description: String,
    /// The group it is listed under.
    #[serde(default)]
    #[schema(max_length = 100)]
    pub group: String,
    /// A JSON Schema its payloads follow.
    #[schema(value_type = Option<serde_json::Value>)]
    pub schema: Option<serde_json::Value>,
    /// Example payloads.
    #[serde(default)]
    #[schema(value_type = Vec<serde_json::Value>, max_items = 20)]
    pub examples: Vec<Box<RawValue>>,
    /// Check payloads against the schema at the API.
    #[serde(default)]
    pub validate: bool,
    /// No longer offered to new subscriptions.
    #[serde(default)]
    pub deprecated: bool,
}

/// A whole catalog to apply (the file format of `outhook event-type apply`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogIn {
    /// Turn strict mode on or off; absent: leave it.
    pub strict: Option<bool>,
    /// The event types, each added or replaced.
    pub event_types: Vec<CatalogEntryIn>,
}

/// What applying a catalog did.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppliedOut {
    /// Types added or changed.
    pub changed: Vec<String>,
    /// Types already as given.
    pub unchanged: Vec<String>,
    /// Types removed (with `prune=true`).
    pub removed: Vec<String>,
    /// Strict mode after applying.
    pub strict: bool,
}

/// Catalog settings to change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogPatchIn {
    /// Refuse events of types not in the catalog.
    pub strict: bool,
}

/// Query of `PUT /v1/event-catalog`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ApplyParams {
    /// Remove event types the catalog given does not list.
    pub prune: Option<bool>,
}

fn input(name: String, i: EventTypeIn) -> EventTypeInput {
    EventTypeInput {
        name,
        description: i.description,
        group: i.group,
        schema: i.schema,
        examples: i.examples,
        validate: i.validate,
        deprecated: i.deprecated,
    }
}

/// List the event catalog.
#[utoipa::path(operation_id = "event_type_list", get, path = "/v1/event-types", tag = "event types",
    responses((status = 200, body = EventTypeList), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(State(state): State<AppState>, Caller(_): Caller) -> Result<Json<EventTypeList>, Problem> {
    let data = admin::list(state.pool()).await?;
    Ok(Json(EventTypeList {
        data: data.into_iter().map(Into::into).collect(),
    }))
}

/// Read one event type.
#[utoipa::path(operation_id = "event_type_get", get, path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path)),
    responses((status = 200, body = EventTypeOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Caller(_): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<Json<EventTypeOut>, Problem> {
    Ok(Json(admin::get(state.pool(), &name).await?.into()))
}

/// Add or replace an event type (admin tokens).
#[utoipa::path(operation_id = "event_type_put", put, path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path)), request_body = EventTypeIn,
    responses((status = 200, body = EventTypeOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn put(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<EventTypeIn>,
) -> Result<Json<EventTypeOut>, Problem> {
    let (t, _) = admin::put(state.pool(), &scope, input(name, body)).await?;
    Ok(Json(t.into()))
}

/// Remove an event type (admin tokens). Endpoints keep their subscriptions.
#[utoipa::path(operation_id = "event_type_delete", delete, path = "/v1/event-types/{name}", tag = "event types",
    params(("name" = String, Path)),
    responses((status = 204), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn delete(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(name): ApiPath<String>,
) -> Result<StatusCode, Problem> {
    admin::delete(state.pool(), &scope, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Read the whole catalog, in the form `PUT /v1/event-catalog` takes.
#[utoipa::path(operation_id = "event_catalog_get", get, path = "/v1/event-catalog", tag = "event types",
    responses((status = 200, body = CatalogOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn catalog(State(state): State<AppState>, Caller(_): Caller) -> Result<Json<CatalogOut>, Problem> {
    let pool = state.pool();
    Ok(Json(CatalogOut {
        strict: admin::strict(pool).await?,
        event_types: admin::list(pool).await?.into_iter().map(Into::into).collect(),
    }))
}

/// Apply a whole catalog in one transaction (admin tokens); applying the
/// same catalog again changes nothing.
#[utoipa::path(operation_id = "event_catalog_apply", put, path = "/v1/event-catalog", tag = "event types",
    params(ApplyParams), request_body = CatalogIn,
    responses((status = 200, body = AppliedOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn apply(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiQuery(params): ApiQuery<ApplyParams>,
    ApiJson(body): ApiJson<CatalogIn>,
) -> Result<Json<AppliedOut>, Problem> {
    let file = CatalogFile {
        strict: body.strict,
        event_types: body
            .event_types
            .into_iter()
            .map(|e| EventTypeInput {
                name: e.name,
                description: e.description,
                group: e.group,
                schema: e.schema,
                examples: e.examples,
                validate: e.validate,
                deprecated: e.deprecated,
            })
            .collect(),
    };
    let done = admin::apply(state.pool(), &scope, file, params.prune.unwrap_or(false)).await?;
    Ok(Json(AppliedOut {
        changed: done.changed,
        unchanged: done.unchanged,
        removed: done.removed,
        strict: done.strict,
    }))
}

/// Turn the catalog's strict mode on or off (admin tokens).
#[utoipa::path(operation_id = "event_catalog_update", patch, path = "/v1/event-catalog", tag = "event types",
    request_body = CatalogPatchIn,
    responses((status = 200, body = CatalogOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiJson(body): ApiJson<CatalogPatchIn>,
) -> Result<Json<CatalogOut>, Problem> {
    admin::set_strict(state.pool(), &scope, body.strict).await?;
    catalog(State(state), Caller(scope)).await
}
