//! Deliveries held while their endpoint is disabled, resumed when it is
//! enabled, and swept when they wait too long.

use std::time::Duration;

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// Holds the pending deliveries of disabled endpoints: they wait (at
/// `infinity`, past every claim) until the endpoint is enabled. Rows in
/// flight keep their lease: their result is written as usual, and if it
/// schedules a retry, the next claim finds the endpoint disabled and holds
/// the row then.
pub(crate) async fn delivery_hold(tx: &mut sqlx::PgConnection, endpoints: &[Uuid]) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE outhook.delivery SET next_attempt_at = 'infinity', rate_slot = false
         WHERE endpoint_id = ANY($1) AND status = 0 AND next_attempt_at <> 'infinity'",
    )
    .bind(endpoints)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

/// Makes an endpoint's held deliveries due now, one microsecond apart in
/// enqueue order (the claim takes them in that order), each with a fresh
/// count of attempts; their retry age still counts from when they started.
pub(crate) async fn delivery_resume_held(tx: &mut sqlx::PgConnection, endpoint: Uuid) -> Result<u64> {
    Ok(sqlx::query(
        "UPDATE outhook.delivery d
         SET next_attempt_at = now() + h.n * interval '1 microsecond', attempts_base = d.attempts
         FROM (SELECT id, row_number() OVER (ORDER BY id) AS n FROM outhook.delivery
               WHERE endpoint_id = $1 AND status = 0 AND next_attempt_at = 'infinity') h
         WHERE d.id = h.id",
    )
    .bind(endpoint)
    .execute(&mut *tx)
    .await?
    .rows_affected())
}

/// Held deliveries that started longer than `max_age` ago become dead
/// letters with that reason; held deliveries whose endpoint is enabled
/// (an enable that raced a hold) become due. Returns (dead, resumed).
pub(crate) async fn delivery_held_sweep(pool: &PgPool, max_age: Duration) -> Result<(u64, u64)> {
    let dead = sqlx::query(
        "UPDATE outhook.delivery SET status = 2, finished_at = now(), lease = lease + 1,
                last_error = 'held while the endpoint was disabled, past the retry age limit'
         WHERE status = 0 AND next_attempt_at = 'infinity'
           AND cycle_started_at < now() - make_interval(secs => $1)",
    )
    .bind(max_age.as_secs_f64())
    .execute(pool)
    .await?
    .rows_affected();
    let resumed = sqlx::query(
        "UPDATE outhook.delivery d SET next_attempt_at = now(), attempts_base = d.attempts
         FROM outhook.endpoint e
         WHERE d.status = 0 AND d.next_attempt_at = 'infinity' AND e.id = d.endpoint_id AND e.enabled",
    )
    .execute(pool)
    .await?
    .rows_affected();
    // An ordered endpoint whose head ended outside a completion (dead while
    // held, deleted, re-queued elsewhere) gets its next one promoted.
    let promoted: i32 = sqlx::query_scalar(
        "SELECT outhook.fifo_promote(array(SELECT DISTINCT endpoint_id FROM outhook.delivery WHERE status = 3))",
    )
    .fetch_one(pool)
    .await?;
    // Places held by attempts whose worker died free when their lease ends;
    // rows waiting for them are promoted here if no completion did it.
    let released: i32 = sqlx::query_scalar(
        "SELECT outhook.limit_release(array(SELECT DISTINCT endpoint_id FROM outhook.delivery WHERE status = 4))",
    )
    .fetch_one(pool)
    .await?;
    Ok((
        dead,
        resumed + u64::try_from(promoted).unwrap_or(0) + u64::try_from(released).unwrap_or(0),
    ))
}
