//! `outhook.outbox`: where the application's events go in.

use sqlx::{PgConnection, PgExecutor, PgPool, Postgres};
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
    /// The W3C `traceparent` of the caller's span, so that the deliveries
    /// join its trace when the worker exports traces
    /// ([`crate::trace_context::of`] gives it for a `tracing` span).
    pub traceparent: Option<&'a str>,
}

/// Where an enqueue runs: the caller's connection or transaction
/// (`&mut *tx`, `&mut *conn`), or a pool (`&pool`).
///
/// On a connection the insert is one more statement of whatever that
/// connection is in. On a pool it runs in a transaction of its own,
/// committed before the call returns, at the cost of a `BEGIN` and a
/// `COMMIT`. A single statement on the pool itself would not do behind a
/// transaction pooler ([`crate::Pooling::Transaction`]): there a pool lends
/// each connection for one transaction and commits it when the connection
/// goes back, in a task of its own after the call has returned, so the
/// enqueue would be reported before it committed, and lost in a crash at
/// that moment.
#[derive(Debug)]
pub enum EnqueueOn<'c> {
    /// The caller's connection, or the connection of its transaction.
    Connection(&'c mut PgConnection),
    /// A pool: a transaction of the enqueue's own.
    Pool(&'c PgPool),
}

impl<'c> From<&'c mut PgConnection> for EnqueueOn<'c> {
    fn from(conn: &'c mut PgConnection) -> Self {
        EnqueueOn::Connection(conn)
    }
}

impl<'c> From<&'c PgPool> for EnqueueOn<'c> {
    fn from(pool: &'c PgPool) -> Self {
        EnqueueOn::Pool(pool)
    }
}

impl<'c, 't> From<&'c mut sqlx::Transaction<'t, Postgres>> for EnqueueOn<'c> {
    fn from(tx: &'c mut sqlx::Transaction<'t, Postgres>) -> Self {
        EnqueueOn::Connection(tx)
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enqueued {
    /// A new outbox row with this id.
    New(i64),
    /// The event id was enqueued before; nothing was added.
    Duplicate,
}

/// The insert `$head $tail`, with `ON CONFLICT (event_id) DO NOTHING`
/// between them when some event carries an idempotency key. Events without
/// a key cannot conflict (NULLs never do), and a plain insert skips the
/// speculative insertion an `ON CONFLICT` makes: one WAL record fewer per
/// row and less work in the producer's transaction.
macro_rules! keyed {
    ($any_key:expr, $head:literal, $tail:literal) => {
        if $any_key {
            concat!($head, " ON CONFLICT (event_id) DO NOTHING ", $tail)
        } else {
            concat!($head, " ", $tail)
        }
    };
}

/// Inserts one event in the caller's transaction: pass `&mut *tx` so the
/// event commits or rolls back with the application's data. Given a pool,
/// it runs in a transaction of its own (see [`EnqueueOn`]).
///
/// The payload must be JSON (PostgreSQL rejects anything else here).
/// Deliveries are created by the outbox trigger in the same statement.
/// An event type that breaks the naming rule, or that a strict catalog
/// does not hold, is [`crate::Error::EventRefused`].
pub async fn outbox_insert<'c>(on: impl Into<EnqueueOn<'c>>, event: &Event<'_>) -> Result<Enqueued> {
    check_event_type(event.event_type)?;
    check_traceparent(event.traceparent)?;
    match on.into() {
        EnqueueOn::Connection(conn) => outbox_insert_one(conn, event).await,
        EnqueueOn::Pool(pool) => {
            let mut tx = pool.begin().await?;
            let done = outbox_insert_one(&mut tx, event).await?;
            tx.commit().await?;
            Ok(done)
        }
    }
}

async fn outbox_insert_one(conn: &mut PgConnection, event: &Event<'_>) -> Result<Enqueued> {
    let id: Option<i64> = sqlx::query_scalar(keyed!(
        event.event_id.is_some(),
        "INSERT INTO outhook.outbox (event_type, payload, owner, endpoint_id, event_id, traceparent)
         VALUES ($1, $2::json, $3, $4, $5, $6)",
        "RETURNING id"
    ))
    .bind(event.event_type)
    .bind(event.payload)
    .bind(event.owner)
    .bind(event.endpoint_id)
    .bind(event.event_id)
    .bind(event.traceparent)
    .fetch_optional(conn)
    .await
    .map_err(refused)?;
    Ok(id.map_or(Enqueued::Duplicate, Enqueued::New))
}

