//! `outhook.attempt`: the delivery log.

use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::error::Result;

/// One attempt as recorded.
#[derive(Debug, Clone, sqlx::FromRow, serde::Serialize)]
pub struct Attempt {
    /// Its id.
    pub id: i64,
    /// The delivery it belongs to.
    pub delivery_id: i64,
    /// 1 for the first attempt, counting across re-queues.
    pub attempt: i32,
    /// When the request started.
    pub started_at: DateTime<Utc>,
    /// How long it took, in milliseconds.
    pub duration_ms: i32,
    /// The URL it went to.
    pub url: String,
    /// The request headers as sent (signatures included; static endpoint
    /// header values redacted).
    pub request_headers: serde_json::Value,
    /// SHA-256 of the exact body sent.
    #[serde(serialize_with = "hex_opt")]
    pub body_sha256: Option<Vec<u8>>,
    /// The response status, if one came.
    pub status_code: Option<i16>,
    /// The response headers.
    pub response_headers: Option<serde_json::Value>,
    /// The start of the response body (bounded).
    pub response_body: Option<String>,
    /// Whether the response body was longer than what is stored.
    pub response_truncated: bool,
    /// The classified outcome: `delivered`, `http_status`, `timeout`, ...
    pub outcome: String,
    /// The failure's reason, in words.
    pub error: Option<String>,
    /// When the next attempt is due; none when this one was final, or
    /// superseded.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// The delivery had moved on before this result was written (re-queued,
    /// or its lease taken over by another claim): the request went out, but
    /// its result changed nothing.
    pub superseded: bool,
}

fn hex_opt<S: serde::Serializer>(v: &Option<Vec<u8>>, s: S) -> std::result::Result<S::Ok, S::Error> {
    match v {
        Some(bytes) => s.serialize_str(&bytes.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        None => s.serialize_none(),
    }
}

/// An attempt to record, built by the deliverer.
#[derive(Debug, Clone)]
pub(crate) struct NewAttempt {
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub duration_ms: i32,
    pub url: String,
    pub request_headers: serde_json::Value,
    pub body_sha256: Option<Vec<u8>>,
    pub status_code: Option<i16>,
    pub response_headers: Option<serde_json::Value>,
    pub response_body: Option<String>,
    pub response_truncated: bool,
    pub outcome: &'static str,
    pub error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// Attempts as parallel columns, for one `unnest` insert.
#[derive(Default)]
pub(crate) struct Columns {
    pub delivery_id: Vec<i64>,
    pub attempt: Vec<i32>,
    pub started_at: Vec<DateTime<Utc>>,
    pub duration_ms: Vec<i32>,
    pub url: Vec<String>,
    pub request_headers: Vec<String>,
    pub body_sha256: Vec<Option<Vec<u8>>>,
    pub status_code: Vec<Option<i16>>,
    pub response_headers: Vec<Option<String>>,
    pub response_body: Vec<Option<String>>,
    pub response_truncated: Vec<bool>,
    pub outcome: Vec<&'static str>,
    pub error: Vec<Option<String>>,
    pub next_attempt_at: Vec<Option<DateTime<Utc>>>,
}

impl Columns {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            delivery_id: Vec::with_capacity(n),
            attempt: Vec::with_capacity(n),
            started_at: Vec::with_capacity(n),
            duration_ms: Vec::with_capacity(n),
            url: Vec::with_capacity(n),
            request_headers: Vec::with_capacity(n),
            body_sha256: Vec::with_capacity(n),
            status_code: Vec::with_capacity(n),
            response_headers: Vec::with_capacity(n),
            response_body: Vec::with_capacity(n),
            response_truncated: Vec::with_capacity(n),
            outcome: Vec::with_capacity(n),
            error: Vec::with_capacity(n),
            next_attempt_at: Vec::with_capacity(n),
        }
    }

    /// Moves one attempt's values into the columns.
    pub fn push(&mut self, delivery_id: i64, a: NewAttempt) {
        self.delivery_id.push(delivery_id);
        self.attempt.push(a.attempt);
        self.started_at.push(a.started_at);
        self.duration_ms.push(a.duration_ms);
        self.url.push(a.url);
        self.request_headers.push(a.request_headers.to_string());
        self.body_sha256.push(a.body_sha256);
        self.status_code.push(a.status_code);
        self.response_headers
            .push(a.response_headers.as_ref().map(ToString::to_string));
        // PostgreSQL text cannot hold NUL.
        self.response_body.push(a.response_body.map(|b| {
            if b.contains('\0') {
                b.replace('\0', "\u{fffd}")
            } else {
                b
            }
        }));
        self.response_truncated.push(a.response_truncated);
        self.outcome.push(a.outcome);
        self.error.push(a.error);
        self.next_attempt_at.push(a.next_attempt_at);
    }
}

