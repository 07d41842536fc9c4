//! `outhook.endpoint` and `outhook.endpoint_secret`.

use std::time::Duration;

use chrono::{DateTime, Utc};
use outhook_signer::Secret;
use sqlx::{PgExecutor, PgPool};
use uuid::Uuid;

use crate::error::Result;

const COLUMNS: &str = "id, owner, url, scheme, scheme_settings, event_types, enabled, disabled_reason, disabled_at, \
                       auto_disable_after_secs, fifo, rate_limit, rate_limit_burst, max_in_flight, headers, \
                       description, signing_key_id, message_id_header, content_filter, created_at, updated_at";

/// An endpoint, as administrators see it (secrets are never included).
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Endpoint {
    /// Its id.
    pub id: Uuid,
    /// The provider's customer, vendor or tenant it belongs to.
    pub owner: String,
    /// Where requests go. Its user-info (`https://user:pass@host/`) is a
    /// secret: serialised (as `endpoint list --json` prints it) as `***`;
    /// see [`Endpoint::display_url`].
    #[serde(serialize_with = "redacted_url")]
    pub url: String,
    /// The signing scheme's name (`hmac` for custom settings).
    pub scheme: String,
    /// Custom HMAC settings, for scheme `hmac`.
    pub scheme_settings: Option<serde_json::Value>,
    /// Subscribed event types; empty means all.
    pub event_types: Vec<String>,
    /// Whether it receives deliveries.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// When it was disabled.
    pub disabled_at: Option<DateTime<Utc>>,
    /// Disabled after this many seconds of failures without a success;
    /// `None`: the worker's default, `0`: never.
    pub auto_disable_after_secs: Option<i32>,
    /// Ordered: deliveries are attempted one at a time, in outbox order.
    pub fifo: bool,
    /// At most this many requests per second, across every worker.
    pub rate_limit: Option<f64>,
    /// How many requests may go at once within the rate (default 1).
    pub rate_limit_burst: Option<i32>,
    /// At most this many attempts in flight at once, across every worker.
    pub max_in_flight: Option<i32>,
    /// Static headers added to every request. They may carry credentials:
    /// serialised (as `endpoint show` prints them) with values redacted.
    #[serde(serialize_with = "redacted_values")]
    pub headers: serde_json::Value,
    /// Free text.
    pub description: String,
    /// The RSA key that signs for it (cometh).
    pub signing_key_id: Option<Uuid>,
    /// The header carrying the message id: `None` for `webhook-id`, empty
    /// for none.
    pub message_id_header: Option<String>,
    /// A content filter on the payload (see [`crate::filter`]): only
    /// matching events of its types are delivered. `None`: every one.
    #[sqlx(rename = "content_filter")]
    #[serde(rename = "filter")]
    pub filter: Option<String>,
    /// When it was made.
    pub created_at: DateTime<Utc>,
    /// When its settings or secrets last changed.
    pub updated_at: DateTime<Utc>,
}

fn redacted_url<S: serde::Serializer>(url: &str, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&crate::http::redact_url(url))
}

fn redacted_values<S: serde::Serializer>(headers: &serde_json::Value, s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let names: Vec<&String> = headers.as_object().map(|m| m.keys().collect()).unwrap_or_default();
    let mut map = s.serialize_map(Some(names.len()))?;
    for name in names {
        map.serialize_entry(name, "***")?;
    }
    map.end()
}

