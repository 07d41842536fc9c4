//! The JSON the API takes and returns. Field names follow the SQL columns.
//! The portal renders from these same types.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use outhook_dispatcher::db::attempt::{Attempt, HourlyOutcome};
use outhook_dispatcher::db::delivery::Delivery;
use outhook_dispatcher::db::endpoint::Endpoint;
use outhook_dispatcher::db::outbox::Message;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointIn {
    /// The provider's customer it belongs to; required with an admin token,
    /// implied by an owner's token.
    pub owner: Option<String>,
    /// Where to POST (http or https; private addresses are refused unless allowlisted).
    pub url: String,
    /// A signing scheme: `standard-webhooks`, `standard-webhooks-v1a`, `trr`, `real-id`,
    /// `rheo`, `cometh`, `github`, `stripe`, or `hmac` with `scheme_settings`.
    pub scheme: String,
    /// Custom HMAC settings, for scheme `hmac`.
    #[schema(value_type = Option<Object>)]
    pub scheme_settings: Option<serde_json::Value>,
    /// Subscribed event types; empty or absent for every type.
    #[serde(default)]
    pub event_types: Vec<String>,
    /// Static headers added to every request (values are never shown again).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Free text.
    #[serde(default)]
    pub description: String,
    /// Use this secret instead of generating one.
    pub secret: Option<String>,
    /// For RSA schemes: the signing key's id or name (default: `default`).
    pub signing_key: Option<String>,
    /// The header that carries the message id (the same on every retry) for
    /// schemes whose own headers do not: default `webhook-id`; `""` for none.
    pub message_id_header: Option<String>,
    /// Disable the endpoint (holding its deliveries) after this many seconds
    /// of failed attempts without a success; default: the worker's (5 days);
    /// 0: never.
    #[schema(minimum = 0, maximum = 31536000)]
    #[serde(default, deserialize_with = "whole::option")]
    pub auto_disable_after_seconds: Option<u64>,
    /// Ordered: deliveries are attempted one at a time, in outbox order; a
    /// failing one holds its successors back until it is delivered or dead.
    #[serde(default)]
    pub fifo: bool,
    /// At most this many requests per second to the endpoint, across every
    /// worker; absent or 0: no limit.
    #[schema(minimum = 0, maximum = 1000000)]
    pub rate_limit: Option<f64>,
    /// How many requests may go back to back within the rate (default 1);
    /// needs `rate_limit`.
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole::option")]
    pub rate_limit_burst: Option<i32>,
    /// At most this many attempts in flight at once, across every worker;
    /// absent or 0: no limit.
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole::option")]
    pub max_in_flight: Option<i32>,
    /// A content filter on the payload, such as `collection = "0xabc" and amount >= 10`:
    /// only matching events of its types are delivered (see the README for the language).
    #[schema(max_length = 4096)]
    pub filter: Option<String>,
}

/// Changes to an endpoint; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatchIn {
    /// A new URL.
    pub url: Option<String>,
    /// New subscribed event types (empty for every type).
    pub event_types: Option<Vec<String>>,
    /// New static headers, replacing the old ones.
    pub headers: Option<BTreeMap<String, String>>,
    /// New custom HMAC settings (scheme `hmac`).
    #[schema(value_type = Option<Object>)]
    pub scheme_settings: Option<serde_json::Value>,
    /// A new description.
    pub description: Option<String>,
    /// Enable or disable deliveries.
    pub enabled: Option<bool>,
    /// Why, when disabling.
    pub disabled_reason: Option<String>,
    /// A new message-id header name; `""` for none.
    pub message_id_header: Option<String>,
    /// A new auto-disable window in seconds; 0: never.
    #[schema(minimum = 0, maximum = 31536000)]
    #[serde(default, deserialize_with = "whole::option")]
    pub auto_disable_after_seconds: Option<u64>,
    /// Ordered or not (deliveries already pending are not reordered).
    pub fifo: Option<bool>,
    /// A new rate limit in requests per second; 0: none (and no burst).
    #[schema(minimum = 0, maximum = 1000000)]
    pub rate_limit: Option<f64>,
    /// A new burst; 0: the default, 1.
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole::option")]
    pub rate_limit_burst: Option<i32>,
    /// A new limit of attempts in flight; 0: none.
    #[schema(minimum = 0, maximum = 1000000)]
    #[serde(default, deserialize_with = "whole::option")]
    pub max_in_flight: Option<i32>,
    /// A new content filter; empty removes it.
    #[schema(max_length = 4096)]
    pub filter: Option<String>,
}

