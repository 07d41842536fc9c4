//! `outhook.outbox`: where the application's events go in.

use sqlx::PgExecutor;
use uuid::Uuid;

use crate::error::Result;

/// An event to enqueue.
#[derive(Debug, Clone, Default)]
pub struct Event<'a> {
    /// The event type, such as `check.completed`; endpoints subscribe to types.
    pub event_type: &'a str,
    /// The JSON payload as the provider wrote it; its bytes are kept exactly.
    pub payload: &'a str,
    /// Fan out to every enabled endpoint of this owner subscribed to the type.
    pub owner: Option<&'a str>,
    /// Or deliver to this one endpoint.
    pub endpoint_id: Option<Uuid>,
    /// An idempotency key: enqueueing the same key again does nothing.
    pub event_id: Option<&'a str>,
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new outbox row with this id.
    New(i64),
    /// The event id was enqueued before; nothing was added.
    Duplicate,
}

/// Inserts one event in the caller's transaction or connection: pass
/// `&mut *tx` so the event commits or rolls back with the application's data.
///
/// The payload must be JSON (PostgreSQL rejects anything else here).
/// Deliveries are created by the outbox trigger in the same statement.
pub async fn outbox_insert<'e>(executor: impl PgExecutor<'e>, event: &Event<'_>) -> Result<Enqueued> {
    let id: Option<i64> = sqlx::query_scalar(
        "INSERT INTO outhook.outbox (event_type, payload, owner, endpoint_id, event_id)
         VALUES ($1, $2::json, $3, $4, $5)
         ON CONFLICT (event_id) DO NOTHING
         RETURNING id",
    )
    .bind(event.event_type)
    .bind(event.payload)
    .bind(event.owner)
    .bind(event.endpoint_id)
    .bind(event.event_id)
    .fetch_optional(executor)
    .await?;
    Ok(id.map_or(Enqueued::Duplicate, Enqueued::New))
}

/// Inserts many events in one statement (one round trip, one trigger run).
/// Returns how many were new.
pub async fn outbox_insert_many<'e>(executor: impl PgExecutor<'e>, events: &[Event<'_>]) -> Result<u64> {
    let types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let payloads: Vec<&str> = events.iter().map(|e| e.payload).collect();
    let owners: Vec<Option<&str>> = events.iter().map(|e| e.owner).collect();
    let endpoints: Vec<Option<Uuid>> = events.iter().map(|e| e.endpoint_id).collect();
    let ids: Vec<Option<&str>> = events.iter().map(|e| e.event_id).collect();
    let done = sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, owner, endpoint_id, event_id)
         SELECT t, p::json, o, e, i FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[]) AS u(t, p, o, e, i)
         ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(types)
    .bind(payloads)
    .bind(owners)
    .bind(endpoints)
    .bind(ids)
    .execute(executor)
    .await?;
    Ok(done.rows_affected())
}