/// A new endpoint.
#[derive(Debug, Clone, Default)]
pub struct NewEndpoint {
    /// The owner it belongs to.
    pub owner: String,
    /// Where requests go.
    pub url: String,
    /// The signing scheme's name.
    pub scheme: String,
    /// Custom HMAC settings, for scheme `hmac`.
    pub scheme_settings: Option<serde_json::Value>,
    /// Subscribed event types; empty means all.
    pub event_types: Vec<String>,
    /// Static headers.
    pub headers: Vec<(String, String)>,
    /// Free text.
    pub description: String,
    /// The first secret (shared-secret schemes).
    pub secret: Option<Secret>,
    /// The RSA key (cometh).
    pub signing_key_id: Option<Uuid>,
    /// The header carrying the message id: `None` for `webhook-id`, empty
    /// for none.
    pub message_id_header: Option<String>,
    /// Disable after this many seconds of failures without a success;
    /// `None`: the worker's default, `0`: never.
    pub auto_disable_after_secs: Option<i32>,
    /// Ordered: one delivery at a time, in outbox order.
    pub fifo: bool,
    /// The endpoint's limits.
    pub limits: Limits,
    /// A content filter on the payload.
    pub filter: Option<crate::filter::Filter>,
    /// Refuse the insert when the owner already has this many endpoints
    /// ([`crate::Error::OwnerLimit`]).
    pub max_for_owner: Option<u32>,
}

/// An endpoint's limits, held across every worker (`None`: no limit).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Limits {
    /// Requests per second.
    pub rate: Option<f64>,
    /// Requests that may go back to back within the rate (default 1).
    pub burst: Option<i32>,
    /// Attempts in flight at once.
    pub max_in_flight: Option<i32>,
}

impl Limits {
    /// Checks the values are in range: a rate above 0 and at most 1,000,000
    /// per second, a burst and an in-flight limit from 1 to 1,000,000.
    pub fn validate(&self) -> Result<()> {
        if let Some(r) = self.rate
            && !(r > 0.0 && r <= 1_000_000.0)
        {
            return Err(crate::Error::Config(format!(
                "rate limit {r} is out of range (above 0, at most 1000000 per second)"
            )));
        }
        for (name, v) in [("burst", self.burst), ("max in flight", self.max_in_flight)] {
            if let Some(v) = v
                && !(1..=1_000_000).contains(&v)
            {
                return Err(crate::Error::Config(format!(
                    "{name} {v} is out of range (1 to 1000000)"
                )));
            }
        }
        if self.burst.is_some() && self.rate.is_none() {
            return Err(crate::Error::Config("a burst needs a rate limit".into()));
        }
        Ok(())
    }
}

fn headers_json(headers: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Object(
        headers
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), serde_json::Value::String(v.clone())))
            .collect(),
    )
}

/// Creates an endpoint and its first secret, in one transaction.
pub async fn endpoint_insert(pool: &PgPool, new: &NewEndpoint) -> Result<Endpoint> {
    new.limits.validate()?;
    let mut tx = pool.begin().await?;
    if let Some(limit) = new.max_for_owner {
        // Counted under the owner's lock, taken by a statement of its own
        // so the count's snapshot sees every insert that held it before.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('outhook.owner:' || $1, 0))")
            .bind(&new.owner)
            .execute(&mut *tx)
            .await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.endpoint WHERE owner = $1")
            .bind(&new.owner)
            .fetch_one(&mut *tx)
            .await?;
        if count >= i64::from(limit) {
            return Err(crate::Error::OwnerLimit {
                owner: new.owner.clone(),
                limit,
            });
        }
    }
    let endpoint: Endpoint = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "INSERT INTO outhook.endpoint (owner, url, scheme, scheme_settings, event_types, headers, description, signing_key_id,
                                       message_id_header, auto_disable_after_secs, fifo, rate_limit,
                                       rate_limit_burst, max_in_flight, content_filter, content_filter_path,
                                       content_filter_key_path, content_filter_key_value, content_filter_key_for,
                                       content_filter_key_whole)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16::jsonpath,
                 $17, $18::jsonb, CASE WHEN $17 IS NOT NULL THEN $16::jsonpath END, $19) RETURNING {COLUMNS}"
    )))
    .bind(&new.owner)
    .bind(&new.url)
    .bind(&new.scheme)
    .bind(&new.scheme_settings)
    .bind(&new.event_types)
    .bind(headers_json(&new.headers))
    .bind(&new.description)
    .bind(new.signing_key_id)
    .bind(&new.message_id_header)
    .bind(new.auto_disable_after_secs)
    .bind(new.fifo)
    .bind(new.limits.rate)
    .bind(new.limits.burst)
    .bind(new.limits.max_in_flight)
    .bind(new.filter.as_ref().map(crate::filter::Filter::source))
    .bind(new.filter.as_ref().map(crate::filter::Filter::jsonpath))
    .bind(new.filter.as_ref().and_then(|f| f.key()).map(|k| k.path.as_str()))
    .bind(new.filter.as_ref().and_then(|f| f.key()).map(|k| k.value.as_str()))
    .bind(new.filter.as_ref().and_then(|f| f.key()).is_some_and(|k| k.whole))
    .fetch_one(&mut *tx)
    .await?;
    if let Some(secret) = &new.secret {
        endpoint_secret_insert(&mut *tx, endpoint.id, secret).await?;
    }
    tx.commit().await?;
    Ok(endpoint)
}

