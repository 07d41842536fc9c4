//! `outhook.delivery`: the queue. Claim, complete, release, re-queue, list.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::attempt::NewAttempt;
use crate::db::endpoint_health::{HealthDelta, HourlyCounts, hour_of};
use crate::error::Result;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (or in flight).
    Pending,
    /// A 2xx was received.
    Delivered,
    /// No further attempt will be made: a dead letter.
    Dead,
}

impl DeliveryStatus {
    pub(crate) fn code(self) -> i16 {
        match self {
            Self::Pending => 0,
            Self::Delivered => 1,
            Self::Dead => 2,
        }
    }

    /// Every status code that reads as pending: due or retrying (0),
    /// waiting behind an ordered endpoint's head (3), waiting for an
    /// in-flight place (4), as a SQL list.
    pub(crate) const PENDING_CODES: &'static str = "0, 3, 4";

    pub(crate) fn from_code(code: i16) -> Self {
        match code {
            1 => Self::Delivered,
            2 => Self::Dead,
            _ => Self::Pending,
        }
    }

    /// The status's name: `pending`, `delivered` or `dead`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }
}

impl std::str::FromStr for DeliveryStatus {
    type Err = crate::Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "pending" => Ok(Self::Pending),
            "delivered" => Ok(Self::Delivered),
            "dead" => Ok(Self::Dead),
            other => Err(crate::Error::Config(format!(
                "unknown status `{other}` (pending, delivered, dead)"
            ))),
        }
    }
}

/// A claimed delivery with everything an attempt needs but the endpoint.
#[derive(Debug, sqlx::FromRow)]
pub(crate) struct ClaimedRow {
    pub id: i64,
    pub endpoint_id: Uuid,
    pub attempts: i32,
    pub attempts_base: i32,
    pub lease: i64,
    pub cycle_started_at: DateTime<Utc>,
    pub message_uid: Uuid,
    pub event_type: String,
    /// The payload as stored; `None` when it was left in PostgreSQL: larger
    /// than the delivery limit, or the row has lost too many leases.
    pub payload: Option<String>,
    /// The payload's size in bytes, measured in PostgreSQL.
    pub payload_bytes: i64,
    /// Leases of this row that ran out without a result (its workers died).
    pub lease_losses: i16,
    #[sqlx(skip)]
    pub stamps: crate::stages::Stamps,
}

/// What a claim may take besides a row count (see [`delivery_claim`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ClaimLimits {
    /// Rows at most.
    pub rows: i64,
    /// KiB of payload at most, each payload rounded up to whole KiB; a
    /// payload over `max_payload_bytes` counts nothing (it is not loaded).
    pub kib: i64,
    /// Payloads larger than this stay in PostgreSQL.
    pub max_payload_bytes: i64,
    /// Rows that have lost this many leases come without their payload.
    pub max_lease_losses: i16,
}

/// A payload's weight against the claim's byte budget, in KiB rounded up.
pub(crate) fn payload_kib(bytes: i64) -> i64 {
    (bytes.max(0) + 1023) / 1024
}

/// The claim statement (see [`delivery_claim`]). Its plan must walk
/// `delivery_due` in order and stop at the limit; the claimer's own
/// connection rules out bitmap scans (`claim_connect_options`), which
/// would read and sort every due row.
///
/// Payload sizes are measured in PostgreSQL, so a payload over the limit
/// never leaves it; the rows past the byte budget stay due, untouched
/// (their row locks end with the statement). Measuring a `json` value
/// reads it (there is no cast to `text` without one): about 16 ms of the
/// server's time for a 20 MB payload, paid only where such rows are.
pub(crate) const CLAIM: &str = "WITH picked AS MATERIALIZED (
             SELECT id, message_id, next_attempt_at FROM outhook.delivery
             WHERE status = 0 AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $1
             FOR NO KEY UPDATE SKIP LOCKED
         ), sized AS MATERIALIZED (
             SELECT p.id, o.uid, o.event_type, o.payload, s.bytes,
                    sum(CASE WHEN s.bytes > $4 THEN 0 ELSE (s.bytes + 1023) / 1024 END)
                        OVER (ORDER BY p.next_attempt_at, p.id) AS kib
             FROM picked p JOIN outhook.outbox o ON o.id = p.message_id,
                  LATERAL (SELECT octet_length(o.payload::text)::bigint AS bytes) s
         ), claimed AS (
             UPDATE outhook.delivery d
             SET next_attempt_at = now() + make_interval(secs => $2), attempts = d.attempts + 1,
                 lease = (random() * 9007199254740991)::bigint,
                 lease_losses = least(d.lease_losses + d.leased::integer, 32767), leased = true
             FROM sized s WHERE d.id = s.id AND s.kib <= $3
             RETURNING d.id, d.endpoint_id, d.attempts, d.attempts_base, d.lease, d.cycle_started_at,
                       d.lease_losses, s.uid, s.event_type, s.bytes,
                       CASE WHEN s.bytes > $4 OR d.lease_losses >= $5 THEN NULL ELSE s.payload::text END AS payload
         )
         SELECT c.id, c.endpoint_id, c.attempts, c.attempts_base, c.lease, c.cycle_started_at,
                c.uid AS message_uid, c.event_type, c.payload, c.bytes AS payload_bytes, c.lease_losses
         FROM claimed c";

/// Claims due deliveries within `limits` and leases them for `lease`, in one
/// committed statement. The `MATERIALIZED` CTE locks exactly the rows it
/// picked (an `IN (SELECT … LIMIT)` can be re-evaluated and update more);
/// `FOR NO KEY UPDATE SKIP LOCKED` lets concurrent claimers pass each other.
/// The attempt is counted at claim time, so a row that kills its worker
/// still runs out of attempts; a claim that finds the row still marked
/// leased counts a lost lease.
/// The lease is a random number rather than a counter, so a claim that a
/// PostgreSQL crash forgot (claims may commit asynchronously) cannot hand
/// a later claim the same lease: the forgotten one's result stays fenced.
/// The rows taken are due-ordered and their loaded payloads add up to at
/// most `limits.kib`; the caller makes that at least one payload's worth.
pub(crate) async fn delivery_claim(
    executor: impl sqlx::PgExecutor<'_>,
    limits: ClaimLimits,
    lease: Duration,
) -> Result<Vec<ClaimedRow>> {
    Ok(sqlx::query_as(CLAIM)
        .bind(limits.rows)
        .bind(lease.as_secs_f64())
        .bind(limits.kib)
        .bind(limits.max_payload_bytes)
        .bind(limits.max_lease_losses)
        .fetch_all(executor)
        .await?)
}

