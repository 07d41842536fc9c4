//! Claiming due deliveries, and giving claimed ones back.

use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use crate::error::Result;

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
    /// The W3C `traceparent` of whatever enqueued the message.
    pub traceparent: Option<String>,
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

/// What both claim statements do with the rows they picked (`picked`:
/// `id`, `message_id`, `next_attempt_at`, and `rank` and `turn`, which
/// with the due time order them): measure, load within the byte budget,
/// lease.
///
/// Payload sizes are measured in PostgreSQL, so a payload over the limit
/// never leaves it; the rows past the byte budget stay due, untouched
/// (their row locks end with the statement). Measuring a `json` value
/// reads it (there is no cast to `text` without one): about 16 ms of the
/// server's time for a 20 MB payload, paid only where such rows are.
macro_rules! claim_picked {
    () => {
        ", sized AS MATERIALIZED (
             SELECT p.id, o.uid, o.event_type, o.payload, o.traceparent, s.bytes,
                    sum(CASE WHEN s.bytes > $4 THEN 0 ELSE (s.bytes + 1023) / 1024 END)
                        OVER (ORDER BY p.rank, p.turn, p.next_attempt_at, p.id) AS kib
             FROM picked p JOIN outhook.outbox o ON o.id = p.message_id,
                  LATERAL (SELECT octet_length(o.payload::text)::bigint AS bytes) s
         ), claimed AS (
             UPDATE outhook.delivery d
             SET next_attempt_at = now() + make_interval(secs => $2), attempts = d.attempts + 1,
                 lease = (random() * 9007199254740991)::bigint,
                 lease_losses = least(d.lease_losses + d.leased::integer, 32767), leased = true
             FROM sized s WHERE d.id = s.id AND s.kib <= $3
             RETURNING d.id, d.endpoint_id, d.attempts, d.attempts_base, d.lease, d.cycle_started_at,
                       d.lease_losses, s.uid, s.event_type, s.traceparent, s.bytes,
                       CASE WHEN s.bytes > $4 OR d.lease_losses >= $5 THEN NULL ELSE s.payload::text END AS payload
         )
         SELECT c.id, c.endpoint_id, c.attempts, c.attempts_base, c.lease, c.cycle_started_at,
                c.uid AS message_uid, c.event_type, c.payload, c.bytes AS payload_bytes, c.lease_losses,
                c.traceparent
         FROM claimed c"
    };
}

/// The claim statement (see [`delivery_claim`]). Its plan must walk
/// `delivery_due` in order and stop at the limit; the claimer's own
/// connection rules out bitmap scans (`claim_connect_options`), which
/// would read and sort every due row.
pub(crate) const CLAIM: &str = concat!(
    "WITH picked AS MATERIALIZED (
             SELECT id, message_id, next_attempt_at, 0 AS rank, 0::bigint AS turn FROM outhook.delivery
             WHERE status = 0 AND next_attempt_at <= now()
             ORDER BY next_attempt_at
             LIMIT $1
             FOR NO KEY UPDATE SKIP LOCKED
         )",
    claim_picked!()
);

