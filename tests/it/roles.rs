//! Each path under its least-privilege role alone: a producer enqueues,
//! with fan-out, and reads nothing else; a worker delivers without the
//! API's secrets; the API and the CLI administer.

use std::time::Duration;

use outhook_testkit::receiver::{Receiver, Reply};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::api::{Server, cli};
use crate::worker_process::{add_endpoint, wait_all_delivered, worker};

/// A login role in `group`, named after the test's database so that
/// parallel tests on one cluster do not meet; returns `url` as that user.
async fn login(pool: &PgPool, url: &str, group: &str) -> String {
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(pool)
        .await
        .unwrap();
    let user = format!("{database}_{}", group.trim_start_matches("outhook_"));
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE ROLE \"{user}\" LOGIN IN ROLE {group}"
    )))
    .execute(pool)
    .await
    .unwrap();
    as_user(url, &user)
}

/// `url` with `user` in place of its user.
fn as_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap();
    let (_, host) = rest.split_once('@').unwrap();
    format!("{scheme}://{user}@{host}")
}

/// Whether `sql` is refused for want of a privilege (42501).
async fn denied(pool: &PgPool, sql: &'static str) -> bool {
    matches!(
        sqlx::query(sql).fetch_all(pool).await,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("42501")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_path_works_under_its_role_alone_and_a_producer_reads_nothing_else() {
    let (url, owner) = outhook_testkit::postgres::database().await.unwrap();
    outhook_dispatcher::migrate(&owner).await.unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Status(200));

    // The CLI's administration, as outhook_admin: an endpoint with a
    // filter, one without, and a token for the API.
    let admin = login(&owner, &url, "outhook_admin").await;
    for filter in ["", "\"shard\" = 1"] {
        add_endpoint(&admin, "acme", &receiver.url("/hook"), &["--filter", filter]);
    }

    // A producer enqueues, with the fan-out (filtered and not), through
    // the library, and through plain SQL.
    let producer_url = login(&owner, &url, "outhook_producer").await;
    let producer = PgPoolOptions::new()
        .max_connections(2)
        .connect(&producer_url)
        .await
        .unwrap();
    for n in 0..10 {
        outhook_dispatcher::enqueue(
            &producer,
            &outhook_dispatcher::Event {
                event_type: "item.sold",
                payload: &format!(r#"{{"shard":{}}}"#, n % 2),
                owner: Some("acme"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    // An event id sent twice: the second is a duplicate, not an error.
    for expected in [true, false] {
        let sent = outhook_dispatcher::enqueue(
            &producer,
            &outhook_dispatcher::Event {
                event_type: "item.sold",
                payload: r#"{"shard":0}"#,
                owner: Some("acme"),
                event_id: Some("order-1"),
                ..Default::default()
            },
        )
        .await
        .unwrap();
        assert_eq!(
            matches!(sent, outhook_dispatcher::Enqueued::New(_)),
            expected,
            "{sent:?}"
        );
    }
    sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('item.sold', '{\"shard\": 1}', 'acme')",
    )
    .execute(&producer)
    .await
    .unwrap();
    let deliveries: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.delivery")
        .fetch_one(&owner)
        .await
        .unwrap();
    assert_eq!(
        deliveries,
        12 + 6,
        "every event to the plain endpoint, shard 1 to the filtered one"
    );
    for sql in [
        "SELECT * FROM outhook.endpoint",
        "SELECT * FROM outhook.endpoint_secret",
        "SELECT * FROM outhook.attempt",
        "SELECT * FROM outhook.delivery",
        "SELECT * FROM outhook.api_token",
        "SELECT payload FROM outhook.outbox",
        "UPDATE outhook.outbox SET owner = 'other'",
        "DELETE FROM outhook.outbox",
    ] {
        assert!(denied(&producer, sql).await, "the producer may: {sql}");
    }

    // A worker, as outhook_worker alone, delivers them all, and cannot read
    // the API's tokens.
    let worker_url = login(&owner, &url, "outhook_worker").await;
    let mut running = worker(&worker_url, &[]);
    wait_all_delivered(&owner, 18, Duration::from_secs(60)).await;
    running.kill().unwrap();
    running.wait().unwrap();
    let worker_pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&worker_url)
        .await
        .unwrap();
    assert!(denied(&worker_pool, "SELECT * FROM outhook.api_token").await);
    assert!(denied(&worker_pool, "SELECT * FROM outhook.server_key").await);
    // Retention: the worker retires expired partitions it does not own.
    sqlx::query("SELECT outhook.attempt_partitions_ensure('2001-01-01', '2001-01-01')")
        .execute(&owner)
        .await
        .unwrap();
    let retired =
        outhook_dispatcher::db::attempt::attempt_partitions_drop_before(&worker_pool, Duration::from_secs(86_400))
            .await
            .unwrap();
    assert!(retired >= 1, "{retired}");

    // The API, as outhook_api alone.
    let api_url = login(&owner, &url, "outhook_api").await;
    let server = Server::serve(api_url, owner.clone(), &["--no-worker"], &[]).await;
    let (status, created) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"owner": "acme", "url": receiver.url("/api"), "scheme": "standard-webhooks"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let (status, sent) = server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": "item.sold", "owner": "acme", "payload": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{sent}");
}

/// A schema owner that is no superuser and may not create roles migrates,
/// administers and delivers; the roles are left to a DBA, and
/// `outhook.grant_roles()` grants them once made.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_plain_schema_owner_migrates_administers_and_delivers() {
    let (url, superuser) = outhook_testkit::postgres::database().await.unwrap();
    let database: String = sqlx::query_scalar("SELECT current_database()")
        .fetch_one(&superuser)
        .await
        .unwrap();
    let owner = format!("{database}_owner");
    for sql in [
        format!("CREATE ROLE \"{owner}\" LOGIN NOSUPERUSER NOCREATEROLE"),
        format!("GRANT CREATE ON DATABASE \"{database}\" TO \"{owner}\""),
    ] {
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&superuser).await.unwrap();
    }
    let owner_url = as_user(&url, &owner);
    cli(&owner_url, &["migrate"]);
    let receiver = Receiver::start().await.unwrap();
    receiver.set_default(Reply::Status(200));
    add_endpoint(&owner_url, "acme", &receiver.url("/hook"), &[]);
    let payload = std::env::temp_dir().join(format!("{database}-payload.json"));
    std::fs::write(&payload, r#"{"a":1}"#).unwrap();
    cli(
        &owner_url,
        &[
            "send",
            "--event-type",
            "item.sold",
            "--owner",
            "acme",
            payload.to_str().unwrap(),
        ],
    );
    let _ = std::fs::remove_file(&payload);
    let mut running = worker(&owner_url, &[]);
    receiver.wait_for(1, Duration::from_secs(30)).await.unwrap();
    running.kill().unwrap();
    running.wait().unwrap();
    // The function that grants the roles runs for the owner too.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .connect(&owner_url)
        .await
        .unwrap();
    sqlx::query("SELECT outhook.grant_roles()")
        .execute(&pool)
        .await
        .unwrap();
}
