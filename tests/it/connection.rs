//! Receivers that demand more than a signed POST, with real parts only: a
//! TLS receiver that requires a client certificate from a test CA; real
//! proxies from Debian (tinyproxy for HTTP CONNECT, microsocks for SOCKS5)
//! whose logs show the deliveries; an OAuth2 token endpoint that counts its
//! tokens; Basic and bearer credentials. Secrets go in and never come back
//! out: not in `show`, not in the attempt log, not in a database dump.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use outhook_testkit::proxy::Proxy;
use outhook_testkit::receiver::Receiver;
use outhook_testkit::tls::TestCa;
use outhook_testkit::token_server::TokenServer;
use serde_json::{Value, json};
use sqlx::PgPool;

use crate::secrets::dump;
use crate::worker_process::{count, enqueue_for, wait_all_delivered};

/// A main key, so that secrets are sealed (base64 of 32 bytes).
const MAIN_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

fn outhook(url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("OUTHOOK_LOG", "warn")
        .env("OUTHOOK_MAIN_KEY", MAIN_KEY)
        .output()
        .unwrap()
}

fn ok(args: &[&str], out: Output) -> String {
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn cli(url: &str, args: &[&str]) -> String {
    ok(args, outhook(url, args))
}

/// `outhook endpoint add` (scheme `trr`), returning the endpoint's id.
fn add_endpoint(url: &str, owner: &str, target: &str) -> String {
    let out = cli(
        url,
        &[
            "endpoint",
            "--allow-network",
            "127.0.0.0/8",
            "add",
            "--owner",
            owner,
            "--scheme",
            "trr",
            "--url",
            target,
        ],
    );
    out.lines()
        .find_map(|l| l.strip_prefix("endpoint "))
        .expect("an endpoint id")
        .trim()
        .to_owned()
}

fn set(url: &str, id: &str, args: &[&str]) -> Value {
    let mut all = vec![
        "endpoint",
        "--allow-network",
        "127.0.0.0/8",
        "connection",
        "set",
        id,
        "--json",
    ];
    all.extend_from_slice(args);
    serde_json::from_str(&cli(url, &all)).unwrap()
}

/// `outhook run` with the main key, allowing `allow`, with `extra` flags.
fn worker(url: &str, allow: &str, extra: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(["run", "--allow-network", allow, "--poll-interval", "100ms"])
        .args(["--retry-schedule", "30s", "--retry-jitter", "0"])
        .args(extra)
        .env("DATABASE_URL", url)
        .env("OUTHOOK_LOG", "warn")
        .env("OUTHOOK_MAIN_KEY", MAIN_KEY)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

struct Running(Vec<Child>);

impl Drop for Running {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("outhook-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The first attempt of each owner's delivery: (outcome, error, request
/// headers), once every owner in `owners` has one.
async fn first_attempts(pool: &PgPool, owners: &[&str]) -> Vec<(String, String, Option<String>, Value)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows: Vec<(String, String, Option<String>, Value)> = sqlx::query_as(
            "SELECT e.owner, a.outcome, a.error, a.request_headers
             FROM outhook.attempt a JOIN outhook.delivery d ON d.id = a.delivery_id
             JOIN outhook.endpoint e ON e.id = d.endpoint_id
             WHERE a.attempt = 1 AND e.owner = ANY($1) ORDER BY e.owner",
        )
        .bind(owners.iter().map(|o| o.to_string()).collect::<Vec<_>>())
        .fetch_all(pool)
        .await
        .unwrap();
        if rows.len() >= owners.len() {
            return rows;
        }
        assert!(Instant::now() < deadline, "attempts of {owners:?} after 30 s: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn outcome_of<'a>(rows: &'a [(String, String, Option<String>, Value)], owner: &str) -> (&'a str, &'a str) {
    let row = rows.iter().find(|r| r.0 == owner).unwrap();
    (row.1.as_str(), row.2.as_deref().unwrap_or(""))
}

/// The base64 body of a PEM key: what a dump must not hold.
fn pem_body(pem: &str) -> String {
    pem.lines().filter(|l| !l.starts_with("-----")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_from_the_receivers_ca_is_let_in_and_none_or_another_is_not() {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    cli(&url, &["migrate"]);
    let ca = TestCa::new("Receiver CA").unwrap();
    let other = TestCa::new("Another CA").unwrap();
    let receiver = Receiver::start_tls(&ca.server().unwrap(), Some(&ca.cert_pem()))
        .await
        .unwrap();
    let dir = temp_dir("mtls");
    let good = ca.client("acme-sender").unwrap();
    let wrong = other.client("acme-sender").unwrap();
    let ca_file = write(&dir, "ca.pem", &ca.cert_pem());
    let good_cert = write(&dir, "good.pem", &good.cert_pem);
    let good_key = write(&dir, "good.key", &good.key_pem);
    let wrong_cert = write(&dir, "wrong.pem", &wrong.cert_pem);
    let wrong_key = write(&dir, "wrong.key", &wrong.key_pem);

    let target = receiver.url("/hook");
    let with_cert = add_endpoint(&url, "with-cert", &target);
    let shown = set(
        &url,
        &with_cert,
        &[
            "--client-certificate",
            &good_cert,
            "--client-key",
            &good_key,
            "--ca-certificates",
            &ca_file,
        ],
    );
    assert_eq!(shown["client_certificate"]["subject"], "CN=acme-sender", "{shown}");
    assert_eq!(shown["client_certificate"]["issuer"], "CN=Receiver CA", "{shown}");
    assert_eq!(
        shown["client_certificate"]["fingerprint_sha256"].as_str().map(str::len),
        Some(64)
    );
    assert!(shown["client_certificate"]["not_after"].is_string(), "{shown}");
    assert_eq!(shown["ca_certificates"][0]["subject"], "CN=Receiver CA", "{shown}");
    let without = add_endpoint(&url, "without-cert", &target);
    set(&url, &without, &["--ca-certificates", &ca_file]);
    let another = add_endpoint(&url, "another-ca", &target);
    set(
        &url,
        &another,
        &[
            "--client-certificate",
            &wrong_cert,
            "--client-key",
            &wrong_key,
            "--ca-certificates",
            &ca_file,
        ],
    );
    let untrusting = add_endpoint(&url, "no-ca", &target);
    set(
        &url,
        &untrusting,
        &["--client-certificate", &good_cert, "--client-key", &good_key],
    );
    // Read back, the key is never part of it.
    let text = cli(&url, &["endpoint", "connection", "show", &with_cert]);
    assert!(
        text.contains("CN=acme-sender") && !text.contains("PRIVATE KEY"),
        "{text}"
    );
    let json = cli(&url, &["endpoint", "connection", "show", &with_cert, "--json"]);
    assert!(!json.contains(&pem_body(&good.key_pem)), "{json}");
    // A key that is not PEM is refused, naming it.
    let garbage = write(&dir, "garbage.key", "not a key");
    let refused = outhook(
        &url,
        &[
            "endpoint",
            "connection",
            "set",
            &untrusting,
            "--client-certificate",
            &good_cert,
            "--client-key",
            &garbage,
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("client_key"),
        "{refused:?}"
    );

    let _workers = Running(vec![worker(&url, "127.0.0.0/8", &[])]);
    for owner in ["with-cert", "without-cert", "another-ca", "no-ca"] {
        enqueue_for(&pool, owner, 1, 0).await;
    }
    let rows = first_attempts(&pool, &["with-cert", "without-cert", "another-ca", "no-ca"]).await;
    assert_eq!(outcome_of(&rows, "with-cert").0, "delivered", "{rows:?}");
    for owner in ["another-ca", "no-ca"] {
        assert_eq!(outcome_of(&rows, owner).0, "tls", "{owner}: {rows:?}");
    }
    // Without a certificate, TLS 1.3 finishes the client's side of the
    // handshake before the server refuses it: the client may only see the
    // connection die ("connection was not ready"), so `connect` as well as
    // `tls`. The receiver's count of refused handshakes below shows why.
    let (outcome, _) = outcome_of(&rows, "without-cert");
    assert!(matches!(outcome, "tls" | "connect"), "without-cert: {rows:?}");
    assert!(
        outcome_of(&rows, "no-ca").1.contains("certificate"),
        "the receiver's server certificate is not trusted without its CA: {rows:?}"
    );
    assert_eq!(receiver.received().len(), 1, "only the certified endpoint got through");
    assert!(
        receiver.tls_refused() >= 3,
        "{} handshakes refused",
        receiver.tls_refused()
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_go_through_real_proxies_and_a_private_target_is_still_refused() {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    cli(&url, &["migrate"]);
    let http_proxy = Proxy::tinyproxy().unwrap();
    let socks = Proxy::microsocks().unwrap();
    let plain = Receiver::start().await.unwrap();
    let ca = TestCa::new("Receiver CA").unwrap();
    let tls = Receiver::start_tls(&ca.server().unwrap(), None).await.unwrap();
    let private = Receiver::start_on("127.0.0.2:0").await.unwrap();
    let dir = temp_dir("proxy");
    let ca_file = write(&dir, "ca.pem", &ca.cert_pem());

    // Through the worker's proxy (tinyproxy), plain HTTP and a CONNECT tunnel.
    add_endpoint(&url, "via-worker", &plain.url("/via-worker"));
    let tunnel = add_endpoint(&url, "tunnel", &tls.url("/tunnel"));
    set(&url, &tunnel, &["--ca-certificates", &ca_file]);
    // Through its own proxy (SOCKS5).
    let socks_endpoint = add_endpoint(&url, "via-socks", &plain.url("/via-socks"));
    let shown = set(&url, &socks_endpoint, &["--proxy", &socks.url()]);
    assert_eq!(shown["proxy"]["url"], socks.url(), "{shown}");
    // Around the proxy.
    let direct = add_endpoint(&url, "direct", &plain.url("/direct"));
    set(&url, &direct, &["--proxy", "none"]);
    // To a private address the worker does not allow (127.0.0.2), which
    // the proxy itself would reach.
    add_endpoint(&url, "private", &private.url("/private"));
    // Through a proxy that is down.
    let dead_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let down = add_endpoint(&url, "proxy-down", &plain.url("/proxy-down"));
    set(&url, &down, &["--proxy", &format!("http://127.0.0.1:{dead_port}")]);

    let _workers = Running(vec![worker(&url, "127.0.0.1/32", &["--proxy", &http_proxy.url()])]);
    let owners = ["via-worker", "tunnel", "via-socks", "direct", "private", "proxy-down"];
    for owner in owners {
        enqueue_for(&pool, owner, 1, 0).await;
    }
    let rows = first_attempts(&pool, &owners).await;
    for owner in ["via-worker", "tunnel", "via-socks", "direct"] {
        assert_eq!(outcome_of(&rows, owner).0, "delivered", "{owner}: {rows:?}");
    }
    let (outcome, error) = outcome_of(&rows, "private");
    assert_eq!(outcome, "address_refused", "{rows:?}");
    assert!(error.contains("127.0.0.2"), "{error}");
    assert!(private.received().is_empty(), "the private receiver was reached");
    let (outcome, error) = outcome_of(&rows, "proxy-down");
    assert_eq!(outcome, "proxy", "{rows:?}");
    assert!(!error.is_empty());

    let tiny = http_proxy.log();
    assert!(
        tiny.contains(&format!("POST http://{}/via-worker", plain.addr)),
        "tinyproxy's log: {tiny}"
    );
    assert!(
        tiny.contains(&format!("CONNECT {}", tls.addr)),
        "tinyproxy's log: {tiny}"
    );
    assert!(
        !tiny.contains("127.0.0.2"),
        "tinyproxy was asked for the private target: {tiny}"
    );
    assert!(!tiny.contains("/direct") && !tiny.contains("/via-socks"), "{tiny}");
    let micro = socks.log();
    assert!(
        micro.contains(&format!("connected to {}", plain.addr)),
        "microsocks' log: {micro}"
    );
    let paths: Vec<String> = plain.received().iter().map(|r| r.path.clone()).collect();
    for p in ["/via-worker", "/via-socks", "/direct"] {
        assert!(paths.iter().any(|x| x == p), "{p} in {paths:?}");
    }
    assert_eq!(tls.received().len(), 1);
    // The proxy's failure is not the receiver's: it does not count
    // towards disabling the endpoint.
    let streak: Option<i32> =
        sqlx::query_scalar("SELECT failure_streak FROM outhook.endpoint_health WHERE endpoint_id = $1::uuid")
            .bind(&down)
            .fetch_optional(&pool)
            .await
            .unwrap();
    assert!(
        streak.unwrap_or(0) == 0,
        "a proxy failure counted as the receiver's: {streak:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oauth2_token_is_fetched_once_for_two_workers_refreshed_after_a_401_and_never_stored_in_clear() {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    cli(&url, &["migrate"]);
    let tokens = TokenServer::start("outhook-client", "s3cret-client-value", 3600)
        .await
        .unwrap();
    let receiver = Receiver::start().await.unwrap();
    receiver.judge_with(tokens.judge());
    let dir = temp_dir("oauth2");
    let secret = write(&dir, "secret", "s3cret-client-value\n");
    let wrong = write(&dir, "wrong", "not-the-secret\n");
    let password = write(&dir, "password", "basic-pa55word\n");
    let bearer = write(&dir, "bearer", "static-bearer-t0ken\n");
    let ca = TestCa::new("Receiver CA").unwrap();
    let client = ca.client("acme-sender").unwrap();
    let cert = write(&dir, "client.pem", &client.cert_pem);
    let key = write(&dir, "client.key", &client.key_pem);

    let acme = add_endpoint(&url, "acme", &receiver.url("/oauth"));
    let shown = set(
        &url,
        &acme,
        &[
            "--oauth2-token-url",
            &tokens.url(),
            "--oauth2-client-id",
            "outhook-client",
            "--oauth2-client-secret-file",
            &secret,
            "--oauth2-scope",
            "webhooks:write",
        ],
    );
    assert_eq!(shown["auth"]["type"], "oauth2", "{shown}");
    assert_eq!(shown["auth"]["client_id"], "outhook-client");
    assert!(!shown.to_string().contains("s3cret"), "{shown}");
    let globex = add_endpoint(&url, "globex", &receiver.url("/wrong"));
    set(
        &url,
        &globex,
        &[
            "--oauth2-token-url",
            &tokens.url(),
            "--oauth2-client-id",
            "outhook-client",
            "--oauth2-client-secret-file",
            &wrong,
        ],
    );
    // Basic and bearer credentials, and a client key, for the dump.
    let basic = add_endpoint(&url, "basic", &receiver.url("/basic"));
    set(
        &url,
        &basic,
        &["--basic-username", "outhook", "--basic-password-file", &password],
    );
    let static_bearer = add_endpoint(&url, "bearer", &receiver.url("/bearer"));
    set(&url, &static_bearer, &["--bearer-token-file", &bearer]);
    let mtls = add_endpoint(&url, "mtls", "https://127.0.0.1:9/never");
    set(&url, &mtls, &["--client-certificate", &cert, "--client-key", &key]);
    receiver.judge_with({
        let judge = tokens.judge();
        std::sync::Arc::new(move |headers: &reqwest::header::HeaderMap, body: &[u8]| {
            match headers.get("authorization").and_then(|v| v.to_str().ok()) {
                Some("Basic b3V0aG9vazpiYXNpYy1wYTU1d29yZA==") | Some("Bearer static-bearer-t0ken") => 200,
                _ => judge(headers, body),
            }
        })
    });

    // A thousand deliveries, two workers: a token or two, not a thousand.
    let _workers = Running(vec![worker(&url, "127.0.0.0/8", &[]), worker(&url, "127.0.0.0/8", &[])]);
    enqueue_for(&pool, "acme", 1000, 0).await;
    enqueue_for(&pool, "basic", 1, 0).await;
    enqueue_for(&pool, "bearer", 1, 0).await;
    wait_all_delivered(&pool, 1002, Duration::from_secs(90)).await;
    let fetched = tokens.requests();
    assert!((1..=3).contains(&fetched), "{fetched} tokens for 1,000 deliveries");
    assert!(
        tokens
            .forms()
            .iter()
            .all(|f| f.contains("grant_type=client_credentials") && f.contains("scope=webhooks%3Awrite")),
        "{:?}",
        tokens.forms()
    );
    let failed = count(
        &pool,
        "SELECT count(*) FROM outhook.attempt WHERE outcome <> 'delivered'",
    )
    .await;
    assert_eq!(failed, 0, "every attempt of the burst was delivered on its first try");
    let shown: Value = serde_json::from_str(&cli(&url, &["endpoint", "connection", "show", &acme, "--json"])).unwrap();
    assert_eq!(
        shown["auth"]["token"]["fetches"].as_i64(),
        Some(fetched as i64),
        "{shown}"
    );

    // Revoked before its time: the next delivery gets a 401, fetches a new
    // token once, and is delivered in the same attempt.
    tokens.revoke_all();
    enqueue_for(&pool, "acme", 5, 1000).await;
    wait_all_delivered(&pool, 1007, Duration::from_secs(30)).await;
    let refetched = tokens.requests() - fetched;
    assert!(
        (1..=2).contains(&refetched),
        "{refetched} new tokens after the revocation"
    );
    let failed = count(
        &pool,
        "SELECT count(*) FROM outhook.attempt WHERE outcome <> 'delivered'",
    )
    .await;
    assert_eq!(failed, 0);

    // A wrong client secret: its own outcome, with the token server's answer.
    enqueue_for(&pool, "globex", 1, 0).await;
    let rows = first_attempts(&pool, &["globex"]).await;
    let (outcome, error) = outcome_of(&rows, "globex");
    assert_eq!(outcome, "oauth2_token", "{rows:?}");
    assert!(error.contains("401") && error.contains("invalid_client"), "{error}");
    assert!(!error.contains("not-the-secret"), "{error}");
    let pending = count(
        &pool,
        "SELECT count(*) FROM outhook.delivery d JOIN outhook.endpoint e ON e.id = d.endpoint_id
         WHERE e.owner = 'globex' AND d.status = 0 AND d.next_attempt_at IS NOT NULL",
    )
    .await;
    assert_eq!(pending, 1, "a failed token fetch is retried like a delivery");

    // The credentials were sent, and only `***` was logged.
    let basic_seen = receiver.received().iter().any(|r| {
        r.path == "/basic"
            && r.headers
                .get("authorization")
                .is_some_and(|v| v == "Basic b3V0aG9vazpiYXNpYy1wYTU1d29yZA==")
    });
    assert!(basic_seen, "Basic credentials reached the receiver");
    let logged: Vec<Value> =
        sqlx::query_scalar("SELECT request_headers FROM outhook.attempt WHERE request_headers ? 'authorization'")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert!(logged.len() >= 1007, "{}", logged.len());
    assert!(logged.iter().all(|h| h["authorization"] == "***"));

    // Sealed at rest: no key, password, token or client secret in a dump.
    let dump = dump(&url);
    for secret in [
        pem_body(&client.key_pem).as_str(),
        "s3cret-client-value",
        "not-the-secret",
        "basic-pa55word",
        "static-bearer-t0ken",
        "tok-",
    ] {
        assert!(!dump.contains(secret), "the dump holds `{secret}`");
    }
    assert!(dump.contains("ohenc:v1:"), "sealed values are in the dump");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn through_the_api_a_customer_sets_credentials_for_its_own_endpoint_but_never_its_proxy_or_reads_a_secret() {
    use reqwest::{Method, StatusCode};
    use serde_json::json;
    let server = crate::api::Server::start(&[]).await;
    let (status, endpoint) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"owner": "acme", "url": "https://acme.example/hook", "scheme": "standard-webhooks"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{endpoint}");
    let path = format!("/v1/endpoints/{}/connection", endpoint["id"].as_str().unwrap());
    let acme = crate::api::cli(&server.url, &["token", "new", "--owner", "acme"])
        .trim()
        .to_owned();
    let globex = crate::api::cli(&server.url, &["token", "new", "--owner", "globex"])
        .trim()
        .to_owned();

    let (status, plain) = server.call(Some(&acme), Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::OK, "{plain}");
    assert_eq!(plain["proxy"], "worker");
    assert!(plain["auth"].is_null() && plain["updated_at"].is_null(), "{plain}");

    let oauth2 = json!({"auth": {"type": "oauth2", "token_url": "https://auth.acme.example/token",
        "client_id": "outhook", "client_secret": "cust0mer-secret", "scope": "hooks"}});
    let (status, set) = server.call(Some(&acme), Method::PATCH, &path, Some(oauth2)).await;
    assert_eq!(status, StatusCode::OK, "{set}");
    assert_eq!(set["auth"]["type"], "oauth2");
    assert_eq!(set["auth"]["client_id"], "outhook");
    assert!(!set.to_string().contains("cust0mer-secret"), "{set}");
    // Given back without its secret, the stored one is kept.
    let again = json!({"auth": {"type": "oauth2", "token_url": "https://auth.acme.example/token",
        "client_id": "outhook", "scope": "hooks webhooks"}});
    let (status, kept) = server.call(Some(&acme), Method::PATCH, &path, Some(again)).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["auth"]["scope"], "hooks webhooks");
    // Another client id needs its own secret.
    let other =
        json!({"auth": {"type": "oauth2", "token_url": "https://auth.acme.example/token", "client_id": "other"}});
    let (status, refused) = server.call(Some(&acme), Method::PATCH, &path, Some(other)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{refused}");
    assert!(
        refused["detail"].as_str().unwrap_or("").contains("client_secret"),
        "{refused}"
    );

    // The proxy is the operator's.
    let (status, refused) = server
        .call(Some(&acme), Method::PATCH, &path, Some(json!({"proxy": "none"})))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");
    let (status, direct) = server.admin(Method::PATCH, &path, Some(json!({"proxy": "none"}))).await;
    assert_eq!(status, StatusCode::OK, "{direct}");
    assert_eq!(direct["proxy"], "none");
    // A token URL at a private address is refused like an endpoint URL.
    let private = json!({"auth": {"type": "oauth2", "token_url": "http://169.254.169.254/token",
        "client_id": "x", "client_secret": "y"}});
    let (status, refused) = server.admin(Method::PATCH, &path, Some(private)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{refused}");

    // Another customer does not see it at all.
    let (status, _) = server.call(Some(&globex), Method::GET, &path, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Everything removed with nulls.
    let (status, cleared) = server
        .admin(
            Method::PATCH,
            &path,
            Some(json!({"proxy": "worker", "client_certificate": null, "ca_certificates": null, "auth": null})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert!(
        cleared["auth"].is_null() && cleared["updated_at"].is_null(),
        "{cleared}"
    );
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.endpoint_connection")
        .fetch_one(&server.pool)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}

/// Endpoint ids and the types of the operational events `receiver` got.
fn event_types(receiver: &Receiver) -> Vec<(String, Value)> {
    receiver
        .received()
        .iter()
        .map(|r| {
            let v: Value = serde_json::from_slice(&r.body).unwrap();
            (v["type"].as_str().unwrap_or_default().to_owned(), v)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_certificate_is_the_only_one_accepted_and_one_expiring_soon_is_told_once() {
    let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
    cli(&url, &["migrate"]);
    let ca = TestCa::new("Receiver CA").unwrap();
    let other = TestCa::new("Another CA").unwrap();
    let server = ca.server().unwrap();
    let receiver = Receiver::start_tls(&server, None).await.unwrap();
    let plain = Receiver::start().await.unwrap();
    let operator = Receiver::start().await.unwrap();
    let dir = temp_dir("pinned");
    let pin = write(&dir, "pin.pem", &server.cert_pem);
    let wrong_pin = write(&dir, "wrong-pin.pem", &other.server().unwrap().cert_pem);
    let ca_file = write(&dir, "ca.pem", &ca.cert_pem());
    let soon = ca.client_valid_for("renew-me", 10).unwrap();
    let soon_cert = write(&dir, "soon.pem", &soon.cert_pem);
    let soon_key = write(&dir, "soon.key", &soon.key_pem);

    // Pinned: the receiver's CA is not trusted, its certificate is.
    let pinned = add_endpoint(&url, "pinned", &receiver.url("/pinned"));
    let shown = set(&url, &pinned, &["--pinned-certificates", &pin]);
    assert_eq!(shown["pinned_certificates"][0]["subject"], "CN=localhost", "{shown}");
    assert_eq!(shown["pinned_certificates"][0]["issuer"], "CN=Receiver CA", "{shown}");
    let wrong = add_endpoint(&url, "wrong-pin", &receiver.url("/wrong-pin"));
    set(&url, &wrong, &["--pinned-certificates", &wrong_pin]);
    // A pin and CAs are one or the other.
    let both = outhook(
        &url,
        &["endpoint", "connection", "set", &wrong, "--ca-certificates", &ca_file],
    );
    assert!(!both.status.success());
    assert!(
        String::from_utf8_lossy(&both.stderr).contains("pinned_certificates"),
        "{both:?}"
    );
    // A client certificate that expires in 10 days, on a plain endpoint.
    let expiring = add_endpoint(&url, "expiring", &plain.url("/expiring"));
    set(
        &url,
        &expiring,
        &["--client-certificate", &soon_cert, "--client-key", &soon_key],
    );
    cli(
        &url,
        &[
            "endpoint",
            "--allow-network",
            "127.0.0.0/8",
            "add",
            "--owner",
            "outhook:operator",
            "--scheme",
            "standard-webhooks",
            "--url",
            &operator.url("/ops"),
        ],
    );

    let _workers = Running(vec![worker(&url, "127.0.0.0/8", &["--maintenance-interval", "200ms"])]);
    for owner in ["pinned", "wrong-pin"] {
        enqueue_for(&pool, owner, 1, 0).await;
    }
    let rows = first_attempts(&pool, &["pinned", "wrong-pin"]).await;
    assert_eq!(outcome_of(&rows, "pinned").0, "delivered", "{rows:?}");
    let (outcome, error) = outcome_of(&rows, "wrong-pin");
    assert_eq!(outcome, "tls", "{rows:?}");
    assert!(error.contains("not a pinned one"), "{error}");
    assert_eq!(receiver.received().len(), 1, "only the pinned endpoint got through");

    // One `endpoint.certificate_expiring`, however many maintenance rounds.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !event_types(&operator)
        .iter()
        .any(|(t, _)| t == "endpoint.certificate_expiring")
    {
        assert!(
            Instant::now() < deadline,
            "no expiry event: {:?}",
            event_types(&operator)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events: Vec<Value> = event_types(&operator)
        .into_iter()
        .filter(|(t, _)| t == "endpoint.certificate_expiring")
        .map(|(_, v)| v)
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    let data = &events[0]["data"];
    assert_eq!(data["endpoint_id"], expiring.as_str(), "{data}");
    assert_eq!(data["owner"], "expiring", "{data}");
    assert_eq!(data["expired"], false, "{data}");
    assert_eq!(data["certificate"]["setting"], "client_certificate", "{data}");
    assert_eq!(data["certificate"]["subject"], "CN=renew-me", "{data}");
    assert!(!data.to_string().contains(&pem_body(&soon.key_pem)));

    // The endpoint's health says so; the pinned one's certificate is far off.
    let health: Value = serde_json::from_str(&cli(&url, &["endpoint", "health", "--json"])).unwrap();
    let of = |id: &str| {
        health
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["id"] == id)
            .unwrap()
            .clone()
    };
    assert_eq!(of(&expiring)["certificate"]["expires_soon"], true, "{health}");
    assert_eq!(of(&expiring)["certificate"]["subject"], "CN=renew-me", "{health}");
    assert_eq!(of(&pinned)["certificate"]["setting"], "pinned_certificates", "{health}");
    assert_eq!(of(&pinned)["certificate"]["expires_soon"], false, "{health}");
    let text = cli(&url, &["endpoint", "health"]);
    let line = text.lines().find(|l| l.starts_with(&expiring)).unwrap();
    assert!(line.contains("client certificate expires"), "{text}");

    // `--no-X` removes a setting; with another file in the same call, the
    // pin gives way to authority certificates.
    let shown = set(
        &url,
        &wrong,
        &["--no-pinned-certificates", "--ca-certificates", &ca_file],
    );
    assert_eq!(shown["pinned_certificates"], json!([]), "{shown}");
    assert_eq!(shown["ca_certificates"][0]["subject"], "CN=Receiver CA", "{shown}");
    let shown = set(&url, &expiring, &["--no-client-certificate"]);
    assert_eq!(shown["client_certificate"], Value::Null, "{shown}");
    let health: Value = serde_json::from_str(&cli(&url, &["endpoint", "health", "--json"])).unwrap();
    let now = health
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["id"] == expiring.as_str())
        .unwrap();
    assert_eq!(now["certificate"], Value::Null, "{health}");
    let _ = std::fs::remove_dir_all(dir);
}
