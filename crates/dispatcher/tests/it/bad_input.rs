//! Bad input ends in the delivery log with a reason, and the worker keeps
//! delivering everything else.

use std::time::Duration;

use outhook_dispatcher::db::endpoint::{NewEndpoint, endpoint_insert, endpoint_set_enabled};
use outhook_dispatcher::{Event, enqueue};
use outhook_testkit::receiver::{Receiver, Reply};
use uuid::Uuid;

use crate::common::*;

async fn raw_endpoint(pool: &sqlx::PgPool, url: &str, scheme: &str, secret: Option<&str>) -> Uuid {
    endpoint_insert(
        pool,
        &NewEndpoint {
            owner: "o".into(),
            url: url.into(),
            scheme: scheme.into(),
            secret: secret.map(outhook_signer::Secret::new),
            ..Default::default()
        },
    )
    .await
    .unwrap()
    .id
}

async fn send_to(pool: &sqlx::PgPool, id: Uuid, event_type: &str) {
    enqueue(
        pool,
        &Event {
            event_type,
            payload: r#"{"ok":true}"#,
            endpoint_id: Some(id),
            ..Default::default()
        },
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn each_kind_of_bad_input_is_logged_with_a_reason_and_the_worker_keeps_going() {
    let pool = db().await;
    let good = Receiver::start().await.unwrap();
    let endless = Receiver::start().await.unwrap();
    endless.set_default(Reply::Endless);
    let huge = Receiver::start().await.unwrap();
    huge.set_default(Reply::Huge(5 << 20));
    let redirect = Receiver::start().await.unwrap();
    redirect.set_default(Reply::Redirect(good.url("/elsewhere")));

    let cases: Vec<(&str, Uuid)> = vec![
        ("unknown_endpoint", Uuid::new_v4()),
        ("endpoint_disabled", {
            let id = raw_endpoint(&pool, &good.url("/"), "trr", Some("s")).await;
            endpoint_set_enabled(&pool, id, false, Some("customer asked"))
                .await
                .unwrap();
            id
        }),
        ("invalid_url", raw_endpoint(&pool, "not a url", "trr", Some("s")).await),
        (
            "dns",
            raw_endpoint(&pool, "http://no-such-host.invalid/hook", "trr", Some("s")).await,
        ),
        (
            "address_refused",
            raw_endpoint(&pool, "http://10.1.2.3/hook", "trr", Some("s")).await,
        ),
        (
            "address_refused",
            raw_endpoint(&pool, "http://169.254.169.254/latest/meta-data", "trr", Some("s")).await,
        ),
        ("signing_failed", raw_endpoint(&pool, &good.url("/"), "trr", None).await),
        (
            "timeout",
            raw_endpoint(&pool, &endless.url("/"), "trr", Some("s")).await,
        ),
        ("delivered", raw_endpoint(&pool, &huge.url("/"), "trr", Some("s")).await),
        (
            "redirect",
            raw_endpoint(&pool, &redirect.url("/"), "trr", Some("s")).await,
        ),
    ];
    // localhost resolves to loopback: refused by a dispatcher that allows nothing.
    let local = raw_endpoint(
        &pool,
        &format!("http://localhost:{}/", good.addr.port()),
        "trr",
        Some("s"),
    )
    .await;
    send_to(&pool, local, "address_refused_by_dns").await;
    let strict = outhook_dispatcher::Dispatcher::builder(pool.clone())
        .poll_interval(Duration::from_millis(50))
        .request_timeout(Duration::from_millis(500))
        .max_response_bytes(1024)
        .retry_policy(quick_retries(1));
    // This run allows no private network at all; the other cases run below,
    // with loopback allowed for their receivers.
    let running = Running::start(strict);
    let local_outcome = wait_outcome(&pool, "address_refused_by_dns").await;
    running.stop().await;
    assert_eq!(local_outcome.0, "address_refused", "{local_outcome:?}");
    assert!(local_outcome.1.contains("private or reserved"), "{local_outcome:?}");

    for (expected, id) in &cases {
        send_to(&pool, *id, expected).await;
    }
    let fine = raw_endpoint(&pool, &good.url("/fine"), "trr", Some("s")).await;
    send_to(&pool, fine, "fine").await;

    let running = Running::start(
        builder(&pool)
            .request_timeout(Duration::from_millis(500))
            .max_response_bytes(1024)
            .retry_policy(quick_retries(1)),
    );
    for (expected, _) in &cases {
        let (outcome, error, status, truncated, body_len) = wait_outcome_full(&pool, expected).await;
        assert_eq!(outcome, *expected, "event type {expected}: {error}");
        match *expected {
            "delivered" => {
                assert!(truncated, "a multi-megabyte response is cut");
                assert_eq!(body_len, 1024);
                assert_eq!(status, Some(200));
            }
            "redirect" => {
                assert_eq!(status, Some(302));
                assert!(error.contains("not followed"), "{error}");
            }
            "endpoint_disabled" => assert!(error.contains("customer asked"), "{error}"),
            "unknown_endpoint" => assert!(error.contains("does not exist"), "{error}"),
            _ => assert!(!error.is_empty()),
        }
    }
    let fine_outcome = wait_outcome(&pool, "fine").await;
    running.stop().await;
    assert_eq!(fine_outcome.0, "delivered");
    assert!(
        good.received().iter().all(|r| r.path == "/fine"),
        "the redirect was never followed"
    );
    // Only the disabled endpoint's delivery is pending: held, not lost.
    assert_eq!(wait_for_count(&pool, PENDING, 1, Duration::from_secs(1)).await, 1);
    let held: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE status = 0 AND next_attempt_at = 'infinity'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(held, 1);
}

async fn wait_outcome(pool: &sqlx::PgPool, event_type: &str) -> (String, String) {
    let (o, e, ..) = wait_outcome_full(pool, event_type).await;
    (o, e)
}

/// (outcome, error, status, truncated, stored body length).
type AttemptRow = (String, Option<String>, Option<i16>, bool, Option<i32>);

async fn wait_outcome_full(pool: &sqlx::PgPool, event_type: &str) -> (String, String, Option<i16>, bool, i32) {
    for _ in 0..500 {
        let row: Option<AttemptRow> = sqlx::query_as(
            "SELECT a.outcome, a.error, a.status_code, a.response_truncated, length(a.response_body)
             FROM outhook.attempt a JOIN outhook.delivery d ON d.id = a.delivery_id
             JOIN outhook.outbox o ON o.id = d.message_id WHERE o.event_type = $1 ORDER BY a.id LIMIT 1",
        )
        .bind(event_type)
        .fetch_optional(pool)
        .await
        .unwrap();
        if let Some((o, e, s, t, l)) = row {
            return (o, e.unwrap_or_default(), s, t, l.unwrap_or(0));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("no attempt for {event_type}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_payload_that_is_not_json_is_rejected_at_insert() {
    let pool = db().await;
    let err = enqueue(
        &pool,
        &Event {
            event_type: "t",
            payload: "{not json",
            owner: Some("o"),
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    let db_err = match err {
        outhook_dispatcher::Error::Database(sqlx::Error::Database(e)) => e,
        other => panic!("unexpected {other:?}"),
    };
    assert_eq!(db_err.code().as_deref(), Some("22P02"), "invalid_text_representation");
    let plain = sqlx::query("INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('t', 'nope', 'o')")
        .execute(&pool)
        .await;
    assert!(plain.is_err());
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0);
    // Neither owner nor endpoint: refused too.
    assert!(
        sqlx::query("INSERT INTO outhook.outbox (event_type, payload) VALUES ('t', '{}')")
            .execute(&pool)
            .await
            .is_err()
    );
}
