//! HTTP API benchmark: `outhook serve` as a real process, loaded by wrk.
//!
//! Run: `cargo bench --bench api` (both scenarios) or
//! `cargo bench --bench api -- ingest` / `-- listing`. Needs `wrk` and
//! `pgbench` (`apt-get install wrk postgresql-client`). With `DATABASE_URL`
//! unset it starts a throwaway PostgreSQL with durable settings.
//!
//! - `ingest`: `POST /v1/messages` (1 KiB payload) from 64 keep-alive
//!   connections for 20 s against `outhook serve` (API and worker), beside
//!   the SQL path it wraps (pgbench: one `INSERT INTO outhook.outbox` per
//!   transaction from 64 connections) in the same run; serve's peak RSS.
//! - `ingest-catalog`: the same load, with `outhook serve --no-worker`, to
//!   an owner with one endpoint and no filter, to an owner with 100
//!   endpoints each filtering on another `data.shard` (every message
//!   matches exactly one), and with the event type's JSON Schema checked;
//!   after a warm-up, in the order one, many, many, one (so the drift
//!   within the run falls on both alike), and the first again at the end.
//! - `listing`: delivery listing and one delivery's attempt log, with a
//!   million attempts logged, from 8 connections; then the portal's pages
//!   on the same data, as the customer (a portal link's session) and as an
//!   operator.
//!
//! Prints one JSON line per measurement.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/proc.rs"]
mod proc;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sqlx::postgres::PgPoolOptions;

const DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/api");

