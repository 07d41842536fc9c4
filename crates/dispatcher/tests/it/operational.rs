//! Operational events: Outhook tells the operator's endpoints, through its
//! own outbox and signed with Standard Webhooks, about endpoints changing
//! and deliveries failing, giving up and recovering.

use std::sync::Arc;
use std::time::Duration;

use outhook_dispatcher::db::endpoint::{EndpointUpdate, endpoint_delete, endpoint_set_enabled, endpoint_update};
use outhook_dispatcher::{Event, OPERATOR_OWNER, enqueue};
use outhook_signer::{Scheme, Verifier};
use outhook_testkit::receiver::{Receiver, Reply};
use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

async fn send_to(pool: &PgPool, endpoint: Uuid, event_type: &str) {
    enqueue(
        pool,
        &Event {
            event_type,
            payload: r#"{"order": 7}"#,
            endpoint_id: Some(endpoint),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

/// The operator's receiver: answers 200 only to requests that verify.
async fn operator(pool: &PgPool) -> (Receiver, Uuid) {
    let receiver = Receiver::start().await.unwrap();
    let (id, secret) = endpoint(pool, OPERATOR_OWNER, &receiver.url("/ops"), "standard-webhooks").await;
    let verifier = Arc::new(Verifier::new(Scheme::by_name("standard-webhooks").unwrap(), &[secret]).unwrap());
    receiver.judge_with(Arc::new(move |headers, body| {
        if verifier.verify(headers, body).is_ok() {
            200
        } else {
            401
        }
    }));
    (receiver, id)
}

fn events(receiver: &Receiver) -> Vec<Value> {
    receiver
        .received()
        .iter()
        .map(|r| serde_json::from_slice(&r.body).unwrap())
        .collect()
}

async fn wait_for_events(receiver: &Receiver, n: usize) -> Vec<Value> {
    for _ in 0..300 {
        let got = events(receiver);
        if got.len() >= n {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("expected {n} operational events, got {:?}", events(receiver));
}

/// Every kind of event arrives, verified with the operator endpoint's
/// Standard Webhooks secret, and says which endpoint, message and attempt.
#[tokio::test(flavor = "multi_thread")]
async fn the_operator_is_told_about_endpoints_and_failing_deliveries() {
    let pool = db().await;
    let (ops, _) = operator(&pool).await;
    let customer = Receiver::start().await.unwrap();
    customer.set_default(Reply::Status(500));
    let (id, _) = endpoint(&pool, "acme", &customer.url("/hook"), "trr").await;
    let running = Running::start(builder(&pool).retry_policy(quick_retries(5)));

    // Five failures: failing after the fourth, exhausted after the fifth.
    send_to(&pool, id, "order.failed").await;
    assert_eq!(wait_for_count(&pool, DEAD, 1, Duration::from_secs(20)).await, 1);
    // Four failures, then a success: failing, then recovered.
    customer.script([
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(500),
        Reply::Status(503),
    ]);
    customer.set_default(Reply::Status(200));
    send_to(&pool, id, "order.late").await;
    // Every endpoint change.
    endpoint_update(
        &pool,
        id,
        &EndpointUpdate {
            description: Some("renamed".into()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    const LATE_DELIVERED: &str = "SELECT count(*) FROM outhook.delivery d JOIN outhook.outbox o ON o.id = d.message_id
                                  WHERE o.event_type = 'order.late' AND d.status = 1";
    assert_eq!(
        wait_for_count(&pool, LATE_DELIVERED, 1, Duration::from_secs(20)).await,
        1
    );
    endpoint_set_enabled(&pool, id, false, Some("maintenance"))
        .await
        .unwrap();
    endpoint_set_enabled(&pool, id, true, None).await.unwrap();
    endpoint_delete(&pool, id).await.unwrap();

    let got = wait_for_events(&ops, 9).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = if events(&ops).len() > got.len() {
        events(&ops)
    } else {
        got
    };
    running.stop().await;
    let kinds: Vec<&str> = got.iter().map(|e| e["type"].as_str().unwrap()).collect();
    let mut sorted = kinds.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        vec![
            "endpoint.created",
            "endpoint.deleted",
            "endpoint.disabled",
            "endpoint.enabled",
            "endpoint.updated",
            "message.attempt.exhausted",
            "message.attempt.failing",
            "message.attempt.failing",
            "message.attempt.recovered",
        ],
        "{kinds:?}"
    );
    assert!(ops.received().len() == 9, "every request verified and answered once");
    let exhausted = got.iter().find(|e| e["type"] == "message.attempt.exhausted").unwrap();
    assert_eq!(exhausted["data"]["endpoint_id"], id.to_string());
    assert_eq!(exhausted["data"]["owner"], "acme");
    assert_eq!(exhausted["data"]["event_type"], "order.failed");
    assert!(exhausted["data"]["message_id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(exhausted["data"]["last_attempt"]["attempt"], 5);
    assert_eq!(exhausted["data"]["last_attempt"]["status_code"], 500);
    let recovered = got.iter().find(|e| e["type"] == "message.attempt.recovered").unwrap();
    assert_eq!(recovered["data"]["last_attempt"]["status_code"], 200);
    let disabled = got.iter().find(|e| e["type"] == "endpoint.disabled").unwrap();
    assert_eq!(disabled["data"]["reason"], "maintenance");
}

/// The operator's own endpoint down: its failed deliveries raise nothing,
/// so one failing customer delivery makes exactly its two events.
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_operator_endpoint_starts_no_storm() {
    let pool = db().await;
    let customer = Receiver::start().await.unwrap();
    customer.set_default(Reply::Status(500));
    let (id, _) = endpoint(&pool, "acme", &customer.url("/hook"), "trr").await;
    let (ops, ops_id) = operator(&pool).await;
    ops.set_default(Reply::Status(500));
    let running = Running::start(builder(&pool).retry_policy(quick_retries(5)));
    send_to(&pool, id, "order.failed").await;
    // The customer's delivery and both operational deliveries all die.
    assert_eq!(wait_for_count(&pool, DEAD, 3, Duration::from_secs(30)).await, 3);
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    let operational: Vec<String> =
        sqlx::query_scalar("SELECT event_type FROM outhook.outbox WHERE owner = 'outhook:operator' ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(
        operational,
        vec!["message.attempt.failing", "message.attempt.exhausted"]
    );
    let to_ops: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE endpoint_id = $1")
        .bind(ops_id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(to_ops, 2);
}

/// Without an operator endpoint nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn without_an_operator_endpoint_nothing_is_emitted() {
    let pool = db().await;
    let customer = Receiver::start().await.unwrap();
    customer.set_default(Reply::Status(500));
    let (id, _) = endpoint(&pool, "acme", &customer.url("/hook"), "trr").await;
    let running = Running::start(builder(&pool).retry_policy(quick_retries(5)));
    send_to(&pool, id, "order.failed").await;
    assert_eq!(wait_for_count(&pool, DEAD, 1, Duration::from_secs(20)).await, 1);
    endpoint_set_enabled(&pool, id, false, None).await.unwrap();
    running.stop().await;
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.outbox WHERE owner = 'outhook:operator'")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}
