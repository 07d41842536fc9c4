//! Every failure the API answers with, as RFC 9457 problem details
//! (`application/problem+json`). Each kind has a stable `type` URI that
//! clients can match on; this file is the one list of them.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};
use serde::Serialize;
use utoipa::ToSchema;

/// The kinds of problem, each with its status and stable `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProblemKind {
    /// No bearer token, or one that is unknown, revoked or expired.
    Unauthorized,
    /// The resource does not exist, or belongs to another owner.
    NotFound,
    /// The request body is not well-formed JSON, or not the expected shape.
    InvalidJson,
    /// The request body is not `application/json`.
    UnsupportedMediaType,
    /// The request body is over the size limit.
    PayloadTooLarge,
    /// A message payload that is not a JSON object or array.
    InvalidPayload,
    /// A scheme name that no signer knows.
    UnknownScheme,
    /// Scheme settings, a secret or a key that cannot be used.
    InvalidSettings,
    /// A request that does not fit the resource's current state: settings
    /// or a secret for another scheme than the endpoint's, a burst for an
    /// endpoint without a rate limit, strict mode on an empty catalog.
    Conflict,
    /// An endpoint URL that is malformed or not http(s).
    InvalidUrl,
    /// An endpoint URL whose address is private or reserved and not allowlisted.
    AddressRefused,
    /// A query or body parameter out of range or malformed.
    InvalidParameter,
    /// An event whose type breaks the naming rule, or that a strict event
    /// catalog does not hold.
    EventTypeRefused,
    /// A content filter that does not parse; the detail names the column.
    InvalidFilter,
    /// A payload that does not match its event type's JSON Schema; `errors`
    /// lists where and why.
    SchemaMismatch,
    /// The owner has as many endpoints as the operator allows.
    EndpointLimit,
    /// The token's scope may not do this (an owner token writing the
    /// provider's event catalog).
    Forbidden,
    /// An `Idempotency-Key` reused for a different request, or whose first
    /// request is still running.
    IdempotencyConflict,
    /// The database is unreachable.
    Unavailable,
    /// Anything else: a bug.
    Internal,
}

impl ProblemKind {
    /// Every kind, for documentation and tests.
    pub const ALL: &'static [ProblemKind] = &[
        Self::Unauthorized,
        Self::NotFound,
        Self::InvalidJson,
        Self::UnsupportedMediaType,
        Self::PayloadTooLarge,
        Self::InvalidPayload,
        Self::UnknownScheme,
        Self::InvalidSettings,
        Self::Conflict,
        Self::InvalidUrl,
        Self::AddressRefused,
        Self::InvalidParameter,
        Self::EventTypeRefused,
        Self::InvalidFilter,
        Self::SchemaMismatch,
        Self::EndpointLimit,
        Self::Forbidden,
        Self::IdempotencyConflict,
        Self::Unavailable,
        Self::Internal,
    ];

    /// The last part of the `type` URI.
    pub fn slug(self) -> &'static str {
        match self {
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not-found",
            Self::InvalidJson => "invalid-json",
            Self::UnsupportedMediaType => "unsupported-media-type",
            Self::PayloadTooLarge => "payload-too-large",
            Self::InvalidPayload => "invalid-payload",
            Self::UnknownScheme => "unknown-scheme",
            Self::InvalidSettings => "invalid-settings",
            Self::Conflict => "conflict",
            Self::InvalidUrl => "invalid-url",
            Self::AddressRefused => "address-refused",
            Self::InvalidParameter => "invalid-parameter",
            Self::EventTypeRefused => "event-type-refused",
            Self::InvalidFilter => "invalid-filter",
            Self::SchemaMismatch => "schema-mismatch",
            Self::EndpointLimit => "endpoint-limit",
            Self::Forbidden => "forbidden",
            Self::IdempotencyConflict => "idempotency-conflict",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The stable `type` URI: `urn:outhook:problem:<slug>`.
    pub fn type_uri(self) -> String {
        format!("urn:outhook:problem:{}", self.slug())
    }

    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::InvalidJson | Self::InvalidParameter => StatusCode::BAD_REQUEST,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::InvalidPayload
            | Self::UnknownScheme
            | Self::InvalidSettings
            | Self::InvalidUrl
            | Self::InvalidFilter
            | Self::SchemaMismatch => StatusCode::UNPROCESSABLE_ENTITY,
            // Refusals that depend on the server's policy or state, not on
            // the request's form: the address allowlist, the catalog in
            // strict mode, the owner's count of endpoints, the resource as it is.
            Self::Forbidden | Self::AddressRefused => StatusCode::FORBIDDEN,
            Self::IdempotencyConflict | Self::EventTypeRefused | Self::EndpointLimit | Self::Conflict => {
                StatusCode::CONFLICT
            }
            Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// A short, fixed summary of the kind.
    pub fn title(self) -> &'static str {
        match self {
            Self::Unauthorized => "Missing or invalid bearer token",
            Self::NotFound => "Not found",
            Self::InvalidJson => "The request body is not valid JSON of the expected shape",
            Self::UnsupportedMediaType => "The request body must be application/json",
            Self::PayloadTooLarge => "The request body is too large",
            Self::InvalidPayload => {
                "The message payload cannot be taken: it must be a JSON object or array, readable as sent"
            }
            Self::UnknownScheme => "Unknown signing scheme",
            Self::InvalidSettings => "Unusable scheme settings, secret or key",
            Self::Conflict => "The request does not fit the resource's current state",
            Self::InvalidUrl => "Invalid endpoint URL",
            Self::AddressRefused => "The endpoint's address is private or reserved",
            Self::InvalidParameter => "Invalid parameter",
            Self::EventTypeRefused => "The event type is refused",
            Self::InvalidFilter => "The content filter does not parse",
            Self::SchemaMismatch => "The payload does not match its event type's schema",
            Self::EndpointLimit => "The owner has the most endpoints allowed",
            Self::Forbidden => "This token may not do this",
            Self::IdempotencyConflict => "Idempotency-Key conflict",
            Self::Unavailable => "The database is unavailable",
            Self::Internal => "Internal error",
        }
    }
}

