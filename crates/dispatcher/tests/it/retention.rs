//! Retention as part of the worker: old days of the attempt log dropped
//! whole, old finished deliveries deleted, while new events are delivered.

use std::time::Duration;

use outhook_dispatcher::{Event, enqueue};
use outhook_testkit::receiver::Receiver;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_with_a_retention_period_prunes_old_days_while_it_delivers() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let (id, _) = endpoint(&pool, "acme", &receiver.url("/"), "trr").await;
    // Forty days back: a dead delivery with three attempts, in that day's
    // partition.
    sqlx::query(
        "SELECT outhook.attempt_partitions_ensure((now() - interval '40 days')::date, (now() - interval '40 days')::date)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let old: i64 = sqlx::query_scalar(
        "WITH m AS (INSERT INTO outhook.outbox (event_type, payload, owner, created_at)
                    VALUES ('old', '{}', 'nobody', now() - interval '40 days') RETURNING id)
         INSERT INTO outhook.delivery (message_id, endpoint_id, status, attempts, finished_at)
         SELECT m.id, $1, 2, 3, now() - interval '40 days' FROM m RETURNING id",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO outhook.attempt (delivery_id, attempt, started_at, duration_ms, url, request_headers, outcome)
         SELECT $1, g, date_trunc('day', now() - interval '40 days') + g * interval '1 minute', 5, 'http://x/', '{}', 'http_status'
         FROM generate_series(1, 3) g",
    )
    .bind(old)
    .execute(&pool)
    .await
    .unwrap();
    let partition_of_old_day: Option<String> = sqlx::query_scalar(
        "SELECT to_regclass('outhook.attempt_p' || to_char(now() - interval '40 days', 'YYYYMMDD'))::text",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(partition_of_old_day.is_some());

    let running = Running::start(
        builder(&pool)
            .retention(Some(Duration::from_secs(30 * 86_400)))
            .maintenance_interval(Duration::from_millis(100)),
    );
    enqueue(
        &pool,
        &Event {
            event_type: "new",
            payload: "{}",
            endpoint_id: Some(id),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    const OLD_LEFT: &str = "SELECT count(*) FROM outhook.delivery WHERE finished_at < now() - interval '30 days'";
    assert_eq!(wait_for_count(&pool, OLD_LEFT, 0, Duration::from_secs(10)).await, 0);
    // Messages are pruned after their deliveries; stopping cancels a prune.
    const MESSAGES: &str = "SELECT count(*) FROM outhook.outbox";
    wait_for_count(&pool, MESSAGES, 1, Duration::from_secs(10)).await;
    running.stop().await;
    let gone: Option<String> = sqlx::query_scalar(
        "SELECT to_regclass('outhook.attempt_p' || to_char(now() - interval '40 days', 'YYYYMMDD'))::text",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(gone, None, "the old day's partition was dropped");
    let (attempts, messages): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM outhook.attempt), (SELECT count(*) FROM outhook.outbox)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(
        (attempts, messages),
        (1, 1),
        "only the new delivery's attempt and message stay"
    );
    // Tomorrow's and next week's partitions exist.
    let ahead: Option<String> = sqlx::query_scalar(
        "SELECT to_regclass('outhook.attempt_p' || to_char(now() + interval '7 days', 'YYYYMMDD'))::text",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(ahead.is_some());
}
