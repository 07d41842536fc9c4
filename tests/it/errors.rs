//! Errors that say why, at once and once, with the host and port and never
//! the password; logs without colour codes in a pipe, or as JSON.

use std::io::{BufRead, BufReader};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn outhook(args: &[&str]) -> (Output, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("NO_COLOR")
        .output()
        .unwrap();
    (out, started.elapsed())
}

/// The one error line of a failed command.
fn refused(args: &[&str]) -> String {
    let (out, took) = outhook(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(took < Duration::from_secs(5), "{args:?} took {took:?} to say: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line: {stderr}");
    assert!(!stderr.contains("s3cret"), "the password was printed: {stderr}");
    assert!(!stderr.contains("pool timed out"), "{stderr}");
    lines[0].to_owned()
}

/// `url` with its database name replaced.
fn with_database(url: &str, name: &str) -> String {
    let (base, _) = url.rsplit_once('/').unwrap();
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_failures_say_why_at_once_with_the_host_and_port_and_no_password() {
    let line = refused(&[
        "endpoint",
        "list",
        "--database-url",
        "postgres://outhook:s3cret@127.0.0.1:1/outhook",
    ]);
    assert_eq!(
        line,
        "error: cannot reach PostgreSQL at 127.0.0.1:1: connection refused (is it running, on that port?)"
    );
    let (url, _pool) = outhook_testkit::postgres::database().await.unwrap();
    let at = url.split('@').nth(1).unwrap().split('/').next().unwrap().to_owned();
    let line = refused(&["endpoint", "list", "--database-url", &with_database(&url, "no_such_db")]);
    assert_eq!(
        line,
        format!("error: database `no_such_db` does not exist on PostgreSQL at {at}")
    );
    let nobody = url.replacen("postgres://postgres@", "postgres://nobody:s3cret@", 1);
    assert_ne!(nobody, url, "the test's URL names its user: {url}");
    let line = refused(&["deliveries", "list", "--database-url", &nobody]);
    assert!(
        line.starts_with(&format!("error: PostgreSQL at {at} refused user `nobody`: ")),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_database_without_the_schema_or_migrated_by_a_newer_outhook_says_what_to_do_and_migrate_check_tells() {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    for command in [
        &["endpoint", "list"][..],
        &["run"],
        &["serve", "--listen", "127.0.0.1:0"],
    ] {
        let mut args = command.to_vec();
        args.extend(["--database-url", &url]);
        let line = refused(&args);
        assert!(
            line.starts_with("error: the database has no outhook schema: run `outhook migrate`"),
            "{command:?}: {line}"
        );
    }
    let (out, _) = outhook(&["migrate", "--check", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    outhook_dispatcher::migrate(&pool).await.unwrap();
    let (out, _) = outhook(&["migrate", "--check", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    sqlx::query(
        "INSERT INTO outhook._migrations (version, description, success, checksum, execution_time)
         VALUES (29991231000001, 'from the future', true, '\\x00', 0)",
    )
    .execute(&pool)
    .await
    .unwrap();
    // A binary one release behind keeps working (migrations expand first
    // and contract a release later), and says so; `migrate --check` tells
    // a deploy script with exit 3.
    let (out, _) = outhook(&["endpoint", "list", "--database-url", &url]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains(
            "migrated by a newer outhook (migration 29991231000001 is unknown to this one): upgrade this binary"
        ),
        "{stderr}"
    );
    let (out, _) = outhook(&["migrate", "--check", "--database-url", &url]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stdout));
    sqlx::query("DELETE FROM outhook._migrations WHERE version = (SELECT max(version) FROM outhook._migrations)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("DELETE FROM outhook._migrations WHERE version = (SELECT max(version) FROM outhook._migrations)")
        .execute(&pool)
        .await
        .unwrap();
    let line = refused(&["endpoint", "list", "--database-url", &url]);
    assert!(
        line.contains("1 migration is not applied to this database: run `outhook migrate`"),
        "{line}"
    );
    // `migrate --check` applies nothing: 1 while one is pending.
    for _ in 0..2 {
        let (out, _) = outhook(&["migrate", "--check", "--database-url", &url]);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{stdout}");
        assert!(stdout.contains("1 migration is not applied"), "{stdout}");
    }
}

/// Starts `outhook run` on a migrated database with `env`, reads its first
/// log line, stops it.
async fn first_log_line(extra: &[&str], env: &[(&str, &str)]) -> String {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    outhook_dispatcher::migrate(&pool).await.unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_outhook"));
    command
        .args(["run", "--database-url", &url])
        .args(extra)
        .env_remove("NO_COLOR")
        .env("OUTHOOK_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stderr.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _ = child.kill();
    let _ = child.wait();
    line
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_carry_no_colour_codes_in_a_pipe_and_json_gives_one_object_per_line() {
    let text = first_log_line(&[], &[]).await;
    assert!(text.contains("WARN") || text.contains("INFO"), "{text:?}");
    assert!(!text.contains('\u{1b}'), "colour codes in a pipe: {text:?}");
    let json = first_log_line(&["--log-format", "json"], &[]).await;
    let object: serde_json::Value = serde_json::from_str(json.trim()).unwrap_or_else(|e| panic!("{e}: {json:?}"));
    assert!(object["level"].is_string() && object["fields"].is_object(), "{object}");
    let from_env = first_log_line(&[], &[("OUTHOOK_LOG_FORMAT", "json")]).await;
    assert!(
        serde_json::from_str::<serde_json::Value>(from_env.trim()).is_ok(),
        "{from_env:?}"
    );
}
