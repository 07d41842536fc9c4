//! Every path through Debian's PgBouncer in transaction mode: the CLI, the
//! library's enqueue, a worker killed with SIGKILL and its successor, and
//! the HTTP API; migrations, which need a session, are refused through it
//! with the reason, and `migrate --check` works.

use std::process::Command;
use std::time::Duration;

use outhook_dispatcher::Pooling;
use outhook_testkit::pgbouncer::Pooler;
use outhook_testkit::receiver::{Receiver, Reply};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;

use crate::api::Server;

use crate::worker_process::{add_endpoint, arrivals, count, enqueue, wait_all_delivered, worker};

const POOLED: [&str; 2] = ["--pooler", "transaction"];

fn outhook(url: &str, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("OUTHOOK_POOLER", "transaction")
        .env("OUTHOOK_LOG", "warn")
        .output()
        .unwrap()
}

/// A pool through the pooler, built as the README tells library users.
async fn pooled_pool(url: &str) -> PgPool {
    let options = url.parse().unwrap();
    outhook_dispatcher::pooler::pool_options(Pooling::Transaction)
        .max_connections(4)
        .connect_with(outhook_dispatcher::pooler::connect_options(
            options,
            Pooling::Transaction,
        ))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_path_works_through_pgbouncer_in_transaction_mode_and_a_kill_loses_nothing() {
    let (direct_url, direct) = outhook_testkit::postgres::database().await.unwrap();
    let bouncer = Pooler::start(&direct_url, 4).unwrap();
    let url = bouncer.url.clone();

    // Migrations hold a session's lock: refused through the pooler, with
    // the reason; checked through it.
    let out = outhook(&url, &["migrate"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("migrations need a direct connection"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(outhook(&url, &["migrate", "--check"]).status.code(), Some(1));
    outhook_dispatcher::migrate(&direct).await.unwrap();
    assert_eq!(outhook(&url, &["migrate", "--check"]).status.code(), Some(0));

    // The CLI.
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Delayed(Duration::from_millis(5), 200));
    add_endpoint(&url, "acme", &receiver.url("/hook"), &POOLED);
    let out = outhook(&url, &["endpoint", "list", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("/hook"));

    // The library's enqueue inside the application's transaction: there
    // when the commit returns.
    let pool = pooled_pool(&url).await;
    let total = 2000;
    let mut tx = pool.begin().await.unwrap();
    outhook_dispatcher::enqueue(
        &mut *tx,
        &outhook_dispatcher::Event {
            event_type: "item.sold",
            payload: &format!(r#"{{"n":{}}}"#, total - 1),
            owner: Some("acme"),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(count(&direct, "SELECT count(*) FROM outhook.delivery").await, 1);
    // On the pool itself each call runs in a transaction of its own,
    // committed before it returns.
    enqueue(&pool, total - 1, 0).await;
    assert_eq!(
        count(&direct, "SELECT count(*) FROM outhook.delivery").await,
        total as i64
    );

    // A worker through the pooler, killed mid-burst, then another.
    let mut args = vec!["--lease", "3s", "--request-timeout", "2s", "--concurrency", "64"];
    args.extend(POOLED);
    let mut first = worker(&url, &args);
    receiver.wait_for(400, Duration::from_secs(60)).await.unwrap();
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let at_kill = receiver.received().len();
    assert!(at_kill < total, "the kill came mid-burst ({at_kill} of {total})");
    let mut second = worker(&url, &args);
    wait_all_delivered(&direct, total as i64, Duration::from_secs(90)).await;
    second.kill().unwrap();
    second.wait().unwrap();
    let seen = arrivals(&receiver);
    assert_eq!(seen.len(), total, "every event arrived at least once");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= 64 + 256,
        "duplicates bounded by what was in flight: {duplicates}"
    );
    // Every attempt's result was written: one logged attempt per request.
    let attempts = count(&direct, "SELECT count(*) FROM outhook.attempt").await;
    assert!(
        attempts >= total as i64 && attempts as usize <= receiver.received().len(),
        "{attempts} attempts logged for {} requests",
        receiver.received().len()
    );

    // The HTTP API and its token, through the pooler.
    let server = Server::serve(
        url,
        direct.clone(),
        &["--no-worker"],
        &[("OUTHOOK_POOLER", "transaction")],
    )
    .await;
    for i in 0..20 {
        let (status, created) = server
            .admin(
                Method::POST,
                "/v1/messages",
                Some(json!({"event_type": "item.sold", "owner": "acme", "payload": {"api": i}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
    }
    // A single-statement write is committed when the API answers.
    for i in 0..20 {
        let name = format!("pooled.{i}");
        let (status, put) = server
            .admin(Method::PUT, &format!("/v1/event-types/{name}"), Some(json!({})))
            .await;
        assert!(status.is_success(), "{put}");
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.event_type WHERE name = $1")
            .bind(&name)
            .fetch_one(&direct)
            .await
            .unwrap();
        assert_eq!(stored, 1, "{name} committed before the answer");
    }
    let (status, listed) = server
        .admin(Method::GET, "/v1/deliveries?status=pending&limit=250", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["data"].as_array().map(Vec::len), Some(20), "{listed}");
}