fn outhook(url: &str, args: &[&str]) -> Result<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_outhook"))
        .args(args)
        .env("DATABASE_URL", url)
        .env("OUTHOOK_LOG", "warn")
        .output()?;
    if !out.status.success() {
        bail!("outhook {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

struct Serve {
    child: Child,
    base: String,
}

impl Serve {
    async fn start(url: &str, extra: &[&str]) -> Result<Self> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(env!("CARGO_BIN_EXE_outhook"))
            .args([
                "serve",
                "--listen",
                &format!("127.0.0.1:{port}"),
                "--allow-network",
                "127.0.0.0/8",
            ])
            .args(extra)
            .env("DATABASE_URL", url)
            .env("OUTHOOK_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        let base = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::builder().build()?;
        for _ in 0..200 {
            if http
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return Ok(Self { child, base });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("outhook serve did not become ready")
    }

    /// (CPU seconds, peak RSS MiB) from /proc.
    fn usage(&self) -> (f64, f64) {
        proc::usage(self.child.id())
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What wrk measured.
struct Wrk {
    rps: f64,
    p50_ms: f64,
    p90_ms: f64,
    p99_ms: f64,
    non_2xx: u64,
    requests: u64,
}

fn ms(text: &str) -> f64 {
    let t = text.trim();
    if let Some(v) = t.strip_suffix("us") {
        v.parse::<f64>().unwrap_or(f64::NAN) / 1000.0
    } else if let Some(v) = t.strip_suffix("ms") {
        v.parse().unwrap_or(f64::NAN)
    } else if let Some(v) = t.strip_suffix('s') {
        v.parse::<f64>().unwrap_or(f64::NAN) * 1000.0
    } else {
        f64::NAN
    }
}

fn wrk(connections: u32, seconds: u32, script: &str, url: &str, env: &[(&str, &str)]) -> Result<Wrk> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
            &format!("{DIR}/{script}"),
            url,
        ])
        .envs(env.iter().copied())
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pct = |p: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(p).map(ms))
            .unwrap_or(f64::NAN)
    };
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Ok(Wrk {
        rps: text
            .lines()
            .find_map(|l| l.strip_prefix("Requests/sec:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN),
        p50_ms: pct("50%"),
        p90_ms: pct("90%"),
        p99_ms: pct("99%"),
        non_2xx: text
            .lines()
            .find_map(|l| l.trim().strip_prefix("Non-2xx or 3xx responses:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0),
        requests,
    })
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

async fn ingest(url: &str) -> Result<Vec<serde_json::Value>> {
    outhook(url, &["migrate"])?;
    let token = outhook(url, &["token", "new", "--admin"])?;
    let serve = Serve::start(url, &[]).await?;
    // The messages fan out to an owner without endpoints: this measures
    // ingest alone, with the worker running idle beside it.
    let api = wrk(
        64,
        20,
        "ingest.lua",
        &format!("{}/v1/messages", serve.base),
        &[("OUTHOOK_BENCH_TOKEN", &token), ("OUTHOOK_BENCH_OWNER", "nobody")],
    )?;
    let (cpu, rss) = serve.usage();
    drop(serve);
    let pool = PgPoolOptions::new().max_connections(1).connect(url).await?;
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.outbox")
        .fetch_one(&pool)
        .await?;

    // The SQL path, same payload, same connection count, same duration.
    let payload = format!(
        r#"{{"type":"item.sold","data":{{"item_id":"PART_00000001","pad":"{}"}}}}"#,
        "x".repeat(950)
    );
    let script = std::env::temp_dir().join(format!("outhook-ingest-{}.sql", std::process::id()));
    std::fs::write(
        &script,
        format!(
            "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('item.sold', '{payload}', 'nobody');\n"
        ),
    )?;
    let pgbench = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            "64",
            "-j",
            "2",
            "-T",
            "20",
            "-f",
            script.to_str().unwrap_or_default(),
            url,
        ])
        .output()
        .context("running pgbench")?;
    let _ = std::fs::remove_file(&script);
    let text = String::from_utf8_lossy(&pgbench.stdout);
    let tps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let latency: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("latency average = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    Ok(vec![
        serde_json::json!({
            "scenario": "ingest", "path": "POST /v1/messages", "tool": "wrk -t2 -c64 -d20s, 1 KiB payload",
            "messages_per_second": api.rps.round(), "p50_ms": round(api.p50_ms, 2), "p90_ms": round(api.p90_ms, 2),
            "p99_ms": round(api.p99_ms, 2), "requests": api.requests, "non_2xx": api.non_2xx,
            "outbox_rows": stored, "serve_cpu_seconds": round(cpu, 2), "serve_peak_rss_mib": round(rss, 1),
        }),
        serde_json::json!({
            "scenario": "ingest", "path": "SQL INSERT INTO outhook.outbox", "tool": "pgbench -c64 -j2 -T20",
            "messages_per_second": tps.round(), "latency_average_ms": round(latency, 2),
            "api_to_sql_ratio": round(api.rps / tps, 3),
        }),
    ])
}

/// The ingest load against `serve` (already started) for `owner`.
fn ingest_load(serve: &Serve, token: &str, owner: &str, variant: &str) -> Result<serde_json::Value> {
    let api = wrk(
        64,
        20,
        "ingest.lua",
        &format!("{}/v1/messages", serve.base),
        &[("OUTHOOK_BENCH_TOKEN", token), ("OUTHOOK_BENCH_OWNER", owner)],
    )?;
    Ok(serde_json::json!({
        "scenario": "ingest-catalog", "variant": variant, "tool": "wrk -t2 -c64 -d20s, 1 KiB payload, serve --no-worker",
        "messages_per_second": api.rps.round(), "p50_ms": round(api.p50_ms, 2), "p99_ms": round(api.p99_ms, 2),
        "requests": api.requests, "non_2xx": api.non_2xx,
    }))
}

async fn ingest_catalog(url: &str) -> Result<Vec<serde_json::Value>> {
    outhook(url, &["migrate"])?;
    let token = outhook(url, &["token", "new", "--admin"])?;
    let add = |owner: &str, filter: Option<String>| -> Result<()> {
        let mut args = vec![
            "--allow-network".to_owned(),
            "127.0.0.0/8".to_owned(),
            "endpoint".to_owned(),
            "add".to_owned(),
            "--owner".to_owned(),
            owner.to_owned(),
            "--url".to_owned(),
            "http://127.0.0.1:9/hook".to_owned(),
            "--scheme".to_owned(),
            "standard-webhooks".to_owned(),
            "--event-type".to_owned(),
            "item.sold".to_owned(),
        ];
        if let Some(f) = filter {
            args.push("--filter".to_owned());
            args.push(f);
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        outhook(url, &args).map(|_| ())
    };
    add("one", None)?;
    for shard in 0..100 {
        add("many", Some(format!("data.shard = {shard}")))?;
    }
    let mut out = Vec::new();
    {
        let serve = Serve::start(url, &["--no-worker"]).await?;
        // The first load after a start runs on cold caches: reported apart.
        // Then the two variants in the order one, many, many, one: the
        // tables grow through the run and each load is a little slower than
        // the last, a drift that alternating alone would charge to the
        // second variant; in this order it falls on both alike.
        out.push(ingest_load(&serve, &token, "one", "1 endpoint, no filter (warm-up)")?);
        for owner in ["one", "many", "many", "one"] {
            let variant = if owner == "one" {
                "1 endpoint, no filter"
            } else {
                "100 endpoints, a filter each, 1 matches"
            };
            out.push(ingest_load(&serve, &token, owner, variant)?);
        }
    }
    let schema_file = std::env::temp_dir().join(format!("outhook-bench-schema-{}.json", std::process::id()));
    std::fs::write(
        &schema_file,
        r#"{"type":"object","required":["type","data"],"properties":{"type":{"type":"string"},
            "data":{"type":"object","required":["item_id"],"properties":{"item_id":{"type":"string"},
            "shard":{"type":"integer","minimum":0},"pad":{"type":"string","maxLength":4096}}}}}"#,
    )?;
    outhook(
        url,
        &[
            "event-type",
            "add",
            "item.sold",
            "--schema",
            schema_file.to_str().unwrap_or_default(),
            "--validate",
        ],
    )?;
    let _ = std::fs::remove_file(&schema_file);
    {
        let serve = Serve::start(url, &["--no-worker"]).await?;
        out.push(ingest_load(
            &serve,
            &token,
            "one",
            "1 endpoint, no filter, JSON Schema validated",
        )?);
    }
    outhook(url, &["event-type", "delete", "item.sold"])?;
    {
        let serve = Serve::start(url, &["--no-worker"]).await?;
        out.push(ingest_load(&serve, &token, "one", "1 endpoint, no filter (again)")?);
    }
    Ok(out)
}

async fn listing(url: &str) -> Result<Vec<serde_json::Value>> {
    outhook(url, &["migrate"])?;
    let token = outhook(url, &["token", "new", "--admin"])?;
    let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
    let endpoint: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO outhook.endpoint (owner, url, scheme) VALUES ('acme', 'http://127.0.0.1:9/', 'trr') RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    // 250,000 messages to the endpoint (the trigger makes the deliveries),
    // 4 attempts each: a million attempts logged; 1% dead letters.
    sqlx::query(
        "INSERT INTO outhook.outbox (event_type, payload, endpoint_id, created_at)
         SELECT CASE WHEN g % 10 = 0 THEN 'item.refunded' ELSE 'item.sold' END,
                json_build_object('seq', g, 'pad', repeat('x', 200)), $1,
                now() - make_interval(secs => 250000 - g)
         FROM generate_series(1, 250000) g",
    )
    .bind(endpoint)
    .execute(&pool)
    .await?;
    sqlx::query(
        "UPDATE outhook.delivery SET status = CASE WHEN id % 100 = 0 THEN 2 ELSE 1 END, attempts = 4,
                finished_at = now(), last_error = CASE WHEN id % 100 = 0 THEN 'receiver answered 500' END",
    )
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO outhook.attempt (delivery_id, attempt, started_at, duration_ms, url, request_headers, body_sha256,
                                      status_code, response_headers, response_body, outcome, error)
         SELECT d.id, a, now(), 12, 'http://127.0.0.1:9/',
                '{\"content-type\":\"application/json\",\"webhook-id\":\"msg_x\",\"webhook-signature\":\"v1,abc\"}',
                sha256(d.id::text::bytea), CASE WHEN a < 4 THEN 500 ELSE 200 END, '{\"content-length\":\"2\"}',
                'ok', CASE WHEN a < 4 THEN 'http_status' ELSE 'delivered' END,
                CASE WHEN a < 4 THEN 'receiver answered 500' END
         FROM outhook.delivery d, generate_series(1, 4) a",
    )
    .execute(&pool)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    let attempts: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.attempt")
        .fetch_one(&pool)
        .await?;
    let middle: i64 = sqlx::query_scalar("SELECT id FROM outhook.delivery ORDER BY id OFFSET 125000 LIMIT 1")
        .fetch_one(&pool)
        .await?;
    let serve = Serve::start(url, &["--no-worker"]).await?;
    let mut lines = Vec::new();
    for (name, path) in [
        ("newest 50", "/v1/deliveries?limit=50".to_owned()),
        (
            "one endpoint's dead letters",
            format!("/v1/deliveries?endpoint_id={endpoint}&status=dead&limit=50"),
        ),
        (
            "by event type",
            "/v1/deliveries?event_type=item.refunded&limit=50".to_owned(),
        ),
        ("a time window", {
            let since =
                (chrono::Utc::now() - chrono::Duration::hours(30)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let until =
                (chrono::Utc::now() - chrono::Duration::hours(29)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            format!("/v1/deliveries?since={since}&until={until}&limit=50")
        }),
        ("one delivery with its 4 attempts", format!("/v1/deliveries/{middle}")),
    ] {
        let w = wrk(
            8,
            10,
            "get.lua",
            &format!("{}{path}", serve.base),
            &[("OUTHOOK_BENCH_TOKEN", &token)],
        )?;
        lines.push(serde_json::json!({
            "scenario": "listing", "query": name, "path": path, "attempts_logged": attempts,
            "tool": "wrk -t2 -c8 -d10s", "requests_per_second": w.rps.round(),
            "p50_ms": round(w.p50_ms, 2), "p99_ms": round(w.p99_ms, 2), "non_2xx": w.non_2xx,
        }));
    }

    // The portal on the same data: a customer through a link, an operator
    // through an admin token.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let link = outhook(url, &["portal-link", "--owner", "acme", "--public-url", &serve.base])?;
    let customer = session_cookie(&http.get(link.trim()).send().await?)?;
    let signed_in = http
        .post(format!("{}/portal/login", serve.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", token.trim()))
        .send()
        .await?;
    let operator = session_cookie(&signed_in)?;
    let refunded = "item.refunded";
    for (who, cookie, name, path) in [
        (
            "customer",
            &customer,
            "delivery log, newest 50",
            "/portal/deliveries".to_owned(),
        ),
        (
            "customer",
            &customer,
            "delivery log, failed",
            "/portal/deliveries?status=dead".to_owned(),
        ),
        (
            "customer",
            &customer,
            "delivery log, by event type",
            format!("/portal/deliveries?event_type={refunded}"),
        ),
        (
            "customer",
            &customer,
            "a delivery and its attempt",
            format!("/portal/deliveries/{middle}"),
        ),
        ("customer", &customer, "endpoints with health", "/portal".to_owned()),
        (
            "customer",
            &customer,
            "an endpoint's page",
            format!("/portal/endpoints/{endpoint}"),
        ),
        (
            "operator",
            &operator,
            "delivery log, newest 50",
            "/portal/deliveries".to_owned(),
        ),
    ] {
        let w = wrk(
            8,
            10,
            "portal.lua",
            &format!("{}{path}", serve.base),
            &[("OUTHOOK_BENCH_COOKIE", cookie.as_str())],
        )?;
        lines.push(serde_json::json!({
            "scenario": "portal", "who": who, "page": name, "path": path, "attempts_logged": attempts,
            "tool": "wrk -t2 -c8 -d10s", "requests_per_second": w.rps.round(),
            "p50_ms": round(w.p50_ms, 2), "p99_ms": round(w.p99_ms, 2), "non_2xx": w.non_2xx,
        }));
    }
    Ok(lines)
}

/// The `name=value` of a response's session cookie.
fn session_cookie(response: &reqwest::Response) -> Result<String> {
    response
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .context("no session cookie")
}

fn main() -> Result<()> {
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let runs = |name: &str| wanted.is_empty() || wanted.iter().any(|w| w == name);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        // Durable settings (a non-empty list keeps PostgreSQL's defaults).
        let (cluster, url) = outhook_testkit::postgres::database_or_throwaway(&["fsync=on"]).await?;
        if runs("ingest") {
            for line in ingest(&url).await? {
                println!("{line}");
            }
        }
        if runs("ingest-catalog") {
            let url = match &cluster {
                Some(c) => c.create_database().await?,
                None => outhook_testkit::postgres::database_url().await?,
            };
            for line in ingest_catalog(&url).await? {
                println!("{line}");
            }
        }
        if runs("listing") {
            let url = match &cluster {
                Some(c) => c.create_database().await?,
                None => outhook_testkit::postgres::database_url().await?,
            };
            for line in listing(&url).await? {
                println!("{line}");
            }
        }
        Ok(())
    })
}