/// Inserts many events in one statement (one round trip, one trigger run),
/// in the caller's transaction or one of its own, as [`outbox_insert`].
/// Returns how many were new.
pub async fn outbox_insert_many<'c>(on: impl Into<EnqueueOn<'c>>, events: &[Event<'_>]) -> Result<u64> {
    for e in events {
        check_event_type(e.event_type)?;
        check_traceparent(e.traceparent)?;
    }
    match on.into() {
        EnqueueOn::Connection(conn) => outbox_insert_rows(conn, events).await,
        EnqueueOn::Pool(pool) => {
            let mut tx = pool.begin().await?;
            let done = outbox_insert_rows(&mut tx, events).await?;
            tx.commit().await?;
            Ok(done)
        }
    }
}

async fn outbox_insert_rows(conn: &mut PgConnection, events: &[Event<'_>]) -> Result<u64> {
    let types: Vec<&str> = events.iter().map(|e| e.event_type).collect();
    let payloads: Vec<&str> = events.iter().map(|e| e.payload).collect();
    let owners: Vec<Option<&str>> = events.iter().map(|e| e.owner).collect();
    let endpoints: Vec<Option<Uuid>> = events.iter().map(|e| e.endpoint_id).collect();
    let ids: Vec<Option<&str>> = events.iter().map(|e| e.event_id).collect();
    let traces: Vec<Option<&str>> = events.iter().map(|e| e.traceparent).collect();
    let done = sqlx::query(keyed!(
        ids.iter().any(Option::is_some),
        "INSERT INTO outhook.outbox (event_type, payload, owner, endpoint_id, event_id, traceparent)
         SELECT t, p::json, o, e, i, tp
         FROM unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[]) AS u(t, p, o, e, i, tp)",
        ""
    ))
    .bind(types)
    .bind(payloads)
    .bind(owners)
    .bind(endpoints)
    .bind(ids)
    .bind(traces)
    .execute(conn)
    .await
    .map_err(refused)?;
    Ok(done.rows_affected())
}

/// Refuses a `traceparent` that is not one, as the database would.
fn check_traceparent(traceparent: Option<&str>) -> Result<()> {
    match traceparent {
        Some(tp) if !crate::trace_context::is_valid(tp) => {
            let shown: String = tp.chars().take(64).flat_map(char::escape_default).collect();
            Err(crate::Error::EventRefused(format!(
                "traceparent \"{shown}\" is not a W3C traceparent (00-<32 hex>-<16 hex>-<2 hex>)"
            )))
        }
        _ => Ok(()),
    }
}

/// Refuses a name that breaks the rule the database also holds, with a
/// sentence rather than the constraint's name.
fn check_event_type(name: &str) -> Result<()> {
    if crate::db::event_type::event_type_name_ok(name) {
        return Ok(());
    }
    let shown: String = name.chars().take(64).flat_map(char::escape_default).collect();
    Err(crate::Error::EventRefused(format!(
        "event type \"{shown}\" breaks the naming rule: {}",
        crate::db::event_type::EVENT_TYPE_NAME_RULE
    )))
}

/// The outbox trigger's refusal of an unknown type in a strict catalog
/// (and the naming rule's constraint) as [`crate::Error::EventRefused`];
/// of a payload over the limit as [`crate::Error::PayloadTooLarge`].
fn refused(e: sqlx::Error) -> crate::Error {
    if let sqlx::Error::Database(db) = &e
        && db.constraint() == Some("outbox_payload_size")
    {
        return crate::Error::PayloadTooLarge(db.message().to_owned());
    }
    if let sqlx::Error::Database(db) = &e
        && matches!(
            db.constraint(),
            Some("outbox_event_type_known" | "outbox_event_type_name" | "outbox_traceparent")
        )
    {
        return crate::Error::EventRefused(db.message().to_owned());
    }
    // Raised inside the fan-out by the cast to jsonb for an owner that
    // filters: a payload valid as json that jsonb cannot hold (a lone
    // surrogate escape, a number beyond numeric's range). The same codes
    // raised by the insert itself (a payload that is not JSON) stay what
    // they are.
    if let sqlx::Error::Database(db) = &e
        && matches!(db.code().as_deref(), Some("22P02" | "22P05" | "22003"))
        && let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        && pg.r#where().is_some_and(|w| w.contains("outbox_fan_out"))
    {
        let detail = pg.detail().map(|d| format!(" ({d})")).unwrap_or_default();
        return crate::Error::PayloadUnreadable(format!(
            "the owner's endpoints filter content, and PostgreSQL cannot read this payload to match them: {}{detail}",
            db.message()
        ));
    }
    e.into()
}

