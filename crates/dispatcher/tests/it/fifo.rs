//! Ordered (FIFO) endpoints: one delivery at a time, in outbox order, and a
//! failing head holds its successors back.

use std::time::Duration;

use outhook_dispatcher::db::endpoint::{NewEndpoint, endpoint_insert};
use outhook_dispatcher::{Event, enqueue};
use outhook_testkit::receiver::{Receiver, Reply};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

async fn ordered_endpoint(pool: &PgPool, url: &str) -> Uuid {
    endpoint_insert(
        pool,
        &NewEndpoint {
            owner: "acme".into(),
            url: url.into(),
            scheme: "trr".into(),
            secret: Some(outhook_signer::Secret::new("s")),
            fifo: true,
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .id
}

fn seqs(receiver: &Receiver) -> Vec<i64> {
    receiver
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["seq"]
                .as_i64()
                .unwrap()
        })
        .collect()
}

/// Two dispatchers, events enqueued one transaction each: the receiver
/// sees them strictly in order, the failing first one retried before any
/// other is sent.
#[tokio::test(flavor = "multi_thread")]
async fn an_ordered_endpoint_gets_one_delivery_at_a_time_in_outbox_order() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::Status(500), Reply::Status(503)]);
    ordered_endpoint(&pool, &receiver.url("/ordered")).await;
    let a = Running::start(builder(&pool).retry_policy(quick_retries(10)));
    let b = Running::start(builder(&pool).retry_policy(quick_retries(10)));
    for seq in 0..60 {
        let payload = format!(r#"{{"seq":{seq}}}"#);
        enqueue(
            &pool,
            &Event {
                event_type: "item.sold",
                payload: &payload,
                owner: Some("acme"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(wait_for_count(&pool, DELIVERED, 60, Duration::from_secs(30)).await, 60);
    a.stop().await;
    b.stop().await;
    let got = seqs(&receiver);
    assert_eq!(
        &got[..3],
        &[0, 0, 0],
        "the failing head is retried before anything else: {got:?}"
    );
    assert_eq!(got[3..], (1..60).collect::<Vec<i64>>()[..], "then each once, in order");
}

/// A batch inserted in one statement is ordered too, and a dead head lets
/// the next one go.
#[tokio::test(flavor = "multi_thread")]
async fn a_dead_head_lets_the_next_go() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::Status(500), Reply::Status(500)]);
    let id = ordered_endpoint(&pool, &receiver.url("/ordered")).await;
    let payloads: Vec<String> = (0..5).map(|seq| format!(r#"{{"seq":{seq}}}"#)).collect();
    let events: Vec<Event> = payloads
        .iter()
        .map(|p| Event {
            event_type: "item.sold",
            payload: p,
            endpoint_id: Some(id),
            ..Default::default()
        })
        .collect();
    outhook_dispatcher::enqueue_many(&pool, &events).await.unwrap();
    let (heads, waiting): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE status = 0), count(*) FILTER (WHERE status = 3) FROM outhook.delivery",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((heads, waiting), (1, 4), "one head, the rest waiting");
    let running = Running::start(builder(&pool).retry_policy(quick_retries(2)));
    assert_eq!(wait_for_count(&pool, DELIVERED, 4, Duration::from_secs(20)).await, 4);
    running.stop().await;
    assert_eq!(wait_for_count(&pool, DEAD, 1, Duration::from_secs(1)).await, 1);
    assert_eq!(seqs(&receiver), vec![0, 0, 1, 2, 3, 4]);
}