/// An RFC 9457 problem details document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// A stable URI naming the kind of problem, `urn:outhook:problem:<slug>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What was wrong with this request.
    pub detail: String,
    /// For `schema-mismatch`: each failing place of the payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemError>>,
    #[serde(skip)]
    kind: Option<ProblemKind>,
}

/// One failing place of a payload.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProblemError {
    /// A JSON Pointer to the failing value (empty: the whole payload).
    pub path: String,
    /// What is wrong there.
    pub message: String,
}

impl Problem {
    /// A problem of `kind` with a request-specific `detail`.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            type_: kind.type_uri(),
            title: kind.title().to_owned(),
            status: kind.status().as_u16(),
            detail: detail.into(),
            errors: None,
            kind: Some(kind),
        }
    }

    /// Its kind.
    pub fn kind(&self) -> Option<ProblemKind> {
        self.kind
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

impl From<crate::admin::Error> for Problem {
    fn from(e: crate::admin::Error) -> Self {
        use crate::admin::Error as E;
        let kind = match &e {
            E::NotFound(_) => ProblemKind::NotFound,
            E::Url(outhook_dispatcher::http::UrlError::Refused(_)) | E::AddressRefused(_) => {
                ProblemKind::AddressRefused
            }
            E::Url(_) => ProblemKind::InvalidUrl,
            E::UnknownScheme(_) => ProblemKind::UnknownScheme,
            E::Settings(_) => ProblemKind::InvalidSettings,
            E::Conflict(_) => ProblemKind::Conflict,
            E::Payload(_) => ProblemKind::InvalidPayload,
            E::Parameter { .. } => ProblemKind::InvalidParameter,
            E::EventRefused(_) => ProblemKind::EventTypeRefused,
            E::PayloadTooLarge(_) => ProblemKind::PayloadTooLarge,
            E::Filter(_) => ProblemKind::InvalidFilter,
            E::SchemaMismatch { .. } => ProblemKind::SchemaMismatch,
            E::EndpointLimit { .. } => ProblemKind::EndpointLimit,
            E::Forbidden(_) => ProblemKind::Forbidden,
            E::Database(_) | E::Unavailable(_) => ProblemKind::Unavailable,
            E::Internal(_) => ProblemKind::Internal,
        };
        if matches!(kind, ProblemKind::Unavailable | ProblemKind::Internal) {
            tracing::error!(error = %e, source = ?std::error::Error::source(&e), "request failed");
        }
        let mut problem = Problem::new(kind, e.to_string());
        if let E::SchemaMismatch { failures, .. } = e {
            problem.errors = Some(
                failures
                    .into_iter()
                    .map(|f| ProblemError {
                        path: f.path,
                        message: f.message,
                    })
                    .collect(),
            );
        }
        problem
    }
}
