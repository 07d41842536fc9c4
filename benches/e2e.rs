//! End-to-end benchmark: outbox rows in PostgreSQL to arrivals at a receiver
//! in another process, through the real `outhook run` worker process.
//!
//! Run: `cargo bench --bench e2e` (every scenario) or
//! `cargo bench --bench e2e -- burst steady` (those whose names start so;
//! the long ones, marked `named_only`, run only when named in full; `=burst`
//! names exactly one). With `DATABASE_URL`
//! unset it starts a throwaway PostgreSQL with durable settings (fsync and
//! synchronous commit on); `OUTHOOK_BENCH_FAST_PG=1` turns them off.
//!
//! Prints one JSON line per scenario: events, endpoints, deliveries,
//! seconds, deliveries per second, latency percentiles from enqueue commit
//! to arrival, the dispatcher's CPU seconds and peak RSS, attempts,
//! duplicates and events lost. Roles: the same binary re-executes itself as
//! the receiver (`OUTHOOK_BENCH_ROLE=receiver`).
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

#[path = "support/proc.rs"]
mod proc;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use outhook_dispatcher::Event;
use outhook_dispatcher::db::endpoint::{Limits, NewEndpoint, endpoint_insert};
use outhook_dispatcher::db::signing_key::signing_key_insert;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

fn now_ns() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

// ---------------------------------------------------------------- receiver

/// The receiver path (`/e15`) of a scenario's rate-limited neighbour.
const LIMITED_ENDPOINT: u64 = 15;

/// One arrival: (key = seq * 16 + endpoint, arrival ns, answered 2xx).
type Arrival = (u64, u64, bool);

struct ReceiverState {
    arrivals: Mutex<Vec<Arrival>>,
    ok: AtomicU64,
    latency: Duration,
    fail_percent: u32,
    /// The body every answer carries (`RECEIVER_ANSWER_BYTES`, default none).
    answer: axum::body::Bytes,
}

fn receiver_main() -> Result<()> {
    let threads = std::env::var("RECEIVER_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let state = Arc::new(ReceiverState {
            arrivals: Mutex::new(Vec::with_capacity(1 << 20)),
            ok: AtomicU64::new(0),
            latency: Duration::from_millis(
                std::env::var("RECEIVER_LATENCY_MS")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0),
            ),
            fail_percent: std::env::var("RECEIVER_FAIL_PERCENT")
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            answer: axum::body::Bytes::from(vec![
                b'a';
                std::env::var("RECEIVER_ANSWER_BYTES")
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            ]),
        });
        let app = axum::Router::new()
            .route("/count", axum::routing::get(count))
            .route("/arrivals", axum::routing::get(arrivals))
            .fallback(axum::routing::post(hook))
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        println!("{}", listener.local_addr()?.port());
        // With RECEIVER_TLS_DIR, hooks also arrive over TLS on a second
        // port (its server certificate there; a client certificate
        // required when it holds client-ca.pem); control stays plain.
        if let Ok(dir) = std::env::var("RECEIVER_TLS_DIR") {
            let dir = std::path::PathBuf::from(dir);
            let server = outhook_testkit::tls::Issued {
                cert_pem: std::fs::read_to_string(dir.join("server.pem"))?,
                key_pem: std::fs::read_to_string(dir.join("server.key"))?,
            };
            let client_ca = std::fs::read_to_string(dir.join("client-ca.pem")).ok();
            let config = outhook_testkit::tls::server_config(&server, client_ca.as_deref())?;
            let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            println!("{}", tcp.local_addr()?.port());
            let tls = outhook_testkit::receiver::TlsListener::new(tcp, config);
            let app = app.clone();
            tokio::spawn(async move { axum::serve(tls, app).await });
        }
        axum::serve(listener, app).await?;
        Ok(())
    })
}

async fn hook(
    axum::extract::State(s): axum::extract::State<Arc<ReceiverState>>,
    uri: axum::http::Uri,
    body: axum::body::Bytes,
) -> (axum::http::StatusCode, axum::body::Bytes) {
    let at = now_ns();
    // Payloads start with {"seq":N, ...}; paths are /e{k}.
    let seq = body
        .get(7..)
        .map(|rest| {
            rest.iter()
                .take_while(|b| b.is_ascii_digit())
                .fold(0u64, |a, d| a * 10 + u64::from(d - b'0'))
        })
        .unwrap_or(0);
    let endpoint: u64 = uri.path().trim_start_matches("/e").parse().unwrap_or(0);
    if !s.latency.is_zero() {
        tokio::time::sleep(s.latency).await;
    }
    let ok = s.fail_percent == 0 || fastrand::u32(0..100) >= s.fail_percent;
    s.arrivals.lock().unwrap().push((seq * 16 + endpoint, at, ok));
    // The rate-limited neighbour's arrivals are counted apart.
    if ok && endpoint != LIMITED_ENDPOINT {
        s.ok.fetch_add(1, Ordering::Relaxed);
        (axum::http::StatusCode::OK, s.answer.clone())
    } else {
        (axum::http::StatusCode::INTERNAL_SERVER_ERROR, s.answer.clone())
    }
}

async fn count(axum::extract::State(s): axum::extract::State<Arc<ReceiverState>>) -> String {
    s.ok.load(Ordering::Relaxed).to_string()
}

async fn arrivals(axum::extract::State(s): axum::extract::State<Arc<ReceiverState>>) -> String {
    let list = std::mem::take(&mut *s.arrivals.lock().unwrap());
    let mut out = String::with_capacity(list.len() * 32);
    for (k, at, ok) in list {
        out.push_str(&format!("{k} {at} {}\n", u8::from(ok)));
    }
    out
}

struct ReceiverProcess {
    child: Child,
    port: u16,
    /// The port hooks arrive on over TLS, when they do.
    tls_port: Option<u16>,
    client: reqwest::Client,
}

impl ReceiverProcess {
    fn start(latency_ms: u64, fail_percent: u32, answer_bytes: usize) -> Result<Self> {
        Self::start_with(latency_ms, fail_percent, answer_bytes, None)
    }

    /// With `tls`, the directory of its server certificate and key (and
    /// the CA whose client certificates it requires).
    fn start_with(
        latency_ms: u64,
        fail_percent: u32,
        answer_bytes: usize,
        tls: Option<&std::path::Path>,
    ) -> Result<Self> {
        let mut command = Command::new(std::env::current_exe()?);
        command
            .env("OUTHOOK_BENCH_ROLE", "receiver")
            .env("RECEIVER_ANSWER_BYTES", answer_bytes.to_string())
            .env("RECEIVER_LATENCY_MS", latency_ms.to_string())
            .env("RECEIVER_FAIL_PERCENT", fail_percent.to_string());
        if let Some(dir) = tls {
            command.env("RECEIVER_TLS_DIR", dir);
        }
        let mut child = command.stdout(Stdio::piped()).spawn()?;
        let mut out = BufReader::new(child.stdout.take().context("stdout")?);
        let mut line = String::new();
        out.read_line(&mut line)?;
        let port = line.trim().parse().context("receiver port")?;
        let tls_port = match tls {
            None => None,
            Some(_) => {
                line.clear();
                out.read_line(&mut line)?;
                Some(line.trim().parse().context("receiver TLS port")?)
            }
        };
        Ok(Self {
            child,
            port,
            tls_port,
            client: reqwest::Client::builder().build()?,
        })
    }

