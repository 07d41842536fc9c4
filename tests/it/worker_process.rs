//! The `outhook run` worker as a process: killed, doubled, cut off from its
//! database, and stopped, it loses nothing.

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outhook_dispatcher::Event;
use outhook_testkit::postgres::Cluster;
use outhook_testkit::receiver::{Receiver, Reply};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

pub fn worker(url: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args([
            "run",
            "--database-url",
            url,
            "--allow-network",
            "127.0.0.0/8",
            "--poll-interval",
            "100ms",
        ])
        .args(extra)
        .env("OUTHOOK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn signal(child: &Child, sig: &str) {
    let status = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

pub async fn setup(url: &str, receiver: &Receiver) -> PgPool {
    let pool = PgPoolOptions::new().max_connections(4).connect(url).await.unwrap();
    outhook_dispatcher::migrate(&pool).await.unwrap();
    add_endpoint(url, "acme", &receiver.url("/hook"), &[]);
    pool
}

/// `outhook endpoint add` for `owner`, scheme `trr`, with `extra` flags.
pub fn add_endpoint(url: &str, owner: &str, target: &str, extra: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args([
            "endpoint",
            "--database-url",
            url,
            "--allow-network",
            "127.0.0.0/8",
            "add",
        ])
        .args(["--owner", owner, "--scheme", "trr", "--url", target])
        .args(extra)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

pub async fn enqueue(pool: &PgPool, n: usize, offset: usize) {
    enqueue_for(pool, "acme", n, offset).await;
}

/// `n` events for `owner`, payloads `{"n": offset…}`, a thousand a transaction.
pub async fn enqueue_for(pool: &PgPool, owner: &str, n: usize, offset: usize) {
    let payloads: Vec<String> = (offset..offset + n).map(|i| format!(r#"{{"n":{i}}}"#)).collect();
    for chunk in payloads.chunks(1000) {
        let events: Vec<Event> = chunk
            .iter()
            .map(|p| Event {
                event_type: "item.sold",
                payload: p,
                owner: Some(owner),
                ..Default::default()
            })
            .collect();
        outhook_dispatcher::enqueue_many(pool, &events).await.unwrap();
    }
}

pub async fn count(pool: &PgPool, sql: &'static str) -> i64 {
    sqlx::query_scalar(sql).fetch_one(pool).await.unwrap()
}

pub async fn wait_all_delivered(pool: &PgPool, total: i64, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let delivered = count(pool, "SELECT count(*) FROM outhook.delivery WHERE status = 1").await;
        if delivered == total {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{delivered} of {total} delivered in {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How [`down_and_up`] takes the server down.
enum Down {
    /// A fast shutdown.
    Stop,
    /// An immediate shutdown, as a crash.
    Crash,
}

/// Takes the cluster's server down, waits `pause`, and starts it again;
/// returns the cluster, which must outlive its use.
async fn down_and_up(cluster: Cluster, down: Down, pause: Duration) -> Cluster {
    let cluster = tokio::task::spawn_blocking(move || {
        match down {
            Down::Stop => cluster.stop(),
            Down::Crash => cluster.crash(),
        }
        .map(|()| cluster)
    })
    .await
    .unwrap()
    .unwrap();
    tokio::time::sleep(pause).await;
    tokio::task::spawn_blocking(move || cluster.start_again().map(|()| cluster))
        .await
        .unwrap()
        .unwrap()
}

/// webhook ids the receiver saw, with how often each arrived.
pub fn arrivals(receiver: &Receiver) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for r in receiver.received() {
        let body: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        *seen.entry(body["n"].to_string()).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_killed_mid_batch_loses_nothing_after_a_restart() {
    let url = outhook_testkit::postgres::database_url().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Delayed(Duration::from_millis(5), 200));
    let pool = setup(&url, &receiver).await;
    let total = 3000;
    enqueue(&pool, total, 0).await;
    let mut first = worker(
        &url,
        &["--lease", "3s", "--request-timeout", "2s", "--concurrency", "64"],
    );
    receiver.wait_for(500, Duration::from_secs(30)).await.unwrap();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let at_kill = receiver.received().len();
    assert!(at_kill < total, "the kill came mid-batch ({at_kill} of {total})");
    let mut second = worker(&url, &["--lease", "3s", "--request-timeout", "2s"]);
    wait_all_delivered(&pool, total as i64, Duration::from_secs(60)).await;
    signal(&second, "-TERM");
    second.wait().unwrap();
    let seen = arrivals(&receiver);
    assert_eq!(seen.len(), total, "every event arrived at least once");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= 64 + 256,
        "duplicates bounded by what was in flight: {duplicates}"
    );
    assert_eq!(
        count(&pool, "SELECT count(*) FROM outhook.delivery WHERE status <> 1").await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_workers_deliver_ten_thousand_events_with_no_duplicates() {
    let url = outhook_testkit::postgres::database_url().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let pool = setup(&url, &receiver).await;
    let total = 10_000;
    enqueue(&pool, total, 0).await;
    let mut a = worker(&url, &[]);
    let mut b = worker(&url, &[]);
    wait_all_delivered(&pool, total as i64, Duration::from_secs(120)).await;
    signal(&a, "-TERM");
    signal(&b, "-TERM");
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let seen = arrivals(&receiver);
    assert_eq!(seen.len(), total);
    assert!(seen.values().all(|&n| n == 1), "no event arrived twice");
    assert_eq!(receiver.received().len(), total);
    // Both workers took part.
    let attempts = count(&pool, "SELECT count(*) FROM outhook.attempt").await;
    assert_eq!(attempts, total as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_survives_a_postgresql_restart_and_delivers_everything() {
    let cluster = tokio::task::spawn_blocking(Cluster::start).await.unwrap().unwrap();
    let url = cluster.create_database().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    let pool = setup(&url, &receiver).await;
    enqueue(&pool, 300, 0).await;
    let mut w = worker(&url, &[]);
    wait_all_delivered(&pool, 300, Duration::from_secs(30)).await;
    pool.close().await;
    let _cluster = down_and_up(cluster, Down::Stop, Duration::from_secs(2)).await;
    let pool = PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
    enqueue(&pool, 300, 300).await;
    wait_all_delivered(&pool, 600, Duration::from_secs(60)).await;
    assert!(w.try_wait().unwrap().is_none(), "the worker kept running");
    signal(&w, "-TERM");
    assert!(w.wait().unwrap().success());
    assert_eq!(arrivals(&receiver).len(), 600);
}

/// A PostgreSQL crash forgets the claims whose WAL was still in its buffers
/// (the claimer commits without waiting for the flush). Their deliveries
/// are sent again, and the first requests' late results are fenced out.
/// Every request that reached the receiver must still be in the delivery
/// log: the re-sent ones as usual, the first ones as superseded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_postgresql_crash_that_forgets_claims_leaves_every_request_in_the_delivery_log() {
    // The WAL writer wakes every 10 s, so in about one run in a hundred it
    // writes the claims before the crash and none is forgotten; the run is
    // then made again (its log is still checked).
    for _ in 0..3 {
        if crash_while_attempts_are_in_flight().await > 20 {
            return;
        }
    }
    panic!("three crashes, and no claim was forgotten");
}

/// One run: 20 events in flight, a crash, recovery. Checks the delivery
/// log against what the receiver saw; returns how many requests arrived.
async fn crash_while_attempts_are_in_flight() -> usize {
    // Durable commits (results and the producer's inserts) write their WAL
    // at once; the claims' asynchronous commits wait for the WAL writer,
    // which sleeps 10 s here. No autovacuum commits in between.
    let cluster = tokio::task::spawn_blocking(|| {
        Cluster::start_with(&[
            "fsync=off",
            "full_page_writes=off",
            "wal_writer_delay=10s",
            "autovacuum=off",
        ])
    })
    .await
    .unwrap()
    .unwrap();
    let url = cluster.create_database().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    // Every request is held 3 s: the crash comes while all are in flight.
    receiver.set_default(Reply::Delayed(Duration::from_secs(3), 200));
    let pool = setup(&url, &receiver).await;
    let mut w = worker(&url, &["--maintenance-interval", "1h"]);
    // Let the worker's start-up writes (partitions) settle first.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    enqueue(&pool, 20, 0).await;
    receiver.wait_for(20, Duration::from_secs(10)).await.unwrap();
    pool.close().await;
    // Held requests keep the answer chosen when they arrived; the re-sent
    // ones get this one.
    receiver.set_default(Reply::Status(200));
    let _cluster = down_and_up(cluster, Down::Crash, Duration::ZERO).await;
    let pool = PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
    wait_all_delivered(&pool, 20, Duration::from_secs(60)).await;
    let sent = arrivals(&receiver);
    let requests: usize = sent.values().sum();
    // The held requests' results come back 3 s after they arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(&pool, "SELECT count(*) FROM outhook.attempt").await < requests as i64 {
        assert!(
            Instant::now() < deadline,
            "the delivery log never reached {requests} attempts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(w.try_wait().unwrap().is_none(), "the worker kept running");
    signal(&w, "-TERM");
    assert!(w.wait().unwrap().success());
    let logged: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT o.payload->>'n', count(a.id), count(a.id) FILTER (WHERE a.superseded)
         FROM outhook.outbox o JOIN outhook.delivery d ON d.message_id = o.id
         LEFT JOIN outhook.attempt a ON a.delivery_id = d.id
         GROUP BY 1",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(sent.len(), 20, "every message arrived");
    assert_eq!(logged.len(), 20);
    for (n, attempts, superseded) in &logged {
        let arrived = sent.get(n).copied().unwrap_or(0) as i64;
        assert_eq!(*attempts, arrived, "message {n}: one log row per request that arrived");
        assert_eq!(
            *superseded,
            arrived - 1,
            "message {n}: every request but the last is superseded"
        );
    }
    requests
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_stops_claiming_and_finishes_what_is_in_flight() {
    let url = outhook_testkit::postgres::database_url().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Delayed(Duration::from_millis(800), 200));
    let pool = setup(&url, &receiver).await;
    enqueue(&pool, 40, 0).await;
    let mut w = worker(&url, &["--concurrency", "4"]);
    receiver.wait_for(1, Duration::from_secs(20)).await.unwrap();
    signal(&w, "-TERM");
    let started = Instant::now();
    let status = w.wait().unwrap();
    assert!(status.success(), "{status}");
    assert!(started.elapsed() < Duration::from_secs(10));
    // Every request the receiver answered is recorded as delivered; the rest wait, unclaimed.
    let delivered = count(&pool, "SELECT count(*) FROM outhook.delivery WHERE status = 1").await;
    assert_eq!(delivered as usize, receiver.received().len());
    assert!(delivered < 40);
    let leased = count(
        &pool,
        "SELECT count(*) FROM outhook.delivery WHERE status = 0 AND next_attempt_at > now()",
    )
    .await;
    assert_eq!(leased, 0, "nothing left leased to the stopped worker");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_admin_commands_drive_a_delivery_and_no_secret_reaches_the_logs() {
    let url = outhook_testkit::postgres::database_url().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.script([Reply::Status(500)]);
    let outhook = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_outhook"))
            .args(args)
            .env("DATABASE_URL", &url)
            .env("OUTHOOK_ALLOW_NETWORKS", "127.0.0.0/8")
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    assert_eq!(outhook(&["migrate"]).0, Some(0));
    let (code, out, _) = outhook(&[
        "endpoint",
        "add",
        "--owner",
        "acme",
        "--scheme",
        "standard-webhooks",
        "--url",
        &receiver.url("/h"),
        "--event-type",
        "check.completed",
        "--header",
        "Authorization: Bearer tok_hidden",
    ]);
    assert_eq!(code, Some(0));
    let endpoint_id = out
        .lines()
        .find_map(|l| l.strip_prefix("endpoint "))
        .unwrap()
        .to_owned();
    let secret = out.lines().find_map(|l| l.strip_prefix("secret ")).unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert!(outhook(&["endpoint", "list"]).1.contains(&endpoint_id));
    let (_, show, _) = outhook(&["endpoint", "show", &endpoint_id]);
    assert!(!show.contains(&secret), "show never prints secrets");
    assert!(
        show.contains("authorization") && !show.contains("tok_hidden"),
        "static header values are redacted: {show}"
    );
    let body = std::env::temp_dir().join(format!("outhook-send-{}.json", std::process::id()));
    std::fs::write(&body, r#"{"event":"check.completed"}"#).unwrap();
    let (code, out, _) = outhook(&[
        "send",
        "--event-type",
        "check.completed",
        "--owner",
        "acme",
        body.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0));
    assert!(out.contains("1 deliveries"), "{out}");
    let w = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args([
            "run",
            "--allow-network",
            "127.0.0.0/8",
            "--poll-interval",
            "100ms",
            "--retry-schedule",
            "100ms",
            "--retry-jitter",
            "0",
            "--endpoint-cache-ttl",
            "0s",
        ])
        .env("DATABASE_URL", &url)
        .env("OUTHOOK_LOG", "trace")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let got = receiver.wait_for(2, Duration::from_secs(20)).await.unwrap();
    let verifier = outhook_signer::Verifier::new(
        outhook_signer::Scheme::by_name("standard-webhooks").unwrap(),
        &[outhook_signer::Secret::new(secret.clone())],
    )
    .unwrap();
    verifier.verify(&got[1].headers, &got[1].body).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, list, _) = outhook(&["deliveries", "list", "--status", "delivered"]);
    let delivery_id = list
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let (_, show, _) = outhook(&["deliveries", "show", &delivery_id]);
    assert!(show.contains("http_status") && show.contains("delivered"), "{show}");
    assert_eq!(outhook(&["deliveries", "retry", &delivery_id]).0, Some(0));
    receiver.wait_for(3, Duration::from_secs(20)).await.unwrap();
    // Rotation: the next delivery carries two signatures.
    let (code, out, _) = outhook(&["endpoint", "rotate-secret", &endpoint_id]);
    assert_eq!(code, Some(0));
    let new_secret = out.trim().strip_prefix("secret ").unwrap().to_owned();
    outhook(&[
        "send",
        "--event-type",
        "check.completed",
        "--owner",
        "acme",
        body.to_str().unwrap(),
    ]);
    let got = receiver.wait_for(4, Duration::from_secs(20)).await.unwrap();
    assert_eq!(
        got[3].headers["webhook-signature"].to_str().unwrap().split(' ').count(),
        2
    );
    signal(&w, "-TERM");
    let out = w.wait_with_output().unwrap();
    assert!(out.status.success());
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(logs.contains("outhook worker started"), "logs were captured");
    assert!(!logs.contains("tok_hidden"), "a static header value reached the logs");
    assert_eq!(
        got[3].headers["authorization"], "Bearer tok_hidden",
        "static headers are sent"
    );
    for s in [&secret, &new_secret] {
        assert!(
            !logs.contains(s.as_str()) && !logs.contains(s.trim_start_matches("whsec_")),
            "a secret reached the logs"
        );
    }
}

/// The failing window lives in PostgreSQL: a worker killed halfway through
/// it does not restart the clock. The replacement disables the endpoint on
/// time, records why and when, and holds its deliveries.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_failing_window_survives_a_worker_restart() {
    let url = outhook_testkit::postgres::database_url().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Status(500));
    let pool = setup(&url, &receiver).await;
    enqueue(&pool, 3, 0).await;
    let schedule = vec!["200ms"; 100].join(",");
    let args = [
        "--retry-schedule",
        &schedule,
        "--retry-jitter",
        "0",
        "--auto-disable-after",
        "5s",
        "--maintenance-interval",
        "200ms",
    ];
    let mut first = worker(&url, &args);
    receiver.wait_for(3, Duration::from_secs(10)).await.unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    first.kill().unwrap(); // SIGKILL, mid-window
    first.wait().unwrap();
    let (enabled,): (bool,) = sqlx::query_as("SELECT enabled FROM outhook.endpoint")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert!(enabled, "not yet disabled when the worker died");
    let restarted = chrono::Utc::now();
    let mut second = worker(&url, &args);
    let mut disabled = None;
    for _ in 0..200 {
        let row: (bool, Option<chrono::DateTime<chrono::Utc>>, Option<String>) =
            sqlx::query_as("SELECT enabled, disabled_at, disabled_reason FROM outhook.endpoint")
                .fetch_one(&pool)
                .await
                .unwrap();
        if !row.0 {
            disabled = Some((row.1.unwrap(), row.2.unwrap()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (disabled_at, reason) = disabled.expect("the endpoint was never disabled");
    let (failing_since,): (chrono::DateTime<chrono::Utc>,) =
        sqlx::query_as("SELECT failing_since FROM outhook.endpoint_health")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(failing_since < restarted, "the window began before the restart");
    assert!(disabled_at - failing_since >= chrono::Duration::seconds(5));
    assert!(
        disabled_at - restarted < chrono::Duration::seconds(4),
        "the clock was not restarted: disabled {} after the restart",
        disabled_at - restarted
    );
    assert!(reason.contains("no successful delivery"), "{reason}");
    signal(&second, "-TERM");
    second.wait().unwrap();
    assert_eq!(
        count(
            &pool,
            "SELECT count(*) FROM outhook.delivery WHERE status = 0 AND next_attempt_at = 'infinity'"
        )
        .await,
        3,
        "all three held, none dead"
    );
}

/// An ordered endpoint under two worker processes, one killed with SIGKILL
/// mid-run: every event arrives, and never out of order (a delivery cut
/// short by the kill may arrive twice, but nothing overtakes it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_ordered_endpoint_stays_in_order_across_two_workers_and_a_kill() {
    let url = outhook_testkit::postgres::database_url().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Delayed(Duration::from_millis(2), 200));
    let pool = PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
    outhook_dispatcher::migrate(&pool).await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args([
            "endpoint",
            "--database-url",
            &url,
            "--allow-network",
            "127.0.0.0/8",
            "add",
        ])
        .args([
            "--owner",
            "acme",
            "--scheme",
            "trr",
            "--fifo",
            "--url",
            &receiver.url("/ordered"),
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let total = 400;
    // Ten events per transaction, as an application would commit them.
    for start in (0..total).step_by(10) {
        enqueue(&pool, 10, start).await;
    }
    let args = ["--lease", "3s", "--request-timeout", "2s"];
    let mut first = worker(&url, &args);
    let mut second = worker(&url, &args);
    receiver.wait_for(100, Duration::from_secs(30)).await.unwrap();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let mut third = worker(&url, &args);
    wait_all_delivered(&pool, total as i64, Duration::from_secs(90)).await;
    for w in [&second, &third] {
        signal(w, "-TERM");
    }
    second.wait().unwrap();
    third.wait().unwrap();
    let order: Vec<i64> = receiver
        .received()
        .iter()
        .map(|r| {
            serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["n"]
                .as_i64()
                .unwrap()
        })
        .collect();
    for pair in order.windows(2) {
        assert!(pair[1] >= pair[0], "out of order: {} after {}", pair[1], pair[0]);
    }
    let mut distinct = order.clone();
    distinct.dedup();
    assert_eq!(distinct, (0..total as i64).collect::<Vec<_>>(), "every event, in order");
}
