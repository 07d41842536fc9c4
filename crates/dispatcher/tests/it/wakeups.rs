//! Busy polling: while the claimer polls, producers skip `pg_notify`, and
//! leaving it loses no wake-up. The dispatcher here polls only once a
//! minute otherwise, so an event whose wake-up was lost would arrive late.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use sqlx::postgres::PgListener;
use sqlx::{Connection, PgPool};
use tokio::task::JoinSet;
use uuid::Uuid;

use outhook_testkit::receiver::Receiver;

use crate::common::*;

/// Inserts event `n` in a transaction of its own; returns when it committed.
async fn produce(pool: &PgPool, endpoint: Uuid, n: i64) -> SystemTime {
    sqlx::query("INSERT INTO outhook.outbox (event_type, payload, endpoint_id) VALUES ('t', json_build_object('n', $1::bigint), $2)")
        .bind(n)
        .bind(endpoint)
        .execute(pool)
        .await
        .unwrap();
    SystemTime::now()
}

/// Whether producers would skip the notification now.
async fn polling_value_ahead(pool: &PgPool) -> bool {
    sqlx::query_scalar(
        "SELECT coalesce(pg_sequence_last_value('outhook.claimer_polling_until'), 0)
                > (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// Four producers, one event per transaction, about 100 events/s in all,
/// numbered from `first` on, until the flag is cleared; each returns the
/// events it committed and when.
fn start_load(pool: &PgPool, endpoint: Uuid, first: i64) -> (Arc<AtomicBool>, JoinSet<Vec<(i64, SystemTime)>>) {
    let load = Arc::new(AtomicBool::new(true));
    let mut producers = JoinSet::new();
    for p in 0..4_i64 {
        let (pool, load) = (pool.clone(), load.clone());
        producers.spawn(async move {
            let mut mine = Vec::new();
            let mut n = first + p;
            while load.load(Ordering::Relaxed) {
                mine.push((n, produce(&pool, endpoint, n).await));
                n += 4;
                tokio::time::sleep(Duration::from_millis(40)).await;
            }
            mine
        });
    }
    (load, producers)
}

/// Waits (at most 5 s) until some claimer publishes that it polls.
async fn wait_until_polling(pool: &PgPool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !polling_value_ahead(pool).await {
        assert!(
            Instant::now() < deadline,
            "the claimer did not start polling at ~100 events/s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (at most 10 s) for every committed event to arrive; returns how
/// many arrived and those that arrived over 2 s after their commit.
async fn arrivals(receiver: &Receiver, committed: &HashMap<i64, SystemTime>) -> (usize, Vec<(i64, Duration)>) {
    let _ = receiver.wait_for(committed.len(), Duration::from_secs(10)).await;
    let got = receiver.received();
    let mut late = Vec::new();
    for r in &got {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        let n = body["n"].as_i64().unwrap();
        let took = r.at.duration_since(committed[&n]).unwrap_or_default();
        if took > Duration::from_secs(2) {
            late.push((n, took));
        }
    }
    (got.len(), late)
}

/// A transaction that inserts an event while the claimer polls and commits
/// after it has stopped; `isolation` sets its isolation level.
async fn straggler(
    pool: PgPool,
    endpoint: Uuid,
    n: i64,
    isolation: &'static str,
    hold: Duration,
) -> (i64, SystemTime, bool) {
    let mut conn = pool.acquire().await.unwrap();
    let mut tx = conn.begin().await.unwrap();
    sqlx::query(isolation).execute(&mut *tx).await.unwrap();
    sqlx::query("INSERT INTO outhook.outbox (event_type, payload, endpoint_id) VALUES ('t', json_build_object('n', $1::bigint), $2)")
        .bind(n)
        .bind(endpoint)
        .execute(&mut *tx)
        .await
        .unwrap();
    // What the outbox trigger just saw (within a millisecond or so).
    let skipped: bool = sqlx::query_scalar(
        "SELECT coalesce(pg_sequence_last_value('outhook.claimer_polling_until'), 0)
                > (extract(epoch FROM clock_timestamp()) * 1000)::bigint + 20",
    )
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    tokio::time::sleep(hold).await;
    tx.commit().await.unwrap();
    (n, SystemTime::now(), skipped)
}

#[tokio::test(flavor = "multi_thread")]
async fn producers_skip_notify_while_the_claimer_polls_and_no_wake_up_is_lost() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let (endpoint_id, _) = endpoint(&pool, "c", &receiver.url("/hook"), "standard-webhooks").await;
    let running = Running::start(
        builder(&pool)
            .poll_interval(Duration::from_secs(60))
            .busy_polling(Some(20))
            .busy_polling_on_rate_alone(true),
    );
    // Let the dispatcher connect and LISTEN.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut committed: HashMap<i64, SystemTime> = HashMap::new();

    // Idle: a single event is announced and delivered.
    let mut listener = PgListener::connect_with(&pool).await.unwrap();
    listener.listen("outhook_delivery").await.unwrap();
    assert!(!polling_value_ahead(&pool).await, "nobody polls before any load");
    committed.insert(0, produce(&pool, endpoint_id, 0).await);
    let first = tokio::time::timeout(Duration::from_secs(2), listener.recv()).await;
    assert!(
        first.is_ok_and(|n| n.is_ok()),
        "an idle claimer is woken by a notification"
    );

    // Load: 4 producers at about 100 events/s in all keep the claimer polling.
    let (load, producers) = start_load(&pool, endpoint_id, 1_000);
    wait_until_polling(&pool).await;
    // Drain what was announced before, then count announcements for a second.
    while tokio::time::timeout(Duration::from_millis(300), listener.recv())
        .await
        .is_ok()
    {}
    let before: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    let mut notifications = 0;
    let window = Instant::now() + Duration::from_secs(1);
    while let Ok(Ok(_)) = tokio::time::timeout_at(window.into(), listener.recv()).await {
        notifications += 1;
    }
    let during: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.outbox")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(
        during - before >= 50,
        "the load went on ({} events in the second)",
        during - before
    );
    assert_eq!(notifications, 0, "producers notified while the claimer polled");

    // Stragglers: inserted while it polls, committed after it has stopped
    // (the load ends now, so the claimer leaves within ~0.5 s).
    let mut stragglers = JoinSet::new();
    for (n, isolation) in [
        (1, "SET TRANSACTION ISOLATION LEVEL READ COMMITTED"),
        (2, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
        (3, "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"),
    ] {
        stragglers.spawn(straggler(
            pool.clone(),
            endpoint_id,
            n,
            isolation,
            Duration::from_millis(1_500),
        ));
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    load.store(false, Ordering::Relaxed);
    for (n, at) in producers.join_all().await.into_iter().flatten() {
        committed.insert(n, at);
    }
    let mut skipped = 0;
    for (n, at, skip) in stragglers.join_all().await {
        committed.insert(n, at);
        skipped += usize::from(skip);
    }
    assert!(
        skipped >= 2,
        "the stragglers inserted while producers skipped notifications ({skipped} of 3)"
    );
    // After the claimer is idle again: the notification path.
    // (Later than the 2 s allowed below, so its notification cannot rescue
    // a straggler whose wake-up was lost.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        !polling_value_ahead(&pool).await,
        "the claimer stopped polling without load"
    );
    committed.insert(4, produce(&pool, endpoint_id, 4).await);

    // A lost wake-up would wait for the minute's poll: give it 10 s, then look.
    let (got, late) = arrivals(&receiver, &committed).await;
    assert_eq!(got, committed.len(), "every event once");
    assert!(late.is_empty(), "events whose wake-up was lost: {late:?}");
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_claim_rate_alone_does_not_start_polling_while_notifications_flow_freely() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let (endpoint_id, _) = endpoint(&pool, "c", &receiver.url("/hook"), "standard-webhooks").await;
    // Past the rate, but only worth polling when producers queue on the
    // NOTIFY lock, which four producers at ~100 events/s never do here.
    let running = Running::start(builder(&pool).busy_polling(Some(20)));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (load, producers) = start_load(&pool, endpoint_id, 0);
    let until = Instant::now() + Duration::from_secs(3);
    let mut looks = 0;
    while Instant::now() < until {
        assert!(
            !polling_value_ahead(&pool).await,
            "polling started without a queue on the NOTIFY lock"
        );
        looks += 1;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    load.store(false, Ordering::Relaxed);
    let sent: usize = producers.join_all().await.iter().map(Vec::len).sum();
    assert!(sent >= 150, "the load ran ({sent} events)");
    assert!(looks > 50);
    let polled: Option<i64> = sqlx::query_scalar("SELECT pg_sequence_last_value('outhook.claimer_polling_until')")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(polled, None, "the claimer never published a polling time");
    running.stop().await;
}

/// A worker told to stop while it polls hands over: the other worker,
/// which never polls and looks at the table once a minute, is woken for
/// the events whose notification producers skipped, including one
/// committed after the polling worker was told to stop.
#[tokio::test(flavor = "multi_thread")]
async fn a_worker_that_stops_while_polling_wakes_the_others() {
    let pool = db().await;
    let receiver = Receiver::start().await.unwrap();
    let (endpoint_id, _) = endpoint(&pool, "c", &receiver.url("/hook"), "standard-webhooks").await;
    let polling = Running::start(
        builder(&pool)
            .poll_interval(Duration::from_secs(60))
            .busy_polling(Some(20))
            .busy_polling_on_rate_alone(true),
    );
    let other = Running::start(builder(&pool).poll_interval(Duration::from_secs(60)).busy_polling(None));
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (load, producers) = start_load(&pool, endpoint_id, 1_000);
    wait_until_polling(&pool).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Inserted now, while producers skip the notification; committed after
    // the polling worker has been told to stop.
    let late_commit = tokio::spawn(straggler(
        pool.clone(),
        endpoint_id,
        1,
        "SET TRANSACTION ISOLATION LEVEL READ COMMITTED",
        Duration::from_millis(600),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    load.store(false, Ordering::Relaxed);
    let mut committed: HashMap<i64, SystemTime> = producers.join_all().await.into_iter().flatten().collect();
    polling.stop().await;
    let (n, at, skipped) = late_commit.await.unwrap();
    assert!(skipped, "the straggler's insert skipped its notification");
    committed.insert(n, at);

    // Without the hand-over they would wait for the other worker's minute.
    let (got, late) = arrivals(&receiver, &committed).await;
    assert_eq!(got, committed.len(), "every event once");
    assert!(late.is_empty(), "events left to the poll interval: {late:?}");
    other.stop().await;
}