    fn url(&self, endpoint: usize) -> String {
        match self.tls_port {
            Some(p) => format!("https://127.0.0.1:{p}/e{endpoint}"),
            None => format!("http://127.0.0.1:{}/e{endpoint}", self.port),
        }
    }

    async fn ok_count(&self) -> Result<u64> {
        Ok(self
            .client
            .get(format!("http://127.0.0.1:{}/count", self.port))
            .send()
            .await?
            .text()
            .await?
            .trim()
            .parse()?)
    }

    async fn arrivals(&self) -> Result<Vec<Arrival>> {
        let text = self
            .client
            .get(format!("http://127.0.0.1:{}/arrivals", self.port))
            .send()
            .await?
            .text()
            .await?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut it = l.split(' ');
                Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?, it.next()? == "1"))
            })
            .collect())
    }
}

impl Drop for ReceiverProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ worker

struct Worker {
    child: Child,
}

impl Worker {
    /// `outhook run`, or with `serve` the worker inside `outhook serve`
    /// (API on a free loopback port).
    fn start(url: &str, extra: &[&str], serve: bool, stage_log: &std::path::Path) -> Result<Self> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_outhook"));
        // OUTHOOK_BENCH_STAGE_LOG=0 leaves the stamp log off (to compare
        // with builds that have none).
        if std::env::var("OUTHOOK_BENCH_STAGE_LOG").as_deref() != Ok("0") {
            command.env("OUTHOOK_STAGE_LOG", stage_log);
        }
        if serve {
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            command.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
        } else {
            command.arg("run");
        }
        let child = command
            .args(["--database-url", url, "--allow-network", "127.0.0.0/8"])
            .args(extra)
            .env("OUTHOOK_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()?;
        Ok(Self { child })
    }

    /// (CPU seconds, peak RSS MiB) from /proc.
    fn usage(&self) -> (f64, f64) {
        proc::usage(self.child.id())
    }