/// The fair claim (see [`delivery_claim_fair`]): the due rows of endpoints
/// under their share first, a turn each, then the due-ordered rest.
///
/// `eps` is a skip scan of `delivery_pending_endpoint`: one probe per
/// endpoint with rows waiting, starting after a random cursor ($8) and
/// wrapping around, at most $9 endpoints. That index is the only one its
/// queries can use, whatever the statistics say: its key is the endpoint
/// id's bytes (`delivery_endpoint`, on the id itself, would read an
/// endpoint's whole history), and its predicate
/// `status::bigint = 0 AND NOT leased` no other statement says
/// (`delivery_due`, on `status = 0`, would read every due row and sort
/// them). Leased rows (in flight) are not in it, so a claim adds nothing
/// to it; a lease that ran out is found by the due-ordered rest.
/// `cand` reads each endpoint's oldest due rows (at most $7) without
/// locking them; `chosen` takes a turn from each before anyone's second,
/// and only those rows are locked (`others`, each found by its primary
/// key, one lateral lookup per row, so that no statistics can make it a
/// scan). `rest` walks `delivery_due` as the plain claim does, up to $10
/// rows: the room left for the endpoints over their share.
pub(crate) const FAIR_CLAIM: &str = concat!(
    "WITH RECURSIVE eps(e, n, wrapped) AS (
             SELECT f.e, 1, f.w FROM (
                 SELECT coalesce(a.e, b.e) AS e, a.e IS NULL AS w
                 FROM (SELECT (SELECT uuid_send(endpoint_id) FROM outhook.delivery
                               WHERE status::bigint = 0 AND NOT leased AND uuid_send(endpoint_id) > $8
                               ORDER BY uuid_send(endpoint_id), next_attempt_at LIMIT 1) AS e) a,
                      (SELECT (SELECT uuid_send(endpoint_id) FROM outhook.delivery WHERE status::bigint = 0 AND NOT leased
                               ORDER BY uuid_send(endpoint_id), next_attempt_at LIMIT 1) AS e) b
                 OFFSET 0
             ) f WHERE f.e IS NOT NULL
             UNION ALL
             SELECT x.e, eps.n + 1, x.w FROM eps CROSS JOIN LATERAL (
                 SELECT coalesce(a.e, CASE WHEN NOT eps.wrapped THEN
                            (SELECT uuid_send(endpoint_id) FROM outhook.delivery WHERE status::bigint = 0 AND NOT leased
                             ORDER BY uuid_send(endpoint_id), next_attempt_at LIMIT 1) END) AS e,
                        eps.wrapped OR a.e IS NULL AS w
                 FROM (SELECT (SELECT uuid_send(endpoint_id) FROM outhook.delivery
                               WHERE status::bigint = 0 AND NOT leased AND uuid_send(endpoint_id) > eps.e
                               ORDER BY uuid_send(endpoint_id), next_attempt_at LIMIT 1) AS e) a
                 OFFSET 0
             ) x
             WHERE eps.n < $9 AND x.e IS NOT NULL AND NOT (x.w AND x.e > $8)
         ), cand AS MATERIALIZED (
             SELECT x.id, x.next_attempt_at,
                    row_number() OVER (PARTITION BY eps.e ORDER BY x.next_attempt_at, x.id) AS turn
             FROM eps CROSS JOIN LATERAL (
                 SELECT d.id, d.next_attempt_at FROM outhook.delivery d
                 WHERE uuid_send(d.endpoint_id) = eps.e AND d.status::bigint = 0 AND NOT d.leased
                   AND d.next_attempt_at <= now()
                 ORDER BY uuid_send(d.endpoint_id), d.next_attempt_at LIMIT $7
             ) x
             WHERE eps.e <> ALL ($6)
         ), chosen AS MATERIALIZED (
             SELECT id, turn FROM cand ORDER BY turn, next_attempt_at, id LIMIT $1
         ), others AS MATERIALIZED (
             SELECT l.id, l.message_id, l.next_attempt_at, 0 AS rank, c.turn
             FROM chosen c CROSS JOIN LATERAL (
                 SELECT d.id, d.message_id, d.next_attempt_at FROM outhook.delivery d
                 WHERE d.id = c.id AND d.status = 0 AND d.next_attempt_at <= now()
                 FOR NO KEY UPDATE SKIP LOCKED
             ) l
         ), rest AS MATERIALIZED (
             SELECT id, message_id, next_attempt_at, 1 AS rank, 0::bigint AS turn FROM outhook.delivery
             WHERE status = 0 AND next_attempt_at <= now() AND id NOT IN (SELECT id FROM chosen)
             ORDER BY next_attempt_at
             LIMIT $10
             FOR NO KEY UPDATE SKIP LOCKED
         ), picked AS MATERIALIZED (
             SELECT u.* FROM (SELECT * FROM others UNION ALL SELECT * FROM rest) u
             ORDER BY u.rank, u.turn, u.next_attempt_at, u.id
             LIMIT $1
         )",
    claim_picked!()
);

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

