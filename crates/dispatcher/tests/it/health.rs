//! Endpoint health: the running counts, auto-disable after a failing
//! window, and deliveries held (not lost) while an endpoint is disabled.

use std::time::Duration;

use outhook_dispatcher::db::endpoint::{endpoint_get, endpoint_set_enabled};
use outhook_dispatcher::db::endpoint_health::endpoint_health_list;
use outhook_dispatcher::{Event, RetryPolicy, enqueue};
use outhook_testkit::receiver::{Receiver, Reply};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

const HELD: &str = "SELECT count(*) FROM outhook.delivery WHERE status = 0 AND next_attempt_at = 'infinity'";

async fn send(pool: &PgPool, owner: &str, seq: usize) {
    let payload = format!("{{\"seq\": {seq}}}");
    enqueue(
        pool,
        &Event {
            event_type: "item.sold",
            payload: &payload,
            owner: Some(owner),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

async fn wait_until(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..300 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

/// The failure streak, the last success and the failing window's start are
/// written by the worker and reset by a success.
#[tokio::test(flavor = "multi_thread")]
async fn the_worker_keeps_each_endpoints_health() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::Status(500), Reply::Status(500)]);
    let (id, _) = endpoint(&pool, "acme", &receiver.url("/"), "trr").await;
    let running = Running::start(builder(&pool).retry_policy(quick_retries(5)));
    send(&pool, "acme", 1).await;
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    let mut health = None;
    wait_until("health written", async || {
        health = endpoint_health_list(&pool, &[id]).await.unwrap().pop();
        health.as_ref().is_some_and(|h| h.last_success_at.is_some())
    })
    .await;
    let h = health.unwrap();
    assert_eq!(h.failure_streak, 0, "the success reset the streak");
    assert_eq!(h.failing_since, None);
    assert!(h.last_failure_at.unwrap() < h.last_success_at.unwrap());

    receiver.set_default(Reply::Status(503));
    send(&pool, "acme", 2).await;
    wait_until("two failures counted", async || {
        endpoint_health_list(&pool, &[id])
            .await
            .unwrap()
            .pop()
            .is_some_and(|h| h.failure_streak >= 2 && h.failing_since.is_some())
    })
    .await;
    running.stop().await;
}

/// Svix's rule, persisted: an endpoint failing with no success for its
/// window is disabled with the reason and time, and its pending
/// deliveries are held, not dead-lettered. Enabled again, they all go out.
#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_failing_past_its_window_is_disabled_and_its_deliveries_held() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Status(500));
    let (id, _) = endpoint(&pool, "acme", &receiver.url("/"), "trr").await;
    let (healthy, _) = endpoint(&pool, "other", &receiver.url("/ok"), "trr").await;
    // Long retries: nothing runs out of attempts during the test.
    let retries = RetryPolicy::schedule(vec![Duration::from_millis(100)])
        .with_jitter(0.0)
        .with_max_attempts(1000);
    let running = Running::start(
        builder(&pool)
            .retry_policy(retries)
            .auto_disable_after(Duration::from_secs(2))
            .maintenance_interval(Duration::from_millis(100)),
    );
    for seq in 0..5 {
        send(&pool, "acme", seq).await;
    }
    wait_until("the endpoint is disabled", async || {
        !endpoint_get(&pool, id).await.unwrap().enabled
    })
    .await;
    let e = endpoint_get(&pool, id).await.unwrap();
    let reason = e.disabled_reason.clone().unwrap();
    assert!(reason.contains("no successful delivery for"), "{reason}");
    let h = endpoint_health_list(&pool, &[id]).await.unwrap().pop().unwrap();
    let failing_for = e.disabled_at.unwrap() - h.failing_since.unwrap();
    assert!(
        failing_for >= chrono::Duration::seconds(2),
        "disabled after {failing_for}"
    );
    assert_eq!(wait_for_count(&pool, HELD, 5, Duration::from_secs(10)).await, 5);
    assert_eq!(
        wait_for_count(&pool, DEAD, 0, Duration::from_secs(1)).await,
        0,
        "nothing is lost"
    );
    // A message sent while it is disabled is held too.
    send(&pool, "acme", 5).await;
    assert_eq!(wait_for_count(&pool, HELD, 6, Duration::from_secs(10)).await, 6);
    let before = receiver.received().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(receiver.received().len(), before, "nothing is sent while disabled");
    assert!(
        endpoint_get(&pool, healthy).await.unwrap().enabled,
        "the other endpoint is untouched"
    );

    receiver.set_default(Reply::Status(200));
    endpoint_set_enabled(&pool, id, true, None).await.unwrap();
    assert_eq!(wait_for_count(&pool, DELIVERED, 6, Duration::from_secs(10)).await, 6);
    running.stop().await;
    let e = endpoint_get(&pool, id).await.unwrap();
    assert!(e.enabled && e.disabled_at.is_none() && e.disabled_reason.is_none());
}