/// Opens the transaction a claim through the pool runs in (behind
/// PgBouncer, where the claimer cannot have a connection of its own set up
/// by startup options): bitmap scans off, as on the claimer's own
/// connection (see `claim_connect_options`), so that statistics from a quiet
/// queue cannot make each claim read and sort every due row.
const CLAIM_BEGIN: &str = "BEGIN; SET LOCAL enable_bitmapscan = off";

/// [`delivery_claim`] through the pool, in a transaction of its own that
/// keeps the claim's plan (see [`CLAIM_BEGIN`]).
pub(crate) async fn delivery_claim_pooled(
    pool: &PgPool,
    limits: ClaimLimits,
    lease: Duration,
) -> Result<Vec<ClaimedRow>> {
    let mut tx = pool.begin_with(CLAIM_BEGIN).await?;
    let rows = delivery_claim(&mut *tx, limits, lease).await?;
    tx.commit().await?;
    Ok(rows)
}

/// The result of one attempt, to be written back.
#[derive(Debug)]
pub(crate) struct Completion {
    pub id: i64,
    pub lease: i64,
    pub endpoint_id: Uuid,
    pub status: DeliveryStatus,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    pub disable_endpoint: Option<String>,
    /// The endpoint was disabled: hold the delivery until it is enabled.
    pub held: bool,
    /// Attempts made in this retry cycle, this one included.
    pub made: i32,
    /// The endpoint is ordered: when this delivery ends, promote the next.
    pub fifo: bool,
    /// The endpoint limits attempts in flight: this one's place frees.
    pub in_flight_limited: bool,
    /// The message's id and the attempt's stage stamps.
    pub message_uid: Uuid,
    pub stamps: crate::stages::Stamps,
    /// The response budget the logged body holds until it is written.
    pub room: Option<tokio::sync::OwnedSemaphorePermit>,
    pub attempt: NewAttempt,
}

impl Completion {
    /// Roughly the bytes this result adds to a completion statement.
    pub fn weight(&self) -> usize {
        let a = &self.attempt;
        512 + a.url.len()
            + a.response_body.as_ref().map_or(0, String::len)
            + a.error.as_ref().map_or(0, String::len) * 2
            + a.response_headers
                .as_ref()
                .and_then(serde_json::Value::as_object)
                .map_or(0, |h| {
                    h.iter()
                        .map(|(k, v)| k.len() + v.as_str().map_or(16, str::len) + 8)
                        .sum()
                })
    }
}

/// A batch of results as parallel columns, built once (moving the values
/// out of the completions) and bound by reference, so a retried write
/// copies nothing.
pub(crate) struct CompletionBatch {
    ids: Vec<i64>,
    leases: Vec<i64>,
    statuses: Vec<i16>,
    next: Vec<Option<DateTime<Utc>>>,
    errors: Vec<Option<String>>,
    held: Vec<bool>,
    attempts: crate::db::attempt::Columns,
    /// Endpoints that answered `410 Gone`, to disable.
    pub gone: Vec<Uuid>,
    /// How many deliveries each status got: pending (retry), delivered, dead.
    pub by_status: [u64; 3],
    /// What the batch's attempts say of each endpoint's health (refusals
    /// that never reached the endpoint are left out).
    pub health: HashMap<Uuid, HealthDelta>,
    /// The batch's attempts by endpoint, hour and outcome.
    pub hourly: HourlyCounts,
    /// Operational events the batch may raise: (delivery, lease, event type).
    operational: Vec<(i64, i64, &'static str)>,
    /// Ordered endpoints whose head ended: the next one waiting is promoted.
    fifo_ended: Vec<Uuid>,
    /// Endpoints with an in-flight limit that an attempt left: the rows
    /// waiting for a place are promoted.
    in_flight_ended: Vec<Uuid>,
    /// Each result's message id and stage stamps, recorded once written.
    pub stamps: Vec<(Uuid, crate::stages::Stamps)>,
    /// The response budget the batch's bodies hold, given back when the
    /// batch is dropped (written, or given up at shutdown).
    _room: Vec<tokio::sync::OwnedSemaphorePermit>,
}

impl CompletionBatch {
    pub fn new(batch: Vec<Completion>) -> Self {
        let n = batch.len();
        let mut b = Self {
            ids: Vec::with_capacity(n),
            leases: Vec::with_capacity(n),
            statuses: Vec::with_capacity(n),
            next: Vec::with_capacity(n),
            errors: Vec::with_capacity(n),
            held: Vec::with_capacity(n),
            attempts: crate::db::attempt::Columns::with_capacity(n),
            gone: Vec::new(),
            by_status: [0; 3],
            health: HashMap::new(),
            hourly: HashMap::new(),
            operational: Vec::new(),
            fifo_ended: Vec::new(),
            in_flight_ended: Vec::new(),
            stamps: Vec::with_capacity(n),
            _room: Vec::new(),
        };
        for mut c in batch {
            if let Some(room) = c.room.take() {
                b._room.push(room);
            }
            *b.hourly
                .entry((c.endpoint_id, hour_of(c.attempt.started_at), c.attempt.outcome))
                .or_insert(0) += 1;
            if !matches!(c.attempt.outcome, "unknown_endpoint" | "endpoint_disabled") {
                let delta = HealthDelta::attempt(c.attempt.started_at, c.attempt.outcome == "delivered");
                crate::db::endpoint_health::merge(&mut b.health, c.endpoint_id, delta);
            }
            if c.fifo && c.status != DeliveryStatus::Pending {
                b.fifo_ended.push(c.endpoint_id);
            }
            if c.in_flight_limited {
                b.in_flight_ended.push(c.endpoint_id);
            }
            b.stamps.push((c.message_uid, c.stamps));
            if let Some(kind) = operational_event(&c) {
                b.operational.push((c.id, c.lease, kind));
            }
            b.ids.push(c.id);
            b.leases.push(c.lease);
            b.statuses.push(c.status.code());
            b.by_status[usize::from(c.status.code().unsigned_abs()).min(2)] += 1;
            b.next.push(c.next_attempt_at);
            b.errors.push(c.error);
            b.held.push(c.held);
            if c.disable_endpoint.is_some() {
                b.gone.push(c.endpoint_id);
            }
            b.attempts.push(c.id, c.attempt);
        }
        b.gone.sort();
        b.gone.dedup();
        b.fifo_ended.sort();
        b.fifo_ended.dedup();
        b.in_flight_ended.sort();
        b.in_flight_ended.dedup();
        b
    }

    /// How many results the batch holds.
    pub fn len(&self) -> usize {
        self.ids.len()
    }
}

/// After how many failed attempts in a row `message.attempt.failing` is
/// raised (Svix's rule).
const FAILING_AFTER: i32 = 4;

/// The operational event a completion raises, if any: the fourth failure
/// in a row, giving up, or a success after a failing event.
fn operational_event(c: &Completion) -> Option<&'static str> {
    match c.status {
        DeliveryStatus::Pending if !c.held && c.made == FAILING_AFTER => Some("message.attempt.failing"),
        DeliveryStatus::Dead => Some("message.attempt.exhausted"),
        DeliveryStatus::Delivered if c.made > FAILING_AFTER => Some("message.attempt.recovered"),
        _ => None,
    }
}

