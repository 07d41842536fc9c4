//! `migrate`, `run` (the standalone worker) and `serve` (the API, with the
//! worker unless `--no-worker`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use outhook_dispatcher::http::AddressPolicy;
use outhook_dispatcher::{Dispatcher, RetryPolicy};
use outhook_server::{AppState, ServerConfig};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

/// Where the database is: the global `--database-url` or `DATABASE_URL`.
/// Only commands that use the database ask for it.
#[derive(Clone)]
pub struct DbArgs {
    url: Option<String>,
}

impl DbArgs {
    /// The URL as given, if any.
    pub fn new(url: Option<String>) -> Self {
        Self { url }
    }

    /// A small pool: the dispatcher needs connections for statements, not
    /// for deliveries in flight.
    pub async fn pool(&self, max: u32) -> Result<PgPool> {
        let url = self
            .url
            .as_deref()
            .context("no database given: pass --database-url URL or set DATABASE_URL")?;
        PgPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect_lazy(url)
            .context("invalid DATABASE_URL")
    }
}

/// `outhook migrate`.
pub async fn migrate(db: DbArgs) -> Result<ExitCode> {
    let pool = db.pool(2).await?;
    outhook_dispatcher::migrate(&pool)
        .await
        .context("applying migrations")?;
    outln!("outhook schema is up to date")?;
    Ok(ExitCode::SUCCESS)
}

/// Secrets at rest, checked before a worker or server starts: a database
/// with secrets sealed by a key this process lacks is refused (nothing is
/// changed); plain rows are sealed when a main key is given; without one,
/// a loud warning.
pub async fn secrets_at_start(pool: &PgPool, warn: bool) -> Result<()> {
    let keyring = outhook_dispatcher::secrets::keyring()?;
    let inventory = outhook_dispatcher::secrets::check(pool, keyring).await?;
    match keyring.current_id() {
        // A worker in this process says it itself.
        None if !warn => {}
        None => {
            tracing::warn!(
                plain = inventory.plain,
                "SECRETS ARE STORED IN PLAIN TEXT: endpoint secrets and RSA private keys are readable by anyone \
                 who can read the database or its backups. Set OUTHOOK_MAIN_KEY (outhook secrets new-main-key) \
                 to seal them with AES-256-GCM."
            );
        }
        Some(id) => {
            let resealed = outhook_dispatcher::secrets::reseal_all(pool, keyring, 500).await?;
            tracing::info!(main_key = id, resealed, "secrets are sealed at rest");
        }
    }
    Ok(())
}

