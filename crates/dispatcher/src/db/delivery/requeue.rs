//! Sending deliveries again: re-queues, dead-letter recovery and replays.

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// Takes the lock of ordered endpoint `s.f` for the transaction, as the
/// outbox trigger, `fifo_promote` and `fifo_requeued` do. Every path takes
/// it before it locks any of the endpoint's delivery rows, as
/// `fifo_promote` does (it updates the waiting row it promotes while
/// holding it). A re-queue or a completion that locked a row first and then
/// asked for it could deadlock with a promotion or a re-queue of that row.
pub(crate) const FIFO_LOCK: &str = "pg_advisory_xact_lock(hashtextextended('outhook.fifo:' || s.f::text, 0))";

/// What a re-queue sets: due now, a fresh retry cycle, and a new lease so a
/// worker still holding the row cannot write over it.
pub(super) const REQUEUE: &str = "UPDATE outhook.delivery
     SET leased = false, lease_losses = 0, status = 0, next_attempt_at = now(), attempts_base = attempts, cycle_started_at = now(),
         finished_at = NULL, last_error = NULL, lease = lease + 1";

/// Makes deliveries due now with a fresh retry cycle: dead letters come
/// back, delivered ones are sent again, pending ones skip their wait.
/// Any worker still holding one loses its lease. On an ordered endpoint a
/// re-queued delivery takes its turn (`outhook.fifo_requeued`). Returns how
/// many changed.
pub async fn delivery_requeue(pool: &PgPool, ids: &[i64]) -> Result<u64> {
    let n = requeue_where(pool, "WHERE id = ANY($1)", |q| q.bind(ids)).await?;
    woken(pool, n).await
}

/// Re-queues every dead letter, optionally of one endpoint.
pub async fn delivery_requeue_dead(pool: &PgPool, endpoint: Option<Uuid>) -> Result<u64> {
    let n = requeue_where(
        pool,
        "WHERE status = 2 AND ($1::uuid IS NULL OR endpoint_id = $1)",
        |q| q.bind(endpoint),
    )
    .await?;
    woken(pool, n).await
}

/// Re-queues the dead letters of `endpoint` that were enqueued at or after
/// `since` (Svix's "recover"). Returns how many.
pub async fn delivery_requeue_dead_since(pool: &PgPool, endpoint: Uuid, since: DateTime<Utc>) -> Result<u64> {
    let n = requeue_where(
        pool,
        "WHERE status = 2 AND endpoint_id = $1
           AND message_id IN (SELECT id FROM outhook.outbox WHERE created_at >= $2)",
        |q| q.bind(endpoint).bind(since),
    )
    .await?;
    woken(pool, n).await
}

/// A statement returning one `bigint` per row (delivery ids, or a count),
/// before its parameters are bound.
type IdsQuery<'q> = sqlx::query::QueryScalar<'q, sqlx::Postgres, i64, sqlx::postgres::PgArguments>;

/// Re-queues the deliveries `filter` selects, in one transaction with
/// `outhook.fifo_requeued`: on an ordered endpoint, a re-queued delivery
/// that is not the endpoint's pending head waits its turn instead of being
/// attempted beside the head. Returns how many were re-queued.
async fn requeue_where<'q>(pool: &PgPool, filter: &str, bind: impl Fn(IdsQuery<'q>) -> IdsQuery<'q>) -> Result<u64> {
    let mut tx = pool.begin().await?;
    // The ordered endpoints' locks before any row's (see FIFO_LOCK). A
    // delivery's endpoint never changes, so these are the endpoints of the
    // rows updated below. The one exception, a dead letter that a filter on
    // status starts to match in between, is safe: promotions take waiting
    // rows only.
    bind(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT count({FIFO_LOCK}) FROM (
             SELECT e.id AS f FROM outhook.endpoint e
             WHERE e.fifo AND e.id IN (SELECT endpoint_id FROM outhook.delivery {filter})
             ORDER BY e.id) s"
    ))))
    .fetch_one(&mut *tx)
    .await?;
    let ids: Vec<i64> = bind(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "{REQUEUE} {filter} RETURNING id"
    ))))
    .fetch_all(&mut *tx)
    .await?;
    if !ids.is_empty() {
        sqlx::query("SELECT outhook.fifo_requeued($1)")
            .bind(&ids)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(ids.len() as u64)
}

/// Sends message `message_id` to `endpoint` again: its delivery there is
/// re-queued with a fresh cycle, or made if it had none (on an ordered
/// endpoint, either way it takes its turn). Returns the delivery's id.
pub async fn delivery_replay(pool: &PgPool, message_id: i64, endpoint: Uuid) -> Result<i64> {
    let mut tx = pool.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {FIFO_LOCK} FROM (SELECT id AS f FROM outhook.endpoint WHERE id = $1 AND fifo) s"
    )))
    .bind(endpoint)
    .execute(&mut *tx)
    .await?;
    let existing: Option<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "{REQUEUE} WHERE message_id = $1 AND endpoint_id = $2 RETURNING id"
    )))
    .bind(message_id)
    .bind(endpoint)
    .fetch_optional(&mut *tx)
    .await?;
    let id = match existing {
        Some(id) => id,
        None => {
            sqlx::query_scalar("INSERT INTO outhook.delivery (message_id, endpoint_id) VALUES ($1, $2) RETURNING id")
                .bind(message_id)
                .bind(endpoint)
                .fetch_one(&mut *tx)
                .await?
        }
    };
    sqlx::query("SELECT outhook.fifo_requeued($1)")
        .bind([id])
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    wake_workers(pool).await?;
    Ok(id)
}

/// Wakes idle workers when `n` deliveries were re-queued; returns `n`.
async fn woken(pool: &PgPool, n: u64) -> Result<u64> {
    if n > 0 {
        wake_workers(pool).await?;
    }
    Ok(n)
}

/// Tells idle workers that deliveries are due now (they poll as well).
async fn wake_workers(pool: &PgPool) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(crate::wakeup::CHANNEL)
        .execute(pool)
        .await?;
    Ok(())
}