/// Opens the completion's transaction. A completion must find its rows
/// through the primary key, whatever the statistics say: at the start of a
/// burst they still describe a quiet queue, and the planner read every
/// pending row (a hash join over a sequential, bitmap or claim-index scan)
/// to join a few hundred, 32 ms a completion with 100,000 pending in the
/// `burst` bench. Sequential and bitmap scans are off for the transaction,
/// and [`COMPLETE`] tests the status so that the partial indexes on it do
/// not apply.
const COMPLETE_BEGIN: &str = "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off";

/// The completion statement: the batch's delivery rows updated where their
/// lease still matches and they are still pending (`status::integer`, see
/// [`COMPLETE_BEGIN`]), and every attempt logged. An attempt whose delivery
/// has moved on (its lease no longer matches, or it is no longer pending)
/// is logged as superseded, without the retry time it planned: its request
/// went out all the same. Only an attempt whose delivery no longer exists
/// is not logged.
const COMPLETE: &str = "WITH input AS (
             SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::smallint[], $4::timestamptz[], $5::text[], $20::bool[])
                 AS i(id, lease, status, next_at, error, held)
         ), updated AS (
             UPDATE outhook.delivery d
             SET status = i.status,
                 -- A delivery still pending waits while its endpoint is
                 -- disabled, whatever the worker's cached view said (an
                 -- attempt in flight when the endpoint was disabled is held
                 -- here, not retried); a held one whose endpoint was enabled
                 -- meanwhile is due now.
                 next_attempt_at = CASE
                     WHEN i.status <> 0 THEN coalesce(i.next_at, d.next_attempt_at)
                     WHEN (SELECT e.enabled FROM outhook.endpoint e WHERE e.id = d.endpoint_id) IS FALSE THEN 'infinity'
                     WHEN i.held THEN now()
                     ELSE coalesce(i.next_at, d.next_attempt_at) END,
                 finished_at = CASE WHEN i.status <> 0 THEN now() END, last_error = i.error,
                in_flight_until = NULL, leased = false
             FROM input i
             WHERE d.id = i.id AND d.lease = i.lease AND d.status::integer = 0
             RETURNING d.id, d.lease
         ), logged AS (
         INSERT INTO outhook.attempt (delivery_id, attempt, started_at, duration_ms, url, request_headers, body_sha256,
                                      status_code, response_headers, response_body, response_truncated, outcome, error,
                                      next_attempt_at, superseded)
         SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.url, a.request_headers::jsonb, a.body_sha256,
                a.status_code, a.response_headers::jsonb, a.response_body, a.response_truncated, a.outcome, a.error,
                CASE WHEN u.id IS NOT NULL THEN a.next_attempt_at END, u.id IS NULL
         FROM unnest($6::bigint[], $7::int[], $8::timestamptz[], $9::int[], $10::text[], $11::text[], $12::bytea[],
                     $13::smallint[], $14::text[], $15::text[], $16::bool[], $17::text[], $18::text[], $19::timestamptz[],
                     $2::bigint[])
              AS a(delivery_id, attempt, started_at, duration_ms, url, request_headers, body_sha256, status_code,
                   response_headers, response_body, response_truncated, outcome, error, next_attempt_at, lease)
         LEFT JOIN updated u ON u.id = a.delivery_id AND u.lease = a.lease
         WHERE u.id IS NOT NULL OR EXISTS (SELECT 1 FROM outhook.delivery d WHERE d.id = a.delivery_id)
         )
         SELECT count(*) FROM updated";

/// Binds a batch to [`COMPLETE`].
fn bind_completion<'q, O>(
    query: sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    b: &'q CompletionBatch,
) -> sqlx::query::QueryScalar<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let a = &b.attempts;
    query
        .bind(&b.ids[..])
        .bind(&b.leases[..])
        .bind(&b.statuses[..])
        .bind(&b.next[..])
        .bind(&b.errors[..])
        .bind(&a.delivery_id[..])
        .bind(&a.attempt[..])
        .bind(&a.started_at[..])
        .bind(&a.duration_ms[..])
        .bind(&a.url[..])
        .bind(&a.request_headers[..])
        .bind(&a.body_sha256[..])
        .bind(&a.status_code[..])
        .bind(&a.response_headers[..])
        .bind(&a.response_body[..])
        .bind(&a.response_truncated[..])
        .bind(&a.outcome[..])
        .bind(&a.error[..])
        .bind(&a.next_attempt_at[..])
        .bind(&b.held[..])
}

/// Writes a batch of completions in one transaction: the delivery rows
/// whose lease still matches are updated; results from a lease that has
/// been taken over change nothing but are logged, as superseded. Endpoints that
/// answered `410 Gone` are disabled. Returns how many were written.
pub(crate) async fn delivery_complete_many(pool: &PgPool, b: &CompletionBatch) -> Result<u64> {
    let mut tx = pool.begin_with(COMPLETE_BEGIN).await?;
    if !b.fifo_ended.is_empty() {
        // The ordered endpoints' locks before their rows' (see FIFO_LOCK):
        // the promotion below needs them, and taking them after the update
        // would deadlock with a re-queue of the head being completed.
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT count({FIFO_LOCK}) FROM (SELECT f FROM unnest($1::uuid[]) f ORDER BY f) s"
        )))
        .bind(&b.fifo_ended[..])
        .execute(&mut *tx)
        .await?;
    }
    let written: i64 = bind_completion(sqlx::query_scalar(COMPLETE), b)
        .fetch_one(&mut *tx)
        .await?;
    let written = u64::try_from(written).unwrap_or(0);
    if !b.gone.is_empty() {
        crate::db::endpoint::endpoint_disable_many(&mut tx, &b.gone, "410 Gone: the receiver asked to stop").await?;
    }
    if !b.operational.is_empty() {
        operational_events_insert(&mut tx, &b.operational).await?;
    }
    if !b.fifo_ended.is_empty() {
        sqlx::query("SELECT outhook.fifo_promote($1)")
            .bind(&b.fifo_ended[..])
            .execute(&mut *tx)
            .await?;
    }
    if !b.in_flight_ended.is_empty() {
        sqlx::query("SELECT outhook.limit_release($1)")
            .bind(&b.in_flight_ended[..])
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(written)
}