/// An endpoint. Secrets are never part of it; static header values are `***`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointOut {
    /// Its id.
    pub id: Uuid,
    /// The owner it belongs to.
    pub owner: String,
    /// Where requests go.
    pub url: String,
    /// The signing scheme.
    pub scheme: String,
    /// Custom HMAC settings, for scheme `hmac`.
    #[schema(value_type = Option<Object>)]
    pub scheme_settings: Option<serde_json::Value>,
    /// Subscribed event types; empty for every type.
    pub event_types: Vec<String>,
    /// Whether it receives deliveries.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When it was disabled (by hand, a 410, or failing too long).
    pub disabled_at: Option<DateTime<Utc>>,
    /// Its auto-disable window in seconds, if it has its own (0: never);
    /// null: the worker's default.
    pub auto_disable_after_seconds: Option<i32>,
    /// Ordered: one delivery at a time, in outbox order.
    pub fifo: bool,
    /// Requests per second at most, across every worker; null: no limit.
    pub rate_limit: Option<f64>,
    /// Requests that may go back to back within the rate; null: 1.
    pub rate_limit_burst: Option<i32>,
    /// Attempts in flight at most, across every worker; null: no limit.
    pub max_in_flight: Option<i32>,
    /// Static header names, each with the value `***`.
    pub headers: BTreeMap<String, String>,
    /// Free text.
    pub description: String,
    /// The RSA key that signs for it (`cometh`).
    pub signing_key_id: Option<Uuid>,
    /// The header that carries the message id, or null for none.
    pub message_id_header: Option<String>,
    /// Its content filter, as written; absent: every event of its types.
    pub filter: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When its settings or secrets last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<Endpoint> for EndpointOut {
    fn from(e: Endpoint) -> Self {
        let headers = e
            .headers
            .as_object()
            .map(|m| m.keys().map(|k| (k.clone(), "***".to_owned())).collect())
            .unwrap_or_default();
        let url = e.display_url();
        Self {
            id: e.id,
            owner: e.owner,
            url,
            scheme: e.scheme,
            scheme_settings: e.scheme_settings,
            event_types: e.event_types,
            enabled: e.enabled,
            disabled_reason: e.disabled_reason,
            disabled_at: e.disabled_at,
            auto_disable_after_seconds: e.auto_disable_after_secs,
            fifo: e.fifo,
            rate_limit: e.rate_limit,
            rate_limit_burst: e.rate_limit_burst,
            max_in_flight: e.max_in_flight,
            headers,
            description: e.description,
            signing_key_id: e.signing_key_id,
            message_id_header: match e.message_id_header {
                None => Some(outhook_dispatcher::http::DEFAULT_MESSAGE_ID_HEADER.to_owned()),
                Some(n) if n.is_empty() => None,
                Some(n) => Some(n),
            },
            filter: e.filter,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

/// A created endpoint, with its secret shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointCreatedOut {
    /// The endpoint.
    #[serde(flatten)]
    pub endpoint: EndpointOut,
    /// Its first secret (shared-secret schemes; a `whsk_` key for `standard-webhooks-v1a`).
    pub secret: Option<String>,
}

/// A page of endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct EndpointPage {
    /// This page, oldest first.
    pub data: Vec<EndpointOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// One secret an endpoint's owner verifies with.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretOut {
    /// The secret (for `standard-webhooks-v1a`, the public `whpk_` key).
    pub secret: String,
    /// When it stops signing, after a rotation.
    pub expires_at: Option<DateTime<Utc>>,
}

/// What an endpoint's owner verifies requests with.
#[derive(Debug, Serialize, ToSchema)]
pub struct SecretsOut {
    /// Unexpired secrets, newest first. Empty for RSA schemes.
    pub secrets: Vec<SecretOut>,
    /// For RSA schemes: the key that signs, published at `/v1/public-keys/{id}`.
    pub signing_key_id: Option<Uuid>,
}

/// A secret rotation.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateIn {
    /// How long the current secrets keep signing (default 86400, at most 30 days).
    #[schema(minimum = 0, maximum = 2592000)]
    #[serde(default, deserialize_with = "whole::option")]
    pub grace_period_seconds: Option<u64>,
    /// Use this secret instead of generating one.
    pub secret: Option<String>,
}