async fn endpoint_secret_insert<'e>(executor: impl PgExecutor<'e>, id: Uuid, secret: &Secret) -> Result<()> {
    let stored = crate::secrets::keyring()?.seal(crate::secrets::Kind::EndpointSecret, secret.expose())?;
    sqlx::query("INSERT INTO outhook.endpoint_secret (endpoint_id, secret) VALUES ($1, $2)")
        .bind(id)
        .bind(stored)
        .execute(executor)
        .await?;
    Ok(())
}

/// Endpoints, optionally of one owner, oldest first.
pub async fn endpoint_list(pool: &PgPool, owner: Option<&str>) -> Result<Vec<Endpoint>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outhook.endpoint WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at, id"
    )))
    .bind(owner)
    .fetch_all(pool)
    .await?)
}

/// Which endpoints to list: a page after a cursor, oldest first.
#[derive(Debug, Clone, Default)]
pub struct EndpointFilter {
    /// Only this owner's.
    pub owner: Option<String>,
    /// Only enabled (`true`) or disabled (`false`) ones.
    pub enabled: Option<bool>,
    /// Only those after this (`created_at`, `id`), the last of the previous page.
    pub after: Option<(DateTime<Utc>, Uuid)>,
    /// At most this many.
    pub limit: i64,
}

/// A page of endpoints matching `filter`, oldest first.
pub async fn endpoint_list_page(pool: &PgPool, filter: &EndpointFilter) -> Result<Vec<Endpoint>> {
    let (after_at, after_id) = filter.after.unzip();
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outhook.endpoint
         WHERE ($1::text IS NULL OR owner = $1) AND ($2::bool IS NULL OR enabled = $2)
           AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4))
         ORDER BY created_at, id LIMIT $5"
    )))
    .bind(&filter.owner)
    .bind(filter.enabled)
    .bind(after_at)
    .bind(after_id)
    .bind(filter.limit)
    .fetch_all(pool)
    .await?)
}

/// Deletes an endpoint and its secrets. Its pending deliveries become dead
/// letters with the reason, in the same transaction, so nothing waits for
/// an endpoint that is gone.
pub async fn endpoint_delete(pool: &PgPool, id: Uuid) -> Result<Endpoint> {
    let mut tx = pool.begin().await?;
    let endpoint: Endpoint = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "DELETE FROM outhook.endpoint WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(crate::Error::NotFound("endpoint"))?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "UPDATE outhook.delivery SET status = 2, finished_at = now(), last_error = 'endpoint deleted', lease = lease + 1
         WHERE endpoint_id = $1 AND status IN ({})",
        crate::db::delivery::DeliveryStatus::PENDING_CODES
    )))
    .bind(id)
    .execute(&mut *tx)
    .await?;
    for table in ["endpoint_health", "fifo_head", "endpoint_limiter"] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM outhook.{table} WHERE endpoint_id = $1"
        )))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(endpoint)
}

/// A shared secret as its owner reads it, to verify requests.
#[derive(Debug, Clone)]
pub struct EndpointSecret {
    /// The secret.
    pub secret: Secret,
    /// When it was added.
    pub created_at: DateTime<Utc>,
    /// When it stops signing (set by a rotation), if ever.
    pub expires_at: Option<DateTime<Utc>>,
}

