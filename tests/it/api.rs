//! `outhook serve` as a real process with a real PostgreSQL and real
//! receivers: every route, scopes, bad input and idempotency.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use outhook_testkit::receiver::{Receiver, Reply};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// A running `outhook serve`, killed when dropped.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Its database.
    pub url: String,
    /// A pool on it, for checking what was written.
    pub pool: PgPool,
    /// An admin token.
    pub admin: String,
    http: Client,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the `outhook` CLI against `url`; returns stdout, asserting success.
pub fn cli(url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("OUTHOOK_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Server {
    /// A fresh database, migrated, and `outhook serve` on it.
    pub async fn start(extra: &[&str]) -> Self {
        let (url, pool) = outhook_testkit::postgres::database().await.unwrap();
        cli(&url, &["migrate"]);
        Self::serve(url, pool, extra, &[]).await
    }

    /// `outhook serve` on `url`, already migrated, with `extra` flags and
    /// `env`; `pool` is for checking what was written.
    pub async fn serve(url: String, pool: PgPool, extra: &[&str], env: &[(&str, &str)]) -> Self {
        let out = Command::new(env!("CARGO_BIN_EXE_outhook"))
            .args(["token", "new", "--admin"])
            .env("DATABASE_URL", &url)
            .envs(env.iter().copied())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_owned();
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_outhook"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--allow-network", "127.0.0.0/8", "--poll-interval", "100ms"])
            .args(["--retry-schedule", "200ms,200ms", "--retry-jitter", "0"])
            .args(extra)
            .env("DATABASE_URL", &url)
            .env("OUTHOOK_LOG", "warn")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            url,
            pool,
            admin,
            http: Client::builder().build().unwrap(),
        };
        for _ in 0..200 {
            if let Ok(r) = server.http.get(format!("{}/healthz", server.base)).send().await
                && r.status().is_success()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("outhook serve did not start");
    }

    /// A request with `token`; returns the status and the JSON body (or the
    /// text as a JSON string when it is not JSON).
    pub async fn call(
        &self,
        token: Option<&str>,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        if let Some(b) = body {
            request = request.json(&b);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// A request as the admin.
    pub async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(Some(&self.admin.clone()), method, path, body).await
    }

    /// A raw request: any body bytes and headers.
    pub async fn raw(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .body(body);
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn count(&self, table: &str) -> i64 {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM outhook.{table}")))
            .fetch_one(&self.pool)
            .await
            .unwrap()
    }
}

fn problem_type(body: &Value) -> &str {
    body["type"].as_str().unwrap_or("")
}

/// Polls `GET path` until `done` says yes.
pub async fn eventually(server: &Server, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..150 {
        let (status, body) = server.admin(Method::GET, path, None).await;
        if status == StatusCode::OK && done(&body) {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{path} never got there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_works_for_an_admin_against_a_real_worker() {
    let server = Server::start(&[]).await;
    let receiver = Receiver::start().await.unwrap();

    // Endpoints: create, read, list, update, secret.
    let (status, created) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(
                json!({"owner": "acme", "url": receiver.url("/hook"), "scheme": "standard-webhooks",
                        "event_types": ["item.sold"], "headers": {"X-Api-Key": "k_secret"}, "description": "main"}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(created["headers"]["x-api-key"], "***");
    let (_, read) = server.admin(Method::GET, &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(read["url"], receiver.url("/hook"));
    assert!(
        !read.to_string().contains("k_secret"),
        "a static header value leaked: {read}"
    );
    let (_, list) = server
        .admin(Method::GET, "/v1/endpoints?owner=acme&enabled=true", None)
        .await;
    assert_eq!(list["data"][0]["id"], id.as_str());
    assert_eq!(list["next_cursor"], Value::Null);
    let (status, patched) = server
        .admin(
            Method::PATCH,
            &format!("/v1/endpoints/{id}"),
            Some(json!({"description": "renamed"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(patched["description"], "renamed");
    assert_eq!(patched["event_types"], json!(["item.sold"]));
    let (_, secrets) = server
        .admin(Method::GET, &format!("/v1/endpoints/{id}/secret"), None)
        .await;
    assert_eq!(secrets["secrets"][0]["secret"], secret.as_str());

    // A message, delivered by the worker inside `serve`, verifies with the secret.
    let payload = r#"{"item_id": "PART_001",  "price": 12900.0}"#;
    let body = format!(r#"{{"event_type": "item.sold", "owner": "acme", "payload": {payload}}}"#);
    let (status, message) = server
        .raw(
            Method::POST,
            "/v1/messages",
            &[("content-type", "application/json")],
            body.into_bytes(),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{message}");
    assert_eq!(message["deliveries"], 1);
    let message_id = message["id"].as_i64().unwrap();
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    assert_eq!(
        &got[0].body[..],
        payload.as_bytes(),
        "the payload must arrive byte for byte"
    );
    let verifier = outhook_signer::Verifier::new(
        outhook_signer::Scheme::by_name("standard-webhooks").unwrap(),
        &[outhook_signer::Secret::new(secret.clone())],
    )
    .unwrap();
    verifier.verify(&got[0].header_pairs(), &got[0].body).unwrap();
    assert_eq!(got[0].headers["x-api-key"], "k_secret");

    // Deliveries: list with filters, read with attempts.
    let deliveries = eventually(
        &server,
        &format!("/v1/deliveries?endpoint_id={id}&status=delivered"),
        |b| b["data"].as_array().is_some_and(|d| d.len() == 1),
    )
    .await;
    let delivery_id = deliveries["data"][0]["id"].as_i64().unwrap();
    assert_eq!(deliveries["data"][0]["message_uid"], message["uid"]);
    let (_, detail) = server
        .admin(Method::GET, &format!("/v1/deliveries/{delivery_id}"), None)
        .await;
    let attempt = &detail["attempt_log"][0];
    assert_eq!(attempt["outcome"], "delivered");
    assert_eq!(attempt["status_code"], 200);
    assert_eq!(attempt["body_sha256"], hex::encode(Sha256::digest(&got[0].body)));
    assert_eq!(attempt["request_headers"]["x-api-key"], "***");
    assert!(
        attempt["request_headers"]["webhook-signature"]
            .as_str()
            .unwrap()
            .starts_with("v1,")
    );
    let (_, none) = server.admin(Method::GET, "/v1/deliveries?status=dead", None).await;
    assert_eq!(none["data"], json!([]));
    let (_, windowed) = server
        .admin(
            Method::GET,
            "/v1/deliveries?since=2000-01-01T00:00:00Z&until=2001-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(windowed["data"], json!([]));

    // Message read; retry a delivery; replay the message: each a new attempt.
    let (_, read) = server
        .admin(Method::GET, &format!("/v1/messages/{message_id}"), None)
        .await;
    assert_eq!(read["deliveries"][0]["id"], delivery_id);
    assert_eq!(read["payload"], serde_json::from_str::<Value>(payload).unwrap());
    let (status, _) = server
        .admin(Method::POST, &format!("/v1/deliveries/{delivery_id}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    receiver.wait_for(2, Duration::from_secs(10)).await.unwrap();
    // Wait for the retry's attempt to be logged: a replay re-queues the
    // delivery with a new lease, which would fence an attempt still in
    // flight (logged as superseded, its result changing nothing).
    eventually(&server, &format!("/v1/deliveries/{delivery_id}"), |b| {
        b["attempt_log"].as_array().is_some_and(|a| a.len() == 2)
    })
    .await;
    let (status, replayed) = server
        .admin(
            Method::POST,
            &format!("/v1/messages/{message_id}/replay"),
            Some(json!({"endpoint_id": id})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(replayed["delivery_id"], delivery_id);
    let got = receiver.wait_for(3, Duration::from_secs(10)).await.unwrap();
    let ids: Vec<_> = got.iter().map(|r| r.headers["webhook-id"].clone()).collect();
    assert!(
        ids.iter().all(|i| *i == ids[0]),
        "retries and replays keep the message id"
    );
    eventually(&server, &format!("/v1/deliveries/{delivery_id}"), |b| {
        b["attempt_log"].as_array().is_some_and(|a| a.len() == 3)
    })
    .await;

    // Recover: a dead letter comes back.
    receiver.set_default(Reply::Status(400));
    let (_, dead_msg) = server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": "item.sold", "endpoint_id": id, "payload": {"n": 2}})),
        )
        .await;
    let dead = eventually(&server, "/v1/deliveries?status=dead", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 1)
    })
    .await;
    assert_eq!(dead["data"][0]["message_id"], dead_msg["id"]);
    receiver.set_default(Reply::Status(200));
    let (status, recovered) = server
        .admin(
            Method::POST,
            &format!("/v1/endpoints/{id}/recover"),
            Some(json!({"since": "2000-01-01T00:00:00Z"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(recovered["requeued"], 1);
    eventually(&server, "/v1/deliveries?status=dead", |b| b["data"] == json!([])).await;
    // Re-queued is not yet delivered: wait for the attempt to be logged.
    eventually(&server, "/v1/deliveries?status=delivered", |b| {
        b["data"].as_array().is_some_and(|d| d.len() == 2)
    })
    .await;

    // Stats: attempts by hour and outcome. The workers write their counts
    // about once a second, so wait for them.
    let path = format!("/v1/endpoints/{id}/stats?period=7d");
    let delivered_of = |stats: &Value| -> i64 {
        stats["buckets"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["outcome"] == "delivered")
            .filter_map(|b| b["count"].as_i64())
            .sum()
    };
    let stats = eventually(&server, &path, |b| delivered_of(b) >= 4).await;
    assert_eq!(stats["period_hours"], 168);
    assert!(delivered_of(&stats) >= 4, "{stats}");
    assert!(stats.to_string().contains("http_status"), "{stats}");

    // Rotation: the old and the new secret both sign during the grace period.
    let (status, rotated) = server
        .admin(
            Method::POST,
            &format!("/v1/endpoints/{id}/secret/rotate"),
            Some(json!({"grace_period_seconds": 3600})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let new_secret = rotated["secret"].as_str().unwrap().to_owned();
    let (_, secrets) = server
        .admin(Method::GET, &format!("/v1/endpoints/{id}/secret"), None)
        .await;
    assert_eq!(secrets["secrets"].as_array().unwrap().len(), 2);
    assert_eq!(secrets["secrets"][0]["secret"], new_secret.as_str());

    // Messages list; health, readiness, metrics, OpenAPI.
    let (_, messages) = server
        .admin(Method::GET, "/v1/messages?event_type=item.sold&limit=1", None)
        .await;
    assert_eq!(messages["data"].as_array().unwrap().len(), 1);
    let next = messages["next_cursor"].as_str().unwrap().to_owned();
    let (_, rest) = server
        .admin(Method::GET, &format!("/v1/messages?limit=1&cursor={next}"), None)
        .await;
    assert_eq!(rest["data"][0]["id"], message_id);
    assert_eq!(server.call(None, Method::GET, "/readyz", None).await.0, StatusCode::OK);
    let (_, metrics) = server.call(None, Method::GET, "/metrics", None).await;
    let metrics = metrics.as_str().unwrap();
    assert!(
        metrics.contains("outhook_attempts_total{outcome=\"delivered\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("outhook_attempt_duration_seconds_bucket"), "{metrics}");
    let (_, doc) = server.call(None, Method::GET, "/openapi.json", None).await;
    assert_eq!(doc["openapi"], "3.1.0");

    // Delete: gone for good.
    let (status, _) = server.admin(Method::DELETE, &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, gone) = server.admin(Method::GET, &format!("/v1/endpoints/{id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(problem_type(&gone), "urn:outhook:problem:not-found");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_without_a_working_token_are_refused_with_401() {
    let server = Server::start(&["--no-worker"]).await;
    let revoked = cli(&server.url, &["token", "new", "--owner", "acme"]).trim().to_owned();
    let id = revoked.trim_start_matches("oh_").split('_').next().unwrap().to_owned();
    cli(&server.url, &["token", "revoke", &id]);
    let expiring = cli(&server.url, &["token", "new", "--admin", "--expires", "1s"])
        .trim()
        .to_owned();
    // The admin token with its last hex digit changed.
    let (head, last) = server.admin.split_at(server.admin.len() - 1);
    let forged = format!("{head}{}", if last == "0" { "1" } else { "0" });
    assert_eq!(
        server.call(Some(&expiring), Method::GET, "/v1/endpoints", None).await.0,
        StatusCode::OK
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    for token in [
        None,
        Some("nonsense"),
        Some(revoked.as_str()),
        Some(expiring.as_str()),
        Some(forged.as_str()),
    ] {
        let (status, body) = server.call(token, Method::GET, "/v1/endpoints", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(problem_type(&body), "urn:outhook:problem:unauthorized");
        let (status, _) = server
            .call(
                token,
                Method::POST,
                "/v1/messages",
                Some(json!({"event_type": "a", "owner": "acme", "payload": {}})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Who asks is checked before anything else: a bad Idempotency-Key
        // on an unauthorised request is still a 401.
        let mut request = server
            .http
            .post(format!("{}/v1/messages", server.base))
            .header("Idempotency-Key", "k".repeat(300))
            .json(&json!({"event_type": "a", "owner": "acme", "payload": {}}));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        assert_eq!(
            request.send().await.unwrap().status(),
            StatusCode::UNAUTHORIZED,
            "{token:?}"
        );
    }
    // With a working token, the same key is a 400 that names it.
    let long = "k".repeat(300);
    let (status, body) = server
        .raw(
            Method::POST,
            "/v1/messages",
            &[("Idempotency-Key", long.as_str()), ("content-type", "application/json")],
            br#"{"event_type": "a", "owner": "acme", "payload": {}}"#.to_vec(),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("Idempotency-Key"), "{body}");
    assert_eq!(server.count("outbox").await, 0);
    // `token list` shows both states and never a secret.
    let listed = cli(&server.url, &["token", "list"]);
    assert!(listed.contains("revoked") && listed.contains("expired"), "{listed}");
    assert!(!listed.contains(revoked.rsplit('_').next().unwrap()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_owners_ids_answer_404_and_lists_show_only_ones_own() {
    let server = Server::start(&["--no-worker"]).await;
    let acme = cli(&server.url, &["token", "new", "--owner", "acme"]).trim().to_owned();
    let globex = cli(&server.url, &["token", "new", "--owner", "globex"])
        .trim()
        .to_owned();
    let (status, theirs) = server
        .call(
            Some(&globex),
            Method::POST,
            "/v1/endpoints",
            Some(json!({"url": "https://globex.example/h", "scheme": "trr"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{theirs}");
    assert_eq!(theirs["owner"], "globex");
    let theirs_id = theirs["id"].as_str().unwrap();
    let (_, msg) = server
        .call(
            Some(&globex),
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": "e", "owner": "globex", "payload": {"a": 1}})),
        )
        .await;
    let msg_id = msg["id"].as_i64().unwrap();
    let delivery: i64 = sqlx::query_scalar("SELECT id FROM outhook.delivery")
        .fetch_one(&server.pool)
        .await
        .unwrap();

    for path in [
        format!("/v1/endpoints/{theirs_id}"),
        format!("/v1/endpoints/{theirs_id}/secret"),
        format!("/v1/endpoints/{theirs_id}/stats"),
        format!("/v1/messages/{msg_id}"),
        format!("/v1/deliveries/{delivery}"),
    ] {
        let (status, body) = server.call(Some(&acme), Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert_eq!(problem_type(&body), "urn:outhook:problem:not-found");
    }
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/v1/endpoints/{theirs_id}"),
            Some(json!({"description": "x"})),
        ),
        (Method::DELETE, format!("/v1/endpoints/{theirs_id}"), None),
        (Method::POST, format!("/v1/endpoints/{theirs_id}/secret/rotate"), None),
        (Method::POST, format!("/v1/deliveries/{delivery}/retry"), None),
        (
            Method::POST,
            format!("/v1/messages/{msg_id}/replay"),
            Some(json!({"endpoint_id": theirs_id})),
        ),
        (
            Method::POST,
            "/v1/messages".into(),
            Some(json!({"event_type": "e", "endpoint_id": theirs_id, "payload": {}})),
        ),
    ] {
        let (status, body) = server.call(Some(&acme), method, &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    // Sending as another owner is refused too, and nothing was written.
    let (status, _) = server
        .call(
            Some(&acme),
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": "e", "owner": "globex", "payload": {}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(server.count("outbox").await, 1);
    let (_, endpoints) = server.call(Some(&acme), Method::GET, "/v1/endpoints", None).await;
    assert_eq!(endpoints["data"], json!([]));
    let (_, endpoints) = server
        .call(Some(&acme), Method::GET, "/v1/endpoints?owner=globex", None)
        .await;
    assert_eq!(endpoints["data"], json!([]));
    for path in ["/v1/deliveries", "/v1/messages"] {
        let (_, page) = server.call(Some(&acme), Method::GET, path, None).await;
        assert_eq!(page["data"], json!([]), "{path}");
        let (_, page) = server.call(Some(&globex), Method::GET, path, None).await;
        assert_eq!(page["data"].as_array().unwrap().len(), 1, "{path}");
    }
    let (_, description) = server
        .admin(Method::GET, &format!("/v1/endpoints/{theirs_id}"), None)
        .await;
    assert_eq!(description["description"], "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payload_over_the_databases_limit_is_refused_with_413_and_its_batch_neighbours_are_not() {
    let server = Server::start(&["--no-worker", "--max-body-bytes", "65536"]).await;
    sqlx::query("UPDATE outhook.ingest_setting SET max_payload_bytes = 2000")
        .execute(&server.pool)
        .await
        .unwrap();
    let message = |n: usize| json!({"event_type": "e", "owner": "acme", "payload": {"pad": "x".repeat(n)}});
    // Sent together, so the server's group commit may batch them.
    let (big, small) = tokio::join!(
        server.admin(Method::POST, "/v1/messages", Some(message(3000))),
        server.admin(Method::POST, "/v1/messages", Some(message(100))),
    );
    assert_eq!(big.0, StatusCode::PAYLOAD_TOO_LARGE, "{}", big.1);
    assert_eq!(problem_type(&big.1), "urn:outhook:problem:payload-too-large");
    assert_eq!(big.1["detail"], "payload of 3010 bytes exceeds the limit of 2000 bytes");
    assert!(small.0.is_success(), "{}", small.1);
    assert_eq!(server.count("outbox").await, 1, "only the small one was enqueued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_its_problem_type_and_writes_nothing() {
    let server = Server::start(&["--no-worker", "--max-body-bytes", "65536"]).await;
    let json_header = [("content-type", "application/json")];
    /// Method, path, headers, body, and the status and problem slug expected.
    type Case<'a> = (Method, &'a str, Vec<(&'a str, &'a str)>, Vec<u8>, StatusCode, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (Method::POST, "/v1/messages", json_header.to_vec(), b"{\"event_type\": ".to_vec(), StatusCode::BAD_REQUEST, "invalid-json"),
        (Method::POST, "/v1/messages", vec![("content-type", "text/plain")], b"{}".to_vec(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type"),
        (Method::POST, "/v1/messages", json_header.to_vec(), br#"{"event_type":"e","owner":"acme","payload":"not an object"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid-payload"),
        (Method::POST, "/v1/messages", json_header.to_vec(), br#"{"event_type":"e","owner":"acme","payload":{"a":1},"colour":"red"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-json"),
        (Method::POST, "/v1/messages", json_header.to_vec(), format!(r#"{{"event_type":"e","owner":"acme","payload":{{"a":"{}"}}}}"#, "x".repeat(70_000)).into_bytes(), StatusCode::PAYLOAD_TOO_LARGE, "payload-too-large"),
        (Method::POST, "/v1/messages", json_header.to_vec(), br#"{"event_type":"","owner":"acme","payload":{}}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/messages", json_header.to_vec(), br#"{"event_type":"e","endpoint_id":"00000000-0000-0000-0000-000000000000","payload":{}}"#.to_vec(), StatusCode::NOT_FOUND, "not-found"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"nope"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "unknown-scheme"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"hmac","scheme_settings":{"header":"X","encoding":"rot13"}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid-settings"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"not a url","scheme":"trr"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid-url"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"ftp://a.example/x","scheme":"trr"}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid-url"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"http://10.1.2.3/hook","scheme":"trr"}"#.to_vec(), StatusCode::FORBIDDEN, "address-refused"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"http://169.254.169.254/latest","scheme":"trr"}"#.to_vec(), StatusCode::FORBIDDEN, "address-refused"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"http://[::ffff:192.168.0.1]/","scheme":"trr"}"#.to_vec(), StatusCode::FORBIDDEN, "address-refused"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"trr","headers":{"Content-Type":"text/plain"}}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"url":"https://a.example","scheme":"trr"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"trr","message_id_header":"Content-Type"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"trr","rate_limit_burst":5}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"trr","rate_limit":-1}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"trr","max_in_flight":2000000}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"ac\u0000me","url":"https://a.example","scheme":"trr"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":" \t ","url":"https://a.example","scheme":"trr"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"trr","description":"a\u0000"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::POST, "/v1/endpoints", json_header.to_vec(), br#"{"owner":"acme","url":"https://a.example","scheme":"hmac","scheme_settings":{"header":"X","prefix":"a\nb"}}"#.to_vec(), StatusCode::UNPROCESSABLE_ENTITY, "invalid-settings"),
        (Method::POST, "/v1/endpoints", vec![("content-type", "application/json"), ("idempotency-key", "a\tb")], br#"{"owner":"acme","url":"https://a.example","scheme":"trr"}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::PUT, "/v1/event-types/item.sold", json_header.to_vec(), br#"{"schema":{"\u0000":{}}}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::PUT, "/v1/event-types/item.sold", json_header.to_vec(), br#"{"schema":false}"#.to_vec(), StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::PATCH, "/v1/event-catalog", json_header.to_vec(), br#"{"strict":true}"#.to_vec(), StatusCode::CONFLICT, "conflict"),
        (Method::GET, "/v1/deliveries?limit=251", vec![], vec![], StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::GET, "/v1/deliveries?limit=0", vec![], vec![], StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::GET, "/v1/deliveries?status=lost", vec![], vec![], StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::GET, "/v1/deliveries?cursor=abc", vec![], vec![], StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::GET, "/v1/deliveries?since=yesterday", vec![], vec![], StatusCode::BAD_REQUEST, "invalid-parameter"),
        (Method::GET, "/v1/messages/424242", vec![], vec![], StatusCode::NOT_FOUND, "not-found"),
        (Method::GET, "/v1/messages/not-a-number", vec![], vec![], StatusCode::NOT_FOUND, "not-found"),
        (Method::GET, "/v1/deliveries/424242", vec![], vec![], StatusCode::NOT_FOUND, "not-found"),
        (Method::GET, "/v1/endpoints/00000000-0000-0000-0000-000000000000", vec![], vec![], StatusCode::NOT_FOUND, "not-found"),
        (Method::GET, "/v1/public-keys/none", vec![], vec![], StatusCode::NOT_FOUND, "not-found"),
        (Method::GET, "/v1/nowhere", vec![], vec![], StatusCode::NOT_FOUND, "not-found"),
    ];
    for (method, path, headers, body, status, kind) in cases {
        let (got, problem) = server.raw(method.clone(), path, &headers, body).await;
        assert_eq!(got, status, "{method} {path}: {problem}");
        assert_eq!(
            problem_type(&problem),
            format!("urn:outhook:problem:{kind}"),
            "{method} {path}: {problem}"
        );
        assert_eq!(problem["status"], status.as_u16());
        assert!(problem["detail"].as_str().is_some_and(|d| !d.is_empty()));
    }
    for table in ["outbox", "delivery", "endpoint", "endpoint_secret", "idempotency"] {
        assert_eq!(server.count(table).await, 0, "{table} was written");
    }
}

/// Limits round-trip through the API: set on create, changed and lifted by
/// a patch (0 lifts; lifting the rate lifts its burst), and a patch that
/// would leave a burst without a rate is refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_limits_are_set_changed_and_lifted() {
    let server = Server::start(&["--no-worker"]).await;
    let (status, created) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(
                serde_json::json!({"owner": "acme", "url": "https://a.example/hook", "scheme": "trr",
                                    "rate_limit": 20, "rate_limit_burst": 5, "max_in_flight": 4}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let e = &created;
    assert_eq!(
        (
            e["rate_limit"].as_f64(),
            e["rate_limit_burst"].as_i64(),
            e["max_in_flight"].as_i64()
        ),
        (Some(20.0), Some(5), Some(4))
    );
    let path = format!("/v1/endpoints/{}", e["id"].as_str().unwrap());
    let (status, patched) = server
        .admin(
            Method::PATCH,
            &path,
            Some(serde_json::json!({"rate_limit": 0.5, "max_in_flight": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(
        (patched["rate_limit"].as_f64(), patched["rate_limit_burst"].as_i64()),
        (Some(0.5), Some(5))
    );
    assert!(patched["max_in_flight"].is_null());
    let (status, problem) = server
        .admin(
            Method::PATCH,
            &path,
            Some(serde_json::json!({"rate_limit": 0, "rate_limit_burst": 3})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");
    let (_, unchanged) = server.admin(Method::GET, &path, None).await;
    assert_eq!(
        unchanged["rate_limit"].as_f64(),
        Some(0.5),
        "a refused patch changed the endpoint"
    );
    let (status, lifted) = server
        .admin(Method::PATCH, &path, Some(serde_json::json!({"rate_limit": 0})))
        .await;
    assert_eq!(status, StatusCode::OK, "{lifted}");
    assert!(
        lifted["rate_limit"].is_null() && lifted["rate_limit_burst"].is_null(),
        "{lifted}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_post_with_its_idempotency_key_gets_the_first_answer() {
    let server = Server::start(&["--no-worker"]).await;
    let send = |key: &'static str, event_type: &'static str| {
        let body = json!({"event_type": event_type, "owner": "acme", "payload": {"a": 1}});
        let server = &server;
        async move {
            let response = server
                .http
                .post(format!("{}/v1/messages", server.base))
                .bearer_auth(&server.admin)
                .header("Idempotency-Key", key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let replayed = response.headers().contains_key("idempotent-replayed");
            (response.status(), replayed, response.json::<Value>().await.unwrap())
        }
    };
    let (status, replayed, first) = send("order-1", "item.sold").await;
    assert_eq!((status, replayed), (StatusCode::CREATED, false));
    let (status, replayed, again) = send("order-1", "item.sold").await;
    assert_eq!((status, replayed), (StatusCode::CREATED, true));
    assert_eq!(first, again);
    assert_eq!(server.count("outbox").await, 1);
    // The same key for a different request is a conflict, not a new message.
    let (status, _, problem) = send("order-1", "item.refunded").await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(problem_type(&problem), "urn:outhook:problem:idempotency-conflict");
    // Another key is another message; an answered error is replayed too.
    assert_eq!(send("order-2", "item.sold").await.0, StatusCode::CREATED);
    assert_eq!(server.count("outbox").await, 2);
    // event_id: the second message with it is the first one, marked duplicate.
    let body = json!({"event_type": "e", "owner": "acme", "payload": {"a": 1}, "event_id": "evt-1"});
    let (s1, m1) = server.admin(Method::POST, "/v1/messages", Some(body.clone())).await;
    let (s2, m2) = server.admin(Method::POST, "/v1/messages", Some(body)).await;
    assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(m1["id"], m2["id"]);
    assert_eq!(m2["duplicate"], true);
    assert_eq!(server.count("outbox").await, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_verifies_a_cometh_delivery_with_the_served_pem_and_jwk() {
    let server = Server::start(&[]).await;
    let receiver = Receiver::start().await.unwrap();
    let (status, created) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"owner": "acme", "url": receiver.url("/c"), "scheme": "cometh"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["secret"], Value::Null);
    server
        .admin(
            Method::POST,
            "/v1/messages",
            Some(json!({"event_type": "ORDER_FILLED", "owner": "acme", "payload": {"type": "ORDER_FILLED", "order": {"id": "0xabc", "price": 1.50}}})),
        )
        .await;
    let got = receiver.wait_for(1, Duration::from_secs(10)).await.unwrap();
    let signature = got[0].headers["x-cometh-indexer-signature"]
        .to_str()
        .unwrap()
        .to_owned();

    // The routes need no token, and are cacheable.
    let http = Client::builder().build().unwrap();
    let pem = http
        .get(format!("{}/v1/public-keys/default", server.base))
        .send()
        .await
        .unwrap();
    assert_eq!(pem.headers()["content-type"], "application/x-pem-file");
    let etag = pem.headers()["etag"].to_str().unwrap().to_owned();
    assert!(pem.headers()["cache-control"].to_str().unwrap().contains("max-age"));
    let pem = pem.text().await.unwrap();
    let unchanged = http
        .get(format!("{}/v1/public-keys/default", server.base))
        .header("If-None-Match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), StatusCode::NOT_MODIFIED);
    let jwks: Value = http
        .get(format!("{}/.well-known/jwks.json", server.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    assert_eq!(jwk["kid"], "default");

    let script = r#"
const crypto = require('crypto');
const [pem, jwk, sig, body] = JSON.parse(require('fs').readFileSync(0, 'utf8'));
const check = key => crypto.createVerify('RSA-SHA256').update(body).verify(key, sig, 'base64');
const fromPem = crypto.createPublicKey(pem);
const fromJwk = crypto.createPublicKey({ key: jwk, format: 'jwk' });
const tampered = crypto.createVerify('RSA-SHA256').update(body + ' ').verify(fromPem, sig, 'base64');
console.log(JSON.stringify({ pem: check(fromPem), jwk: check(fromJwk), tampered }));
"#;
    let input = json!([pem, jwk, signature, String::from_utf8(got[0].body.to_vec()).unwrap()]).to_string();
    let mut child = Command::new("node")
        .args(["-e", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let verdict: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(verdict, json!({"pem": true, "jwk": true, "tampered": false}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_is_the_committed_one() {
    let server = Server::start(&["--no-worker"]).await;
    let http = Client::builder().build().unwrap();
    let served = http
        .get(format!("{}/openapi.json", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    assert!(
        served == committed,
        "openapi.json drifted: run `cargo run -- openapi > openapi.json`"
    );
    // Every problem type the API can answer is documented in the README.
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    for kind in outhook_server::problem::ProblemKind::ALL {
        assert!(readme.contains(&kind.type_uri()), "README lacks {}", kind.type_uri());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_standalone_worker_serves_metrics_when_asked() {
    let (url, _pool) = outhook_testkit::postgres::database().await.unwrap();
    cli(&url, &["migrate"]);
    let port = free_port();
    let mut worker = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args([
            "run",
            "--metrics-addr",
            &format!("127.0.0.1:{port}"),
            "--poll-interval",
            "100ms",
        ])
        .env("DATABASE_URL", &url)
        .env("OUTHOOK_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let http = Client::builder().build().unwrap();
    let mut text = String::new();
    for _ in 0..100 {
        if let Ok(r) = http.get(format!("http://127.0.0.1:{port}/metrics")).send().await {
            text = r.text().await.unwrap();
            if text.contains("outhook_deliveries_due") {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = worker.kill();
    let _ = worker.wait();
    assert!(text.contains("# TYPE outhook_deliveries_due gauge"), "{text}");
    assert!(text.contains("outhook_deliveries_dead 0"), "{text}");
    assert!(text.contains("outhook_deliveries_waiting 0"), "{text}");
}

/// Concurrent POSTs share commits (the ingest batches), and each still gets
/// its own answer: distinct messages, and for one `event_id` sent ten times
/// at once, one new message and nine duplicates pointing at it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_messages_share_commits_and_each_gets_its_own_answer() {
    let server = Server::start(&["--no-worker"]).await;
    let mut calls = Vec::new();
    for i in 0..60 {
        let body = if i % 6 == 0 {
            json!({"event_type": "e", "owner": "acme", "payload": {"same": true}, "event_id": "once"})
        } else {
            json!({"event_type": "e", "owner": "acme", "payload": {"i": i}})
        };
        calls.push(server.admin(Method::POST, "/v1/messages", Some(body)));
    }
    let answers = futures_util::future::join_all(calls).await;
    let mut new_ids = std::collections::HashSet::new();
    let mut once = Vec::new();
    for (i, (status, body)) in answers.iter().enumerate() {
        if i % 6 == 0 {
            once.push((
                *status,
                body["id"].as_i64().unwrap(),
                body["duplicate"].as_bool().unwrap(),
            ));
        } else {
            assert_eq!(*status, StatusCode::CREATED, "{body}");
            assert_eq!(body["payload"], json!({"i": i}));
            assert!(new_ids.insert(body["id"].as_i64().unwrap()));
        }
    }
    assert_eq!(
        once.iter()
            .filter(|(s, _, dup)| *s == StatusCode::CREATED && !dup)
            .count(),
        1,
        "{once:?}"
    );
    assert_eq!(
        once.iter().filter(|(s, _, dup)| *s == StatusCode::OK && *dup).count(),
        9,
        "{once:?}"
    );
    assert!(once.iter().all(|(_, id, _)| *id == once[0].1));
    assert_eq!(server.count("outbox").await, 51);
}

/// JSON Schema counts `2.0` as an integer, and so does the API; `2.5` is not one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_numbers_written_with_a_point_are_integers_and_fractions_are_refused() {
    let server = Server::start(&["--no-worker"]).await;
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(
                json!({"owner": "acme", "url": "https://acme.example/hook", "scheme": "standard-webhooks",
                        "max_in_flight": 2.0, "auto_disable_after_seconds": 3600.0}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["max_in_flight"], 2);
    assert_eq!(body["auto_disable_after_seconds"], 3600);
    let (status, body) = server
        .admin(
            Method::POST,
            "/v1/endpoints",
            Some(
                json!({"owner": "acme", "url": "https://acme.example/hook", "scheme": "standard-webhooks",
                        "max_in_flight": 2.5}),
            ),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(body.to_string().contains("2.5 is not a whole number"), "{body}");
}

/// A request the document calls valid is refused only for the server's
/// state, with 409, never with 400 or 422; and what the document allows
/// that looks odd (an empty time window, a name listed twice) is taken.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_for_the_resource_state_are_conflicts() {
    let server = Server::start(&["--no-worker"]).await;
    let create = |scheme: &'static str| {
        server.admin(
            Method::POST,
            "/v1/endpoints",
            Some(json!({"owner": "acme", "url": "https://acme.example/hook", "scheme": scheme})),
        )
    };
    let (status, cometh) = create("cometh").await;
    assert_eq!(status, StatusCode::CREATED, "{cometh}");
    let (status, github) = create("github").await;
    assert_eq!(status, StatusCode::CREATED, "{github}");
    let (status, sw) = create("standard-webhooks").await;
    assert_eq!(status, StatusCode::CREATED, "{sw}");

    let conflicts = [
        (
            format!("/v1/endpoints/{}/secret/rotate", cometh["id"].as_str().unwrap()),
            Method::POST,
            json!({}),
        ),
        (
            format!("/v1/endpoints/{}/secret/rotate", sw["id"].as_str().unwrap()),
            Method::POST,
            json!({"secret": "not base64!"}),
        ),
        (
            format!("/v1/endpoints/{}", github["id"].as_str().unwrap()),
            Method::PATCH,
            json!({"scheme_settings": {"header": "X-Sig"}}),
        ),
        (
            format!("/v1/endpoints/{}", github["id"].as_str().unwrap()),
            Method::PATCH,
            json!({"rate_limit_burst": 5}),
        ),
    ];
    for (path, method, body) in conflicts {
        let (status, problem) = server.admin(method.clone(), &path, Some(body.clone())).await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {path} {body}: {problem}");
        assert_eq!(problem["type"], "urn:outhook:problem:conflict", "{problem}");
    }
    // Lifting the rate and setting a burst in one patch is wrong by itself.
    let (status, problem) = server
        .admin(
            Method::PATCH,
            &format!("/v1/endpoints/{}", github["id"].as_str().unwrap()),
            Some(json!({"rate_limit": 0, "rate_limit_burst": 5})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{problem}");

    // An empty window: an empty page, not an error.
    let (status, page) = server
        .admin(
            Method::GET,
            "/v1/deliveries?since=2026-02-01T00:00:00Z&until=2026-01-01T00:00:00Z",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["data"], json!([]));

    // A name listed twice in a catalog: the later entry wins.
    let (status, applied) = server
        .admin(
            Method::PUT,
            "/v1/event-catalog",
            Some(json!({"event_types": [
                {"name": "item.sold", "description": "first"},
                {"name": "item.sold", "description": "second"},
            ]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{applied}");
    let (_, read) = server.admin(Method::GET, "/v1/event-types/item.sold", None).await;
    assert_eq!(read["description"], "second");
}
