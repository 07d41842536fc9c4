//! The administration CLI's edges: global options anywhere, a closed pipe,
//! `--json` on every listing, documented exit codes.

use std::process::{Command, Output, Stdio};

use serde_json::Value;

fn outhook(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env("OUTHOOK_LOG", "warn")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

async fn migrated_database() -> String {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    outhook_dispatcher::migrate(&pool).await.unwrap();
    url
}

fn add_endpoint(args: &[&str]) -> String {
    let out = ok(&outhook(args));
    out.lines()
        .find_map(|l| l.strip_prefix("endpoint "))
        .unwrap()
        .to_owned()
}

/// `--database-url` works before the subcommand, between, and after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_url_is_accepted_before_or_after_the_subcommand() {
    let url = migrated_database().await;
    let add = [
        "--owner",
        "acme",
        "--scheme",
        "trr",
        "--url",
        "https://acme.example/hook",
    ];
    let after = add_endpoint(&[&["endpoint", "add", "--database-url", &url][..], &add[..]].concat());
    let between = add_endpoint(&[&["endpoint", "--database-url", &url, "add"][..], &add[..]].concat());
    let before = add_endpoint(&[&["--database-url", &url, "endpoint", "add"][..], &add[..]].concat());
    let listed = ok(&outhook(&["endpoint", "list", "--json", "--database-url", &url]));
    let listed: Vec<Value> = serde_json::from_str(&listed).unwrap();
    let ids: Vec<&str> = listed.iter().map(|e| e["id"].as_str().unwrap()).collect();
    for id in [&after, &between, &before] {
        assert!(ids.contains(&id.as_str()), "{id} not in {ids:?}");
    }
    ok(&outhook(&["migrate", "--database-url", &url]));
}

/// A database command without a database says how to give one, exit 2.
#[test]
fn a_database_command_without_a_database_says_how_to_give_one() {
    let out = outhook(&["endpoint", "list"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--database-url") && stderr.contains("DATABASE_URL"),
        "{stderr}"
    );
}

/// Run with a stdout whose reader is already gone: every write fails with
/// EPIPE, and the command must end quietly instead of panicking.
fn run_into_closed_pipe(args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env_remove("DATABASE_URL")
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn output_into_a_closed_pipe_ends_quietly() {
    let url = migrated_database().await;
    for i in 0..3 {
        let hook = format!("https://acme.example/hook/{i}");
        add_endpoint(&[
            "endpoint",
            "add",
            "--database-url",
            &url,
            "--owner",
            "acme",
            "--scheme",
            "trr",
            "--url",
            &hook,
        ]);
    }
    for args in [
        &["endpoint", "list", "--database-url", &url][..],
        &["endpoint", "list", "--json", "--database-url", &url][..],
        &["secret", "new", "--scheme", "standard-webhooks"][..],
        &["--help"][..],
    ] {
        let out = run_into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.contains("Broken pipe"), "{args:?}: {stderr}");
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
    }
}

/// Every listing command prints JSON with `--json`, holding what was made.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listing_command_has_json() {
    let url = migrated_database().await;
    let id = add_endpoint(&[
        "endpoint",
        "add",
        "--database-url",
        &url,
        "--owner",
        "acme",
        "--scheme",
        "trr",
        "--url",
        "https://acme.example/h",
    ]);
    ok(&outhook(&[
        "signing-key",
        "new",
        "--name",
        "k1",
        "--database-url",
        &url,
    ]));
    let payload = std::env::temp_dir().join(format!("outhook-cli-json-{}.json", std::process::id()));
    std::fs::write(&payload, r#"{"item_id":"PART_001"}"#).unwrap();
    let sent = ok(&outhook(&[
        "send",
        "--database-url",
        &url,
        "--event-type",
        "item.sold",
        "--endpoint",
        &id,
        payload.to_str().unwrap(),
    ]));
    let _ = std::fs::remove_file(&payload);
    assert!(sent.contains("1 deliveries"), "{sent}");

    let json = |args: &[&str]| -> Value {
        let out = ok(&outhook(&[args, &["--json", "--database-url", &url]].concat()));
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} printed no JSON ({e}): {out}"))
    };
    let endpoints = json(&["endpoint", "list"]);
    assert_eq!(endpoints[0]["id"], id.as_str());
    let keys = json(&["signing-key", "list"]);
    assert_eq!(keys[0]["name"], "k1");
    assert!(keys[0]["public_key_pem"].as_str().unwrap().contains("BEGIN PUBLIC KEY"));
    let deliveries = json(&["deliveries", "list"]);
    assert_eq!(deliveries[0]["endpoint_id"], id.as_str());
    let delivery = deliveries[0]["id"].to_string();
    let shown = json(&["deliveries", "show", &delivery]);
    assert_eq!(shown["delivery"]["endpoint_id"], id.as_str());
    let health = json(&["endpoint", "health"]);
    assert_eq!(health[0]["id"], id.as_str());
    assert_eq!(health[0]["failure_streak"], 0);
    assert_eq!(health[0]["enabled"], true);
}

