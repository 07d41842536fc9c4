//! Deliveries as administrators see and count them.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::DeliveryStatus;
use crate::error::Result;

/// A delivery as administrators see it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Delivery {
    /// Its id.
    pub id: i64,
    /// The outbox row (message) it delivers.
    pub message_id: i64,
    /// The message id sent to receivers (`webhook-id`).
    pub message_uid: Uuid,
    /// The event type.
    pub event_type: String,
    /// The endpoint it goes to.
    pub endpoint_id: Uuid,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made, all cycles together.
    pub attempts: i32,
    /// When the next attempt is due (pending and not held only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Pending, and held until its endpoint is enabled.
    pub held: bool,
    /// Pending behind an earlier delivery to the same ordered endpoint.
    pub queued: bool,
    /// The last failure's reason.
    pub last_error: Option<String>,
    /// When the event was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it was delivered or given up.
    pub finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    message_id: i64,
    message_uid: Uuid,
    event_type: String,
    endpoint_id: Uuid,
    status: i16,
    attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_error: Option<String>,
    enqueued_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

impl From<DeliveryRow> for Delivery {
    fn from(r: DeliveryRow) -> Self {
        let status = DeliveryStatus::from_code(r.status);
        Self {
            id: r.id,
            message_id: r.message_id,
            message_uid: r.message_uid,
            event_type: r.event_type,
            endpoint_id: r.endpoint_id,
            status,
            attempts: r.attempts,
            next_attempt_at: r.next_attempt_at.filter(|_| r.status == 0),
            held: r.status == 0 && r.next_attempt_at.is_none(),
            queued: r.status == 3,
            last_error: r.last_error,
            enqueued_at: r.enqueued_at,
            finished_at: r.finished_at,
        }
    }
}

/// Which deliveries to list.
#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    /// Only this status.
    pub status: Option<DeliveryStatus>,
    /// Only this endpoint.
    pub endpoint_id: Option<Uuid>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only deliveries of this outbox row.
    pub message_id: Option<i64>,
    /// Only deliveries to this owner's endpoints.
    pub owner: Option<String>,
    /// Only events enqueued at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Only events enqueued before this time.
    pub until: Option<DateTime<Utc>>,
    /// Only deliveries older than this id (the last of the previous page).
    pub before_id: Option<i64>,
    /// At most this many, newest first (default 100).
    pub limit: Option<i64>,
}

const SELECT: &str =
    "SELECT d.id, d.message_id, o.uid AS message_uid, o.event_type, d.endpoint_id, d.status, d.attempts,
                             nullif(d.next_attempt_at, 'infinity') AS next_attempt_at, d.last_error,
                             o.created_at AS enqueued_at, d.finished_at
                      FROM outhook.delivery d JOIN outhook.outbox o ON o.id = d.message_id";

/// Deliveries matching `filter`, newest first.
pub async fn delivery_list(pool: &PgPool, filter: &DeliveryFilter) -> Result<Vec<Delivery>> {
    // Only the conditions asked for are written, so the planner sees each
    // one and can use its index (a time window: the outbox's BRIN index)
    // instead of a generic plan that must allow for every filter.
    let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new("");
    if let (Some(since), Some(until)) = (filter.since, filter.until) {
        // A closed window, often far from the newest rows: find its
        // messages first (BRIN on created_at), then their deliveries,
        // rather than walking every newer delivery down to the window.
        q.push("WITH w AS MATERIALIZED (SELECT id FROM outhook.outbox WHERE created_at >= ")
            .push_bind(since)
            .push(" AND created_at < ")
            .push_bind(until)
            .push(") ")
            .push(SELECT)
            .push(" JOIN w ON w.id = d.message_id WHERE true");
    } else {
        q.push(SELECT).push(" WHERE true");
    }
    if let Some(status) = filter.status {
        if status == DeliveryStatus::Pending {
            q.push(" AND d.status IN (")
                .push(DeliveryStatus::PENDING_CODES)
                .push(")");
        } else {
            q.push(" AND d.status = ").push_bind(status.code());
        }
    }
    if let Some(endpoint) = filter.endpoint_id {
        q.push(" AND d.endpoint_id = ").push_bind(endpoint);
    }
    if let Some(event_type) = &filter.event_type {
        q.push(" AND o.event_type = ").push_bind(event_type.clone());
    }
    if let Some(message) = filter.message_id {
        q.push(" AND d.message_id = ").push_bind(message);
    }
    if let Some(owner) = &filter.owner {
        q.push(" AND d.endpoint_id IN (SELECT e.id FROM outhook.endpoint e WHERE e.owner = ")
            .push_bind(owner.clone())
            .push(")");
    }
    if let Some(since) = filter.since {
        q.push(" AND o.created_at >= ").push_bind(since);
    }
    if let Some(until) = filter.until {
        q.push(" AND o.created_at < ").push_bind(until);
    }
    if let Some(before) = filter.before_id {
        q.push(" AND d.id < ").push_bind(before);
    }
    q.push(" ORDER BY d.id DESC LIMIT ")
        .push_bind(filter.limit.unwrap_or(100));
    let rows: Vec<DeliveryRow> = q.build_query_as().fetch_all(pool).await?;
    Ok(rows.into_iter().map(Delivery::from).collect())
}

/// One delivery.
pub async fn delivery_get(pool: &PgPool, id: i64) -> Result<Delivery> {
    let row: Option<DeliveryRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!("{SELECT} WHERE d.id = $1")))
        .bind(id)
        .fetch_optional(pool)
        .await?;
    row.map(Delivery::from).ok_or(crate::Error::NotFound("delivery"))
}

/// How many deliveries are in each status.
pub async fn delivery_count_by_status(pool: &PgPool) -> Result<Vec<(DeliveryStatus, i64)>> {
    let rows: Vec<(i16, i64)> =
        sqlx::query_as("SELECT status, count(*) FROM outhook.delivery GROUP BY status ORDER BY status")
            .fetch_all(pool)
            .await?;
    Ok(rows
        .into_iter()
        .map(|(s, n)| (DeliveryStatus::from_code(s), n))
        .collect())
}