    fn stop(mut self) -> Result<()> {
        Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

// ---------------------------------------------------------------- scenarios

#[derive(Clone, Copy)]
struct Scenario {
    name: &'static str,
    events: usize,
    endpoints: usize,
    scheme: &'static str,
    payload_bytes: usize,
    latency_ms: u64,
    fail_percent: u32,
    workers: usize,
    /// Offered events per second in phases of `phase_seconds`; empty: all enqueued first.
    steady_rates: &'static [usize],
    phase_seconds: u64,
    backlog: usize,
    /// With `steady_rates`: this many producers, each its own connection,
    /// one event per transaction, paced to share the rate (0: the single
    /// producer that commits a transaction of rate/100 events every 10 ms).
    producers: usize,
    /// Old attempts (4 per finished delivery, 32 to 41 days back) loaded
    /// first, for a worker with a retention period to prune during the run.
    old_attempts: usize,
    /// Delivered rows in the queue table, analyzed before the events are
    /// enqueued: statistics from a quiet queue, as at a burst's start.
    quiet_history: usize,
    worker_args: &'static [&'static str],
    /// Run the worker inside `outhook serve` instead of `outhook run`.
    serve: bool,
    /// A rate-limited endpoint of another owner beside the scenario's
    /// own, with a backlog: (requests per second, backlog).
    limited: Option<(f64, usize)>,
    /// Long or heavy: runs only when named in full, not by a prefix.
    named_only: bool,
    /// Each endpoint filters on its own `data.shard`, and each event
    /// carries one, so every event matches exactly one endpoint.
    filtered: bool,
    /// Events of 20 MB each (over the worker's 4 MiB limit) enqueued
    /// ahead of the scenario's own: they must become dead letters unread.
    oversized: usize,
    /// The body size of every answer the receiver gives.
    answer_bytes: usize,
    /// A slow endpoint of another owner beside the scenario's own, on a
    /// receiver of its own that answers after this many ms, with this
    /// backlog enqueued first: (latency ms, backlog).
    noisy: Option<(u64, usize)>,
    /// The worker reaches PostgreSQL through a PgBouncer in transaction
    /// mode (Debian's, as `scripts/setup` installs it), with
    /// `--pooler transaction`; the producer stays direct.
    pooler: bool,
    /// The worker exports traces (`--otlp-endpoint`) to a collector in the
    /// bench process that decodes and counts them.
    otlp: bool,
    /// Endpoints reached over TLS (their connection settings trust the
    /// receiver's test CA), with a client certificate the receiver
    /// requires when mutual.
    tls: Tls,
    /// The worker's `--proxy`: Debian's tinyproxy, as `scripts/setup`
    /// installs it (absolute-form requests for http://, CONNECT tunnels
    /// for https://).
    proxy: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Tls {
    Plain,
    Server,
    Mutual,
}

const BASE: Scenario = Scenario {
    name: "",
    events: 0,
    endpoints: 1,
    scheme: "standard-webhooks",
    payload_bytes: 1024,
    latency_ms: 0,
    fail_percent: 0,
    workers: 1,
    steady_rates: &[],
    phase_seconds: 30,
    backlog: 0,
    producers: 0,
    old_attempts: 0,
    quiet_history: 0,
    worker_args: &[],
    serve: false,
    limited: None,
    named_only: false,
    filtered: false,
    oversized: 0,
    answer_bytes: 0,
    noisy: None,
    pooler: false,
    otlp: false,
    tls: Tls::Plain,
    proxy: false,
};

fn scenarios() -> Vec<Scenario> {
    vec![
        Scenario {
            name: "burst",
            events: 100_000,
            ..BASE
        },
        // The same burst, delivered by the worker inside `outhook serve`.
        // The same burst, the worker behind PgBouncer in transaction mode.
        Scenario {
            name: "burst-pooler",
            events: 100_000,
            pooler: true,
            ..BASE
        },
        Scenario {
            name: "burst-serve",
            events: 100_000,
            serve: true,
            ..BASE
        },
        // The same burst, the worker exporting its traces over OTLP.
        Scenario {
            name: "burst-otlp",
            events: 100_000,
            otlp: true,
            ..BASE
        },
        // The same burst over TLS (a private CA the endpoint trusts), with
        // a client certificate (mutual TLS), through a proxy (tinyproxy),
        // and through the proxy's CONNECT tunnel over TLS.
        Scenario {
            name: "burst-tls",
            events: 100_000,
            tls: Tls::Server,
            ..BASE
        },
        Scenario {
            name: "burst-mtls",
            events: 100_000,
            tls: Tls::Mutual,
            ..BASE
        },
        // Plain http:// through tinyproxy: it closes each connection after
        // one request, so every delivery opens two TCP connections. Slow
        // (minutes): only when named.
        Scenario {
            name: "burst-proxy-plain",
            events: 20_000,
            proxy: true,
            named_only: true,
            ..BASE
        },
        Scenario {
            name: "burst-proxy",
            events: 100_000,
            proxy: true,
            tls: Tls::Server,
            ..BASE
        },
        // The burst to one owner of 100 endpoints, each filtering on its
        // own shard: every event matches exactly one (compare with `burst`).
        Scenario {
            name: "burst-filtered-100",
            events: 100_000,
            endpoints: 100,
            filtered: true,
            ..BASE
        },
        Scenario {
            name: "fanout",
            events: 10_000,
            endpoints: 10,
            ..BASE
        },
        Scenario {
            name: "steady-1000",
            steady_rates: &[1000],
            ..BASE
        },
        // Issue 11's shape: four producers on their own connections, one
        // event per transaction (a commit and a NOTIFY each), paced.
        Scenario {
            name: "steady-4p-1000",
            steady_rates: &[1000],
            producers: 4,
            ..BASE
        },
        // Sixteen producers at a rate that notifying commits can still
        // reach here: busy polling against notifications at the same load.
        Scenario {
            name: "steady-16p-1500",
            steady_rates: &[1500],
            producers: 16,
            ..BASE
        },
        // Four producers' durable commits reach only ~1,500/s here: sixteen
        // offer 5,000/s.
        Scenario {
            name: "steady-16p-5000",
            steady_rates: &[5000],
            producers: 16,
            ..BASE
        },
        Scenario {
            name: "steady-2000",
            steady_rates: &[2000],
            ..BASE
        },
        Scenario {
            name: "slow",
            events: 20_000,
            latency_ms: 100,
            ..BASE
        },
        Scenario {
            name: "flaky",
            events: 20_000,
            fail_percent: 20,
            worker_args: &[
                "--retry-schedule",
                "100ms,200ms,400ms,800ms,1s,1s,1s,1s,1s,1s",
                "--retry-jitter",
                "0.2",
            ],
            ..BASE
        },
        // The burst, with the queue's statistics taken while it was quiet
        // (10,000 delivered rows, none pending).
        Scenario {
            name: "burst-after-quiet",
            events: 100_000,
            quiet_history: 10_000,
            ..BASE
        },
        // The same 10,000 due events, without and then with a million rows
        // waiting for a retry a day away: the ratio is the backlog's cost.
        // Forty events of 20 MB ahead of 10,000 of 1 KiB, and the same
        // 10,000 alone: the big ones must end as dead letters without being
        // loaded, and the worker's memory stay at its settings' bound.
        Scenario {
            name: "oversized-mixed",
            events: 10_000,
            oversized: 40,
            ..BASE
        },
        Scenario {
            name: "oversized-baseline",
            events: 10_000,
            ..BASE
        },
        // A receiver answering 8 MiB to every request: at the default
        // response cap (16 KiB) and at the ceiling (1 MiB).
        Scenario {
            name: "answers-8mib",
            events: 2_000,
            answer_bytes: 8 << 20,
            ..BASE
        },
        Scenario {
            name: "answers-8mib-1mib-cap",
            events: 2_000,
            answer_bytes: 8 << 20,
            worker_args: &["--max-response-bytes", "1048576"],
            ..BASE
        },
        // One customer's slow server (2 s an answer) with 3,000 events
        // queued, and a healthy endpoint getting 200 events at 50/s: the
        // healthy one's latency beside the slow one's backlog.
        Scenario {
            name: "noisy-neighbour",
            steady_rates: &[50],
            phase_seconds: 4,
            producers: 1,
            noisy: Some((2000, 3000)),
            ..BASE
        },
        Scenario {
            name: "backlog-baseline",
            events: 10_000,
            ..BASE
        },
        Scenario {
            name: "backlog",
            events: 10_000,
            backlog: 1_000_000,
            ..BASE
        },
        // The burst beside ten million old attempts, kept, and then while
        // the worker prunes them (`--retention 30d`): the ratio of the two
        // is pruning's cost.
        Scenario {
            name: "burst-old-kept",
            events: 100_000,
            old_attempts: 10_000_000,
            worker_args: &["--maintenance-interval", "1s"],
            named_only: true,
            ..BASE
        },
        Scenario {
            name: "burst-prune",
            events: 100_000,
            old_attempts: 10_000_000,
            worker_args: &["--retention", "30d", "--maintenance-interval", "1s"],
            named_only: true,
            ..BASE
        },
        // The burst, and a minute of steady load, beside an endpoint limited
        // to 20 requests a second with a backlog: the unlimited endpoint's
        // numbers against `burst-3w` and `steady-65s-3w`, and the limited one's
        // accuracy, with three workers.
        Scenario {
            name: "burst-limited",
            events: 100_000,
            workers: 3,
            limited: Some((20.0, 2_000)),
            named_only: true,
            ..BASE
        },
        Scenario {
            name: "burst-3w",
            events: 100_000,
            workers: 3,
            named_only: true,
            ..BASE
        },
        Scenario {
            name: "steady-65s-limited",
            steady_rates: &[1000],
            phase_seconds: 65,
            workers: 3,
            limited: Some((20.0, 2_000)),
            named_only: true,
            ..BASE
        },
        Scenario {
            name: "steady-65s-3w",
            steady_rates: &[1000],
            phase_seconds: 65,
            workers: 3,
            named_only: true,
            ..BASE
        },
        Scenario {
            name: "rsa",
            events: 20_000,
            scheme: "cometh",
            ..BASE
        },
        Scenario {
            name: "workers",
            events: 100_000,
            workers: 2,
            ..BASE
        },
    ]
}

fn payload(seq: usize, size: usize, shard: Option<usize>) -> String {
    let shard = shard.map(|s| format!(r#""shard":{s},"#)).unwrap_or_default();
    let mut p = format!(r#"{{"seq":{seq},"type":"item.sold","data":{{"item_id":"PART_{seq:08}",{shard}"pad":""#);
    while p.len() + 3 < size {
        p.push('x');
    }
    p.push_str("\"}}");
    p
}

/// Enqueues events `from..to` for `owner` in transactions of `batch`;
/// records each event's commit time in `commits`.
async fn enqueue(
    pool: &PgPool,
    owner: &str,
    s: &Scenario,
    from: usize,
    to: usize,
    batch: usize,
    commits: &mut HashMap<u64, u64>,
) -> Result<()> {
    let mut seq = from;
    while seq < to {
        let end = (seq + batch).min(to);
        let payloads: Vec<String> = (seq..end)
            .map(|i| payload(i, s.payload_bytes, s.filtered.then(|| i % s.endpoints)))
            .collect();
        let events: Vec<Event> = payloads
            .iter()
            .map(|p| Event {
                event_type: "item.sold",
                payload: p,
                owner: Some(owner),
                ..Default::default()
            })
            .collect();
        let mut tx = pool.begin().await?;
        outhook_dispatcher::enqueue_many(&mut *tx, &events).await?;
        tx.commit().await?;
        let at = now_ns();
        for i in seq..end {
            commits.insert(i as u64, at);
        }
        seq = end;
    }
    Ok(())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * (sorted.len() as f64 - 1.0)).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

async fn run(
    s: &Scenario,
    server_url: Option<&str>,
    cluster: Option<&outhook_testkit::postgres::Cluster>,
) -> Result<serde_json::Value> {
    let url = match (server_url, cluster) {
        (Some(_), _) => outhook_testkit::postgres::database_url().await?,
        (None, Some(c)) => c.create_database().await?,
        (None, None) => bail!("no database"),
    };
    let pool = PgPoolOptions::new().max_connections(4).connect(&url).await?;
    outhook_dispatcher::migrate(&pool).await?;
    let tls = match s.tls {
        Tls::Plain => None,
        Tls::Server | Tls::Mutual => Some(TlsParts::new(s.tls == Tls::Mutual)?),
    };
    let receiver = ReceiverProcess::start_with(
        s.latency_ms,
        s.fail_percent,
        s.answer_bytes,
        tls.as_ref().map(|t| t.dir.as_path()),
    )?;
    let key_id = if s.scheme == "cometh" {
        let key = outhook_signer::RsaKeyPair::generate(2048)?;
        Some(signing_key_insert(&pool, "bench", &key).await?.id)
    } else {
        None
    };
    for e in 0..s.endpoints {
        let endpoint = endpoint_insert(
            &pool,
            &NewEndpoint {
                owner: "bench".into(),
                // Filtered: one receiver path for all, as each event goes
                // to one endpoint only (arrivals are keyed by path).
                url: receiver.url(if s.filtered { 0 } else { e }),
                filter: s
                    .filtered
                    .then(|| outhook_dispatcher::filter::Filter::parse(&format!("data.shard = {e}")))
                    .transpose()?,
                scheme: s.scheme.into(),
                secret: (s.scheme != "cometh")
                    .then(|| outhook_signer::Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
                signing_key_id: key_id,
                ..Default::default()
            },
        )
        .await?;
        if let Some(t) = &tls {
            t.configure(&pool, endpoint.id).await?;
        }
    }
    if let Some((rate, backlog)) = s.limited {
        endpoint_insert(
            &pool,
            &NewEndpoint {
                owner: "limited".into(),
                url: receiver.url(LIMITED_ENDPOINT as usize),
                scheme: s.scheme.into(),
                secret: Some(outhook_signer::Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
                limits: Limits {
                    rate: Some(rate),
                    ..Limits::default()
                },
                ..Default::default()
            },
        )
        .await?;
        // Sequence numbers of their own, apart from the scenario's events.
        let from = 10_000_000;
        enqueue(&pool, "limited", s, from, from + backlog, 1000, &mut HashMap::new()).await?;
    }
    // The slow neighbour answers on a receiver of its own, so the scenario's
    // receiver counts and times only the healthy endpoint's arrivals.
    let noisy_receiver = match s.noisy {
        Some((latency_ms, backlog)) => {
            let slow = ReceiverProcess::start(latency_ms, 0, 0)?;
            endpoint_insert(
                &pool,
                &NewEndpoint {
                    owner: "noisy".into(),
                    url: slow.url(0),
                    scheme: s.scheme.into(),
                    secret: Some(outhook_signer::Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")),
                    ..Default::default()
                },
            )
            .await?;
            let from = 20_000_000;
            enqueue(&pool, "noisy", s, from, from + backlog, 1000, &mut HashMap::new()).await?;
            Some(slow)
        }
        None => None,
    };
    if s.backlog > 0 {
        // Deliveries waiting for a retry a day from now.
        old_deliveries(
            &pool,
            s.backlog,
            "0, now() + interval '1 day' + g * interval '1 millisecond', NULL::timestamptz",
        )
        .await?;
        sqlx::query("VACUUM ANALYZE outhook.delivery").execute(&pool).await?;
    }
    if s.old_attempts > 0 {
        load_old_attempts(&pool, s.old_attempts).await?;
    }
    if s.quiet_history > 0 {
        old_deliveries(&pool, s.quiet_history, "1, now() - g * interval '1 second', now()").await?;
        sqlx::query("ANALYZE outhook.delivery").execute(&pool).await?;
    }
    if s.oversized > 0 {
        // Past the door's limit too: as rows enqueued before it was
        // lowered, or by a door set higher than the worker's limit.
        sqlx::query("UPDATE outhook.ingest_setting SET max_payload_bytes = 268435456")
            .execute(&pool)
            .await?;
        sqlx::query(
            "INSERT INTO outhook.outbox (event_type, payload, owner)
             SELECT 'oversized', json_build_object('seq', 99999999, 'pad', repeat('x', 20000000)), 'bench'
             FROM generate_series(1, $1)",
        )
        .bind(s.oversized as i64)
        .execute(&pool)
        .await?;
    }
    let mut commits = HashMap::new();
    let steady = !s.steady_rates.is_empty();
    let planned = if steady {
        s.steady_rates.iter().sum::<usize>() * s.phase_seconds as usize
    } else {
        s.events
    };
    let enqueue_started = Instant::now();
    if !steady {
        enqueue(&pool, "bench", s, 0, planned, 1000, &mut commits).await?;
    }
    let enqueue_seconds = enqueue_started.elapsed().as_secs_f64();
    let profiling = profile_reset(&pool).await;
    let machine_start = proc::machine_busy_seconds();
    let started_ns = now_ns();
    let stage_log = std::env::temp_dir().join(format!("outhook-bench-stages-{}-{}.log", std::process::id(), s.name));
    let _ = std::fs::remove_file(&stage_log);
    // Twice the worker's own pool: server connections are not the limit.
    let bouncer = if s.pooler {
        Some(outhook_testkit::pgbouncer::Pooler::start(&url, 16)?)
    } else {
        None
    };
    let mut worker_args = s.worker_args.to_vec();
    if bouncer.is_some() {
        worker_args.extend(["--pooler", "transaction"]);
    }
    let collector = if s.otlp {
        Some(outhook_testkit::otlp::Collector::start_counting().await?)
    } else {
        None
    };
    let proxy = if s.proxy {
        Some(outhook_testkit::proxy::Proxy::tinyproxy()?)
    } else {
        None
    };
    let proxy_url = proxy.as_ref().map(|p| p.url());
    if let Some(p) = &proxy_url {
        worker_args.extend(["--proxy", p.as_str()]);
    }
    let otlp_endpoint = collector.as_ref().map(|c| c.endpoint());
    if let Some(endpoint) = &otlp_endpoint {
        worker_args.extend(["--otlp-endpoint", endpoint.as_str()]);
    }
    let worker_url = bouncer.as_ref().map_or(url.as_str(), |b| b.url.as_str());
    let workers: Vec<Worker> = (0..s.workers)
        .map(|_| Worker::start(worker_url, &worker_args, s.serve, &stage_log))
        .collect::<Result<_>>()?;
    if steady && s.producers > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rate = s.steady_rates.iter().sum::<usize>();
        let total = rate * s.phase_seconds as usize;
        let mut producers = Vec::new();
        for p in 0..s.producers {
            let url = url.clone();
            let scenario = *s;
            let producers_n = s.producers;
            producers.push(tokio::spawn(async move {
                let pool = PgPoolOptions::new().max_connections(1).connect(&url).await?;
                let mut mine = HashMap::new();
                // Producer p sends events p, p + n, p + 2n, ... one per
                // transaction, each at its own time on a shared schedule.
                let gap = Duration::from_secs_f64(producers_n as f64 / rate as f64);
                let start = tokio::time::Instant::now() + Duration::from_secs_f64(p as f64 / rate as f64);
                let mut seq = p;
                let mut k = 0u32;
                while seq < total {
                    tokio::time::sleep_until(start + gap * k).await;
                    enqueue(&pool, "bench", &scenario, seq, seq + 1, 1, &mut mine).await?;
                    seq += producers_n;
                    k += 1;
                }
                anyhow::Ok(mine)
            }));
        }
        for p in producers {
            commits.extend(p.await??);
        }
    } else if steady {
        // Paced producer: a transaction every 10 ms, at each phase's rate.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut seq = 0;
        for &rate in s.steady_rates {
            let per_tick = rate / 100;
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            let phase_end = seq + rate * s.phase_seconds as usize;
            while seq < phase_end {
                tick.tick().await;
                enqueue(&pool, "bench", s, seq, seq + per_tick, per_tick, &mut commits).await?;
                seq += per_tick;
            }
        }
    }
    let total_events = commits.len();
    let expected = if s.filtered {
        total_events as u64
    } else {
        (total_events * s.endpoints) as u64
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut usage = (0.0, 0.0);
    loop {
        if receiver.ok_count().await? >= expected {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("{}: timed out", s.name);
            break;
        }
        for w in &workers {
            let u = w.usage();
            usage = (u.0.max(usage.0), u.1.max(usage.1));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Let in-flight results land, then read the counters before stopping.
    let pending_deadline = Instant::now() + Duration::from_secs(30);
    while sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM outhook.delivery WHERE status = 0 AND next_attempt_at < now() + interval '1 hour'
         AND endpoint_id NOT IN (SELECT id FROM outhook.endpoint WHERE owner IN ('limited', 'noisy'))",
    )
    .fetch_one(&pool)
    .await?
        > 0
        && Instant::now() < pending_deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let machine_cpu = proc::machine_busy_seconds() - machine_start;
    let mut cpu = 0.0;
    let mut rss: f64 = usage.1;
    for w in &workers {
        let (c, r) = w.usage();
        cpu += c;
        rss = rss.max(r);
    }
    // What the slow neighbour got meanwhile (its backlog is still going).
    let noisy_delivered = match &noisy_receiver {
        Some(slow) => Some(slow.ok_count().await?),
        None => None,
    };
    for w in workers {
        w.stop()?;
    }
    drop(noisy_receiver);
    let arrivals = receiver.arrivals().await?;
    let mut first_ok: HashMap<u64, u64> = HashMap::new();
    let mut ok_total = 0u64;
    let mut last_ok = started_ns;
    let mut first_any = u64::MAX;
    let mut limited_at: Vec<u64> = Vec::new();
    for &(key, at, ok) in &arrivals {
        if key % 16 == LIMITED_ENDPOINT {
            limited_at.push(at);
            continue;
        }
        first_any = first_any.min(at);
        if ok {
            ok_total += 1;
            last_ok = last_ok.max(at);
            first_ok.entry(key).and_modify(|t| *t = (*t).min(at)).or_insert(at);
        }
    }
    let mut latencies: Vec<f64> = first_ok
        .iter()
        .filter_map(|(key, at)| commits.get(&(key / 16)).map(|c| (*at as f64 - *c as f64) / 1e6))
        .collect();
    latencies.sort_by(|a, b| a.total_cmp(b));
    // Rate over the delivering span (first arrival to last), so the worker
    // process's start-up, reported apart, does not count against it.
    let seconds = (last_ok.saturating_sub(first_any)) as f64 / 1e9;
    let startup_ms = (first_any.saturating_sub(started_ns)) as f64 / 1e6;
    // This run's attempts only (not the old ones a retention scenario loads).
    let attempts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM outhook.attempt WHERE started_at > now() - interval '1 day'")
            .fetch_one(&pool)
            .await?;
    // Failed attempts of this run by outcome, with one error text each.
    let failures: Vec<(String, i64, Option<String>)> = sqlx::query_as(
        "SELECT outcome, count(*), min(left(error, 160)) FROM outhook.attempt
         WHERE started_at > now() - interval '1 day' AND outcome <> 'delivered' GROUP BY outcome ORDER BY 2 DESC",
    )
    .fetch_all(&pool)
    .await?;
    let failures: serde_json::Map<String, serde_json::Value> = failures
        .into_iter()
        .map(|(outcome, n, error)| (outcome, serde_json::json!({"attempts": n, "error": error})))
        .collect();
    let old_left: Option<(i64, i64)> = if s.old_attempts > 0 {
        Some(
            sqlx::query_as(
                "SELECT (SELECT count(*) FROM outhook.attempt WHERE started_at < now() - interval '30 days'),
                    (SELECT count(*) FROM outhook.delivery WHERE finished_at < now() - interval '30 days')",
            )
            .fetch_one(&pool)
            .await?,
        )
    } else {
        None
    };
    let limited = s.limited.map(|(rate, _)| limited_stats(&mut limited_at, rate));
    let postgres = if profiling {
        profile_read(&pool, expected).await.unwrap_or(serde_json::Value::Null)
    } else {
        serde_json::Value::Null
    };
    let stages = if s.endpoints == 1 {
        stage_breakdown(&pool, &stage_log, &commits, &first_ok).await?
    } else {
        serde_json::Value::Null
    };
    let _ = std::fs::remove_file(&stage_log);
    // (The quiet history's rows are on a message of their own.)
    let delivered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outhook.delivery d JOIN outhook.outbox o ON o.id = d.message_id
         WHERE d.status = 1 AND o.event_type <> 'old'",
    )
    .fetch_one(&pool)
    .await?;
    // The oversized events' ends: dead letters, and why.
    let oversized: Option<(i64, i64)> = if s.oversized > 0 {
        Some(
            sqlx::query_as(
                "SELECT count(*) FILTER (WHERE d.status = 2),
                        count(*) FILTER (WHERE d.last_error LIKE 'payload of 20000% bytes exceeds the limit of 4194304; it was not sent or loaded')
                 FROM outhook.delivery d JOIN outhook.outbox o ON o.id = d.message_id
                 WHERE o.event_type = 'oversized'",
            )
            .fetch_one(&pool)
            .await?,
        )
    } else {
        None
    };
    let r2 = |x: f64| (x * 100.0).round() / 100.0;
    Ok(serde_json::json!({
        "scenario": s.name,
        "events": total_events,
        "endpoints": s.endpoints,
        "deliveries": expected,
        "workers": s.workers,
        "seconds": r2(seconds),
        "startup_ms": r2(startup_ms),
        // Burst scenarios: enqueueing every event before the workers start
        // (transactions of 1,000, with the fan-out), events per second.
        "enqueue_events_per_second": (!steady).then(|| (total_events as f64 / enqueue_seconds).round()),
        "deliveries_per_second": (expected as f64 / seconds).round(),
        "latency_ms": {
            "p50": r2(percentile(&latencies, 50.0)),
            "p95": r2(percentile(&latencies, 95.0)),
            "p99": r2(percentile(&latencies, 99.0)),
            "p99.9": r2(percentile(&latencies, 99.9)),
            "max": r2(latencies.last().copied().unwrap_or(f64::NAN)),
        },
        "dispatcher_cpu_seconds": r2(cpu),
        // Everything on the machine from the workers' start to the last
        // result written: PostgreSQL, workers, receiver, producers, driver.
        "machine_cpu_ms_per_delivery": ((machine_cpu / expected as f64 * 1e3) * 1e4).round() / 1e4,
        "dispatcher_peak_rss_mib": r2(rss),
        "attempts": attempts,
        "failed_attempts": failures,
        "delivered_in_db": delivered,
        "duplicates": ok_total.saturating_sub(first_ok.len() as u64),
        "lost": expected.saturating_sub(first_ok.len() as u64),
        "old_attempts_loaded": s.old_attempts,
        "old_attempts_left": old_left.map(|o| o.0),
        "old_deliveries_left": old_left.map(|o| o.1),
        "limited": limited,
        "noisy_neighbour_delivered": noisy_delivered,
        // Spans the collector decoded (the worker stopped, so flushed).
        "spans_exported": collector.as_ref().map(|c| c.count()),
        "oversized_dead": oversized.map(|o| o.0),
        "oversized_dead_with_reason": oversized.map(|o| o.1),
        "stages_ms": stages,
        "postgres_per_delivery": postgres,
    }))
}

/// Starts PostgreSQL's profile of the run: WAL and statement statistics
/// reset (cluster-wide; scenarios run one at a time). False where
/// `pg_stat_statements` is not loaded (an outside `DATABASE_URL`).
async fn profile_reset(pool: &PgPool) -> bool {
    let ok = sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        .execute(pool)
        .await
        .is_ok()
        && sqlx::query("SELECT pg_stat_statements_reset()")
            .execute(pool)
            .await
            .is_ok();
    ok && sqlx::query("SELECT pg_stat_reset_shared('wal')")
        .execute(pool)
        .await
        .is_ok()
}

/// PostgreSQL's share of each delivery since [`profile_reset`]: WAL records,
/// bytes and full-page images, and the statements that took the most time,
/// each with its calls, execution time and WAL bytes per delivery.
async fn profile_read(pool: &PgPool, deliveries: u64) -> Result<serde_json::Value> {
    let n = deliveries.max(1) as f64;
    let (records, bytes, fpi): (i64, f64, i64) =
        sqlx::query_as("SELECT wal_records, wal_bytes::float8, wal_fpi FROM pg_stat_wal")
            .fetch_one(pool)
            .await?;
    let top: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT left(regexp_replace(query, '\\s+', ' ', 'g'), 90), calls, total_exec_time, wal_bytes::float8
         FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 8",
    )
    .fetch_all(pool)
    .await?;
    let r = |x: f64| (x * 1000.0).round() / 1000.0;
    Ok(serde_json::json!({
        "wal_records": r(records as f64 / n),
        "wal_bytes": r(bytes / n),
        "wal_full_page_images": r(fpi as f64 / n),
        "top_statements": top.iter().map(|(q, calls, ms, wal)| serde_json::json!({
            "query": q,
            "calls_per_delivery": r(*calls as f64 / n),
            "exec_ms_per_delivery": r(ms / n),
            "wal_bytes_per_delivery": r(wal / n),
        })).collect::<Vec<_>>(),
    }))
}

/// Each delivery's stages (from the workers' `OUTHOOK_STAGE_LOG` stamps,
/// joined with this bench's commit and arrival times by message), as
/// p50 / p99 per stage over every delivery, and the mean per stage over the
/// slowest 1% by end-to-end latency. Stages: commit to the notification's
/// arrival at the listener, to the claimer's wake-up, to the claim being
/// sent (for deliveries claimed after a wake-up; `commit_to_claim` covers
/// every delivery), the claim round trip, to the attempt's start, signing,
/// the request until it arrives at the receiver, the answer until its head
/// is back, the body, and the completion's commit (off the latency path).
async fn stage_breakdown(
    pool: &PgPool,
    path: &std::path::Path,
    commits: &HashMap<u64, u64>,
    arrivals: &HashMap<u64, u64>,
) -> Result<serde_json::Value> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(serde_json::Value::Null);
    };
    let seqs: HashMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT replace(uid::text, '-', ''), (payload->>'seq')::bigint FROM outhook.outbox WHERE payload->>'seq' IS NOT NULL")
            .fetch_all(pool)
            .await?
            .into_iter()
            .collect();
    const NAMES: [&str; 11] = [
        "commit_to_notified",
        "notified_to_woke",
        "woke_to_claim",
        "commit_to_claim",
        "claim",
        "claimed_to_start",
        "sign",
        "request_to_arrival",
        "arrival_to_answer",
        "response_body",
        "complete",
    ];
    // The first attempt of each message: (end to end, stages; NaN where a stage did not happen).
    let mut rows: HashMap<i64, (u64, f64, [f64; 11])> = HashMap::new();
    for line in text.lines() {
        let mut it = line.split(' ');
        let Some(uid) = it.next() else { continue };
        let v: Vec<u64> = it.filter_map(|x| x.parse().ok()).collect();
        let (
            [
                notified,
                woke,
                claim_sent,
                claimed,
                started,
                signed,
                answered,
                read,
                written,
            ],
            Some(&seq),
        ) = (<[u64; 9]>::try_from(v).unwrap_or([0; 9]), seqs.get(uid))
        else {
            continue;
        };
        let (Some(&commit), Some(&arrival)) = (commits.get(&(seq as u64)), arrivals.get(&(seq as u64 * 16))) else {
            continue;
        };
        if claimed == 0 || signed == 0 {
            continue;
        }
        let ms = |a: u64, b: u64| {
            if a == 0 || b == 0 {
                f64::NAN
            } else {
                (b as f64 - a as f64) / 1e6
            }
        };
        let woken = notified != 0 && woke != 0 && notified >= commit;
        let stages = [
            if woken { ms(commit, notified) } else { f64::NAN },
            if woken { ms(notified, woke) } else { f64::NAN },
            if woken { ms(woke, claim_sent) } else { f64::NAN },
            ms(commit, claim_sent),
            ms(claim_sent, claimed),
            ms(claimed, started),
            ms(started, signed),
            ms(signed, arrival),
            ms(arrival, answered),
            ms(answered, read),
            ms(read, written),
        ];
        let e2e = ms(commit, arrival);
        rows.entry(seq)
            .and_modify(|r| {
                if claimed < r.0 {
                    *r = (claimed, e2e, stages);
                }
            })
            .or_insert((claimed, e2e, stages));
    }
    if rows.is_empty() {
        return Ok(serde_json::Value::Null);
    }
    let mut all: Vec<(f64, [f64; 11])> = rows.into_values().map(|(_, e, s)| (e, s)).collect();
    all.sort_by(|a, b| a.0.total_cmp(&b.0));
    let slow = &all[all.len() - (all.len() / 100).max(1)..];
    let r3 = |x: f64| {
        if x.is_nan() {
            serde_json::Value::Null
        } else {
            serde_json::json!((x * 1000.0).round() / 1000.0)
        }
    };
    let mut out = serde_json::Map::new();
    out.insert("deliveries".into(), all.len().into());
    out.insert(
        "woken_share".into(),
        r3(all.iter().filter(|r| !r.1[0].is_nan()).count() as f64 / all.len() as f64),
    );
    for (i, name) in NAMES.iter().enumerate() {
        let mut v: Vec<f64> = all.iter().map(|r| r.1[i]).filter(|x| !x.is_nan()).collect();
        v.sort_by(|a, b| a.total_cmp(b));
        let slow_v: Vec<f64> = slow.iter().map(|r| r.1[i]).filter(|x| !x.is_nan()).collect();
        let slow_mean = if slow_v.is_empty() {
            f64::NAN
        } else {
            slow_v.iter().sum::<f64>() / slow_v.len() as f64
        };
        out.insert(
            (*name).into(),
            serde_json::json!({ "p50": r3(percentile(&v, 50.0)), "p99": r3(percentile(&v, 99.0)), "slowest_1pct_mean": r3(slow_mean) }),
        );
    }
    out.insert(
        "slowest_1pct_end_to_end_mean".into(),
        r3(slow.iter().map(|r| r.0).sum::<f64>() / slow.len() as f64),
    );
    Ok(serde_json::Value::Object(out))
}

/// The rate-limited neighbour's arrivals: how many, their rate over their
/// span (and over the first minute, if they lasted one), and the most in
/// any one second and any tenth of a second.
fn limited_stats(at: &mut [u64], rate: f64) -> serde_json::Value {
    at.sort_unstable();
    let (Some(&first), Some(&last)) = (at.first(), at.last()) else {
        return serde_json::json!({ "limit_per_second": rate, "arrivals": 0 });
    };
    let most_within = |width_ns: u64| {
        let mut most = 0;
        let mut j = 0;
        for i in 0..at.len() {
            while j < at.len() && at[j] < at[i] + width_ns {
                j += 1;
            }
            most = most.max(j - i);
        }
        most
    };
    let span = (last - first) as f64 / 1e9;
    let minute = at.iter().filter(|t| **t < first + 60_000_000_000).count();
    serde_json::json!({
        "limit_per_second": rate,
        "arrivals": at.len(),
        "per_second_over_span": if span > 0.0 { ((at.len() - 1) as f64 / span * 100.0).round() / 100.0 } else { f64::NAN },
        "span_seconds": (span * 100.0).round() / 100.0,
        "in_first_60s": (span >= 60.0).then_some(minute),
        "most_in_1s": most_within(1_000_000_000),
        "most_in_100ms": most_within(100_000_000),
    })
}

/// `n` deliveries of one old message (event type `old`, an owner with no
/// endpoints, so the trigger fans nothing out) to the first endpoint, one
/// attempt made; `status_due_finished` gives their status, next attempt
/// and finish time as SQL over `g`, 1 to `n`.
async fn old_deliveries(pool: &PgPool, n: usize, status_due_finished: &str) -> Result<()> {
    let msg: i64 = sqlx::query_scalar(
        "INSERT INTO outhook.outbox (event_type, payload, owner) VALUES ('old', '{}', 'nobody') RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO outhook.delivery (message_id, endpoint_id, attempts, status, next_attempt_at, finished_at)
         SELECT $1, (SELECT id FROM outhook.endpoint LIMIT 1), 1, {status_due_finished}
         FROM generate_series(1, $2) g"
    )))
    .bind(msg)
    .bind(n as i64)
    .execute(pool)
    .await?;
    Ok(())
}

/// `n` attempts, four per dead delivery (to an owner-less message), spread
/// over ten days 32 to 41 days back, each day its own partition: what a
/// worker with `--retention 30d` prunes.
async fn load_old_attempts(pool: &PgPool, n: usize) -> Result<()> {
    let deliveries = (n / 4) as i64;
    sqlx::query(
        "SELECT outhook.attempt_partitions_ensure((now() - interval '41 days')::date, (now() - interval '32 days')::date)",
    )
    .execute(pool)
    .await?;
    let msg: i64 = sqlx::query_scalar(
        "INSERT INTO outhook.outbox (event_type, payload, owner, created_at)
         VALUES ('old', '{}', 'nobody', now() - interval '41 days') RETURNING id",
    )
    .fetch_one(pool)
    .await?;
    sqlx::query(
        "INSERT INTO outhook.delivery (message_id, endpoint_id, status, attempts, next_attempt_at, finished_at, last_error)
         SELECT $1, (SELECT id FROM outhook.endpoint LIMIT 1), 2, 4, now() - interval '41 days',
                now() - interval '41 days' + (g % 9) * interval '1 day', 'receiver answered 500'
         FROM generate_series(1, $2) g",
    )
    .bind(msg)
    .bind(deliveries)
    .execute(pool)
    .await?;
    sqlx::query(
        "INSERT INTO outhook.attempt (delivery_id, attempt, started_at, duration_ms, url, request_headers, body_sha256,
                                      status_code, response_headers, response_body, outcome, error)
         SELECT d.id, a, d.finished_at - (4 - a) * interval '1 second', 12, 'http://127.0.0.1:9/',
                '{\"content-type\":\"application/json\",\"webhook-id\":\"msg_x\",\"webhook-signature\":\"v1,abc\"}',
                sha256(d.id::text::bytea), 500, '{\"content-length\":\"2\"}', 'no', 'http_status', 'receiver answered 500'
         FROM outhook.delivery d, generate_series(1, 4) a WHERE d.message_id = $1",
    )
    .bind(msg)
    .execute(pool)
    .await?;
    sqlx::query("VACUUM ANALYZE").execute(pool).await?;
    // Write the load out now, not during the measured burst.
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

/// The floors, measured in the same run: the receiver alone under `wrk`,
/// and PostgreSQL alone running the dispatcher's claim and completion
/// statements under `pgbench`.
async fn floors(url: &str) -> Result<Vec<serde_json::Value>> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/floors");
    let receiver = ReceiverProcess::start(0, 0, 0)?;
    let wrk = Command::new("wrk")
        .args([
            "-t2",
            "-c64",
            "-d10s",
            "-s",
            &format!("{dir}/post.lua"),
            &receiver.url(0),
        ])
        .output()
        .context("running wrk (apt-get install wrk)")?;
    let text = String::from_utf8_lossy(&wrk.stdout);
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    drop(receiver);
    let pool = PgPoolOptions::new().max_connections(2).connect(url).await?;
    outhook_dispatcher::migrate(&pool).await?;
    let endpoint: uuid::Uuid = sqlx::query_scalar(
        "INSERT INTO outhook.endpoint (owner, url, scheme) VALUES ('f', 'http://127.0.0.1:9/', 'trr') RETURNING id",
    )
    .fetch_one(&pool)
    .await?;
    let body = payload(1, 1024, None);
    sqlx::query("INSERT INTO outhook.outbox (event_type, payload, endpoint_id) SELECT 't', $2::json, $1 FROM generate_series(1, 400000)")
        .bind(endpoint)
        .bind(&body)
        .execute(&pool)
        .await?;
    sqlx::query("VACUUM ANALYZE").execute(&pool).await?;
    let clock = Instant::now();
    let pgbench = Command::new("pgbench")
        .args([
            "-n",
            "-c",
            "2",
            "-j",
            "2",
            // 2 clients x 700 batches x 256 = 358,400 deliveries: fewer than
            // the 400,000 seeded, so no transaction finds the table empty.
            "-t",
            "700",
            "-f",
            &format!("{dir}/cycle.sql"),
            url,
        ])
        .output()
        .context("running pgbench")?;
    let out = String::from_utf8_lossy(&pgbench.stdout);
    let tps: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(f64::NAN);
    let wall = clock.elapsed().as_secs_f64();
    if !pgbench.status.success() {
        eprintln!("{}", String::from_utf8_lossy(&pgbench.stderr));
    }
    // Count what was really completed rather than trusting tps x 256.
    let completed: i64 = sqlx::query_scalar("SELECT count(*) FROM outhook.attempt")
        .fetch_one(&pool)
        .await?;
    Ok(vec![
        serde_json::json!({"floor": "receiver", "tool": "wrk -t2 -c64 -d10s, 1 KiB POST", "requests_per_second": rps.round()}),
        serde_json::json!({"floor": "postgres", "tool": "pgbench -c2 -j2 -t700 -f benches/floors/cycle.sql (claim + complete 256)", "pgbench_tps": (tps * 10.0).round() / 10.0, "deliveries_completed": completed, "wall_seconds": (wall * 100.0).round() / 100.0, "deliveries_per_second": (completed as f64 / wall).round()}),
    ])
}

fn main() -> Result<()> {
    if std::env::var("OUTHOOK_BENCH_ROLE").as_deref() == Ok("receiver") {
        return receiver_main();
    }
    let wanted: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let server_url = std::env::var("DATABASE_URL").ok().filter(|u| !u.is_empty());
        let cluster = match server_url {
            Some(_) => None,
            None => {
                let fast = std::env::var("OUTHOOK_BENCH_FAST_PG").as_deref() == Ok("1");
                Some(
                    tokio::task::spawn_blocking(move || {
                        if fast {
                            outhook_testkit::postgres::Cluster::start()
                        } else {
                            // PostgreSQL's durable defaults, with statement
                            // statistics for the per-delivery profile.
                            outhook_testkit::postgres::Cluster::start_with(&[
                                "shared_preload_libraries=pg_stat_statements",
                            ])
                        }
                    })
                    .await??,
                )
            }
        };
        if wanted.is_empty() || wanted.iter().any(|w| w == "floors") {
            let url = match (&server_url, &cluster) {
                (Some(_), _) => outhook_testkit::postgres::database_url().await?,
                (None, Some(c)) => c.create_database().await?,
                (None, None) => bail!("no database"),
            };
            for line in floors(&url).await? {
                println!("{line}");
            }
        }
        for s in scenarios() {
            let chosen = wanted.iter().any(|w| {
                w == s.name || w.strip_prefix('=') == Some(s.name) || (!s.named_only && s.name.starts_with(w.as_str()))
            });
            if !wanted.is_empty() && !chosen {
                continue;
            }
            let line = run(&s, server_url.as_deref(), cluster.as_ref()).await?;
            println!("{line}");
        }
        Ok(())
    })
}