/// The new secret, shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct RotateOut {
    /// The new secret.
    pub secret: String,
}

/// A new message.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageIn {
    /// The event type, such as `check.completed`.
    #[schema(min_length = 1, max_length = 256)]
    pub event_type: String,
    /// The JSON payload (object or array), kept byte for byte.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// Fan out to this owner's subscribed endpoints ...
    pub owner: Option<String>,
    /// ... or send to this one endpoint.
    pub endpoint_id: Option<Uuid>,
    /// An idempotency key: sending it again returns the first message.
    pub event_id: Option<String>,
}

/// A message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageOut {
    /// Its id.
    pub id: i64,
    /// The id receivers see (`webhook-id`), the same on every retry.
    pub uid: String,
    /// The idempotency key it was sent with.
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The payload as enqueued.
    #[schema(value_type = Object)]
    pub payload: Box<RawValue>,
    /// The owner it fanned out to.
    pub owner: Option<String>,
    /// Or the endpoint it was addressed to.
    pub endpoint_id: Option<Uuid>,
    /// When it was enqueued.
    pub created_at: DateTime<Utc>,
}

impl From<Message> for MessageOut {
    fn from(m: Message) -> Self {
        let payload = RawValue::from_string(m.payload)
            .unwrap_or_else(|_| RawValue::from_string("null".to_owned()).unwrap_or_default());
        Self {
            id: m.id,
            uid: format!("msg_{}", m.uid.simple()),
            event_id: m.event_id,
            event_type: m.event_type,
            payload,
            owner: m.owner,
            endpoint_id: m.endpoint_id,
            created_at: m.created_at,
        }
    }
}

/// An enqueued message.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageCreatedOut {
    /// The message (the first one, for a repeated `event_id`).
    #[serde(flatten)]
    pub message: MessageOut,
    /// How many deliveries it fanned out to.
    pub deliveries: i64,
    /// Whether its `event_id` was sent before, so nothing new was enqueued.
    pub duplicate: bool,
}

/// A message with its deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDetailOut {
    /// The message.
    #[serde(flatten)]
    pub message: MessageOut,
    /// Its deliveries, one per endpoint.
    pub deliveries: Vec<DeliveryOut>,
}

/// A page of messages.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessagePage {
    /// This page, newest first.
    pub data: Vec<MessageOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Send a message to an endpoint again.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayIn {
    /// The endpoint.
    pub endpoint_id: Uuid,
}

/// A delivery of one message to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryOut {
    /// Its id.
    pub id: i64,
    /// The message it delivers.
    pub message_id: i64,
    /// The id receivers see (`webhook-id`).
    pub message_uid: String,
    /// The event type.
    pub event_type: String,
    /// The endpoint it goes to.
    pub endpoint_id: Uuid,
    /// `pending`, `delivered` or `dead`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// When the next attempt is due (pending and not held only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Pending and held while its endpoint is disabled: sent when the
    /// endpoint is enabled again.
    pub held: bool,
    /// Pending behind an earlier delivery to the same ordered endpoint.
    pub queued: bool,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// When the message was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

impl From<Delivery> for DeliveryOut {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            message_id: d.message_id,
            message_uid: format!("msg_{}", d.message_uid.simple()),
            event_type: d.event_type,
            endpoint_id: d.endpoint_id,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            next_attempt_at: d.next_attempt_at,
            held: d.held,
            queued: d.queued,
            last_error: d.last_error,
            enqueued_at: d.enqueued_at,
            finished_at: d.finished_at,
        }
    }
}

/// One attempt, as logged.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptOut {
    /// Its id.
    pub id: i64,
    /// 1 for the first attempt.
    pub attempt: i32,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// How long it took.
    pub duration_ms: i32,
    /// The URL it went to (credentials redacted).
    pub url: String,
    /// The request headers as sent (static header values redacted).
    #[schema(value_type = Object)]
    pub request_headers: serde_json::Value,
    /// SHA-256 of the exact body sent, in hex.
    pub body_sha256: Option<String>,
    /// The response status.
    pub status_code: Option<i16>,
    /// The response headers.
    #[schema(value_type = Option<Object>)]
    pub response_headers: Option<serde_json::Value>,
    /// The start of the response body.
    pub response_body: Option<String>,
    /// Whether the response body was longer than what was kept.
    pub response_truncated: bool,
    /// `delivered`, `http_status`, `redirect`, `timeout`, `connect`, `dns`, `tls`,
    /// `address_refused`, `body_too_large`, `signing_failed`, `unknown_endpoint`,
    /// `endpoint_disabled`, `invalid_url`, `lease_lost`, `proxy`, `oauth2_token` or
    /// `connection_settings`.
    pub outcome: String,
    /// What went wrong.
    pub error: Option<String>,
    /// When the next attempt was scheduled, if any.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The delivery had moved on before this result was written (re-queued,
    /// or its lease taken over by another attempt): the request went out,
    /// but its result changed nothing.
    pub superseded: bool,
}