/// The worker's settings, shared by `outhook run` and `outhook serve`.
/// Durations take humane forms: `30s`, `5m`, `1h`.
#[derive(Args)]
pub struct WorkerArgs {
    /// Attempts in flight at most.
    #[arg(long, env = "OUTHOOK_CONCURRENCY", default_value_t = 256)]
    concurrency: usize,
    /// Deliveries claimed per round trip at most.
    #[arg(long, env = "OUTHOOK_BATCH_SIZE", default_value_t = 256)]
    batch_size: usize,
    /// How long a claim holds a delivery (default: request timeout + 30s).
    #[arg(long, env = "OUTHOOK_LEASE", value_parser = humantime::parse_duration)]
    lease: Option<Duration>,
    /// Time for a whole attempt.
    #[arg(long, env = "OUTHOOK_REQUEST_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// Time to connect.
    #[arg(long, env = "OUTHOOK_CONNECT_TIMEOUT", default_value = "5s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// How often to look for due deliveries without a notification.
    #[arg(long, env = "OUTHOOK_POLL_INTERVAL", default_value = "1s", value_parser = humantime::parse_duration)]
    poll_interval: Duration,
    /// How long endpoint settings and secrets are reused before being re-read.
    #[arg(long, env = "OUTHOOK_ENDPOINT_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    endpoint_cache_ttl: Duration,
    /// Do not LISTEN (poll only; needed behind PgBouncer in transaction mode).
    #[arg(long, env = "OUTHOOK_NO_LISTEN")]
    no_listen: bool,
    /// Make each claim wait for its commit to reach the disk. By default
    /// claims commit asynchronously on their own connection (half the
    /// round trip); a PostgreSQL crash may then forget the last claims,
    /// whose deliveries are attempted again (nothing is lost, but the log
    /// misses the forgotten attempt).
    #[arg(long, env = "OUTHOOK_DURABLE_CLAIMS")]
    durable_claims: bool,
    /// Claimed deliveries per second past which the worker, if producers
    /// queue on the NOTIFY commit lock (four or more on average), polls
    /// instead of waiting for notifications, so that producers skip
    /// `pg_notify`; `off`: never.
    #[arg(long, env = "OUTHOOK_BUSY_POLLING", default_value = "1000", value_parser = parse_busy_polling)]
    busy_polling: BusyPolling,
    /// Response-body bytes read and stored per attempt (at most 1 MiB).
    #[arg(long, env = "OUTHOOK_MAX_RESPONSE_BYTES", default_value_t = 16 * 1024,
          value_parser = clap::value_parser!(u32).range(0..=1024 * 1024))]
    max_response_bytes: u32,
    /// Request bodies larger than this are dead-lettered unsent; a payload
    /// larger than this is never loaded from the database.
    #[arg(long, env = "OUTHOOK_MAX_REQUEST_BYTES", default_value_t = 4 * 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1..=256 * 1024 * 1024))]
    max_request_bytes: u32,
    /// Payload bytes held in memory at once across claims and attempts in
    /// flight (at least --max-request-bytes).
    #[arg(long, env = "OUTHOOK_PAYLOAD_BUDGET", default_value_t = 64 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    payload_budget: u64,
    /// Response-body bytes held in memory at once across attempts in
    /// flight and results not yet written (at least --max-response-bytes).
    #[arg(long, env = "OUTHOOK_RESPONSE_BUDGET", default_value_t = 32 * 1024 * 1024,
          value_parser = clap::value_parser!(u64).range(1..=1 << 40))]
    response_budget: u64,
    /// Leases a delivery may lose (its worker died holding it) before it is
    /// written off as a dead letter, unsent.
    #[arg(long, env = "OUTHOOK_MAX_LEASE_LOSSES", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..))]
    max_lease_losses: u16,
    /// Delays between attempts, replacing the default (Svix) schedule, e.g. `1s,5s,1m`.
    #[arg(long, value_delimiter = ',', value_parser = humantime::parse_duration)]
    retry_schedule: Vec<Duration>,
    /// Jitter fraction applied to each delay.
    #[arg(long, default_value_t = 0.2)]
    retry_jitter: f64,
    /// The worker's database connections at most.
    #[arg(long, default_value_t = 8)]
    pool_size: u32,
    /// Disable an endpoint whose attempts have all failed for this long (its
    /// deliveries are held until it is enabled); an endpoint's own setting
    /// wins; 0s: never.
    #[arg(long, env = "OUTHOOK_AUTO_DISABLE_AFTER", default_value = "5d", value_parser = humantime::parse_duration)]
    auto_disable_after: Duration,
    /// Prune what is older than this (e.g. 30d), once an hour: whole days of
    /// the attempt log are dropped, then finished deliveries and messages
    /// deleted in batches. Default: keep everything.
    #[arg(long, env = "OUTHOOK_RETENTION", value_parser = humantime::parse_duration)]
    retention: Option<Duration>,
    /// How often the worker checks for failing endpoints and sweeps held
    /// deliveries past the retry age limit.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    maintenance_interval: Duration,
}

/// `--busy-polling`: a rate, or none.
#[derive(Debug, Clone, Copy)]
struct BusyPolling(Option<u32>);

fn parse_busy_polling(s: &str) -> std::result::Result<BusyPolling, String> {
    match s.trim() {
        "off" | "0" => Ok(BusyPolling(None)),
        n => n
            .parse::<u32>()
            .map(|n| BusyPolling(Some(n)))
            .map_err(|_| format!("expected deliveries per second or `off`, got {n:?}")),
    }
}

impl WorkerArgs {
    /// The dispatcher these settings describe.
    fn dispatcher(&self, pool: PgPool, policy: &AddressPolicy) -> Result<Dispatcher> {
        let mut retry = if self.retry_schedule.is_empty() {
            RetryPolicy::default()
        } else {
            RetryPolicy::schedule(self.retry_schedule.clone())
        };
        retry = retry.with_jitter(self.retry_jitter);
        let mut builder = Dispatcher::builder(pool)
            .concurrency(self.concurrency)
            .batch_size(self.batch_size)
            .request_timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .poll_interval(self.poll_interval)
            .endpoint_cache_ttl(self.endpoint_cache_ttl)
            .listen(!self.no_listen)
            .durable_claims(self.durable_claims)
            .busy_polling(self.busy_polling.0)
            .https_only(policy.https_only)
            .max_response_bytes(self.max_response_bytes as usize)
            .max_request_bytes(self.max_request_bytes as usize)
            .payload_budget(usize::try_from(self.payload_budget).unwrap_or(usize::MAX))
            .response_budget(usize::try_from(self.response_budget).unwrap_or(usize::MAX))
            .max_lease_losses(self.max_lease_losses)
            .auto_disable_after(self.auto_disable_after)
            .maintenance_interval(self.maintenance_interval)
            .retention(self.retention)
            .retry_policy(retry);
        if let Some(lease) = self.lease {
            builder = builder.lease(lease);
        }
        for net in &policy.allow {
            builder = builder.allow_network(*net);
        }
        Ok(builder.build()?)
    }
}