/// The attempt log of one delivery, oldest first (by number, then by when
/// the request went out: a superseded request and the one sent again after
/// it share a number).
pub async fn attempt_list(pool: &PgPool, delivery_id: i64) -> Result<Vec<Attempt>> {
    Ok(sqlx::query_as(
        "SELECT id, delivery_id, attempt, started_at, duration_ms, url, request_headers, body_sha256, status_code,
                response_headers, response_body, response_truncated, outcome, error, next_attempt_at, superseded
         FROM outhook.attempt WHERE delivery_id = $1 ORDER BY attempt, started_at, id",
    )
    .bind(delivery_id)
    .fetch_all(pool)
    .await?)
}

/// Attempts of one outcome in one hour.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow, serde::Serialize)]
pub struct HourlyOutcome {
    /// The hour's start.
    pub hour: DateTime<Utc>,
    /// The attempt outcome (`delivered`, `http_status`, `timeout`, ...).
    pub outcome: String,
    /// How many.
    pub count: i64,
}

/// Attempts to `endpoint` since `since`, counted by hour and outcome,
/// oldest hour first.
pub async fn attempt_count_hourly(
    pool: &PgPool,
    endpoint: uuid::Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<HourlyOutcome>> {
    Ok(sqlx::query_as(
        "SELECT date_trunc('hour', a.started_at) AS hour, a.outcome, count(*) AS count
         FROM outhook.attempt a JOIN outhook.delivery d ON d.id = a.delivery_id
         WHERE d.endpoint_id = $1 AND a.started_at >= $2
         GROUP BY 1, 2 ORDER BY 1, 2",
    )
    .bind(endpoint)
    .bind(since)
    .fetch_all(pool)
    .await?)
}

/// Makes sure the attempt log has a daily partition for every day from
/// yesterday to `days_ahead` days from now (UTC); returns how many it made.
pub async fn attempt_partitions_ensure(pool: &PgPool, days_ahead: i32) -> Result<i32> {
    let mut tx = pool.begin().await?;
    let made = sqlx::query_scalar(
        "SELECT outhook.attempt_partitions_ensure((now() AT TIME ZONE 'UTC')::date - 1,
                                                  (now() AT TIME ZONE 'UTC')::date + $1)",
    )
    .bind(days_ahead)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(made)
}

/// Drops the attempt log's daily partitions that end `age` or more ago;
/// returns how many. Each is emptied with `TRUNCATE` first (which locks
/// only that partition, and frees its files), then dropped (which locks the
/// parent table only for a moment, the partition being empty), each step its
/// own short transaction that gives up after a few seconds of waiting for
/// its lock rather than stall the workers' inserts (it is tried again at the
/// next prune).
pub async fn attempt_partitions_drop_before(pool: &PgPool, age: std::time::Duration) -> Result<u64> {
    attempt_partitions_drop_before_paced(pool, age, std::time::Duration::ZERO).await
}

/// [`attempt_partitions_drop_before`], resting `pause` after each day, so a
/// worker pruning many days at once spreads the file system's work out.
pub async fn attempt_partitions_drop_before_paced(
    pool: &PgPool,
    age: std::time::Duration,
    pause: std::time::Duration,
) -> Result<u64> {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT outhook.attempt_partitions_before(now() - make_interval(secs => $1))")
            .bind(age.as_secs_f64())
            .fetch_all(pool)
            .await?;
    let mut dropped = 0;
    for name in names {
        // The name comes from the catalogue; it is checked here and by the
        // function all the same.
        let valid =
            name.len() == 17 && name.starts_with("attempt_p") && name.bytes().skip(9).all(|b| b.is_ascii_digit());
        if !valid {
            continue;
        }
        // Through a function of the schema's owner: a worker with only the
        // outhook_worker role owns no partition.
        for step in ["truncate", "drop"] {
            let mut tx = pool.begin().await?;
            sqlx::query("SET LOCAL lock_timeout = '3s'").execute(&mut *tx).await?;
            sqlx::query("SELECT outhook.attempt_partition_retire($1, $2)")
                .bind(&name)
                .bind(step)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        dropped += 1;
        if !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
    }
    Ok(dropped)
}
