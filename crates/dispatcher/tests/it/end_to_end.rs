//! Each seed scheme end to end: outbox row in, signed POST out, verified by
//! a receiver that uses our verifier and answers 401 to anything invalid.

use std::sync::Arc;
use std::time::Duration;

use outhook_dispatcher::db::attempt::attempt_list;
use outhook_dispatcher::db::delivery::{DeliveryFilter, DeliveryStatus, delivery_list};
use outhook_dispatcher::db::signing_key::signing_key_list;
use outhook_dispatcher::{Event, enqueue};
use outhook_signer::{Scheme, Secret, Verifier};
use outhook_testkit::receiver::Receiver;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn every_seed_scheme_is_delivered_and_verifies_at_the_receiver() {
    let pool = db().await;
    let cases = [
        (
            "trr",
            "vendor.notification",
            r#"{"type":"vendor.notification","vendor_id":"v_1","note":"Zoë"}"#,
        ),
        (
            "real-id",
            "check.completed",
            r#"{ "event": "check.completed", "1": true, "check": {"id":"abcdef","score":1.0} }"#,
        ),
        (
            "standard-webhooks",
            "customer.data_deletion_request",
            r#"{"event":"customer.data_deletion_request","check":{"id":"abc"}}"#,
        ),
        (
            "rheo",
            "item.sold",
            r#"{"event":"item.sold","data":{"item_id":"PART_001"}}"#,
        ),
        (
            "cometh",
            "ORDER_FILLED",
            r#"{"type":"ORDER_FILLED","order":{"id":"0xabc","price":"1500000000000000000"}}"#,
        ),
    ];
    let mut receivers = Vec::new();
    for (scheme, event_type, payload) in cases {
        let receiver = Receiver::start().await.unwrap();
        let (id, secret) = endpoint(&pool, "customer_1", &receiver.url("/hook"), scheme).await;
        let verify_key = if scheme == "cometh" {
            let keys = signing_key_list(&pool).await.unwrap();
            let key = keys.last().unwrap();
            Secret::new(key.public_key_pem.clone())
        } else {
            secret
        };
        let verifier = Arc::new(Verifier::new(Scheme::by_name(scheme).unwrap(), &[verify_key]).unwrap());
        receiver.judge_with(Arc::new(move |headers, body| {
            if verifier.verify(headers, body).is_ok() {
                200
            } else {
                401
            }
        }));
        enqueue(
            &pool,
            &Event {
                event_type,
                payload,
                endpoint_id: Some(id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        receivers.push((scheme, payload, receiver));
    }
    let running = Running::start(builder(&pool));
    assert_eq!(wait_for_count(&pool, DELIVERED, 5, Duration::from_secs(20)).await, 5);
    let summary = running.stop().await;
    assert_eq!(summary.delivered, 5);
    assert_eq!(summary.retried + summary.dead, 0, "every first attempt verified");
    for (scheme, payload, receiver) in &receivers {
        let got = receiver.received();
        assert_eq!(got.len(), 1, "{scheme}");
        let r = &got[0];
        assert_eq!(r.headers["content-type"], "application/json");
        assert!(r.headers["user-agent"].to_str().unwrap().starts_with("Outhook/"));
        if matches!(*scheme, "trr" | "rheo" | "standard-webhooks") {
            assert_eq!(&r.body[..], payload.as_bytes(), "{scheme} sends the provider's bytes");
        } else {
            assert_eq!(
                &r.body[..],
                &outhook_signer::json::to_js_json(payload.as_bytes()).unwrap()[..]
            );
        }
    }
    // The log holds the request as sent: signature header and body hash.
    let deliveries = delivery_list(&pool, &DeliveryFilter::default()).await.unwrap();
    assert!(deliveries.iter().all(|d| d.status == DeliveryStatus::Delivered));
    for d in &deliveries {
        let log = attempt_list(&pool, d.id).await.unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!(log[0].outcome, "delivered");
        assert_eq!(log[0].status_code, Some(200));
        assert_eq!(log[0].body_sha256.as_ref().map(Vec::len), Some(32));
        assert!(
            log[0]
                .request_headers
                .as_object()
                .unwrap()
                .keys()
                .any(|k| k.contains("signature"))
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn retries_carry_the_same_message_id_and_a_fresh_signature() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.script([outhook_testkit::receiver::Reply::Status(500)]);
    let (id, _) = endpoint(&pool, "o", &receiver.url("/"), "standard-webhooks").await;
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
    let running = Running::start(builder(&pool));
    let got = receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    running.stop().await;
    assert_eq!(got[0].headers["webhook-id"], got[1].headers["webhook-id"]);
    assert!(got[0].headers["webhook-id"].to_str().unwrap().starts_with("msg_"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_secret_never_reaches_the_delivery_log() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(outhook_testkit::receiver::Reply::Status(500));
    let mut secrets = Vec::new();
    for scheme in ["trr", "rheo", "standard-webhooks", "real-id"] {
        let (id, secret) = endpoint(&pool, "o", &receiver.url("/"), scheme).await;
        secrets.push(secret.expose().to_owned());
        enqueue(
            &pool,
            &Event {
                event_type: "t",
                payload: r#"{"a":1}"#,
                endpoint_id: Some(id),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    // Static headers may carry credentials too.
    sqlx::query("UPDATE outhook.endpoint SET headers = '{\"authorization\": \"Bearer tok_s3cret\"}'")
        .execute(&pool)
        .await
        .unwrap();
    let running = Running::start(builder(&pool));
    receiver.wait_for(8, Duration::from_secs(10)).await.unwrap();
    running.stop().await;
    assert!(
        receiver
            .received()
            .iter()
            .any(|r| r.headers.get("authorization").is_some_and(|v| v == "Bearer tok_s3cret"))
    );
    let log: Vec<String> = sqlx::query_scalar("SELECT row_to_json(a)::text FROM outhook.attempt a")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert!(log.len() >= 8);
    for row in &log {
        for s in &secrets {
            assert!(!row.contains(s.as_str()), "secret in the log: {row}");
            let bare = s.trim_start_matches("whsec_");
            assert!(!row.contains(bare), "secret in the log: {row}");
        }
        assert!(!row.contains("tok_s3cret"), "static header value in the log: {row}");
    }
}

/// Claims run on a connection of their own (asynchronous commits unless
/// `durable_claims` is on: `claim_connect_options`' unit test); either way
/// the delivery goes through.
#[tokio::test(flavor = "multi_thread")]
async fn claims_use_a_connection_of_their_own_durable_or_not() {
    for durable in [false, true] {
        let pool = db().await;
        let receiver = Receiver::start().await.unwrap();
        endpoint(&pool, "acme", &receiver.url("/hook"), "trr").await;
        let running = Running::start(builder(&pool).durable_claims(durable));
        enqueue(
            &pool,
            &Event {
                event_type: "item.sold",
                payload: r#"{"n":1}"#,
                owner: Some("acme"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
        let own: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'outhook claimer' AND datname = current_database()",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        running.stop().await;
        assert_eq!(own, 1, "durable_claims({durable})");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endpoint_changed_by_plain_sql_reaches_a_running_worker_within_the_cache_ttl() {
    let pool = db().await;
    let old = Receiver::start().await.unwrap();
    let new = Receiver::start().await.unwrap();
    let (endpoint, _) = endpoint(&pool, "o", &old.url("/hook"), "standard-webhooks").await;
    let send = |n: i32| {
        let pool = pool.clone();
        async move {
            sqlx::query("INSERT INTO outhook.outbox (event_type, payload, endpoint_id) VALUES ('t', json_build_object('n', $1), $2)")
                .bind(n)
                .bind(endpoint)
                .execute(&pool)
                .await
                .unwrap();
        }
    };
    // A 50 ms cache (see `builder`): the worker holds the endpoint.
    let running = Running::start(builder(&pool));
    send(1).await;
    old.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let before: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM outhook.endpoint WHERE id = $1")
            .bind(endpoint)
            .fetch_one(&pool)
            .await
            .unwrap();
    // As a provider's own SQL would: the URL alone, nothing else.
    sqlx::query("UPDATE outhook.endpoint SET url = $1 WHERE id = $2")
        .bind(new.url("/hook"))
        .bind(endpoint)
        .execute(&pool)
        .await
        .unwrap();
    let after: chrono::DateTime<chrono::Utc> =
        sqlx::query_scalar("SELECT updated_at FROM outhook.endpoint WHERE id = $1")
            .bind(endpoint)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(after > before, "updated_at moved with the change: {before} -> {after}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    send(2).await;
    let got = new.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let body: serde_json::Value = serde_json::from_slice(&got[0].body).unwrap();
    assert_eq!(body["n"], 2);
    running.stop().await;
    assert_eq!(old.received().len(), 1, "nothing more went to the old URL");
}
