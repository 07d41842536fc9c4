//! Failing receivers: retries with growing delays, dead letters, re-queue,
//! 410 Gone, Retry-After.

use std::time::Duration;

use outhook_dispatcher::db::attempt::attempt_list;
use outhook_dispatcher::db::delivery::{DeliveryFilter, DeliveryStatus, delivery_list, delivery_requeue_dead};
use outhook_dispatcher::db::endpoint::endpoint_get;
use outhook_dispatcher::{Event, enqueue};
use outhook_testkit::receiver::{Receiver, Reply};

use crate::common::*;

async fn one_delivery(pool: &sqlx::PgPool, receiver: &Receiver) -> uuid::Uuid {
    let (id, _) = endpoint(pool, "o", &receiver.url("/"), "trr").await;
    enqueue(
        pool,
        &Event {
            event_type: "t",
            payload: r#"{"n":1}"#,
            endpoint_id: Some(id),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    id
}

#[tokio::test(flavor = "multi_thread")]
async fn a_receiver_failing_three_times_then_succeeding_gets_four_attempts_with_growing_delays() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::Status(500), Reply::Status(502), Reply::Status(404)]);
    one_delivery(&pool, &receiver).await;
    let running = Running::start(builder(&pool).retry_policy(quick_retries(6)));
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    running.stop().await;
    let d = &delivery_list(&pool, &DeliveryFilter::default()).await.unwrap()[0];
    let log = attempt_list(&pool, d.id).await.unwrap();
    let outcomes: Vec<_> = log
        .iter()
        .map(|a| (a.attempt, a.outcome.as_str(), a.status_code))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            (1, "http_status", Some(500)),
            (2, "http_status", Some(502)),
            (3, "http_status", Some(404)),
            (4, "delivered", Some(200))
        ]
    );
    // Scheduled delays are 50, 100, 200 ms: each gap at least its delay, and growing.
    let arrivals: Vec<_> = receiver.received().iter().map(|r| r.at).collect();
    let gaps: Vec<Duration> = arrivals
        .windows(2)
        .map(|w| w[1].duration_since(w[0]).unwrap())
        .collect();
    for (gap, min) in gaps.iter().zip([50u64, 100, 200]) {
        assert!(*gap >= Duration::from_millis(min), "gaps {gaps:?}");
    }
    assert!(log[..3].iter().all(|a| a.next_attempt_at.is_some()) && log[3].next_attempt_at.is_none());
    assert!(log.windows(2).all(|w| w[1].started_at >= w[0].next_attempt_at.unwrap()));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_always_failing_receiver_ends_dead_and_a_requeue_delivers_once_it_recovers() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Status(503));
    one_delivery(&pool, &receiver).await;
    let running = Running::start(builder(&pool).retry_policy(quick_retries(3)));
    assert_eq!(wait_for_count(&pool, DEAD, 1, Duration::from_secs(10)).await, 1);
    let d = delivery_list(&pool, &DeliveryFilter::default())
        .await
        .unwrap()
        .remove(0);
    assert_eq!(d.status, DeliveryStatus::Dead);
    assert_eq!(d.attempts, 3);
    assert!(
        d.last_error.as_deref().unwrap().contains("retries exhausted"),
        "{:?}",
        d.last_error
    );
    assert_eq!(attempt_list(&pool, d.id).await.unwrap().len(), 3);
    // The receiver recovers; the dead letter is re-queued and goes through.
    receiver.set_default(Reply::Status(200));
    assert_eq!(delivery_requeue_dead(&pool, None).await.unwrap(), 1);
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    running.stop().await;
    let log = attempt_list(&pool, d.id).await.unwrap();
    assert_eq!(log.len(), 4);
    assert_eq!(log[3].outcome, "delivered");
    assert_eq!(log[3].attempt, 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_410_response_disables_the_endpoint_and_holds_what_follows() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Status(410));
    let id = one_delivery(&pool, &receiver).await;
    let running = Running::start(builder(&pool));
    assert_eq!(wait_for_count(&pool, DEAD, 1, Duration::from_secs(10)).await, 1);
    // A later event for the same endpoint is held, not sent and not lost.
    enqueue(
        &pool,
        &Event {
            event_type: "t",
            payload: "{}",
            endpoint_id: Some(id),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let held = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outhook.delivery WHERE status = 0 AND next_attempt_at = 'infinity'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    for _ in 0..200 {
        if held().await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(held().await, 1, "the second delivery is held");
    let e = endpoint_get(&pool, id).await.unwrap();
    assert!(!e.enabled);
    assert!(e.disabled_reason.unwrap().contains("410"));
    assert!(e.disabled_at.is_some());
    assert_eq!(receiver.received().len(), 1);
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM outhook.attempt ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(outcomes, vec!["http_status", "endpoint_disabled"]);

    // Enabled again, the held delivery goes out.
    receiver.set_default(Reply::Status(200));
    outhook_dispatcher::db::endpoint::endpoint_set_enabled(&pool, id, true, None)
        .await
        .unwrap();
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    running.stop().await;
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_on_429_is_honoured_up_to_its_cap() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::RetryAfter(429, "2".into())]);
    one_delivery(&pool, &receiver).await;
    let running = Running::start(builder(&pool));
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    running.stop().await;
    let got = receiver.received();
    assert_eq!(got.len(), 2);
    let gap = got[1].at.duration_since(got[0].at).unwrap();
    assert!(gap >= Duration::from_secs(2), "waited only {gap:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_waits_at_least_the_overload_floor() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::Hang]);
    one_delivery(&pool, &receiver).await;
    let running = Running::start(
        builder(&pool)
            .request_timeout(Duration::from_millis(300))
            .retry_policy(quick_retries(3).with_overload_floor(Duration::from_secs(1))),
    );
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    running.stop().await;
    let got = receiver.received();
    let gap = got[1].at.duration_since(got[0].at).unwrap();
    assert!(gap >= Duration::from_secs(1), "{gap:?}");
    let outcomes: Vec<String> = sqlx::query_scalar("SELECT outcome FROM outhook.attempt ORDER BY id")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(outcomes, vec!["timeout", "delivered"]);
}

/// Every scheme carries the message id, the same on every retry, so a
/// receiver can tell a retry (or a redelivery after a worker crash) from a
/// new event: `trr` has no id header of its own, so `webhook-id` is added;
/// an endpoint can rename it, or switch it off for an exact header set.
#[tokio::test(flavor = "multi_thread")]
async fn every_attempt_carries_the_message_id_in_a_header_an_endpoint_can_rename_or_drop() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::Status(500), Reply::Status(503)]);
    one_delivery(&pool, &receiver).await;
    let running = Running::start(builder(&pool).retry_policy(quick_retries(6)));
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    let got = receiver.received();
    assert_eq!(got.len(), 3);
    let ids: Vec<&str> = got.iter().map(|r| r.headers["webhook-id"].to_str().unwrap()).collect();
    let uid = delivery_list(&pool, &DeliveryFilter::default()).await.unwrap()[0].message_uid;
    assert!(ids.iter().all(|i| *i == format!("msg_{}", uid.simple())), "{ids:?}");

    for (header, expect) in [("x-trr-delivery", Some("x-trr-delivery")), ("", None)] {
        let (id, _) = endpoint(&pool, "o", &receiver.url("/named"), "trr").await;
        sqlx::query("UPDATE outhook.endpoint SET message_id_header = $2 WHERE id = $1")
            .bind(id)
            .bind(header)
            .execute(&pool)
            .await
            .unwrap();
        let before = receiver.received().len();
        enqueue(
            &pool,
            &Event {
                event_type: "t",
                payload: "{}",
                endpoint_id: Some(id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        let got = receiver.wait_for(before + 1, Duration::from_secs(10)).await.unwrap();
        let last = &got[before];
        assert!(!last.headers.contains_key("webhook-id"), "{:?}", last.headers);
        match expect {
            Some(name) => assert!(last.headers[name].to_str().unwrap().starts_with("msg_")),
            None => assert!(
                last.headers
                    .keys()
                    .all(|k| !k.as_str().contains("delivery") && !k.as_str().ends_with("-id")),
                "{:?}",
                last.headers
            ),
        }
    }
    running.stop().await;
}
