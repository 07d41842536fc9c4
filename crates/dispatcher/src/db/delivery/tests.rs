//! The queue's operations against a real PostgreSQL.

use super::claim::{CLAIM, CLAIM_BEGIN, FAIR_CLAIM};
use super::requeue::REQUEUE;
use super::*;
use crate::db::attempt::NewAttempt;
use crate::db::completion::*;
use chrono::Utc;
use sqlx::PgPool;
use sqlx::{Connection, Row};
use std::time::Duration;
use uuid::Uuid;

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
        span: tracing::Span::none(),
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
        delivery_claim_pooled(&pool, up_to(256), None, Duration::from_secs(60))
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
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM pg_inherits WHERE inhparent = 'outhook.attempt'::regclass")
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

/// One endpoint per backlog, each with that many due rows, enqueued in this
/// order (the first endpoint's rows are due first), a microsecond apart.
async fn endpoints_with_backlogs(backlogs: &[i32]) -> (PgPool, Vec<Uuid>) {
    let pool = db_with_deliveries(0).await;
    sqlx::query("DELETE FROM outhook.endpoint")
        .execute(&pool)
        .await
        .unwrap();
    let mut endpoints = Vec::new();
    for n in backlogs {
        let endpoint: Uuid = sqlx::query_scalar(
            "INSERT INTO outhook.endpoint (owner, url, scheme) VALUES ('o', 'http://127.0.0.1:9/', 'trr') RETURNING id",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        sqlx::query("INSERT INTO outhook.outbox (event_type, payload, endpoint_id) SELECT 't', '{}', $1 FROM generate_series(1, $2)")
            .bind(endpoint)
            .bind(n)
            .execute(&pool)
            .await
            .unwrap();
        endpoints.push(endpoint);
    }
    sqlx::query(
        "UPDATE outhook.delivery SET next_attempt_at = now() - interval '1 hour' + id * interval '1 microsecond'",
    )
    .execute(&pool)
    .await
    .unwrap();
    (pool, endpoints)
}

/// The ids of `endpoint`'s `n` deliveries due first.
async fn oldest(pool: &PgPool, endpoint: Uuid, n: i64) -> Vec<i64> {
    sqlx::query_scalar("SELECT id FROM outhook.delivery WHERE endpoint_id = $1 ORDER BY next_attempt_at LIMIT $2")
        .bind(endpoint)
        .bind(n)
        .fetch_all(pool)
        .await
        .unwrap()
}

fn fair(over: &[Uuid], per_endpoint: i64, rest: i64) -> FairShare {
    FairShare {
        over: over.to_vec(),
        per_endpoint,
        rest,
        endpoints: 256,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fair_claim_takes_the_other_endpoints_due_rows_before_the_older_backlog_of_one_over_its_share() {
    // The plain claim takes the oldest: the slow endpoint's backlog only.
    let (pool, e) = endpoints_with_backlogs(&[300, 5]).await;
    let plain = delivery_claim(&pool, up_to(10), Duration::from_secs(60)).await.unwrap();
    assert!(plain.iter().all(|r| r.endpoint_id == e[0]), "{plain:?}");
    let (pool, e) = endpoints_with_backlogs(&[300, 5]).await;
    let (slow, healthy) = (e[0], e[1]);
    let mut expected = oldest(&pool, healthy, 5).await;
    // And the slow endpoint's three oldest, into the room left for it.
    expected.extend(oldest(&pool, slow, 3).await);
    expected.sort();
    let mut rows: Vec<i64> = delivery_claim_fair(&pool, up_to(10), &fair(&[slow], 10, 3), Duration::from_secs(60))
        .await
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    rows.sort();
    assert_eq!(rows, expected);
    // With no room left for it, only others' rows; none are due now.
    let none = delivery_claim_fair(&pool, up_to(10), &fair(&[slow], 10, 0), Duration::from_secs(60))
        .await
        .unwrap();
    assert!(none.is_empty(), "{none:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fair_claim_gives_every_other_endpoint_a_turn_before_any_gets_a_second() {
    let (pool, e) = endpoints_with_backlogs(&[100, 4, 4, 4]).await;
    let mut expected = Vec::new();
    for endpoint in &e[1..] {
        expected.extend(oldest(&pool, *endpoint, 2).await);
    }
    expected.sort();
    let rows = delivery_claim_fair(&pool, up_to(6), &fair(&[e[0]], 4, 0), Duration::from_secs(60))
        .await
        .unwrap();
    let mut ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    ids.sort();
    assert_eq!(ids, expected, "two of each of the three, the oldest");
    // At most `per_endpoint` of any one: one endpoint with 4 due alone.
    let (pool, e) = endpoints_with_backlogs(&[100, 4]).await;
    let rows = delivery_claim_fair(&pool, up_to(10), &fair(&[e[0]], 2, 0), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    assert!(rows.iter().all(|r| r.endpoint_id == e[1]));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fair_claim_looks_at_every_endpoint_from_its_random_start_and_wraps_around() {
    // Twenty endpoints with one due row each, one over its share: whatever
    // the random cursor, a claim of all finds all nineteen others.
    let mut backlogs = vec![50];
    backlogs.extend([1; 19]);
    for _ in 0..5 {
        let (pool, e) = endpoints_with_backlogs(&backlogs).await;
        let rows = delivery_claim_fair(&pool, up_to(100), &fair(&[e[0]], 10, 0), Duration::from_secs(60))
            .await
            .unwrap();
        let got: std::collections::HashSet<Uuid> = rows.iter().map(|r| r.endpoint_id).collect();
        assert_eq!(got.len(), 19, "{got:?}");
        assert!(!got.contains(&e[0]));
    }
    // Looking at three endpoints a claim finds at most three.
    let (pool, e) = endpoints_with_backlogs(&backlogs).await;
    let mut few = fair(&[e[0]], 10, 0);
    few.endpoints = 3;
    let rows = delivery_claim_fair(&pool, up_to(100), &few, Duration::from_secs(60))
        .await
        .unwrap();
    assert!((2..=3).contains(&rows.len()), "{}", rows.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fair_claim_on_the_claimers_connection_walks_indexes_only_past_a_large_backlog() {
    let pool = backlog_after_quiet_statistics(50_000).await;
    let slow: Uuid = sqlx::query_scalar("SELECT id FROM outhook.endpoint")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut conn = sqlx::PgConnection::connect_with(&crate::claim::claim_connect_options(&pool, false))
        .await
        .unwrap();
    // The plans of sqlx's prepared statement: custom (the parameters
    // known), then generic (unknown), which it may settle on.
    // With statistics from the quiet queue, then from the backlog.
    for (analyze, mode) in [
        (false, "force_custom_plan"),
        (false, "force_generic_plan"),
        (true, "force_custom_plan"),
        (true, "force_generic_plan"),
    ] {
        if analyze {
            sqlx::query("ANALYZE outhook.delivery")
                .execute(&mut conn)
                .await
                .unwrap();
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("SET plan_cache_mode = {mode}")))
            .execute(&mut conn)
            .await
            .unwrap();
        let sql = format!("EXPLAIN (FORMAT JSON) {FAIR_CLAIM}");
        let plan: serde_json::Value = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(256_i64)
            .bind(60.0_f64)
            .bind(i64::MAX / 2)
            .bind(4_194_304_i64)
            .bind(5_i16)
            .bind(vec![slow.as_bytes().to_vec()])
            .bind(256_i64)
            .bind(Uuid::new_v4().as_bytes().to_vec())
            .bind(256_i64)
            .bind(256_i64)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
        let scans = delivery_scans(&plan[0]["Plan"]);
        assert!(
            scans
                .iter()
                .all(|(node, _)| node == "Index Scan" || node == "Index Only Scan"),
            "{mode}: only index scans of the queue: {scans:?}"
        );
        // The due-ordered rest walks the claim index once; every probe of
        // the skip scan and every endpoint's due rows come from the endpoint
        // index; the rows taken, by primary key.
        let on = |index: &str| scans.iter().filter(|(_, i)| i == index).count();
        assert_eq!(on("delivery_due"), 1, "{mode}: {scans:?}");
        assert!(on("delivery_pending_endpoint") >= 4, "{mode}: {scans:?}");
        assert_eq!(
            on("delivery_due") + on("delivery_pending_endpoint") + on("delivery_pkey"),
            scans.len(),
            "{mode}: {scans:?}"
        );
    }
    let rows = delivery_claim_fair(&mut conn, up_to(256), &fair(&[slow], 256, 100), Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(rows.len(), 100, "the room left, from the backlog");
}