/// An endpoint's unexpired secrets, newest first.
pub async fn endpoint_secret_list(pool: &PgPool, id: Uuid) -> Result<Vec<EndpointSecret>> {
    let rows: Vec<(String, DateTime<Utc>, Option<DateTime<Utc>>)> = sqlx::query_as(
        "SELECT secret, created_at, expires_at FROM outhook.endpoint_secret
         WHERE endpoint_id = $1 AND (expires_at IS NULL OR expires_at > now())
         ORDER BY created_at DESC, id DESC",
    )
    .bind(id)
    .fetch_all(pool)
    .await?;
    let keyring = crate::secrets::keyring()?;
    rows.into_iter()
        .map(|(stored, created_at, expires_at)| {
            Ok(EndpointSecret {
                secret: Secret::new(keyring.open(crate::secrets::Kind::EndpointSecret, &stored)?),
                created_at,
                expires_at,
            })
        })
        .collect()
}

/// The endpoints with these ids (unknown ids are left out).
pub async fn endpoint_get_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<Endpoint>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outhook.endpoint WHERE id = ANY ($1)"
    )))
    .bind(ids)
    .fetch_all(pool)
    .await?)
}

/// One endpoint.
pub async fn endpoint_get(pool: &PgPool, id: Uuid) -> Result<Endpoint> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM outhook.endpoint WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(crate::Error::NotFound("endpoint"))
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointUpdate {
    /// A new URL.
    pub url: Option<String>,
    /// New subscribed event types (empty: all).
    pub event_types: Option<Vec<String>>,
    /// New static headers.
    pub headers: Option<Vec<(String, String)>>,
    /// A new description.
    pub description: Option<String>,
    /// New custom HMAC settings (scheme `hmac`).
    pub scheme_settings: Option<serde_json::Value>,
    /// A new message-id header name (empty for none).
    pub message_id_header: Option<String>,
    /// A new auto-disable window in seconds (0: never).
    pub auto_disable_after_secs: Option<i32>,
    /// Ordered or not (deliveries already pending are not reordered).
    pub fifo: Option<bool>,
    /// A new rate limit in requests per second (0: none; a burst goes with it).
    pub rate_limit: Option<f64>,
    /// A new burst (0: the default, 1).
    pub rate_limit_burst: Option<i32>,
    /// A new limit of attempts in flight (0: none).
    pub max_in_flight: Option<i32>,
    /// A new content filter: `Some(None)` removes it.
    pub filter: Option<Option<crate::filter::Filter>>,
}

/// The lookup key of an update's new filter, if it sets one that has a key.
fn update_key(update: &EndpointUpdate) -> Option<&crate::filter::FilterKey> {
    update.filter.as_ref()?.as_ref()?.key()
}

impl EndpointUpdate {
    fn changes_limits(&self) -> bool {
        self.rate_limit.is_some() || self.rate_limit_burst.is_some() || self.max_in_flight.is_some()
    }
}

