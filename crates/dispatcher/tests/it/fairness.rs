//! Fairness between endpoints: one customer's slow server and its backlog
//! do not hold back the others' deliveries, and still use the slots that
//! nobody else needs.

use std::time::{Duration, SystemTime};

use outhook_testkit::receiver::{Receiver, Reply};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

/// Enqueues `n` events to `endpoint`.
async fn send(pool: &PgPool, endpoint: Uuid, n: i32) {
    sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, endpoint_id)
         SELECT 't', json_build_object('n', g), $1 FROM generate_series(1, $2) g",
    )
    .bind(endpoint)
    .bind(n)
    .execute(pool)
    .await
    .unwrap();
}

/// The most requests that arrived within `window` of one another.
fn most_together(received: &[outhook_testkit::receiver::Received], window: Duration) -> usize {
    let mut at: Vec<SystemTime> = received.iter().map(|r| r.at).collect();
    at.sort();
    (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| t.duration_since(at[i]).unwrap_or_default() < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_endpoints_backlog_does_not_hold_back_another_endpoint_and_keeps_the_spare_slots_busy() {
    let pool = db().await;
    let slow = Receiver::start().await.unwrap();
    slow.set_default(Reply::Delayed(Duration::from_millis(1000), 200));
    let healthy = Receiver::start().await.unwrap();
    let (slow_endpoint, _) = endpoint(&pool, "slow", &slow.url("/"), "standard-webhooks").await;
    let (healthy_endpoint, _) = endpoint(&pool, "healthy", &healthy.url("/"), "standard-webhooks").await;
    send(&pool, slow_endpoint, 60).await;
    // 16 slots, of which no single endpoint may fill the last one.
    let running = Running::start(builder(&pool).concurrency(16).request_timeout(Duration::from_secs(5)));
    slow.wait_for(15, Duration::from_secs(10)).await.unwrap();
    // The slow endpoint holds its slots, each for a second, with 45 more
    // queued ahead of anything enqueued now.
    send(&pool, healthy_endpoint, 5).await;
    healthy.wait_for(5, Duration::from_secs(20)).await.unwrap();
    let slow_so_far = slow.received().len();
    assert!(
        slow_so_far < 30,
        "the healthy endpoint's events went ahead of the slow one's backlog: \
         {slow_so_far} of its 60 had gone out when they arrived"
    );
    assert_eq!(wait_for_count(&pool, DELIVERED, 65, Duration::from_secs(30)).await, 65);
    running.stop().await;
    // Alone again, the slow endpoint had every slot but the reserved one:
    // its requests went out in waves of 15, each answered a second later.
    let waves = most_together(&slow.received(), Duration::from_millis(900));
    assert_eq!(waves, 15, "15 of 16 slots busy at once");
}
