//! An upgrade without downtime: the previous landed release's worker,
//! built from git history by `scripts/setup`, keeps delivering across this
//! version's migrations, beside a worker of this version, and stops cleanly
//! when asked. Nothing is lost, and with no crash nothing is sent twice.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use outhook_testkit::receiver::{Receiver, Reply};
use sqlx::PgPool;

use crate::worker_process::{arrivals, wait_all_delivered};

/// The previous release's `outhook`, as `scripts/setup` builds it.
fn previous() -> PathBuf {
    let commit = include_str!("../upgrade/previous-release").trim();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target/previous")
        .join(commit)
        .join("outhook");
    assert!(
        path.is_file(),
        "{} is missing: ./scripts/setup builds the previous release ({commit}) from git history",
        path.display()
    );
    path
}

fn run(binary: &PathBuf, url: &str, args: &[&str]) {
    let out = Command::new(binary)
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn worker(binary: &PathBuf, url: &str) -> Child {
    Command::new(binary)
        .args([
            "run",
            "--allow-network",
            "127.0.0.0/8",
            "--poll-interval",
            "100ms",
            "--concurrency",
            "32",
        ])
        .env("DATABASE_URL", url)
        .env("OUTHOOK_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Asks a worker to stop (SIGTERM) and asserts that it exits 0 in time.
fn stop(mut child: Child, who: &str) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "the {who} worker exited with {status}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the {who} worker did not stop within 30 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `n` events by plain SQL, which both versions' schemas take.
async fn enqueue(pool: &PgPool, from: i64, n: i64) {
    sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, owner)
         SELECT 'item.sold', json_build_object('n', i), 'acme' FROM generate_series($1::bigint, $2::bigint) i",
    )
    .bind(from)
    .bind(from + n - 1)
    .execute(pool)
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_previous_release_keeps_delivering_across_the_migration_beside_this_one() {
    let old = previous();
    let new = PathBuf::from(env!("CARGO_BIN_EXE_outhook"));
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Delayed(Duration::from_millis(25), 200));

    // Installed by the previous release, which starts delivering a burst.
    run(&old, &url, &["migrate"]);
    run(
        &old,
        &url,
        &[
            "endpoint",
            "add",
            "--allow-network",
            "127.0.0.0/8",
            "--owner",
            "acme",
            "--scheme",
            "trr",
            "--url",
            &receiver.url("/hook"),
        ],
    );
    let total = 4000;
    enqueue(&pool, 0, total / 2).await;
    let old_worker = worker(&old, &url);
    receiver.wait_for(200, Duration::from_secs(60)).await.unwrap();

    // This version migrates while the old worker runs; more events come in
    // under the new schema, and a worker of this version joins.
    run(&new, &url, &["migrate"]);
    let check = Command::new(&new)
        .args(["migrate", "--check"])
        .env("DATABASE_URL", &url)
        .output()
        .unwrap();
    assert_eq!(check.status.code(), Some(0));
    enqueue(&pool, total / 2, total / 2).await;
    // The old worker, alone still, delivers events enqueued under the new
    // schema.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !receiver
        .received()
        .iter()
        .any(|r| serde_json::from_slice::<serde_json::Value>(&r.body).is_ok_and(|b| b["n"].as_i64() >= Some(total / 2)))
    {
        assert!(
            Instant::now() < deadline,
            "the previous release's worker delivered nothing after the migration"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let new_worker = worker(&new, &url);
    wait_all_delivered(&pool, total, Duration::from_secs(120)).await;
    stop(old_worker, "previous release's");
    stop(new_worker, "current");

    let seen = arrivals(&receiver);
    assert_eq!(seen.len(), total as usize, "every event arrived");
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice without a crash: {twice:?}");
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.attempt")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(attempts, total, "one attempt logged per delivery");
}