/// Applies `update` to endpoint `id`. New limits apply to what is pending
/// too: rows given a rate slot under the old rate are slotted again, and
/// rows waiting for an in-flight place get the places a raised limit frees.
pub async fn endpoint_update(pool: &PgPool, id: Uuid, update: &EndpointUpdate) -> Result<Endpoint> {
    let mut tx = pool.begin().await?;
    let endpoint: Endpoint = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE outhook.endpoint SET url = coalesce($2, url), event_types = coalesce($3, event_types),
                headers = coalesce($4, headers), description = coalesce($5, description),
                scheme_settings = coalesce($6, scheme_settings),
                message_id_header = coalesce($7, message_id_header),
                auto_disable_after_secs = coalesce($8, auto_disable_after_secs), fifo = coalesce($9, fifo),
                rate_limit = CASE WHEN $10::float8 IS NULL THEN rate_limit WHEN $10 = 0 THEN NULL ELSE $10 END,
                rate_limit_burst = CASE WHEN $10 = 0 THEN NULL WHEN $11::int IS NULL THEN rate_limit_burst
                                        WHEN $11 = 0 THEN NULL ELSE $11 END,
                max_in_flight = CASE WHEN $12::int IS NULL THEN max_in_flight WHEN $12 = 0 THEN NULL ELSE $12 END,
                content_filter = CASE WHEN $13 THEN $14 ELSE content_filter END,
                content_filter_path = CASE WHEN $13 THEN $15::jsonpath ELSE content_filter_path END,
                content_filter_key_path = CASE WHEN $13 THEN $16 ELSE content_filter_key_path END,
                content_filter_key_value = CASE WHEN $13 THEN $17::jsonb ELSE content_filter_key_value END,
                content_filter_key_for = CASE WHEN NOT $13 THEN content_filter_key_for
                                              WHEN $16 IS NOT NULL THEN $15::jsonpath END,
                content_filter_key_whole = CASE WHEN $13 THEN $18 ELSE content_filter_key_whole END,
                updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(&update.url)
    .bind(&update.event_types)
    .bind(update.headers.as_deref().map(headers_json))
    .bind(&update.description)
    .bind(&update.scheme_settings)
    .bind(&update.message_id_header)
    .bind(update.auto_disable_after_secs)
    .bind(update.fifo)
    .bind(update.rate_limit)
    .bind(update.rate_limit_burst)
    .bind(update.max_in_flight)
    .bind(update.filter.is_some())
    .bind(
        update
            .filter
            .as_ref()
            .and_then(|f| f.as_ref().map(crate::filter::Filter::source)),
    )
    .bind(
        update
            .filter
            .as_ref()
            .and_then(|f| f.as_ref().map(crate::filter::Filter::jsonpath)),
    )
    .bind(update_key(update).map(|k| k.path.as_str()))
    .bind(update_key(update).map(|k| k.value.as_str()))
    .bind(update_key(update).is_some_and(|k| k.whole))
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(crate::Error::NotFound("endpoint"))?;
    if update.changes_limits() {
        // Checked on the merged row; an error rolls the update back.
        endpoint.limits().validate()?;
        crate::db::delivery::delivery_limits_changed(&mut tx, id).await?;
    }
    tx.commit().await?;
    Ok(endpoint)
}

impl Endpoint {
    /// The URL to show: its user-info, if any, as `***`.
    pub fn display_url(&self) -> String {
        crate::http::redact_url(&self.url)
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        Limits {
            rate: self.rate_limit,
            burst: self.rate_limit_burst,
            max_in_flight: self.max_in_flight,
        }
    }
}

/// Enables an endpoint, or disables it with a reason, in one transaction
/// with its deliveries: disabling holds every pending one (they wait, they
/// are not lost); enabling makes the held ones due again, in order, with a
/// fresh count of attempts (their retry age still counts from their start).
pub async fn endpoint_set_enabled(pool: &PgPool, id: Uuid, enabled: bool, reason: Option<&str>) -> Result<Endpoint> {
    let reason = if enabled {
        None
    } else {
        Some(reason.unwrap_or("disabled by an operator"))
    };
    let mut tx = pool.begin().await?;
    let endpoint: Endpoint = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "UPDATE outhook.endpoint SET enabled = $2, disabled_reason = $3,
                disabled_at = CASE WHEN $2 THEN NULL WHEN enabled THEN now() ELSE disabled_at END,
                enabled_at = CASE WHEN $2 AND NOT enabled THEN now() ELSE enabled_at END, updated_at = now()
         WHERE id = $1 RETURNING {COLUMNS}"
    )))
    .bind(id)
    .bind(enabled)
    .bind(reason)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(crate::Error::NotFound("endpoint"))?;
    if enabled {
        crate::db::delivery::delivery_resume_held(&mut tx, id).await?;
        // A fresh start: the failing window begins again (enabled_at also
        // covers counts a worker has not written yet).
        sqlx::query(
            "UPDATE outhook.endpoint_health SET failing_since = NULL, failure_streak = 0 WHERE endpoint_id = $1",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
    } else {
        crate::db::delivery::delivery_hold(&mut tx, &[id]).await?;
    }
    tx.commit().await?;
    Ok(endpoint)
}

