//! The worker's memory follows its settings, not the data: payloads over
//! the limit are never loaded, a payload budget bounds what claims take,
//! a response budget bounds the bodies kept, and a row whose workers keep
//! dying ends as a dead letter.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::{Duration, SystemTime};

use outhook_dispatcher::{Dispatcher, Error};
use outhook_testkit::receiver::{Receiver, Reply};
use sqlx::PgPool;
use uuid::Uuid;

use crate::common::*;

/// Enqueues one event with a JSON payload of exactly `bytes` bytes.
async fn send_sized(pool: &PgPool, endpoint: Uuid, event_type: &str, bytes: usize) {
    let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(bytes - 10));
    sqlx::query("INSERT INTO outhook.outbox (event_type, payload, endpoint_id) VALUES ($1, $2::json, $3)")
        .bind(event_type)
        .bind(payload)
        .bind(endpoint)
        .execute(pool)
        .await
        .unwrap();
}

/// Samples how many deliveries are leased at once until `done` is set;
/// returns the most seen.
fn watch_leased(pool: &PgPool, done: Arc<AtomicBool>) -> tokio::task::JoinHandle<i64> {
    let pool = pool.clone();
    tokio::spawn(async move {
        let most = AtomicI64::new(0);
        while !done.load(Ordering::Relaxed) {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery WHERE leased AND status = 0")
                .fetch_one(&pool)
                .await
                .unwrap();
            most.fetch_max(n, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        most.load(Ordering::Relaxed)
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn payloads_over_the_limit_become_dead_letters_unread_while_the_rest_is_delivered() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let (endpoint, _) = endpoint(&pool, "o", &receiver.url("/"), "standard-webhooks").await;
    for _ in 0..20 {
        send_sized(&pool, endpoint, "big", 100 * 1024).await;
    }
    for _ in 0..50 {
        send_sized(&pool, endpoint, "small", 200).await;
    }
    let running = Running::start(builder(&pool).max_request_bytes(64 * 1024).payload_budget(128 * 1024));
    assert_eq!(wait_for_count(&pool, PENDING, 0, Duration::from_secs(30)).await, 0);
    running.stop().await;
    let dead: Vec<(String, String)> = sqlx::query_as(
        "SELECT o.event_type, a.outcome || ': ' || a.error FROM outhook.delivery d
         JOIN outhook.outbox o ON o.id = d.message_id JOIN outhook.attempt a ON a.delivery_id = d.id
         WHERE d.status = 2",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(dead.len(), 20, "{dead:?}");
    for (event_type, reason) in &dead {
        assert_eq!(event_type, "big");
        assert_eq!(
            reason,
            "body_too_large: payload of 102400 bytes exceeds the limit of 65536; it was not sent or loaded"
        );
    }
    assert_eq!(wait_for_count(&pool, DELIVERED, 50, Duration::from_secs(1)).await, 50);
    assert_eq!(receiver.received().len(), 50, "no oversized request went out");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_payload_budget_bounds_what_is_claimed_and_in_flight() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Delayed(Duration::from_millis(150), 200));
    let (endpoint, _) = endpoint(&pool, "o", &receiver.url("/"), "standard-webhooks").await;
    for _ in 0..20 {
        send_sized(&pool, endpoint, "t", 40 * 1024).await;
    }
    // 128 KiB of payload: three 40 KiB payloads at a time, of 256 slots.
    let running = Running::start(builder(&pool).max_request_bytes(64 * 1024).payload_budget(128 * 1024));
    assert_eq!(wait_for_count(&pool, DELIVERED, 20, Duration::from_secs(30)).await, 20);
    running.stop().await;
    // Each request is answered 150 ms after it arrives, so all requests
    // arriving within 140 ms of one another were in flight together.
    let mut at: Vec<SystemTime> = receiver.received().iter().map(|r| r.at).collect();
    at.sort();
    assert_eq!(at.len(), 20);
    let together = (0..at.len())
        .map(|i| {
            at[i..]
                .iter()
                .take_while(|t| t.duration_since(at[i]).unwrap_or_default() < Duration::from_millis(140))
                .count()
        })
        .max()
        .unwrap_or(0);
    assert_eq!(
        together, 3,
        "three payloads of 40 KiB fit in 128 KiB, and the worker used them"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn large_answers_are_cut_at_the_cap_and_the_response_budget_bounds_the_attempts_holding_them() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Huge(8 << 20));
    let (endpoint, _) = endpoint(&pool, "o", &receiver.url("/"), "standard-webhooks").await;
    for _ in 0..40 {
        send_sized(&pool, endpoint, "t", 100).await;
    }
    let done = Arc::new(AtomicBool::new(false));
    let watcher = watch_leased(&pool, done.clone());
    let running = Running::start(
        builder(&pool)
            .request_timeout(Duration::from_secs(20))
            .lease(Duration::from_secs(60))
            .max_response_bytes(1 << 20)
            .response_budget(4 << 20),
    );
    assert_eq!(wait_for_count(&pool, DELIVERED, 40, Duration::from_secs(60)).await, 40);
    done.store(true, Ordering::Relaxed);
    running.stop().await;
    let most = watcher.await.unwrap();
    assert!(
        (1..=4).contains(&most),
        "4 MiB holds four 1 MiB answers: {most} leased at once"
    );
    let kept: Vec<(i32, bool)> =
        sqlx::query_as("SELECT length(response_body), response_truncated FROM outhook.attempt")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(kept.len(), 40);
    assert!(kept.iter().all(|k| *k == (1 << 20, true)), "{:?}", &kept[..3]);
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_past_their_ceilings_are_refused_with_a_typed_error() {
    let pool = db().await;
    let refused = |b: outhook_dispatcher::DispatcherBuilder| match b.build() {
        Err(Error::Config(why)) => why,
        Err(e) => panic!("not a configuration error: {e}"),
        Ok(_) => panic!("accepted"),
    };
    let why = refused(Dispatcher::builder(pool.clone()).max_response_bytes(4 << 20));
    assert!(
        why.contains("max_response_bytes (4194304) is over its ceiling of 1048576"),
        "{why}"
    );
    let why = refused(Dispatcher::builder(pool.clone()).payload_budget(1 << 20));
    assert!(
        why.contains("payload_budget (1048576) must be at least max_request_bytes (4194304)"),
        "{why}"
    );
    let why = refused(
        Dispatcher::builder(pool.clone())
            .max_response_bytes(1 << 20)
            .response_budget(1 << 19),
    );
    assert!(
        why.contains("response_budget (524288) must be at least max_response_bytes"),
        "{why}"
    );
    let why = refused(Dispatcher::builder(pool.clone()).max_lease_losses(0));
    assert!(why.contains("max_lease_losses must be at least 1"), "{why}");
    assert!(Dispatcher::builder(pool).max_response_bytes(1 << 20).build().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_delivery_whose_workers_keep_dying_ends_as_a_dead_letter_and_the_queue_moves_on() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let (endpoint, _) = endpoint(&pool, "o", &receiver.url("/"), "standard-webhooks").await;
    send_sized(&pool, endpoint, "poison", 100).await;
    send_sized(&pool, endpoint, "survivor", 100).await;
    send_sized(&pool, endpoint, "fine", 100).await;
    // As four claims whose workers died holding them leave a row: leased,
    // its lease run out, four losses counted. The survivor lost one lease.
    sqlx::query(
        "UPDATE outhook.delivery d SET leased = true, attempts = 4,
                lease_losses = CASE o.event_type WHEN 'poison' THEN 4 ELSE 0 END
         FROM outhook.outbox o WHERE o.id = d.message_id AND o.event_type <> 'fine'",
    )
    .execute(&pool)
    .await
    .unwrap();
    let running = Running::start(builder(&pool).max_lease_losses(5));
    assert_eq!(wait_for_count(&pool, PENDING, 0, Duration::from_secs(30)).await, 0);
    running.stop().await;
    let ended: Vec<(String, i16, String, Option<String>)> = sqlx::query_as(
        "SELECT o.event_type, d.status, a.outcome, a.error FROM outhook.delivery d
         JOIN outhook.outbox o ON o.id = d.message_id JOIN outhook.attempt a ON a.delivery_id = d.id
         ORDER BY d.id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        ended,
        vec![
            (
                "poison".into(),
                2,
                "lease_lost".into(),
                Some(
                    "the lease ran out 5 times without a result (the workers holding it stopped); written off unsent"
                        .into()
                )
            ),
            ("survivor".into(), 1, "delivered".into(), None),
            ("fine".into(), 1, "delivered".into(), None),
        ]
    );
    let sent: Vec<String> = receiver
        .received()
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(sent.len(), 2, "the poison row was not sent");
}
