//! Secrets at rest, with `outhook` as a process: sealed with AES-256-GCM
//! under OUTHOOK_MAIN_KEY, absent from a database dump, refused clearly by
//! a process with the wrong key or none, rotated online.

use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use outhook_signer::{Scheme, Secret, Verifier};
use outhook_testkit::receiver::Receiver;
use serde_json::Value;

fn outhook(url: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("OUTHOOK_LOG", "warn")
        .env_remove("OUTHOOK_MAIN_KEY")
        .env_remove("OUTHOOK_OLD_MAIN_KEYS")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn ok(out: Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn dump(url: &str) -> String {
    let pg_dump = outhook_testkit::postgres::find_binary("pg_dump").unwrap();
    let out = Command::new(pg_dump)
        .args(["--data-only", "--schema=outhook", url])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn status(url: &str, env: &[(&str, &str)]) -> Value {
    serde_json::from_str(&ok(outhook(url, env, &["secrets", "status", "--json"]))).unwrap()
}

/// Runs a worker until the receiver has `n` verified requests.
async fn deliver(url: &str, env: &[(&str, &str)], receiver: &Receiver, n: usize) {
    let mut worker = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(["run", "--allow-network", "127.0.0.0/8", "--poll-interval", "100ms"])
        .env("DATABASE_URL", url)
        .env("OUTHOOK_LOG", "warn")
        .env_remove("OUTHOOK_MAIN_KEY")
        .env_remove("OUTHOOK_OLD_MAIN_KEYS")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let got = receiver.wait_for(n, Duration::from_secs(20)).await;
    let _ = worker.kill();
    let _ = worker.wait();
    got.unwrap();
}

/// The issue's proof: existing plain rows are migrated, no secret appears
/// in the dump afterwards, the wrong key or none is refused with a clear
/// error and nothing overwritten, and a rotation re-seals online.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_are_sealed_at_rest_and_a_wrong_key_is_refused() {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    let stored = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT secret FROM outhook.endpoint_secret UNION ALL SELECT private_key_pem FROM outhook.signing_key",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    ok(outhook(&url, &[], &["migrate"]));
    let receiver = Receiver::start().await.unwrap();
    // Written without a main key: plain text.
    let added = ok(outhook(
        &url,
        &[],
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
    ));
    let secret = added
        .lines()
        .find_map(|l| l.strip_prefix("secret "))
        .unwrap()
        .to_owned();
    let endpoint = added
        .lines()
        .find_map(|l| l.strip_prefix("endpoint "))
        .unwrap()
        .to_owned();
    ok(outhook(&url, &[], &["signing-key", "new", "--name", "k1"]));
    // The portal's signing key, made by the first link.
    ok(outhook(&url, &[], &["portal-link", "--owner", "acme"]));
    let portal_key = || async {
        sqlx::query_scalar::<_, String>("SELECT secret FROM outhook.server_key WHERE name = 'portal'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let plain_portal_key = portal_key().await;
    let before = dump(&url);
    assert!(
        before.contains(&secret) && before.contains("BEGIN PRIVATE KEY"),
        "plain before"
    );
    assert!(before.contains(&plain_portal_key), "plain before");
    assert_eq!(status(&url, &[])["plain"], 3);

    let verifier = Arc::new(Verifier::new(Scheme::by_name("trr").unwrap(), &[Secret::new(secret.clone())]).unwrap());
    receiver.judge_with(Arc::new(
        move |h, b| if verifier.verify(h, b).is_ok() { 200 } else { 401 },
    ));
    let send = |n: &str| {
        let file = std::env::temp_dir().join(format!("outhook-secrets-{}-{n}.json", std::process::id()));
        std::fs::write(&file, format!(r#"{{"n":{n}}}"#)).unwrap();
        let out = ok(outhook(
            &url,
            &[],
            &[
                "send",
                "--event-type",
                "item.sold",
                "--endpoint",
                &endpoint,
                file.to_str().unwrap(),
            ],
        ));
        let _ = std::fs::remove_file(&file);
        out
    };

    // A main key: the rows are sealed, and the dump holds no secret.
    let k1 = ok(outhook(&url, &[], &["secrets", "new-main-key"])).trim().to_owned();
    let with_k1 = [("OUTHOOK_MAIN_KEY", k1.as_str())];
    let sealed = ok(outhook(&url, &with_k1, &["secrets", "rotate-main-key"]));
    assert!(sealed.starts_with("3 secrets sealed"), "{sealed}");
    let after = dump(&url);
    assert!(!after.contains(&secret), "the endpoint secret is in the dump");
    assert!(!after.contains("PRIVATE KEY"), "the private key is in the dump");
    assert!(!after.contains(&plain_portal_key), "the portal key is in the dump");
    assert_eq!(after.matches("ohenc:v1:").count(), 3);
    // The sealed portal key still signs links (the unit tests check that
    // it is the same key).
    ok(outhook(&url, &with_k1, &["portal-link", "--owner", "acme"]));
    assert!(portal_key().await.starts_with("ohenc:v1:"));
    let st = status(&url, &with_k1);
    assert_eq!(st["plain"], 0);
    let k1_id = st["main_key"].as_str().unwrap().to_owned();
    assert_eq!(st["sealed"][0]["main_key"], k1_id.as_str());

    // Deliveries still verify with the customer's secret.
    send("1");
    deliver(&url, &with_k1, &receiver, 1).await;
    assert!(receiver.received().len() == 1);

    // No key, or the wrong one: refused with a clear error, nothing changed.
    let sealed_rows = stored().await;
    let k2 = ok(outhook(&url, &[], &["secrets", "new-main-key"])).trim().to_owned();
    for env in [vec![], vec![("OUTHOOK_MAIN_KEY", k2.as_str())]] {
        let out = outhook(&url, &env, &["run", "--allow-network", "127.0.0.0/8"]);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("sealed with main key {k1_id}")) && err.contains("Nothing was changed"),
            "{err}"
        );
    }
    assert_eq!(stored().await, sealed_rows, "nothing was overwritten");

    // Rotation: K2 seals, K1 still opens during it; then K2 alone works.
    let rotating = [
        ("OUTHOOK_MAIN_KEY", k2.as_str()),
        ("OUTHOOK_OLD_MAIN_KEYS", k1.as_str()),
    ];
    let rotated = ok(outhook(
        &url,
        &rotating,
        &["secrets", "rotate-main-key", "--batch", "1"],
    ));
    assert!(rotated.starts_with("3 secrets sealed"), "{rotated}");
    let with_k2 = [("OUTHOOK_MAIN_KEY", k2.as_str())];
    let st = status(&url, &with_k2);
    assert_ne!(st["main_key"], k1_id.as_str());
    assert_eq!(st["sealed"].as_array().unwrap().len(), 1);
    send("2");
    deliver(&url, &with_k2, &receiver, 2).await;
    let out = outhook(&url, &with_k1, &["secrets", "status"]);
    assert_eq!(out.status.code(), Some(2), "the old key alone no longer opens them");
}
