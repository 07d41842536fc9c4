//! The insertion interface: transactions, idempotency, fan-out from plain
//! SQL, and NOTIFY at most once per transaction.

use std::time::Duration;

use outhook_dispatcher::{Enqueued, Event, enqueue, enqueue_many};
use sqlx::postgres::PgListener;

use crate::common::*;

#[tokio::test(flavor = "multi_thread")]
async fn a_rolled_back_enqueue_delivers_nothing() {
    let pool = db().await;
    let receiver = outhook_testkit::receiver::Receiver::start().await.unwrap();
    endpoint(&pool, "acme", &receiver.url("/"), "trr").await;
    let mut tx = pool.begin().await.unwrap();
    let e = Event {
        event_type: "t",
        payload: "{}",
        owner: Some("acme"),
        ..Default::default()
    };
    assert!(matches!(enqueue(&mut *tx, &e).await.unwrap(), Enqueued::New(_)));
    tx.rollback().await.unwrap();
    let running = Running::start(builder(&pool));
    tokio::time::sleep(Duration::from_millis(500)).await;
    running.stop().await;
    assert!(receiver.received().is_empty());
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_idempotent_reinsert_of_the_same_event_id_delivers_once() {
    let pool = db().await;
    let receiver = outhook_testkit::receiver::Receiver::start().await.unwrap();
    endpoint(&pool, "acme", &receiver.url("/"), "trr").await;
    let e = Event {
        event_type: "t",
        payload: "{}",
        owner: Some("acme"),
        event_id: Some("evt_1"),
        ..Default::default()
    };
    assert!(matches!(enqueue(&pool, &e).await.unwrap(), Enqueued::New(_)));
    assert_eq!(enqueue(&pool, &e).await.unwrap(), Enqueued::Duplicate);
    // Plain SQL with ON CONFLICT DO NOTHING, the documented form, too.
    sqlx::query("INSERT INTO outhook.outbox (event_type, payload, owner, event_id) VALUES ('t', '{}', 'acme', 'evt_1') ON CONFLICT DO NOTHING")
        .execute(&pool)
        .await
        .unwrap();
    let running = Running::start(builder(&pool));
    assert_eq!(wait_for_count(&pool, DELIVERED, 1, Duration::from_secs(10)).await, 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    assert_eq!(receiver.received().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_batch_mixing_keyed_and_unkeyed_events_dedupes_only_the_keyed_ones() {
    let pool = db().await;
    let r = outhook_testkit::receiver::Receiver::start().await.unwrap();
    endpoint(&pool, "acme", &r.url("/"), "trr").await;
    let plain = Event {
        event_type: "t",
        payload: "{}",
        owner: Some("acme"),
        ..Default::default()
    };
    let keyed = Event {
        event_id: Some("evt_k"),
        ..plain.clone()
    };
    // Unkeyed first: the statement must still dedupe the keyed one.
    let batch = [plain.clone(), keyed.clone(), plain.clone()];
    assert_eq!(enqueue_many(&pool, &batch).await.unwrap(), 3);
    assert_eq!(enqueue_many(&pool, &batch).await.unwrap(), 2);
    assert_eq!(enqueue_many(&pool, std::slice::from_ref(&keyed)).await.unwrap(), 0);
    assert_eq!(enqueue_many(&pool, &[plain.clone(), plain]).await.unwrap(), 2);
    let (messages, deliveries): (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM outhook.outbox), (SELECT count(*) FROM outhook.delivery)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!((messages, deliveries), (7, 7));
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_sql_inserts_fan_out_by_owner_and_event_type() {
    let pool = db().await;
    let r = outhook_testkit::receiver::Receiver::start().await.unwrap();
    let (all, _) = endpoint(&pool, "acme", &r.url("/all"), "trr").await;
    let (checks, _) = endpoint(&pool, "acme", &r.url("/checks"), "trr").await;
    sqlx::query("UPDATE outhook.endpoint SET event_types = '{check.completed,check.failed}' WHERE id = $1")
        .bind(checks)
        .execute(&pool)
        .await
        .unwrap();
    let (off, _) = endpoint(&pool, "acme", &r.url("/off"), "trr").await;
    sqlx::query("UPDATE outhook.endpoint SET enabled = false, disabled_reason = 'x' WHERE id = $1")
        .bind(off)
        .execute(&pool)
        .await
        .unwrap();
    endpoint(&pool, "other", &r.url("/other"), "trr").await;
    // One multi-row statement, as any language would send it.
    sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES
           ('check.completed', '{\"id\": 1}', 'acme'), ('item.sold', '{\"id\": 2}', 'acme'), ('check.failed', '{\"id\": 3}', 'nobody')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let rows: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "SELECT o.event_type, d.endpoint_id FROM outhook.delivery d JOIN outhook.outbox o ON o.id = d.message_id ORDER BY o.id, d.endpoint_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    // The disabled endpoint gets its deliveries too, held until it is
    // enabled.
    let mut want = vec![
        ("check.completed".to_owned(), all),
        ("check.completed".to_owned(), checks),
        ("check.completed".to_owned(), off),
        ("item.sold".to_owned(), all),
        ("item.sold".to_owned(), off),
    ];
    want.sort();
    let mut got = rows.clone();
    got.sort();
    assert_eq!(got, want);
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outhook.delivery WHERE endpoint_id = $1 AND status = 0 AND next_attempt_at = 'infinity'",
    )
    .bind(off)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(held, 2);
    // The payload keeps its bytes: spaces and key order.
    let text: String = sqlx::query_scalar("SELECT payload::text FROM outhook.outbox ORDER BY id LIMIT 1")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(text, "{\"id\": 1}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_transaction_notifies_once_and_skip_notify_silences_it() {
    let pool = db().await;
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen(outhook_dispatcher::NOTIFY_CHANNEL).await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    let events: Vec<Event> = (0..3)
        .map(|_| Event {
            event_type: "t",
            payload: "{}",
            owner: Some("o"),
            ..Default::default()
        })
        .collect();
    enqueue_many(&mut *tx, &events).await.unwrap();
    enqueue(&mut *tx, &events[0]).await.unwrap();
    enqueue(&mut *tx, &events[0]).await.unwrap();
    tx.commit().await.unwrap();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("SET LOCAL outhook.skip_notify = 'on'")
        .execute(&mut *tx)
        .await
        .unwrap();
    enqueue(&mut *tx, &events[0]).await.unwrap();
    tx.commit().await.unwrap();
    let mut count = 0;
    while let Ok(Ok(Some(_))) = tokio::time::timeout(Duration::from_millis(500), listener.try_recv()).await {
        count += 1;
    }
    assert_eq!(
        count, 1,
        "three statements in one transaction: one notification; skip_notify: none"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payload_over_the_databases_limit_is_refused_on_every_path_and_nothing_is_enqueued() {
    let pool = db().await;
    endpoint(&pool, "acme", "http://127.0.0.1:9/", "trr").await;
    sqlx::query("UPDATE outhook.ingest_setting SET max_payload_bytes = 1000")
        .execute(&pool)
        .await
        .unwrap();
    let sized = |n: usize| format!("{{\"pad\":\"{}\"}}", "x".repeat(n - 10));
    // Plain SQL, one row of a multi-row statement over the limit: the
    // whole statement is refused, with the size and the limit.
    let refused = sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('t', $1::json, 'acme'), ('t', $2::json, 'acme')",
    )
    .bind(sized(1000))
    .bind(sized(1001))
    .execute(&pool)
    .await
    .unwrap_err();
    let db = refused.as_database_error().unwrap();
    assert_eq!(db.message(), "payload of 1001 bytes exceeds the limit of 1000 bytes");
    assert_eq!(db.constraint(), Some("outbox_payload_size"));
    // The library: a typed error.
    let big = sized(5000);
    let e = enqueue(
        &pool,
        &Event {
            event_type: "t",
            payload: &big,
            owner: Some("acme"),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(
        matches!(&e, outhook_dispatcher::Error::PayloadTooLarge(m) if m == "payload of 5000 bytes exceeds the limit of 1000 bytes"),
        "{e:?}"
    );
    let stored: (i64, i64) =
        sqlx::query_as("SELECT (SELECT count(*) FROM outhook.outbox), (SELECT count(*) FROM outhook.delivery)")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored, (0, 0), "nothing oversized reached the queue");
    // At the limit: accepted and fanned out.
    let at_limit = sized(1000);
    enqueue(
        &pool,
        &Event {
            event_type: "t",
            payload: &at_limit,
            owner: Some("acme"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(deliveries, 1);
}
