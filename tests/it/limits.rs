//! Per-endpoint limits under three `outhook run` processes: the proof the
//! operations issue asks for, a minute long.

use std::time::{Duration, Instant, SystemTime};

use outhook_testkit::receiver::Receiver;
use sqlx::postgres::PgPoolOptions;

use crate::worker_process::{add_endpoint, enqueue_for, worker};

/// Three worker processes, an endpoint limited to 20 requests a second with
/// a backlog of more than a minute's worth, and an unlimited endpoint beside
/// it offered 200 events a second: over the minute the limited endpoint
/// gets 20/s (within 10%) and never more than 22 in any one second, while
/// the unlimited one gets everything it was offered as it comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_workers_hold_an_endpoint_to_20_per_second_and_spare_the_others() {
    let url = outhook_testkit::postgres::database_url().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let pool = PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
    outhook_dispatcher::migrate(&pool).await.unwrap();
    add_endpoint(&url, "slow", &receiver.url("/limited"), &["--rate-limit", "20/s"]);
    add_endpoint(&url, "fast", &receiver.url("/free"), &[]);
    enqueue_for(&pool, "slow", 1_500, 0).await;
    let mut workers: Vec<_> = (0..3).map(|_| worker(&url, &[])).collect();
    let minute = Duration::from_secs(60);
    let start = Instant::now();
    let mut offered = 0;
    while start.elapsed() < minute {
        enqueue_for(&pool, "fast", 20, offered).await;
        offered += 20;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let last_sent = SystemTime::now();
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.received().iter().filter(|r| r.path == "/free").count() < offered {
        assert!(Instant::now() < deadline, "the unlimited endpoint fell behind");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for w in &mut workers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    let received = receiver.received();
    let mut limited: Vec<SystemTime> = received.iter().filter(|r| r.path == "/limited").map(|r| r.at).collect();
    let free: Vec<SystemTime> = received.iter().filter(|r| r.path == "/free").map(|r| r.at).collect();
    limited.sort();
    assert_eq!(free.len(), offered, "every unlimited event arrived once");
    let first = limited[0];
    let in_minute = limited.iter().filter(|t| **t < first + minute).count();
    assert!(
        (1_080..=1_320).contains(&in_minute),
        "{in_minute} requests in the first minute: 20/s is 1,200 (10% either side allowed)"
    );
    let most = (0..limited.len())
        .map(|i| {
            limited[i..]
                .iter()
                .take_while(|t| **t < limited[i] + Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap();
    assert!(most <= 22, "{most} requests in one second (20/s, 10% over is 22)");
    let free_last = free.iter().max().unwrap();
    let lag = free_last.duration_since(last_sent).unwrap_or_default();
    assert!(
        lag < Duration::from_secs(10),
        "the last unlimited event arrived {lag:?} after it was sent"
    );
    let backlog: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outhook.delivery d JOIN outhook.endpoint e ON e.id = d.endpoint_id WHERE e.owner = 'slow' AND d.status = 0")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(backlog > 0, "the limited backlog was still draining at the end");
}