/// A message: an outbox row as administrators see it.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Message {
    /// Its id.
    pub id: i64,
    /// The id sent to receivers, as `msg_<uid without dashes>`.
    pub uid: Uuid,
    /// The idempotency key it was enqueued with.
    pub event_id: Option<String>,
    /// The event type.
    pub event_type: String,
    /// The payload, byte for byte as enqueued.
    pub payload: String,
    /// The owner it fanned out to.
    pub owner: Option<String>,
    /// Or the one endpoint it was addressed to.
    pub endpoint_id: Option<Uuid>,
    /// When it was enqueued.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

const MESSAGE_COLUMNS: &str = "id, uid, event_id, event_type, payload::text AS payload, owner, endpoint_id, created_at";

/// One message.
pub async fn outbox_get<'e>(executor: impl PgExecutor<'e>, id: i64) -> Result<Message> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM outhook.outbox WHERE id = $1"
    )))
    .bind(id)
    .fetch_optional(executor)
    .await?
    .ok_or(crate::Error::NotFound("message"))
}

/// The message enqueued with idempotency key `event_id`.
pub async fn outbox_get_by_event_id<'e>(executor: impl PgExecutor<'e>, event_id: &str) -> Result<Message> {
    sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM outhook.outbox WHERE event_id = $1"
    )))
    .bind(event_id)
    .fetch_optional(executor)
    .await?
    .ok_or(crate::Error::NotFound("message"))
}

/// Which messages to list: a page before a cursor, newest first.
#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    /// Only messages that fanned out to this owner, or were addressed to
    /// one of its endpoints.
    pub owner: Option<String>,
    /// Only this event type.
    pub event_type: Option<String>,
    /// Only ids below this (the last of the previous page).
    pub before_id: Option<i64>,
    /// At most this many.
    pub limit: i64,
}

/// A page of messages, newest first.
pub async fn outbox_list(pool: &sqlx::PgPool, filter: &MessageFilter) -> Result<Vec<Message>> {
    Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT {MESSAGE_COLUMNS} FROM outhook.outbox
         WHERE ($1::text IS NULL OR owner = $1
                OR endpoint_id IN (SELECT e.id FROM outhook.endpoint e WHERE e.owner = $1))
           AND ($2::text IS NULL OR event_type = $2) AND ($3::bigint IS NULL OR id < $3)
         ORDER BY id DESC LIMIT $4"
    )))
    .bind(&filter.owner)
    .bind(&filter.event_type)
    .bind(filter.before_id)
    .bind(filter.limit)
    .fetch_all(pool)
    .await?)
}

/// How many deliveries message `id` fanned out to.
pub async fn outbox_delivery_count<'e>(executor: impl PgExecutor<'e>, id: i64) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE message_id = $1")
            .bind(id)
            .fetch_one(executor)
            .await?,
    )
}

/// A message for [`outbox_insert_batch`]: owned, with its `uid` chosen by
/// the caller so that each answer can be matched to its request.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The id receivers will see.
    pub uid: Uuid,
    /// The event type.
    pub event_type: String,
    /// The JSON payload, kept byte for byte.
    pub payload: String,
    /// Fan out to this owner ...
    pub owner: Option<String>,
    /// ... or send to this endpoint.
    pub endpoint_id: Option<Uuid>,
    /// The idempotency key.
    pub event_id: Option<String>,
    /// The W3C `traceparent` of the request that enqueued it.
    pub traceparent: Option<String>,
    /// What the payload holds at its owner's key path, when the producer
    /// found it ([`crate::filter::hint`]), so the fan-out need not parse it.
    pub filter_hint: Option<FilterHint>,
}

