//! The queue's depth, for metrics.

use sqlx::PgPool;

use crate::error::Result;

/// The queue's depth, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, sqlx::FromRow)]
pub struct QueueDepth {
    /// Pending deliveries due now.
    pub due: i64,
    /// Pending deliveries waiting for a later attempt (or leased by a worker).
    pub scheduled: i64,
    /// Pending deliveries held while their endpoint is disabled.
    pub held: i64,
    /// Dead letters.
    pub dead: i64,
    /// Deliveries waiting their turn: behind an ordered endpoint's head
    /// (status 3), or for a free in-flight place (status 4).
    pub waiting: i64,
    /// How long the oldest due delivery has been due, in seconds.
    pub oldest_due_seconds: f64,
}

/// Counts the queue, from the partial indexes (pending, waiting and dead
/// rows only).
pub async fn delivery_queue_depth(pool: &PgPool) -> Result<QueueDepth> {
    Ok(sqlx::query_as(
        "SELECT count(*) FILTER (WHERE next_attempt_at <= now()) AS due,
                count(*) FILTER (WHERE next_attempt_at > now() AND next_attempt_at <> 'infinity') AS scheduled,
                count(*) FILTER (WHERE next_attempt_at = 'infinity') AS held,
                (SELECT count(*) FROM outhook.delivery WHERE status = 2) AS dead,
                (SELECT count(*) FROM outhook.delivery WHERE status = 3)
                  + (SELECT count(*) FROM outhook.delivery WHERE status = 4) AS waiting,
                coalesce(greatest(extract(epoch FROM now() - min(next_attempt_at)), 0), 0)::float8 AS oldest_due_seconds
         FROM outhook.delivery WHERE status = 0",
    )
    .fetch_one(pool)
    .await?)
}