/// Enqueues the operational events of written completions (a fenced one
/// raises nothing), for the operator's endpoints. Deliveries to the
/// operator's own endpoints raise nothing, so a failing operator endpoint
/// cannot start a storm.
async fn operational_events_insert(tx: &mut sqlx::PgConnection, events: &[(i64, i64, &'static str)]) -> Result<()> {
    let ids: Vec<i64> = events.iter().map(|e| e.0).collect();
    let leases: Vec<i64> = events.iter().map(|e| e.1).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.2).collect();
    sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, owner)
         SELECT i.kind,
                json_build_object(
                    'type', i.kind,
                    'timestamp', to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"'),
                    'data', json_build_object(
                        'delivery_id', d.id, 'message_id', 'msg_' || replace(o.uid::text, '-', ''),
                        'event_type', o.event_type, 'endpoint_id', d.endpoint_id, 'owner', e.owner,
                        'url', regexp_replace(e.url, '^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@', '\\1***@'),
                        'status', CASE d.status WHEN 0 THEN 'pending' WHEN 1 THEN 'delivered' ELSE 'dead' END,
                        'last_attempt', (SELECT json_build_object('attempt', a.attempt, 'started_at', a.started_at,
                                                                  'status_code', a.status_code, 'outcome', a.outcome,
                                                                  'error', a.error)
                                         FROM outhook.attempt a WHERE a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1))),
                'outhook:operator'
         FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS i(id, lease, kind)
         JOIN outhook.delivery d ON d.id = i.id AND d.lease = i.lease
         JOIN outhook.outbox o ON o.id = d.message_id
         LEFT JOIN outhook.endpoint e ON e.id = d.endpoint_id
         WHERE e.owner IS DISTINCT FROM 'outhook:operator'
           AND EXISTS (SELECT 1 FROM outhook.endpoint WHERE owner = 'outhook:operator')",
    )
    .bind(ids)
    .bind(leases)
    .bind(kinds)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

/// Gives leased rows back untouched (at shutdown): due now, attempt not counted.
pub(crate) async fn delivery_release_many(pool: &PgPool, held: &[(i64, i64)]) -> Result<u64> {
    let (ids, leases): (Vec<i64>, Vec<i64>) = held.iter().copied().unzip();
    Ok(sqlx::query(
        "UPDATE outhook.delivery d SET next_attempt_at = now(), attempts = d.attempts - 1, in_flight_until = NULL,
                                       leased = false
         FROM unnest($1::bigint[], $2::bigint[]) AS h(id, lease)
         WHERE d.id = h.id AND d.lease = h.lease AND d.status = 0",
    )
    .bind(ids)
    .bind(leases)
    .execute(pool)
    .await?
    .rows_affected())
}

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

/// Takes the lock of ordered endpoint `s.f` for the transaction, as the
/// outbox trigger, `fifo_promote` and `fifo_requeued` do. Every path takes
/// it before it locks any of the endpoint's delivery rows, as
/// `fifo_promote` does (it updates the waiting row it promotes while
/// holding it). A re-queue or a completion that locked a row first and then
/// asked for it could deadlock with a promotion or a re-queue of that row.
const FIFO_LOCK: &str = "pg_advisory_xact_lock(hashtextextended('outhook.fifo:' || s.f::text, 0))";