/// A scenario's TLS: the receiver's certificate from a test CA, and a
/// client certificate for mutual TLS, in files for the receiver process.
struct TlsParts {
    dir: std::path::PathBuf,
    ca_pem: String,
    client: Option<outhook_testkit::tls::Issued>,
}

impl TlsParts {
    fn new(mutual: bool) -> Result<Self> {
        let ca = outhook_testkit::tls::TestCa::new("Bench receiver CA")?;
        let server = ca.server()?;
        let dir = std::env::temp_dir().join(format!("outhook-bench-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join("server.pem"), &server.cert_pem)?;
        std::fs::write(dir.join("server.key"), &server.key_pem)?;
        let _ = std::fs::remove_file(dir.join("client-ca.pem"));
        let client = if mutual {
            std::fs::write(dir.join("client-ca.pem"), ca.cert_pem())?;
            Some(ca.client("bench-sender")?)
        } else {
            None
        };
        Ok(Self {
            dir,
            ca_pem: ca.cert_pem(),
            client,
        })
    }

    /// The endpoint's connection settings: the CA trusted, and the client
    /// certificate when mutual.
    async fn configure(&self, pool: &PgPool, endpoint: uuid::Uuid) -> Result<()> {
        let conn = outhook_dispatcher::connection::Connection {
            ca_certificates: Some(self.ca_pem.clone()),
            client_certificate: self.client.as_ref().map(|c| c.cert_pem.clone()),
            client_key: self
                .client
                .as_ref()
                .map(|c| outhook_signer::Secret::new(c.key_pem.clone())),
            ..Default::default()
        };
        let stored = conn.to_stored(outhook_dispatcher::secrets::keyring()?)?;
        outhook_dispatcher::db::endpoint_connection::endpoint_connection_put(pool, endpoint, Some(&stored)).await?;
        Ok(())
    }
}

impl Drop for TlsParts {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