/// `outhook run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    worker: WorkerArgs,
    /// Serve Prometheus metrics (`/metrics`) and `/healthz` on this address.
    #[arg(long, env = "OUTHOOK_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
}

/// `outhook run`: the worker, until SIGINT or SIGTERM.
pub async fn run(db: DbArgs, policy: AddressPolicy, args: RunArgs) -> Result<ExitCode> {
    let pool = db.pool(args.worker.pool_size).await?;
    secrets_at_start(&pool, false).await?;
    let dispatcher = args.worker.dispatcher(pool.clone(), &policy)?;
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = args.metrics_addr {
        let handle = outhook_server::metrics::install()?;
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("binding the metrics address {addr}"))?;
        let render = handle.clone();
        let app = axum::Router::new()
            .route(
                "/metrics",
                axum::routing::get(move || {
                    let body = render.render();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            body,
                        )
                    }
                }),
            )
            .route("/healthz", axum::routing::get(|| async { "ok" }));
        let until = stop.clone();
        tasks.spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(until.cancelled_owned())
                .await;
        });
        tasks.spawn(outhook_server::metrics::maintain(
            pool.clone(),
            handle,
            Duration::from_secs(5),
            stop.clone().cancelled_owned(),
        ));
        tracing::info!(%addr, "metrics at /metrics");
    }
    tracing::info!(
        concurrency = args.worker.concurrency,
        batch = args.worker.batch_size,
        "outhook worker started"
    );
    let summary = dispatcher.run(shutdown_signal()).await?;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!(?summary, "outhook worker stopped");
    Ok(ExitCode::SUCCESS)
}

/// `outhook serve`.
#[derive(Args)]
pub struct ServeArgs {
    /// Where the API listens.
    #[arg(long, env = "OUTHOOK_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Serve the API only; run workers apart with `outhook run`.
    #[arg(long)]
    no_worker: bool,
    /// Request bodies larger than this are refused (413).
    #[arg(long, env = "OUTHOOK_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    max_body_bytes: usize,
    /// How long a checked token is trusted before it is checked again (a
    /// revocation takes effect within this time).
    #[arg(long, env = "OUTHOOK_TOKEN_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    token_cache_ttl: Duration,
    /// The API's database connections at most (the worker has its own).
    #[arg(long, env = "OUTHOOK_API_POOL_SIZE", default_value_t = 16)]
    api_pool_size: u32,
    /// Where customers reach this server (e.g. `https://hooks.example.com`):
    /// portal links are built on it, and https makes the portal's cookies
    /// Secure. Unset, links use the request's Host.
    #[arg(long, env = "OUTHOOK_PUBLIC_URL")]
    public_url: Option<String>,
    /// An origin that may show the portal in an iframe (CSP frame-ancestors);
    /// repeat or separate with commas. Cross-site iframes also need https.
    #[arg(
        long = "portal-frame-ancestor",
        env = "OUTHOOK_PORTAL_FRAME_ANCESTORS",
        value_delimiter = ','
    )]
    portal_frame_ancestors: Vec<String>,
    /// How long a portal session lasts after signing in or opening a link.
    #[arg(long, env = "OUTHOOK_PORTAL_SESSION_TTL", default_value = "1h", value_parser = humantime::parse_duration)]
    portal_session_ttl: Duration,
    /// The most endpoints one owner may have when it adds them itself (in
    /// the portal, or with an owner token); admins are not limited.
    #[arg(long, env = "OUTHOOK_MAX_ENDPOINTS_PER_OWNER", default_value_t = 20,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    max_endpoints_per_owner: u32,
    /// The signing scheme the portal offers first to a customer adding an
    /// endpoint (they may pick another).
    #[arg(long, env = "OUTHOOK_PORTAL_DEFAULT_SCHEME", default_value = "standard-webhooks")]
    portal_default_scheme: String,
    /// Check every message sent through the API against its event type's
    /// JSON Schema, when it has one (without this, only types marked
    /// `validate` are checked).
    #[arg(long, env = "OUTHOOK_VALIDATE_EVENT_SCHEMAS")]
    validate_event_schemas: bool,
    /// The portal's name, in its header and page titles.
    #[arg(long, env = "OUTHOOK_PORTAL_TITLE", default_value = "Webhooks")]
    portal_title: String,
    /// A logo for the portal's header: a PNG, JPEG or SVG file of at most
    /// 256 KiB, read at start and served by the portal itself.
    #[arg(long, env = "OUTHOOK_PORTAL_LOGO")]
    portal_logo: Option<std::path::PathBuf>,
    /// The portal's primary colour, `#rrggbb` (buttons; links where it reads on white).
    #[arg(long, env = "OUTHOOK_PORTAL_PRIMARY_COLOR")]
    portal_primary_color: Option<String>,
    /// Where the portal's customers ask for help: an https:// or mailto: address.
    #[arg(long, env = "OUTHOOK_PORTAL_SUPPORT_URL")]
    portal_support_url: Option<String>,
    #[command(flatten)]
    worker: WorkerArgs,
}

