//! `outhook.idempotency`: the first answer to each POST with an
//! `Idempotency-Key`, replayed to its retries.

use sqlx::PgPool;

use crate::error::Result;

/// What a key already holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyState {
    /// The key is new and now reserved for this request.
    Reserved,
    /// The first request with this key is still running.
    InProgress {
        /// The first request's fingerprint.
        fingerprint: Vec<u8>,
    },
    /// The first request finished with this answer.
    Done {
        /// The first request's fingerprint.
        fingerprint: Vec<u8>,
        /// Its HTTP status.
        status: u16,
        /// Its body.
        body: Vec<u8>,
    },
}

/// Reserves `key` in `scope` for a request with `fingerprint`, or returns
/// what the key already holds.
pub async fn idempotency_reserve(
    pool: &PgPool,
    scope: &str,
    key: &str,
    fingerprint: &[u8],
) -> Result<IdempotencyState> {
    let mut tx = pool.begin().await?;
    let inserted: Option<i32> = sqlx::query_scalar(
        "INSERT INTO outhook.idempotency (scope, key, fingerprint) VALUES ($1, $2, $3)
         ON CONFLICT DO NOTHING RETURNING 1",
    )
    .bind(scope)
    .bind(key)
    .bind(fingerprint)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    if inserted.is_some() {
        return Ok(IdempotencyState::Reserved);
    }
    #[derive(sqlx::FromRow)]
    struct Row {
        fingerprint: Vec<u8>,
        status: Option<i16>,
        body: Option<Vec<u8>>,
    }
    let row: Option<Row> =
        sqlx::query_as("SELECT fingerprint, status, body FROM outhook.idempotency WHERE scope = $1 AND key = $2")
            .bind(scope)
            .bind(key)
            .fetch_optional(pool)
            .await?;
    Ok(match row {
        Some(Row {
            fingerprint,
            status: Some(status),
            body,
        }) => IdempotencyState::Done {
            fingerprint,
            status: u16::try_from(status).unwrap_or(500),
            body: body.unwrap_or_default(),
        },
        Some(Row {
            fingerprint,
            status: None,
            ..
        }) => IdempotencyState::InProgress { fingerprint },
        // Released between the two statements: the caller may try again.
        None => IdempotencyState::InProgress {
            fingerprint: fingerprint.to_vec(),
        },
    })
}

/// Records the answer to a reserved key.
pub async fn idempotency_complete(pool: &PgPool, scope: &str, key: &str, status: u16, body: &[u8]) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("UPDATE outhook.idempotency SET status = $3, body = $4 WHERE scope = $1 AND key = $2")
        .bind(scope)
        .bind(key)
        .bind(i16::try_from(status).unwrap_or(500))
        .bind(body)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Frees a reserved key whose request failed before answering (a server
/// error), so that a retry runs again.
pub async fn idempotency_release(pool: &PgPool, scope: &str, key: &str) -> Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query("DELETE FROM outhook.idempotency WHERE scope = $1 AND key = $2 AND status IS NULL")
        .bind(scope)
        .bind(key)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Forgets keys older than `age`.
pub async fn idempotency_prune(pool: &PgPool, age: std::time::Duration) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let pruned = sqlx::query("DELETE FROM outhook.idempotency WHERE created_at < now() - make_interval(secs => $1)")
        .bind(age.as_secs_f64())
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(pruned)
}
