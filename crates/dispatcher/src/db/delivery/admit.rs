//! Endpoint limits: claimed rows admitted under an endpoint's rate and
//! in-flight limits, and the queue put right when those limits change.

use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

/// Admits claimed rows of limited endpoints under each endpoint's limiter
/// lock: returns the ids that may be attempted now (`None`), and those
/// deferred with the time until their reserved rate slot. Rows not
/// admitted were given back, their attempt uncounted; rows over the
/// in-flight limit wait (status 4, not returned) until an attempt on that
/// endpoint ends.
pub(crate) async fn delivery_admit(pool: &PgPool, rows: &[(i64, i64)]) -> Result<Vec<(i64, Option<f64>)>> {
    let (ids, leases): (Vec<i64>, Vec<i64>) = rows.iter().copied().unzip();
    let mut tx = pool.begin().await?;
    let answer: Vec<(i64, Option<f64>)> = sqlx::query_as("SELECT row_id, due_in FROM outhook.limit_admit($1, $2)")
        .bind(&ids)
        .bind(&leases)
        .fetch_all(&mut *tx)
        .await?;
    let admitted: Vec<i64> = answer.iter().filter(|a| a.1.is_none()).map(|a| a.0).collect();
    if admitted.len() < ids.len() {
        // What was given back is no longer held by this claim: its next
        // claim must not count a lost lease.
        sqlx::query(
            "UPDATE outhook.delivery d SET leased = false
             FROM unnest($1::bigint[], $2::bigint[]) AS h(id, lease)
             WHERE d.id = h.id AND d.lease = h.lease AND d.id <> ALL ($3)",
        )
        .bind(&ids)
        .bind(&leases)
        .bind(&admitted)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(answer)
}

/// After an endpoint's limits changed: rows deferred under the old rate are
/// due again (one microsecond apart, in order) to be slotted anew, the rate
/// state starts over, and rows waiting for an in-flight place get any the
/// new limit frees.
pub(crate) async fn delivery_limits_changed(tx: &mut sqlx::PgConnection, endpoint: Uuid) -> Result<()> {
    sqlx::query(
        "UPDATE outhook.delivery d
         SET next_attempt_at = now() + h.n * interval '1 microsecond', rate_slot = false
         FROM (SELECT id, row_number() OVER (ORDER BY next_attempt_at, id) AS n FROM outhook.delivery
               WHERE endpoint_id = $1 AND status = 0 AND rate_slot AND next_attempt_at > now()
                 AND next_attempt_at <> 'infinity') h
         WHERE d.id = h.id",
    )
    .bind(endpoint)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE outhook.endpoint_limiter SET tat = now() WHERE endpoint_id = $1")
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
    sqlx::query("SELECT outhook.limit_release(ARRAY[$1])")
        .bind(endpoint)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