/// What a re-queue sets: due now, a fresh retry cycle, and a new lease so a
/// worker still holding the row cannot write over it.
const REQUEUE: &str = "UPDATE outhook.delivery
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::attempt::NewAttempt;
    use sqlx::{Connection, Row};

    async fn db_with_deliveries(n: usize) -> PgPool {
        let (_, pool) = outhook_testkit::postgres::database().await.unwrap();
        crate::migrate(&pool).await.unwrap();
        let endpoint: Uuid = sqlx::query_scalar(
            "INSERT INTO outhook.endpoint (owner, url, scheme) VALUES ('o', 'http://127.0.0.1:9/', 'trr') RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO outhook.outbox (event_type, payload, endpoint_id) SELECT 't', '{}', $1 FROM generate_series(1, $2)")
            .bind(endpoint)
            .bind(n as i32)
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    /// Claim limits of `n` rows and no other bound that matters here.
    fn up_to(n: i64) -> ClaimLimits {
        ClaimLimits {
            rows: n,
            kib: i64::MAX / 2,
            max_payload_bytes: 4 * 1024 * 1024,
            max_lease_losses: 5,
        }
    }

    fn completion(row: &ClaimedRow) -> Completion {
        Completion {
            id: row.id,
            lease: row.lease,
            endpoint_id: row.endpoint_id,
            status: DeliveryStatus::Delivered,
            next_attempt_at: None,
            error: None,
            disable_endpoint: None,
            held: false,
            made: 1,
            fifo: false,
            in_flight_limited: false,
            message_uid: row.message_uid,
            stamps: row.stamps,
            room: None,
            attempt: NewAttempt {
                attempt: row.attempts,
                started_at: Utc::now(),
                duration_ms: 1,
                url: "http://127.0.0.1:9/".into(),
                request_headers: serde_json::json!({}),
                body_sha256: None,
                status_code: Some(200),
                response_headers: None,
                response_body: None,
                response_truncated: false,
                outcome: "delivered",
                error: None,
                next_attempt_at: None,
            },
        }
    }

    /// Enqueues one event per payload, each in its own statement (so their
    /// deliveries are due in this order), to one endpoint.
    async fn db_with_payloads(payloads: &[String]) -> PgPool {
        let pool = db_with_deliveries(0).await;
        for p in payloads {
            sqlx::query(
                "INSERT INTO outhook.outbox (event_type, payload, endpoint_id)
                 SELECT 't', $1::json, id FROM outhook.endpoint",
            )
            .bind(p)
            .execute(&pool)
            .await
            .unwrap();
        }
        pool
    }

    /// A JSON payload of exactly `n` bytes.
    fn payload_of(n: usize) -> String {
        format!("{{\"pad\":\"{}\"}}", "x".repeat(n - 10))
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_claim_leaves_payloads_over_the_limit_in_the_database_and_stops_at_its_byte_budget() {
        // 300 KiB, 2 MiB (over the 1 MiB limit), 300 KiB, 300 KiB, 1 KiB.
        let sizes = [300 * 1024, 2 * 1024 * 1024, 300 * 1024, 300 * 1024, 1024];
        let pool = db_with_payloads(&sizes.map(payload_of)).await;
        let limits = ClaimLimits {
            rows: 100,
            kib: 700,
            max_payload_bytes: 1024 * 1024,
            max_lease_losses: 5,
        };
        let first = delivery_claim(&pool, limits, Duration::from_secs(60)).await.unwrap();
        let got: Vec<(i64, Option<usize>)> = first
            .iter()
            .map(|r| (r.payload_bytes, r.payload.as_ref().map(String::len)))
            .collect();
        assert_eq!(
            got,
            vec![
                (300 * 1024, Some(300 * 1024)),
                (2 * 1024 * 1024, None),
                (300 * 1024, Some(300 * 1024)),
            ],
            "the TOASTed 2 MiB payload is measured, not loaded, and weighs nothing; \
             the fourth row would take the claim past 700 KiB"
        );
        let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE status = 0 AND NOT leased")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(pending, 2, "the rows past the budget stay due, unleased");
        let rest = delivery_claim(&pool, limits, Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            rest.iter().map(|r| r.payload_bytes).collect::<Vec<_>>(),
            vec![300 * 1024, 1024],
            "the next claim takes them"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_lease_that_runs_out_without_a_result_is_counted_and_past_the_limit_the_row_comes_unloaded() {
        let pool = db_with_payloads(&[payload_of(100)]).await;
        let limits = ClaimLimits {
            max_lease_losses: 2,
            ..up_to(10)
        };
        // A lease of zero: due again at once, as if its worker had died.
        let claim = || async { delivery_claim(&pool, limits, Duration::ZERO).await.unwrap() };
        let seen: Vec<(i16, bool)> = [claim().await, claim().await, claim().await]
            .iter()
            .map(|rows| (rows[0].lease_losses, rows[0].payload.is_some()))
            .collect();
        assert_eq!(seen, vec![(0, true), (1, true), (2, false)]);

        // A result, a release or a re-queue is not a lost lease.
        let pool = db_with_payloads(&[payload_of(100)]).await;
        let claim = || async { delivery_claim(&pool, limits, Duration::ZERO).await.unwrap() };
        let row = claim().await.remove(0);
        delivery_release_many(&pool, &[(row.id, row.lease)]).await.unwrap();
        let row = claim().await.remove(0);
        assert_eq!(row.lease_losses, 0, "released, not lost");
        let mut c = completion(&row);
        c.status = DeliveryStatus::Pending;
        c.next_attempt_at = Some(Utc::now());
        delivery_complete_many(&pool, &CompletionBatch::new(vec![c]))
            .await
            .unwrap();
        let row = claim().await.remove(0);
        assert_eq!(row.lease_losses, 0, "a retry after a result, not lost");
        let row = claim().await.remove(0);
        assert_eq!(row.lease_losses, 1, "this one ran out");
        delivery_requeue(&pool, &[row.id]).await.unwrap();
        assert_eq!(claim().await[0].lease_losses, 0, "a re-queue starts the count over");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn claim_takes_exactly_its_limit_and_skips_rows_leased_by_another_worker() {
        let pool = db_with_deliveries(100).await;
        let first = delivery_claim(&pool, up_to(5), Duration::from_secs(60)).await.unwrap();
        assert_eq!(first.len(), 5);
        let leased: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE next_attempt_at > now()")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(leased, 5, "no more rows leased than claimed");
        let second = delivery_claim(&pool, up_to(1000), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(second.len(), 95);
        assert!(second.iter().all(|r| first.iter().all(|f| f.id != r.id)));
        assert!(
            delivery_claim(&pool, up_to(10), Duration::from_secs(60))
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// The start of a burst: statistics taken while nearly every delivery so
    /// far was delivered (1% pending), then a backlog of `n`.
    async fn backlog_after_quiet_statistics(n: i32) -> PgPool {
        let pool = db_with_deliveries(1000).await;
        // Retries and leases leave next_attempt_at in no particular order.
        sqlx::query("UPDATE outhook.delivery SET next_attempt_at = now() - random() * interval '1 hour'")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE outhook.delivery SET status = 1, finished_at = now() WHERE id > 10")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("ANALYZE outhook.delivery").execute(&pool).await.unwrap();
        sqlx::query(
            "INSERT INTO outhook.outbox (event_type, payload, endpoint_id)
             SELECT 't', '{}', (SELECT id FROM outhook.endpoint) FROM generate_series(1, $1)",
        )
        .bind(n)
        .execute(&pool)
        .await
        .unwrap();
        pool
    }

    /// Every node of an `EXPLAIN (FORMAT JSON)` plan, as (node type,
    /// relation, index); "" where a node has none.
    fn plan_nodes(plan: &serde_json::Value, out: &mut Vec<(String, String, String)>) {
        let field = |k: &str| plan.get(k).and_then(|v| v.as_str()).unwrap_or("").to_owned();
        out.push((field("Node Type"), field("Relation Name"), field("Index Name")));
        for child in plan.get("Plans").and_then(|p| p.as_array()).into_iter().flatten() {
            plan_nodes(child, out);
        }
    }

    /// Whether a plan sorts rows read from `outhook.delivery` (sorting the
    /// claim's few picked rows, to add up their payloads, is not that).
    fn sorts_delivery(plan: &serde_json::Value) -> bool {
        let sort = plan.get("Node Type").and_then(|v| v.as_str()) == Some("Sort");
        let children = || plan.get("Plans").and_then(|p| p.as_array()).into_iter().flatten();
        (sort && children().any(reads_delivery)) || children().any(sorts_delivery)
    }

    /// Whether a plan (below a CTE scan's boundary) scans `outhook.delivery`.
    fn reads_delivery(plan: &serde_json::Value) -> bool {
        if plan.get("Node Type").and_then(|v| v.as_str()) == Some("CTE Scan") {
            return false;
        }
        plan.get("Relation Name").and_then(|v| v.as_str()) == Some("delivery")
            || plan
                .get("Plans")
                .and_then(|p| p.as_array())
                .into_iter()
                .flatten()
                .any(reads_delivery)
    }

    /// The scans of `outhook.delivery` in a plan, as (node type, index).
    fn delivery_scans(plan: &serde_json::Value) -> Vec<(String, String)> {
        let mut nodes = Vec::new();
        plan_nodes(plan, &mut nodes);
        nodes
            .into_iter()
            .filter(|(node, relation, _)| relation == "delivery" && node != "ModifyTable")
            .map(|(node, _, index)| (node, index))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_completion_finds_its_rows_by_primary_key_while_the_statistics_describe_an_empty_queue() {
        let pool = backlog_after_quiet_statistics(20_000).await;
        let rows = delivery_claim(&pool, up_to(300), Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(rows.len(), 300);
        let batch = CompletionBatch::new(rows.iter().map(completion).collect());
        let sql = format!("EXPLAIN (FORMAT JSON) {COMPLETE}");
        let mut tx = pool.begin_with(COMPLETE_BEGIN).await.unwrap();
        let plan: serde_json::Value = bind_completion(sqlx::query_scalar(sqlx::AssertSqlSafe(sql)), &batch)
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        tx.rollback().await.unwrap();
        let scans = delivery_scans(&plan[0]["Plan"]);
        assert!(!scans.is_empty(), "the plan reads outhook.delivery: {plan}");
        assert!(
            scans.iter().all(|(_, index)| index == "delivery_pkey"),
            "every scan of outhook.delivery uses its primary key, not the pending rows: {scans:?}"
        );
        assert_eq!(delivery_complete_many(&pool, &batch).await.unwrap(), 300);
    }

    /// A fresh database with one ordered endpoint and `n` messages to it;
    /// returns its deliveries' ids, oldest first (the first is the head).
    async fn ordered_endpoint_with(n: usize) -> (PgPool, Uuid, Vec<i64>) {
        let (_, pool) = outhook_testkit::postgres::database().await.unwrap();
        crate::migrate(&pool).await.unwrap();
        let endpoint: Uuid = sqlx::query_scalar(
            "INSERT INTO outhook.endpoint (owner, url, scheme, fifo) VALUES ('o', 'http://127.0.0.1:9/', 'trr', true)
             RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        for _ in 0..n {
            sqlx::query("INSERT INTO outhook.outbox (event_type, payload, endpoint_id) VALUES ('t', '{}', $1)")
                .bind(endpoint)
                .execute(&pool)
                .await
                .unwrap();
        }
        let ids = sqlx::query_scalar("SELECT id FROM outhook.delivery ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        (pool, endpoint, ids)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_retry_or_replay_on_an_ordered_endpoint_takes_its_turn() {
        let (pool, endpoint, ids) = ordered_endpoint_with(3).await;
        let (d1, d2, d3) = (ids[0], ids[1], ids[2]);
        let depth = delivery_queue_depth(&pool).await.unwrap();
        assert_eq!((depth.due, depth.waiting), (1, 2), "the head is due, the others wait");
        let claim = || async { delivery_claim(&pool, up_to(10), Duration::from_secs(60)).await.unwrap() };
        let finish = |row: ClaimedRow, status: DeliveryStatus| {
            let pool = pool.clone();
            async move {
                let mut c = completion(&row);
                c.status = status;
                c.fifo = true;
                assert_eq!(
                    delivery_complete_many(&pool, &CompletionBatch::new(vec![c]))
                        .await
                        .unwrap(),
                    1
                );
            }
        };
        // The first dies; the second becomes the head.
        let mut rows = claim().await;
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![d1]);
        finish(rows.remove(0), DeliveryStatus::Dead).await;
        // An operator retries the dead letter while the second is the head
        // (and in flight): it waits instead of going out beside it.
        let head = claim().await;
        assert_eq!(head.iter().map(|r| r.id).collect::<Vec<_>>(), vec![d2]);
        assert_eq!(delivery_requeue(&pool, &[d1]).await.unwrap(), 1);
        assert!(claim().await.is_empty(), "nothing goes out beside the head");
        // When the head ends, the retried one, older than the third, goes next.
        finish(head.into_iter().next().unwrap(), DeliveryStatus::Delivered).await;
        let rows = claim().await;
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![d1]);
        // Re-queuing the head itself keeps it the head.
        assert_eq!(delivery_requeue(&pool, &[d1]).await.unwrap(), 1);
        let rows = claim().await;
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![d1]);
        finish(rows.into_iter().next().unwrap(), DeliveryStatus::Delivered).await;
        // A replay of the first message while the third is the head waits too.
        let third = claim().await;
        assert_eq!(third.iter().map(|r| r.id).collect::<Vec<_>>(), vec![d3]);
        let message: i64 = sqlx::query_scalar("SELECT message_id FROM outhook.delivery WHERE id = $1")
            .bind(d1)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(delivery_replay(&pool, message, endpoint).await.unwrap(), d1);
        assert!(claim().await.is_empty(), "the replay waits for the head");
        finish(third.into_iter().next().unwrap(), DeliveryStatus::Delivered).await;
        let rows = claim().await;
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![d1]);
        finish(rows.into_iter().next().unwrap(), DeliveryStatus::Delivered).await;
        // With no head pending, a retry goes at once.
        assert_eq!(delivery_requeue(&pool, &[d2, d3]).await.unwrap(), 2);
        let rows = claim().await;
        assert_eq!(
            rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![d2],
            "one at a time, oldest first"
        );
    }

    /// Returns once some transaction in this database (the test cluster is
    /// shared) waits for an advisory lock; fails if `task` ends first or
    /// none waits within 10 s.
    async fn until_it_waits_for_an_advisory_lock<T>(pool: &PgPool, task: &tokio::task::JoinHandle<T>, what: &str) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let waiting: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
                   AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
            )
            .fetch_one(pool)
            .await
            .unwrap();
            if waiting > 0 {
                return;
            }
            assert!(!task.is_finished(), "{what} waits for the endpoint's lock");
            assert!(std::time::Instant::now() < deadline, "{what} never waited for the lock");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_retry_of_a_waiting_delivery_and_its_promotion_at_the_same_moment_do_not_deadlock() {
        let (pool, endpoint, ids) = ordered_endpoint_with(3).await;
        let (d1, d2, d3) = (ids[0], ids[1], ids[2]);
        // A completion ends the head: it holds the endpoint's lock (as the
        // outbox trigger and fifo_promote take it) and has written d1.
        let mut completion = pool.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FIFO_LOCK} FROM (SELECT $1::uuid AS f) s"
        )))
        .bind(endpoint)
        .execute(&mut *completion)
        .await
        .unwrap();
        sqlx::query("UPDATE outhook.delivery SET status = 1, finished_at = now() WHERE id = $1")
            .bind(d1)
            .execute(&mut *completion)
            .await
            .unwrap();
        // Meanwhile an operator retries d2, which waits behind d1.
        let retry = tokio::spawn({
            let pool = pool.clone();
            async move { delivery_requeue(&pool, &[d2]).await }
        });
        // Once the retry waits for the endpoint's lock ...
        until_it_waits_for_an_advisory_lock(&pool, &retry, "the retry").await;
        // ... the completion promotes the next in line, d2. Had the retry
        // locked d2's row before asking for the endpoint's lock, this would
        // wait for it while it waits for this: a deadlock, one of them
        // aborted.
        let promoted: i32 = sqlx::query_scalar("SELECT outhook.fifo_promote($1)")
            .bind([endpoint])
            .fetch_one(&mut *completion)
            .await
            .unwrap();
        assert_eq!(promoted, 1);
        completion.commit().await.unwrap();
        assert_eq!(retry.await.unwrap().unwrap(), 1, "the retry succeeds too");
        let statuses: Vec<(i64, i16)> = sqlx::query_as("SELECT id, status FROM outhook.delivery ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(
            statuses,
            vec![(d1, 1), (d2, 0), (d3, 3)],
            "d2 is the head, d3 still waits"
        );
        let rows = delivery_claim(&pool, up_to(10), Duration::from_secs(60)).await.unwrap();
        assert_eq!(rows.iter().map(|r| r.id).collect::<Vec<_>>(), vec![d2]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_retry_of_the_head_while_its_completion_is_written_does_not_deadlock() {
        let (pool, endpoint, _) = ordered_endpoint_with(2).await;
        let mut head = delivery_claim(&pool, up_to(10), Duration::from_secs(60)).await.unwrap();
        assert_eq!(head.len(), 1);
        let head = head.remove(0);
        // A re-queue of the head holds the endpoint's lock (it takes it
        // first) ...
        let mut retry = pool.begin().await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FIFO_LOCK} FROM (SELECT $1::uuid AS f) s"
        )))
        .bind(endpoint)
        .execute(&mut *retry)
        .await
        .unwrap();
        // ... when the head's result arrives: delivered, so the completion
        // promotes the next one.
        let mut c = completion(&head);
        c.status = DeliveryStatus::Delivered;
        c.fifo = true;
        let complete = tokio::spawn({
            let pool = pool.clone();
            async move { delivery_complete_many(&pool, &CompletionBatch::new(vec![c])).await }
        });
        until_it_waits_for_an_advisory_lock(&pool, &complete, "the completion").await;
        // The re-queue updates the head. Had the completion locked the
        // head's row before asking for the endpoint's lock, this would wait
        // for it while it waits for this.
        sqlx::query(sqlx::AssertSqlSafe(format!("{REQUEUE} WHERE id = $1")))
            .bind(head.id)
            .execute(&mut *retry)
            .await
            .unwrap();
        retry.commit().await.unwrap();
        assert_eq!(
            complete.await.unwrap().unwrap(),
            0,
            "the result arrived after the re-queue took the lease: logged as superseded, nothing changed"
        );
        let superseded: bool = sqlx::query_scalar("SELECT superseded FROM outhook.attempt WHERE delivery_id = $1")
            .bind(head.id)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert!(superseded);
        let rows = delivery_claim(&pool, up_to(10), Duration::from_secs(60)).await.unwrap();
        assert_eq!(
            rows.iter().map(|r| r.id).collect::<Vec<_>>(),
            vec![head.id],
            "the re-queued head goes again, alone"
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_claim_through_the_pool_walks_the_claim_index_while_the_statistics_describe_an_empty_queue() {
        let pool = backlog_after_quiet_statistics(50_000).await;
        let plan_of = |begin: &'static str| {
            let pool = pool.clone();
            async move {
                let mut tx = pool.begin_with(begin).await.unwrap();
                let plan: serde_json::Value =
                    sqlx::query_scalar(sqlx::AssertSqlSafe(format!("EXPLAIN (FORMAT JSON) {CLAIM}")))
                        .bind(256_i64)
                        .bind(60.0_f64)
                        .bind(i64::MAX / 2)
                        .bind(4_194_304_i64)
                        .bind(5_i16)
                        .fetch_one(&mut *tx)
                        .await
                        .unwrap();
                tx.rollback().await.unwrap();
                let mut nodes = Vec::new();
                plan_nodes(&plan[0]["Plan"], &mut nodes);
                (nodes, sorts_delivery(&plan[0]["Plan"]))
            }
        };
        // What the pool's plain transaction would do: read and sort every due row.
        let (plain, sorts) = plan_of("BEGIN").await;
        assert!(sorts, "the statistics mislead a plain transaction: {plain:?}");
        let (kept, sorts) = plan_of(CLAIM_BEGIN).await;
        assert!(
            kept.iter()
                .any(|(n, r, i)| n == "Index Scan" && r == "delivery" && i == "delivery_due"),
            "the claim walks the claim index: {kept:?}"
        );
        assert!(!sorts, "and sorts no delivery rows: {kept:?}");
        assert_eq!(
            delivery_claim_pooled(&pool, up_to(256), Duration::from_secs(60))
                .await
                .unwrap()
                .len(),
            256
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn the_claimers_connection_walks_the_claim_index_while_the_statistics_describe_an_empty_queue() {
        let pool = backlog_after_quiet_statistics(50_000).await;
        // A pool whose connections commit durably (the test cluster's
        // default does not), for the durable claimer to inherit.
        let durable_pool = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(
                (*pool.connect_options())
                    .clone()
                    .options([("synchronous_commit", "on")]),
            )
            .await
            .unwrap();
        for durable in [true, false] {
            let options = crate::claim::claim_connect_options(&durable_pool, durable);
            let mut conn = sqlx::PgConnection::connect_with(&options).await.unwrap();
            let commit: String = sqlx::query_scalar("SHOW synchronous_commit")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(commit, if durable { "on" } else { "off" }, "durable: {durable}");
            let bitmaps: String = sqlx::query_scalar("SHOW enable_bitmapscan")
                .fetch_one(&mut conn)
                .await
                .unwrap();
            assert_eq!(bitmaps, "off", "durable: {durable}");
        }
        let mut conn = sqlx::PgConnection::connect_with(&crate::claim::claim_connect_options(&pool, false))
            .await
            .unwrap();
        let sql = format!("EXPLAIN (FORMAT JSON) {CLAIM}");
        let plan: serde_json::Value = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(256_i64)
            .bind(60.0_f64)
            .bind(i64::MAX / 2)
            .bind(4_194_304_i64)
            .bind(5_i16)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        let scans = delivery_scans(&plan[0]["Plan"]);
        let mut nodes = Vec::new();
        plan_nodes(&plan[0]["Plan"], &mut nodes);
        assert!(
            scans
                .iter()
                .any(|s| *s == ("Index Scan".to_owned(), "delivery_due".to_owned())),
            "the claim walks the claim index: {scans:?}"
        );
        assert!(
            !sorts_delivery(&plan[0]["Plan"]),
            "and sorts no delivery rows: {nodes:?}"
        );
        assert_eq!(
            delivery_claim(&mut conn, up_to(256), Duration::from_secs(60))
                .await
                .unwrap()
                .len(),
            256
        );
    }

    /// The delivery log of `delivery`: (attempt, superseded, next attempt planned).
    async fn logged(pool: &PgPool, delivery: i64) -> Vec<(i32, bool, bool)> {
        sqlx::query_as(
            "SELECT attempt, superseded, next_attempt_at IS NOT NULL FROM outhook.attempt
             WHERE delivery_id = $1 ORDER BY id",
        )
        .bind(delivery)
        .fetch_all(pool)
        .await
        .unwrap()
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_late_result_from_an_expired_lease_changes_nothing_and_is_logged_as_superseded() {
        let pool = db_with_deliveries(1).await;
        let stale = delivery_claim(&pool, up_to(1), Duration::from_millis(100))
            .await
            .unwrap()
            .remove(0);
        tokio::time::sleep(Duration::from_millis(200)).await;
        // The lease ran out: another worker takes the row over.
        let current = delivery_claim(&pool, up_to(1), Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(current.id, stale.id);
        assert_eq!(current.attempts, 2);
        // The stale attempt failed and planned a retry; the result must not
        // apply, but its request went out and is logged.
        let mut late = completion(&stale);
        late.status = DeliveryStatus::Pending;
        late.next_attempt_at = Some(Utc::now() + chrono::Duration::hours(1));
        late.attempt.next_attempt_at = late.next_attempt_at;
        late.attempt.outcome = "http_status";
        late.attempt.status_code = Some(500);
        assert_eq!(
            delivery_complete_many(&pool, &CompletionBatch::new(vec![late]))
                .await
                .unwrap(),
            0
        );
        let (status, lease): (i16, i64) = sqlx::query_as("SELECT status, lease FROM outhook.delivery")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!((status, lease), (0, current.lease), "the stale result changed nothing");
        assert_eq!(
            logged(&pool, stale.id).await,
            vec![(1, true, false)],
            "it is logged, superseded, without the retry it planned"
        );
        assert_eq!(
            delivery_complete_many(&pool, &CompletionBatch::new(vec![completion(&current)]))
                .await
                .unwrap(),
            1
        );
        let status: i16 = sqlx::query_scalar("SELECT status FROM outhook.delivery")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(status, 1);
        assert_eq!(logged(&pool, stale.id).await, vec![(1, true, false), (2, false, false)]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_attempt_in_flight_when_its_delivery_is_requeued_is_logged_and_one_whose_delivery_is_gone_is_not() {
        let pool = db_with_deliveries(2).await;
        let claimed = delivery_claim(&pool, up_to(2), Duration::from_secs(60)).await.unwrap();
        let (kept, gone) = (&claimed[0], &claimed[1]);
        // An operator re-queues one while its attempt is in flight, and the
        // other delivery is deleted (its endpoint removed).
        assert_eq!(delivery_requeue(&pool, &[kept.id]).await.unwrap(), 1);
        sqlx::query("DELETE FROM outhook.delivery WHERE id = $1")
            .bind(gone.id)
            .execute(&pool)
            .await
            .unwrap();
        // Both results arrive in one batch, beside nothing else.
        let batch = CompletionBatch::new(vec![completion(kept), completion(gone)]);
        assert_eq!(delivery_complete_many(&pool, &batch).await.unwrap(), 0);
        let (status, due): (i16, bool) =
            sqlx::query_as("SELECT status, next_attempt_at <= now() FROM outhook.delivery WHERE id = $1")
                .bind(kept.id)
                .fetch_one(&pool)
                .await
                .unwrap();
        assert_eq!((status, due), (0, true), "the re-queued delivery stays due");
        assert_eq!(logged(&pool, kept.id).await, vec![(1, true, false)]);
        assert_eq!(
            logged(&pool, gone.id).await,
            vec![],
            "no attempt for a delivery that is gone"
        );
        // The re-queued delivery's own next attempt is logged as usual.
        let again = delivery_claim(&pool, up_to(1), Duration::from_secs(60))
            .await
            .unwrap()
            .remove(0);
        assert_eq!(again.id, kept.id);
        assert_eq!(
            delivery_complete_many(&pool, &CompletionBatch::new(vec![completion(&again)]))
                .await
                .unwrap(),
            1
        );
        assert_eq!(logged(&pool, kept.id).await, vec![(1, true, false), (2, false, false)]);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn prune_drops_whole_old_days_of_the_attempt_log_and_keeps_the_rest() {
        let pool = db_with_deliveries(2).await;
        let rows = delivery_claim(&pool, up_to(2), Duration::from_secs(60)).await.unwrap();
        delivery_complete_many(&pool, &CompletionBatch::new(rows.iter().map(completion).collect()))
            .await
            .unwrap();
        // A day of attempts 40 days back, in its own partition.
        sqlx::query(
            "SELECT outhook.attempt_partitions_ensure((now() - interval '40 days')::date, (now() - interval '40 days')::date)",
        )
        .execute(&pool)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO outhook.attempt (delivery_id, attempt, started_at, duration_ms, url, request_headers, outcome)
             SELECT $1, g, date_trunc('day', now() - interval '40 days') + g * interval '1 second', 1, 'http://x/', '{}', 'http_status'
             FROM generate_series(1, 1000) g",
        )
        .bind(rows[0].id)
        .execute(&pool)
        .await
        .unwrap();
        let partitions = || async {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM pg_inherits WHERE inhparent = 'outhook.attempt'::regclass",
            )
            .fetch_one(&pool)
            .await
            .unwrap()
        };
        let before = partitions().await;
        let pruned = delivery_prune(&pool, Duration::from_secs(30 * 86400), 100)
            .await
            .unwrap();
        assert_eq!(pruned.attempt_days, 1);
        assert_eq!(pruned.deliveries, 0, "the deliveries finished just now");
        assert_eq!(partitions().await, before - 1);
        let left: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.attempt")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(left, 2, "today's attempts stay");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn prune_removes_only_old_finished_deliveries_their_logs_and_orphaned_messages() {
        let pool = db_with_deliveries(5).await;
        let rows = delivery_claim(&pool, up_to(5), Duration::from_secs(60)).await.unwrap();
        let done: Vec<Completion> = rows[..3].iter().map(completion).collect();
        delivery_complete_many(&pool, &CompletionBatch::new(done))
            .await
            .unwrap();
        // Two finished long ago, one just now; two still pending.
        sqlx::query("UPDATE outhook.delivery SET finished_at = now() - interval '40 days' WHERE id = ANY($1)")
            .bind(vec![rows[0].id, rows[1].id])
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("UPDATE outhook.outbox SET created_at = now() - interval '40 days'")
            .execute(&pool)
            .await
            .unwrap();
        let pruned = delivery_prune(&pool, Duration::from_secs(30 * 86400), 1).await.unwrap();
        assert_eq!(
            pruned,
            Pruned {
                deliveries: 2,
                attempts: 2,
                attempt_days: 0,
                messages: 2
            }
        );
        let left: Vec<i64> = sqlx::query_scalar("SELECT id FROM outhook.delivery ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(left, vec![rows[2].id, rows[3].id, rows[4].id]);
        let messages: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.outbox")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(messages, 3, "messages still referenced stay");
        assert_eq!(
            delivery_prune(&pool, Duration::from_secs(30 * 86400), 100)
                .await
                .unwrap(),
            Pruned::default()
        );
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn released_rows_are_due_again_without_counting_the_attempt() {
        let pool = db_with_deliveries(3).await;
        let rows = delivery_claim(&pool, up_to(3), Duration::from_secs(60)).await.unwrap();
        let held: Vec<_> = rows.iter().map(|r| (r.id, r.lease)).collect();
        assert_eq!(delivery_release_many(&pool, &held).await.unwrap(), 3);
        let again = delivery_claim(&pool, up_to(3), Duration::from_secs(60)).await.unwrap();
        assert_eq!(again.len(), 3);
        assert!(again.iter().all(|r| r.attempts == 1));
    }
}

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