/// A day of held deliveries all go out once the endpoint is enabled, with
/// a fresh count of attempts; those held past the retry age limit become
/// dead letters with that reason instead.
#[tokio::test(flavor = "multi_thread")]
async fn held_deliveries_resume_on_enable_and_those_past_the_age_limit_die() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let (id, _) = endpoint(&pool, "acme", &receiver.url("/"), "trr").await;
    endpoint_set_enabled(&pool, id, false, Some("customer maintenance"))
        .await
        .unwrap();
    for seq in 0..50 {
        send(&pool, "acme", seq).await;
    }
    // A day on hold for 48 of them; two past the 3-day retry age limit.
    sqlx::query(
        "UPDATE outhook.delivery SET cycle_started_at = now() - CASE WHEN id <= 2 THEN interval '4 days' ELSE interval '1 day' END",
    )
    .execute(&pool)
    .await
    .unwrap();
    assert_eq!(wait_for_count(&pool, HELD, 50, Duration::from_secs(1)).await, 50);
    let running = Running::start(
        builder(&pool)
            .retry_policy(RetryPolicy::default())
            .maintenance_interval(Duration::from_millis(100)),
    );
    assert_eq!(wait_for_count(&pool, DEAD, 2, Duration::from_secs(10)).await, 2);
    let reasons: Vec<String> = sqlx::query_scalar("SELECT last_error FROM outhook.delivery WHERE status = 2")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(
        reasons.iter().all(|r| r.contains("past the retry age limit")),
        "{reasons:?}"
    );
    assert!(receiver.received().is_empty());

    endpoint_set_enabled(&pool, id, true, None).await.unwrap();
    assert_eq!(wait_for_count(&pool, DELIVERED, 48, Duration::from_secs(10)).await, 48);
    running.stop().await;
    let seqs: Vec<i64> = receiver
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect();
    let mut sorted = seqs.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (2..50).collect::<Vec<i64>>(), "each held delivery exactly once");
}

/// Disabling by hand holds what is pending, including scheduled retries.
#[tokio::test(flavor = "multi_thread")]
async fn disabling_by_hand_holds_pending_retries() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Status(500));
    let (id, _): (Uuid, _) = endpoint(&pool, "acme", &receiver.url("/"), "trr").await;
    let retries = RetryPolicy::schedule(vec![Duration::from_secs(3600)]).with_jitter(0.0);
    let running = Running::start(builder(&pool).retry_policy(retries));
    send(&pool, "acme", 1).await;
    receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    wait_until("the retry is scheduled", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outhook.attempt")
            .fetch_one(&pool)
            .await
            .unwrap()
            == 1
    })
    .await;
    endpoint_set_enabled(&pool, id, false, None).await.unwrap();
    assert_eq!(wait_for_count(&pool, HELD, 1, Duration::from_secs(1)).await, 1);
    running.stop().await;
}

/// An endpoint disabled while an attempt to it is in flight: the failed
/// attempt's retry is held at once, though the worker's cached endpoint
/// still says enabled.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_written_after_the_endpoint_was_disabled_is_held() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Delayed(Duration::from_millis(500), 500));
    let (id, _): (Uuid, _) = endpoint(&pool, "acme", &receiver.url("/"), "trr").await;
    let retries = RetryPolicy::schedule(vec![Duration::from_millis(100)]).with_jitter(0.0);
    let running = Running::start(
        builder(&pool)
            .retry_policy(retries)
            .endpoint_cache_ttl(Duration::from_secs(60)),
    );
    send(&pool, "acme", 1).await;
    receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    // The request is being answered (slowly) while the endpoint is disabled.
    endpoint_set_enabled(&pool, id, false, None).await.unwrap();
    wait_until("the attempt is logged", async || {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outhook.attempt")
            .fetch_one(&pool)
            .await
            .unwrap()
            == 1
    })
    .await;
    assert_eq!(wait_for_count(&pool, HELD, 1, Duration::from_secs(1)).await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(receiver.received().len(), 1, "no retry went to the disabled endpoint");
}