/// Disables endpoints (after a `410 Gone`, or failing too long) and holds
/// their pending deliveries, inside the caller's transaction. Returns the
/// ids that were enabled until now.
pub(crate) async fn endpoint_disable_many(
    tx: &mut sqlx::PgConnection,
    ids: &[Uuid],
    reason: &str,
) -> Result<Vec<Uuid>> {
    let disabled: Vec<Uuid> = sqlx::query_scalar(
        "UPDATE outhook.endpoint SET enabled = false, disabled_reason = $2, disabled_at = now(), updated_at = now()
         WHERE id = ANY($1) AND enabled RETURNING id",
    )
    .bind(ids)
    .bind(reason)
    .fetch_all(&mut *tx)
    .await?;
    if !disabled.is_empty() {
        crate::db::delivery::delivery_hold(&mut *tx, &disabled).await?;
    }
    Ok(disabled)
}

/// Adds `secret` as the newest and lets the current ones expire after
/// `grace` (during which every secret signs).
pub async fn endpoint_secret_rotate(pool: &PgPool, id: Uuid, secret: &Secret, grace: Duration) -> Result<()> {
    let mut tx = pool.begin().await?;
    let found: Option<Uuid> =
        sqlx::query_scalar("UPDATE outhook.endpoint SET updated_at = now() WHERE id = $1 RETURNING id")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
    if found.is_none() {
        return Err(crate::Error::NotFound("endpoint"));
    }
    sqlx::query(
        "UPDATE outhook.endpoint_secret
         SET expires_at = least(coalesce(expires_at, 'infinity'), now() + make_interval(secs => $2))
         WHERE endpoint_id = $1",
    )
    .bind(id)
    .bind(grace.as_secs_f64())
    .execute(&mut *tx)
    .await?;
    endpoint_secret_insert(&mut *tx, id, secret).await?;
    tx.commit().await?;
    Ok(())
}

/// An endpoint with what signing needs: its unexpired secrets (newest
/// first) and its RSA key. Only the dispatcher reads these.
#[derive(sqlx::FromRow)]
pub(crate) struct DispatchEndpoint {
    pub id: Uuid,
    pub url: String,
    pub scheme: String,
    pub scheme_settings: Option<serde_json::Value>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub headers: serde_json::Value,
    pub updated_at: DateTime<Utc>,
    pub secrets: Vec<String>,
    pub private_key_pem: Option<String>,
    pub message_id_header: Option<String>,
    pub fifo: bool,
    pub rate_limit: Option<f64>,
    pub max_in_flight: Option<i32>,
    /// Its connection settings, when it has any (sealed secrets).
    pub connection: Option<sqlx::types::Json<crate::connection::StoredConnection>>,
}

/// The dispatch view of several endpoints, in one round trip.
pub(crate) async fn endpoint_dispatch_get_many(pool: &PgPool, ids: &[Uuid]) -> Result<Vec<DispatchEndpoint>> {
    Ok(sqlx::query_as(
        "SELECT e.id, e.url, e.scheme, e.scheme_settings, e.enabled, e.disabled_reason, e.headers, e.updated_at,
                array(SELECT s.secret FROM outhook.endpoint_secret s
                      WHERE s.endpoint_id = e.id AND (s.expires_at IS NULL OR s.expires_at > now())
                      ORDER BY s.created_at DESC, s.id DESC) AS secrets,
                k.private_key_pem, e.message_id_header, e.fifo, e.rate_limit, e.max_in_flight,
                (SELECT to_jsonb(c) FROM outhook.endpoint_connection c WHERE c.endpoint_id = e.id) AS connection
         FROM outhook.endpoint e LEFT JOIN outhook.signing_key k ON k.id = e.signing_key_id
         WHERE e.id = ANY($1)",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?)
}
