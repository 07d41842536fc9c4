//! Pruning what is old: finished deliveries, their logs, orphaned messages.

use std::time::Duration;

use sqlx::PgPool;

use crate::error::Result;

/// What [`delivery_prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Pruned {
    /// Finished deliveries (delivered or dead) removed.
    pub deliveries: u64,
    /// Attempt-log rows deleted one by one (those in partitions newer than
    /// the cutoff).
    pub attempts: u64,
    /// Whole days of the attempt log dropped (partitions older than the
    /// cutoff).
    pub attempt_days: u64,
    /// Outbox rows removed once no delivery referred to them.
    pub messages: u64,
}

/// Prunes what is older than `age`: first the attempt log's daily
/// partitions that end before the cutoff (dropped whole, however many rows
/// they hold), then deliveries that finished before it with what remains
/// of their attempt logs, then outbox rows older than `age` that no delivery
/// refers to any more, then hourly counts. Deletes work in batches of
/// `batch` rows, each its own short transaction, so nothing holds locks for
/// long.
///
/// A pruned outbox row takes its idempotency key with it: the same
/// `event_id` can be enqueued again afterwards.
pub async fn delivery_prune(pool: &PgPool, age: Duration, batch: i64) -> Result<Pruned> {
    delivery_prune_paced(pool, age, batch, Duration::ZERO).await
}

/// [`delivery_prune`], resting `pause` between batches (and 25 times that
/// between dropped days), so pruning in the
/// background leaves the database to the deliveries.
pub async fn delivery_prune_paced(pool: &PgPool, age: Duration, batch: i64, pause: Duration) -> Result<Pruned> {
    let mut total = Pruned {
        attempt_days: crate::db::attempt::attempt_partitions_drop_before_paced(pool, age, pause * 25).await?,
        ..Pruned::default()
    };
    loop {
        let (deliveries, attempts): (i64, i64) = sqlx::query_as(
            "WITH old AS (
                 SELECT id FROM outhook.delivery
                 WHERE status <> 0 AND finished_at < now() - make_interval(secs => $1)
                 LIMIT $2 FOR UPDATE SKIP LOCKED
             ), attempts AS (
                 DELETE FROM outhook.attempt a USING old WHERE a.delivery_id = old.id RETURNING 1
             ), deliveries AS (
                 DELETE FROM outhook.delivery d USING old WHERE d.id = old.id RETURNING 1
             )
             SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM attempts)",
        )
        .bind(age.as_secs_f64())
        .bind(batch)
        .fetch_one(pool)
        .await?;
        total.deliveries += deliveries.unsigned_abs();
        total.attempts += attempts.unsigned_abs();
        if deliveries < batch {
            break;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    loop {
        let messages = sqlx::query(
            "DELETE FROM outhook.outbox o WHERE o.id IN (
                 SELECT id FROM outhook.outbox
                 WHERE created_at < now() - make_interval(secs => $1)
                   AND NOT EXISTS (SELECT 1 FROM outhook.delivery d WHERE d.message_id = outbox.id)
                 LIMIT $2)",
        )
        .bind(age.as_secs_f64())
        .bind(batch)
        .execute(pool)
        .await?
        .rows_affected();
        total.messages += messages;
        if messages < batch.unsigned_abs() {
            break;
        }
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    sqlx::query("DELETE FROM outhook.endpoint_hourly WHERE hour < now() - make_interval(secs => $1)")
        .bind(age.as_secs_f64())
        .execute(pool)
        .await?;
    Ok(total)
}