/// A producer's word on what a payload holds at a key path: the outbox
/// row's `filter_hint_path` and `filter_hint_value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterHint {
    /// The key path, as `outhook.filter_hint_path(owner)` gave it.
    pub path: String,
    /// The scalar there as JSON text, or `None` when nothing is there.
    pub value: Option<String>,
}

/// What [`outbox_insert_batch`] did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inserted {
    /// Stored with this id and time, and fanned out to this many deliveries.
    New {
        /// The outbox id.
        id: i64,
        /// When it was stored.
        created_at: chrono::DateTime<chrono::Utc>,
        /// Deliveries made by the fan-out.
        deliveries: i64,
    },
    /// Its `event_id` was taken (earlier, or by a message before it in the
    /// same batch): nothing was stored for it.
    Duplicate,
}

/// Inserts many messages in one transaction (one statement, one trigger
/// run, one commit) and reports, in input order, what became of each, with
/// each new message's delivery count. This is what lets concurrent API
/// requests share a commit.
pub async fn outbox_insert_batch(pool: &sqlx::PgPool, messages: &[NewMessage]) -> Result<Vec<Inserted>> {
    let uids: Vec<Uuid> = messages.iter().map(|m| m.uid).collect();
    let types: Vec<&str> = messages.iter().map(|m| m.event_type.as_str()).collect();
    let payloads: Vec<&str> = messages.iter().map(|m| m.payload.as_str()).collect();
    let owners: Vec<Option<&str>> = messages.iter().map(|m| m.owner.as_deref()).collect();
    let endpoints: Vec<Option<Uuid>> = messages.iter().map(|m| m.endpoint_id).collect();
    let ids: Vec<Option<&str>> = messages.iter().map(|m| m.event_id.as_deref()).collect();
    let traces: Vec<Option<&str>> = messages.iter().map(|m| m.traceparent.as_deref()).collect();
    let hint_paths: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.filter_hint.as_ref().map(|h| h.path.as_str()))
        .collect();
    let hint_values: Vec<Option<&str>> = messages
        .iter()
        .map(|m| m.filter_hint.as_ref().and_then(|h| h.value.as_deref()))
        .collect();
    let mut tx = pool.begin().await?;
    let stored: Vec<(i64, Uuid, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(keyed!(
        ids.iter().any(Option::is_some),
        "INSERT INTO outhook.outbox (uid, event_type, payload, owner, endpoint_id, event_id, traceparent,
                                     filter_hint_path, filter_hint_value)
         SELECT u, t, p::json, o, e, i, tp, hp, hv::jsonb
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::uuid[], $6::text[], $7::text[],
                     $8::text[], $9::text[])
              AS x(u, t, p, o, e, i, tp, hp, hv)",
        "RETURNING id, uid, created_at"
    ))
    .bind(&uids)
    .bind(&types)
    .bind(&payloads)
    .bind(&owners)
    .bind(&endpoints)
    .bind(&ids)
    .bind(&traces)
    .bind(&hint_paths)
    .bind(&hint_values)
    .fetch_all(&mut *tx)
    .await
    .map_err(refused)?;
    let new_ids: Vec<i64> = stored.iter().map(|(id, _, _)| *id).collect();
    let counts: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT message_id, count(*) FROM outhook.delivery WHERE message_id = ANY($1) GROUP BY message_id",
    )
    .bind(&new_ids)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    let counts: std::collections::HashMap<i64, i64> = counts.into_iter().collect();
    let by_uid: std::collections::HashMap<Uuid, (i64, chrono::DateTime<chrono::Utc>)> =
        stored.into_iter().map(|(id, uid, at)| (uid, (id, at))).collect();
    Ok(messages
        .iter()
        .map(|m| match by_uid.get(&m.uid) {
            Some(&(id, created_at)) => Inserted::New {
                id,
                created_at,
                deliveries: counts.get(&id).copied().unwrap_or(0),
            },
            None => Inserted::Duplicate,
        })
        .collect())
}