/// How a fair claim treats the endpoints holding more than their share of
/// a worker's slots (see [`delivery_claim_fair`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FairShare {
    /// The endpoints over their share: their rows come last.
    pub over: Vec<Uuid>,
    /// Rows at most of any one other endpoint.
    pub per_endpoint: i64,
    /// Rows at most of the due-ordered rest, where the over-share
    /// endpoints' rows are (the slots they may still fill).
    pub rest: i64,
    /// Endpoints with pending rows looked at, at most, from a random one on.
    pub endpoints: i64,
}

/// [`delivery_claim`], fair to every endpoint: the due rows of endpoints
/// not in `fair.over` come first, one of each endpoint's before any
/// endpoint's second, however old the over-share endpoints' backlog is;
/// then, up to `fair.rest`, due rows in due order. The same leases,
/// budgets and lost-lease counts as [`delivery_claim`].
pub(crate) async fn delivery_claim_fair(
    executor: impl sqlx::PgExecutor<'_>,
    limits: ClaimLimits,
    fair: &FairShare,
    lease: Duration,
) -> Result<Vec<ClaimedRow>> {
    Ok(sqlx::query_as(FAIR_CLAIM)
        .bind(limits.rows)
        .bind(lease.as_secs_f64())
        .bind(limits.kib)
        .bind(limits.max_payload_bytes)
        .bind(limits.max_lease_losses)
        .bind(fair.over.iter().map(|e| e.as_bytes().to_vec()).collect::<Vec<_>>())
        .bind(fair.per_endpoint)
        .bind(Uuid::new_v4().as_bytes().to_vec())
        .bind(fair.endpoints)
        .bind(fair.rest)
        .fetch_all(executor)
        .await?)
}

/// Opens the transaction a claim through the pool runs in (behind
/// PgBouncer, where the claimer cannot have a connection of its own set up
/// by startup options): bitmap scans off, as on the claimer's own
/// connection (see `claim_connect_options`), so that statistics from a quiet
/// queue cannot make each claim read and sort every due row.
pub(super) const CLAIM_BEGIN: &str = "BEGIN; SET LOCAL enable_bitmapscan = off";

/// [`delivery_claim`] (or [`delivery_claim_fair`]) through the pool, in a transaction of its own that
/// keeps the claim's plan (see [`CLAIM_BEGIN`]).
pub(crate) async fn delivery_claim_pooled(
    pool: &PgPool,
    limits: ClaimLimits,
    fair: Option<&FairShare>,
    lease: Duration,
) -> Result<Vec<ClaimedRow>> {
    let mut tx = pool.begin_with(CLAIM_BEGIN).await?;
    let rows = match fair {
        Some(fair) => delivery_claim_fair(&mut *tx, limits, fair, lease).await?,
        None => delivery_claim(&mut *tx, limits, lease).await?,
    };
    tx.commit().await?;
    Ok(rows)
}

/// Gives leased rows back untouched (at shutdown): due now, attempt not counted.
pub(crate) async fn delivery_release_many(pool: &PgPool, held: &[(i64, i64)]) -> Result<u64> {
    let (ids, leases): (Vec<i64>, Vec<i64>) = held.iter().copied().unzip();
    let mut tx = pool.begin().await?;
    let released = sqlx::query(
        "UPDATE outhook.delivery d SET next_attempt_at = now(), attempts = d.attempts - 1, in_flight_until = NULL,
                                       leased = false
         FROM unnest($1::bigint[], $2::bigint[]) AS h(id, lease)
         WHERE d.id = h.id AND d.lease = h.lease AND d.status = 0",
    )
    .bind(ids)
    .bind(leases)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(released)
}
