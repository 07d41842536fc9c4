//! `migrate` and `run`: the standalone worker.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use outhook_dispatcher::{Dispatcher, IpNet, RetryPolicy};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

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

/// `outhook run` settings. Durations take humane forms: `30s`, `5m`, `1h`.
#[derive(Args)]
pub struct RunArgs {
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
    /// Allow deliveries to this private network (CIDR); repeat as needed.
    #[arg(long = "allow-network", env = "OUTHOOK_ALLOW_NETWORKS", value_delimiter = ',')]
    allow: Vec<IpNet>,
    /// Refuse http:// endpoints.
    #[arg(long, env = "OUTHOOK_HTTPS_ONLY")]
    https_only: bool,
    /// Response-body bytes read and stored per attempt.
    #[arg(long, default_value_t = 16 * 1024)]
    max_response_bytes: usize,
    /// Delays between attempts, replacing the default (Svix) schedule, e.g. `1s,5s,1m`.
    #[arg(long, value_delimiter = ',', value_parser = humantime::parse_duration)]
    retry_schedule: Vec<Duration>,
    /// Jitter fraction applied to each delay.
    #[arg(long, default_value_t = 0.2)]
    retry_jitter: f64,
    /// Database connections at most.
    #[arg(long, default_value_t = 8)]
    pool_size: u32,
}

/// `outhook run`: the worker, until SIGINT or SIGTERM.
pub async fn run(db: DbArgs, args: RunArgs) -> Result<ExitCode> {
    let pool = db.pool(args.pool_size).await?;
    let mut retry = if args.retry_schedule.is_empty() {
        RetryPolicy::default()
    } else {
        RetryPolicy::schedule(args.retry_schedule.clone())
    };
    retry = retry.with_jitter(args.retry_jitter);
    let mut builder = Dispatcher::builder(pool)
        .concurrency(args.concurrency)
        .batch_size(args.batch_size)
        .request_timeout(args.request_timeout)
        .connect_timeout(args.connect_timeout)
        .poll_interval(args.poll_interval)
        .endpoint_cache_ttl(args.endpoint_cache_ttl)
        .listen(!args.no_listen)
        .https_only(args.https_only)
        .max_response_bytes(args.max_response_bytes)
        .retry_policy(retry);
    if let Some(lease) = args.lease {
        builder = builder.lease(lease);
    }
    for net in args.allow {
        builder = builder.allow_network(net);
    }
    let dispatcher = builder.build()?;
    tracing::info!(
        concurrency = args.concurrency,
        batch = args.batch_size,
        "outhook worker started"
    );
    let summary = dispatcher.run(shutdown_signal()).await?;
    tracing::info!(?summary, "outhook worker stopped");
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