/// `endpoint health` shows the state, and the disabled reason and time.
/// The operator's endpoints must use Standard Webhooks.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_health_and_the_operators_endpoints() {
    let url = migrated_database().await;
    let add = |owner: &str, scheme: &str| {
        outhook(&[
            "endpoint",
            "add",
            "--database-url",
            &url,
            "--owner",
            owner,
            "--scheme",
            scheme,
            "--url",
            "https://ops.example/hooks",
        ])
    };
    let refused = add("outhook:operator", "trr");
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Standard Webhooks"));
    ok(&add("outhook:operator", "standard-webhooks"));
    let id = add_endpoint(&[
        "endpoint",
        "add",
        "--database-url",
        &url,
        "--owner",
        "acme",
        "--scheme",
        "trr",
        "--url",
        "https://acme.example/h",
        "--auto-disable-after",
        "2d",
    ]);
    ok(&outhook(&[
        "endpoint",
        "disable",
        &id,
        "--reason",
        "customer asked",
        "--database-url",
        &url,
    ]));
    let table = ok(&outhook(&[
        "endpoint",
        "health",
        "--owner",
        "acme",
        "--database-url",
        &url,
    ]));
    let line = table.lines().find(|l| l.starts_with(&id)).unwrap();
    assert!(
        line.contains("never") && line.contains("disabled") && line.contains("customer asked"),
        "{line}"
    );
    let shown: Value = serde_json::from_str(&ok(&outhook(&["endpoint", "show", &id, "--database-url", &url]))).unwrap();
    assert_eq!(shown["auto_disable_after_secs"], 172_800);
    assert!(shown["disabled_at"].is_string());
}

/// `--help` documents the exit codes that scripts rely on.
#[test]
fn help_documents_the_exit_codes() {
    let top = ok(&outhook(&["--help"]));
    assert!(top.contains("Exit status:") && top.contains("closed pipe"), "{top}");
    let verify = ok(&outhook(&["verify", "--help"]));
    assert!(verify.contains("Exit status: 0 valid, 1 invalid"), "{verify}");
    // And the codes are what the help says: a usage error is 2.
    assert_eq!(outhook(&["endpoint", "frobnicate"]).status.code(), Some(2));
}

/// The user-info of an endpoint URL is a secret: every listing shows it as
/// `***`, and a URL given back with `***` keeps the stored credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_in_an_endpoint_url_are_never_printed_and_survive_a_read_and_write_back() {
    let url = migrated_database().await;
    let id = add_endpoint(&[
        "endpoint",
        "add",
        "--database-url",
        &url,
        "--owner",
        "acme",
        "--scheme",
        "trr",
        "--url",
        "https://alice:s3cret@acme.example/hook",
    ]);
    let shown = [
        ok(&outhook(&["endpoint", "list", "--database-url", &url])),
        ok(&outhook(&["endpoint", "list", "--json", "--database-url", &url])),
        ok(&outhook(&["endpoint", "show", &id, "--database-url", &url])),
    ];
    for out in &shown {
        assert!(
            !out.contains("s3cret") && !out.contains("alice"),
            "credentials printed: {out}"
        );
        assert!(out.contains("https://***@acme.example/hook"), "{out}");
    }
    // Written back as read, then with a new path: the credentials stay.
    ok(&outhook(&[
        "endpoint",
        "update",
        &id,
        "--url",
        "https://***@acme.example/hook2",
        "--database-url",
        &url,
    ]));
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let stored: String = sqlx::query_scalar("SELECT url FROM outhook.endpoint")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, "https://alice:s3cret@acme.example/hook2");
    // Hidden credentials are not carried to another host.
    let moved = outhook(&[
        "endpoint",
        "update",
        &id,
        "--url",
        "https://***@elsewhere.example/",
        "--database-url",
        &url,
    ]);
    assert_eq!(moved.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&moved.stderr).contains("hidden"), "{moved:?}");
    // A new URL with credentials of its own replaces them.
    ok(&outhook(&[
        "endpoint",
        "update",
        &id,
        "--url",
        "https://bob:other@acme.example/hook3",
        "--database-url",
        &url,
    ]));
    let stored: String = sqlx::query_scalar("SELECT url FROM outhook.endpoint")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(stored, "https://bob:other@acme.example/hook3");
}