impl From<Attempt> for AttemptOut {
    fn from(a: Attempt) -> Self {
        Self {
            id: a.id,
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            url: a.url,
            request_headers: a.request_headers,
            body_sha256: a.body_sha256.map(hex::encode),
            status_code: a.status_code,
            response_headers: a.response_headers,
            response_body: a.response_body,
            response_truncated: a.response_truncated,
            outcome: a.outcome,
            error: a.error,
            next_attempt_at: a.next_attempt_at,
            superseded: a.superseded,
        }
    }
}

/// A delivery with every attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetailOut {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: DeliveryOut,
    /// Every attempt, oldest first (`attempts` is their count).
    pub attempt_log: Vec<AttemptOut>,
}

/// A page of deliveries.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryPage {
    /// This page, newest first.
    pub data: Vec<DeliveryOut>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// Re-queue an endpoint's dead letters.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RecoverIn {
    /// Dead letters of messages enqueued at or after this time.
    pub since: DateTime<Utc>,
}

/// How many deliveries were re-queued.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequeuedOut {
    /// The count.
    pub requeued: u64,
}

/// A replayed delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayOut {
    /// The delivery that will be attempted again.
    pub delivery_id: i64,
}

/// Attempts of one outcome in one hour.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBucket {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// The outcome.
    pub outcome: String,
    /// How many attempts.
    pub count: i64,
}

impl From<HourlyOutcome> for StatsBucket {
    fn from(h: HourlyOutcome) -> Self {
        Self {
            hour: h.hour,
            outcome: h.outcome,
            count: h.count,
        }
    }
}

/// An endpoint's attempts by hour and outcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsOut {
    /// The period covered, in hours (24 or 168).
    pub period_hours: i64,
    /// One bucket per hour and outcome that had attempts, oldest first.
    pub buckets: Vec<StatsBucket>,
}

/// Liveness or readiness.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthOut {
    /// `ok`.
    pub status: String,
}

/// A request for a portal link.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PortalLinkIn {
    /// The owner whose portal it opens: required with an admin token,
    /// implied by an owner's token.
    pub owner: Option<String>,
    /// How long the link works, 60 to 604800 seconds (default 900). The
    /// session it opens lasts the server's portal session time.
    #[schema(minimum = 60, maximum = 604800)]
    #[serde(default, deserialize_with = "whole::option")]
    pub ttl_seconds: Option<u64>,
}

/// A portal link: open it, or put it in an iframe on an allowed origin.
#[derive(Debug, Serialize, ToSchema)]
pub struct PortalLinkOut {
    /// The address.
    pub url: String,
    /// The owner it opens.
    pub owner: String,
    /// When the link stops working.
    pub expires_at: DateTime<Utc>,
}

/// JSON numbers without a fractional part (`5` and `5.0`) as integers: JSON
/// Schema counts both as integers, and so does this API.
pub(crate) mod whole {
    use serde::de::Error as _;
    use serde::{Deserialize, Deserializer};

    fn to<T: TryFrom<i64>>(n: &serde_json::Number) -> Result<T, String> {
        let i = match (n.as_i64(), n.as_f64()) {
            (Some(i), _) => Some(i),
            // Integral and exactly representable: below 2^53.
            (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 => Some(f as i64),
            _ => None,
        };
        i.and_then(|i| T::try_from(i).ok())
            .ok_or_else(|| format!("{n} is not a whole number in range"))
    }

    /// An optional whole number.
    pub(crate) fn option<'de, D: Deserializer<'de>, T: TryFrom<i64>>(d: D) -> Result<Option<T>, D::Error> {
        Option::<serde_json::Number>::deserialize(d)?
            .map(|n| to(&n))
            .transpose()
            .map_err(D::Error::custom)
    }
}
