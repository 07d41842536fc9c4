//! Writing attempts' results: the delivery rows, the attempt log, the
//! endpoints' health, operational events, and the promotions an ended
//! attempt allows (ordered endpoints, in-flight places).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::attempt::NewAttempt;
use crate::db::delivery::{DeliveryStatus, FIFO_LOCK};
use crate::db::endpoint_health::{HealthDelta, HourlyCounts, hour_of};
use crate::error::Result;

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
    /// The attempt's `delivery` span, which the write of its result joins.
    pub span: tracing::Span,
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
            // The proxy's failures are the sender's, not the receiver's.
            if !matches!(c.attempt.outcome, "unknown_endpoint" | "endpoint_disabled" | "proxy") {
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
pub(crate) const COMPLETE_BEGIN: &str = "BEGIN; SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off";

/// The completion statement: the batch's delivery rows updated where their
/// lease still matches and they are still pending (`status::integer`, see
/// [`COMPLETE_BEGIN`]), and every attempt logged. An attempt whose delivery
/// has moved on (its lease no longer matches, or it is no longer pending)
/// is logged as superseded, without the retry time it planned: its request
/// went out all the same. Only an attempt whose delivery no longer exists
/// is not logged.
pub(crate) const COMPLETE: &str = "WITH input AS (
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
pub(crate) fn bind_completion<'q, O>(
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