/// `outhook serve`: the HTTP API and, unless `--no-worker`, the worker, in
/// one process, until SIGINT or SIGTERM.
pub async fn serve(db: DbArgs, policy: AddressPolicy, args: ServeArgs) -> Result<ExitCode> {
    for origin in &args.portal_frame_ancestors {
        let ok = !origin.is_empty()
            && origin
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, ':' | '/' | '.' | '-' | '*' | '[' | ']'));
        if !ok {
            anyhow::bail!("--portal-frame-ancestor {origin:?}: give an origin such as https://app.example.com");
        }
    }
    if args.portal_default_scheme == "hmac" || outhook_signer::Scheme::by_name(&args.portal_default_scheme).is_err() {
        anyhow::bail!(
            "--portal-default-scheme {:?}: use one of {}",
            args.portal_default_scheme,
            outhook_signer::Scheme::NAMES.join(", ")
        );
    }
    let brand = outhook_server::Brand::new(
        &args.portal_title,
        args.portal_logo.as_deref(),
        args.portal_primary_color.as_deref(),
        args.portal_support_url.as_deref(),
    )?;
    let api_pool = db.pool(args.api_pool_size).await?;
    secrets_at_start(&api_pool, args.no_worker).await?;
    let handle = outhook_server::metrics::install()?;
    let state = AppState::new(
        api_pool.clone(),
        ServerConfig {
            addresses: policy.clone(),
            max_body_bytes: args.max_body_bytes,
            token_cache_ttl: args.token_cache_ttl,
            public_url: args.public_url.clone(),
            portal_frame_ancestors: args.portal_frame_ancestors.clone(),
            portal_session_ttl: args.portal_session_ttl,
            max_endpoints_per_owner: args.max_endpoints_per_owner,
            portal_default_scheme: args.portal_default_scheme.clone(),
            portal_brand: std::sync::Arc::new(brand),
            validate_event_schemas: args.validate_event_schemas,
        },
        Some(handle.clone()),
    );
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    let stop = CancellationToken::new();
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(outhook_server::metrics::maintain(
        api_pool.clone(),
        handle,
        Duration::from_secs(5),
        stop.clone().cancelled_owned(),
    ));
    let prune_pool = api_pool.clone();
    let prune_stop = stop.clone();
    tasks.spawn(async move {
        // Idempotency keys are kept a day.
        let mut tick = tokio::time::interval(Duration::from_secs(600));
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = prune_stop.cancelled() => return,
            }
            if let Err(e) =
                outhook_dispatcher::db::idempotency::idempotency_prune(&prune_pool, Duration::from_secs(86_400)).await
            {
                tracing::debug!(error = %e, "idempotency keys not pruned");
            }
        }
    });
    if !args.no_worker {
        let worker_pool = db.pool(args.worker.pool_size).await?;
        let dispatcher = args.worker.dispatcher(worker_pool, &policy)?;
        let until = stop.clone();
        tasks.spawn(async move {
            match dispatcher.run(until.cancelled_owned()).await {
                Ok(summary) => tracing::info!(?summary, "worker stopped"),
                Err(e) => tracing::error!(error = %e, "worker failed"),
            }
        });
    }
    tracing::info!(listen = %args.listen, worker = !args.no_worker, "outhook serve started");
    let app = outhook_server::router(state);
    let until = stop.clone();
    let server = axum::serve(listener, app).with_graceful_shutdown(async move {
        shutdown_signal().await;
        until.cancel();
    });
    server.await.context("serving the API")?;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    tracing::info!("outhook serve stopped");
    Ok(ExitCode::SUCCESS)
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod tests {
    use super::parse_busy_polling;

    #[test]
    fn busy_polling_takes_a_rate_or_off() {
        assert_eq!(parse_busy_polling("1000").map(|b| b.0), Ok(Some(1000)));
        assert_eq!(parse_busy_polling("off").map(|b| b.0), Ok(None));
        assert_eq!(parse_busy_polling("0").map(|b| b.0), Ok(None));
        for bad in ["fast", "-5", "1.5", ""] {
            assert!(parse_busy_polling(bad).is_err(), "{bad:?} was taken");
        }
    }
}
