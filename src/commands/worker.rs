//! `migrate`, `run` (the standalone worker) and `serve` (the API, with the
//! worker unless `--no-worker`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use outhook_dispatcher::connection::ProxyUrl;
use outhook_dispatcher::http::AddressPolicy;
use outhook_dispatcher::{Dispatcher, MigrationState, Pooling, RetryPolicy};
use outhook_server::{AppState, ServerConfig};
use sqlx::PgPool;
use sqlx::postgres::PgConnectOptions;
use tokio_util::sync::CancellationToken;

/// Where the database is: the global `--database-url` or `DATABASE_URL`.
/// Only commands that use the database ask for it.
#[derive(Clone)]
pub struct DbArgs {
    url: Option<String>,
    pooling: Pooling,
}

impl DbArgs {
    /// The URL as given, if any, and what stands in front of the database.
    pub fn new(url: Option<String>, pooling: Pooling) -> Self {
        Self { url, pooling }
    }

    /// Whether a pooler in transaction mode stands in front of the database.
    pub fn pooled(&self) -> bool {
        self.pooling == Pooling::Transaction
    }

    /// A small pool: the dispatcher needs connections for statements, not
    /// for deliveries in flight.
    pub async fn pool(&self, max: u32) -> Result<PgPool> {
        let url = self
            .url
            .as_deref()
            .context("no database given: pass --database-url URL or set DATABASE_URL")?;
        let options: PgConnectOptions = url.parse().context(
            "--database-url (DATABASE_URL) is not a PostgreSQL URL: give postgres://user@host:port/database",
        )?;
        Ok(outhook_dispatcher::pooler::pool_options(self.pooling)
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(10))
            .test_before_acquire(false)
            .connect_lazy_with(outhook_dispatcher::pooler::connect_options(options, self.pooling)))
    }

    /// [`Self::pool`], once the database has answered and its schema is
    /// current (see [`Self::ready`]).
    pub async fn connect(&self, max: u32) -> Result<PgPool> {
        let pool = self.pool(max).await?;
        self.ready(&pool, true).await?;
        Ok(pool)
    }

    /// Connects once, at once, and says plainly why that failed: the
    /// server refused or did not answer, the user or password was wrong,
    /// the database does not exist, TLS failed; each with the host and
    /// port, never the password. With `schema`, the database must also be
    /// migrated by this version: missing or pending migrations say to run
    /// `outhook migrate`, newer ones to upgrade.
    pub async fn ready(&self, pool: &PgPool, schema: bool) -> Result<()> {
        let options = pool.connect_options();
        let at = format!("{}:{}", options.get_host(), options.get_port());
        let user = options.get_username().to_owned();
        let database = options.get_database().unwrap_or(&user).to_owned();
        let connected = tokio::time::timeout(
            Duration::from_secs(10),
            <sqlx::PgConnection as sqlx::Connection>::connect_with(&*options),
        )
        .await;
        let conn = match connected {
            Err(_) => anyhow::bail!("PostgreSQL at {at} did not answer within 10 s"),
            Ok(Err(e)) => anyhow::bail!("{}", explain_connect_error(&e, &at, &user, &database)),
            Ok(Ok(conn)) => conn,
        };
        drop(conn);
        if schema {
            let state = outhook_dispatcher::migration_state(pool)
                .await
                .with_context(|| format!("reading the migrations applied to `{database}` at {at}"))?;
            match state {
                // Migrations expand the schema and contract it a release
                // later: a worker one release behind keeps working.
                MigrationState::Newer(_) => {
                    if let Some(advice) = state.advice() {
                        tracing::warn!(
                            "{advice} (database `{database}` at {at}); running on, as the schema stays \
                                        compatible with the previous release"
                        );
                    }
                }
                _ => {
                    if let Some(advice) = state.advice() {
                        anyhow::bail!("{advice} (database `{database}` at {at})");
                    }
                }
            }
        }
        Ok(())
    }
}

/// A failed connection, in one sentence with the host and port (never the
/// password).
fn explain_connect_error(e: &sqlx::Error, at: &str, user: &str, database: &str) -> String {
    match e {
        sqlx::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            format!("cannot reach PostgreSQL at {at}: connection refused (is it running, on that port?)")
        }
        sqlx::Error::Io(io) => format!("cannot reach PostgreSQL at {at}: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS to PostgreSQL at {at} failed: {tls}"),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01") => {
                format!("PostgreSQL at {at} refused user `{user}`: password authentication failed")
            }
            Some("28000") => format!("PostgreSQL at {at} refused user `{user}`: {}", db.message()),
            Some("3D000") => format!("database `{database}` does not exist on PostgreSQL at {at}"),
            _ => format!("PostgreSQL at {at} refused the connection: {}", db.message()),
        },
        other => format!("connecting to PostgreSQL at {at} failed: {other}"),
    }
}

/// `outhook migrate`, or with `check` only whether it has work to do.
pub async fn migrate(db: DbArgs, check: bool) -> Result<ExitCode> {
    let pool = db.pool(2).await?;
    db.ready(&pool, false).await?;
    if db.pooled() && !check {
        // The migrator holds a session's advisory lock, which a pooler in
        // transaction mode cannot keep.
        anyhow::bail!(
            "migrations need a direct connection (or a pooler in session mode): run `outhook migrate` \
             against PostgreSQL itself, without --pooler transaction"
        );
    }
    if check {
        let state = outhook_dispatcher::migration_state(&pool)
            .await
            .context("reading the applied migrations")?;
        return Ok(match state {
            MigrationState::Current => {
                outln!("outhook schema is up to date")?;
                ExitCode::SUCCESS
            }
            MigrationState::Missing | MigrationState::Pending(_) => {
                outln!("{}", state.advice().unwrap_or_default())?;
                ExitCode::from(1)
            }
            _ => {
                outln!("{}", state.advice().unwrap_or_default())?;
                ExitCode::from(3)
            }
        });
    }
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
    /// Attempts in flight at most (1 to 100000).
    #[arg(long, env = "OUTHOOK_CONCURRENCY", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    concurrency: u32,
    /// Deliveries claimed per round trip at most (1 to 10000).
    #[arg(long, env = "OUTHOOK_BATCH_SIZE", default_value_t = 256,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    batch_size: u32,
    /// How long a claim holds a delivery (default: request timeout + 30s;
    /// longer than the request timeout, at most 7 days).
    #[arg(long, env = "OUTHOOK_LEASE", value_parser = duration_within(MILLI, 7 * DAY))]
    lease: Option<Duration>,
    /// Time for a whole attempt (at most 1 hour).
    #[arg(long, env = "OUTHOOK_REQUEST_TIMEOUT", default_value = "30s", value_parser = duration_within(MILLI, HOUR))]
    request_timeout: Duration,
    /// Time to connect (at most 10 minutes).
    #[arg(long, env = "OUTHOOK_CONNECT_TIMEOUT", default_value = "5s",
          value_parser = duration_within(MILLI, 10 * MINUTE))]
    connect_timeout: Duration,
    /// Send every delivery through this proxy (http://, https:// for HTTP
    /// CONNECT; socks5://, socks5h://), unless an endpoint names its own or
    /// none. The proxy's environment variables are never read.
    #[arg(long, env = "OUTHOOK_PROXY", hide_env_values = true, value_parser = parse_proxy)]
    proxy: Option<String>,
    /// How often to look for due deliveries without a notification (1ms to 1 hour).
    #[arg(long, env = "OUTHOOK_POLL_INTERVAL", default_value = "1s", value_parser = duration_within(MILLI, HOUR))]
    poll_interval: Duration,
    /// How long endpoint settings and secrets are reused before being
    /// re-read (0s to 1 hour).
    #[arg(long, env = "OUTHOOK_ENDPOINT_CACHE_TTL", default_value = "1s",
          value_parser = duration_within(Duration::ZERO, HOUR))]
    endpoint_cache_ttl: Duration,
    /// Do not LISTEN (poll only; implied by --pooler transaction).
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
    /// written off as a dead letter, unsent (1 to 1000).
    #[arg(long, env = "OUTHOOK_MAX_LEASE_LOSSES", default_value_t = 5,
          value_parser = clap::value_parser!(u16).range(1..=1000))]
    max_lease_losses: u16,
    /// Delays between attempts, replacing the default (Svix) schedule, e.g.
    /// `1s,5s,1m` (each 1ms to 30 days).
    #[arg(long, env = "OUTHOOK_RETRY_SCHEDULE", value_delimiter = ',',
          value_parser = duration_within(MILLI, 30 * DAY))]
    retry_schedule: Vec<Duration>,
    /// Jitter fraction applied to each delay (0 to 1).
    #[arg(long, env = "OUTHOOK_RETRY_JITTER", default_value = "0.2", value_parser = parse_fraction)]
    retry_jitter: f64,
    /// The worker's database connections at most (1 to 1000).
    #[arg(long, env = "OUTHOOK_POOL_SIZE", default_value_t = 8,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pool_size: u32,
    /// Disable an endpoint whose attempts have all failed for this long (its
    /// deliveries are held until it is enabled); an endpoint's own setting
    /// wins; 0s: never (at most 10 years).
    #[arg(long, env = "OUTHOOK_AUTO_DISABLE_AFTER", default_value = "5d",
          value_parser = duration_within(Duration::ZERO, 3650 * DAY))]
    auto_disable_after: Duration,
    /// Prune what is older than this (e.g. 30d), once an hour: whole days of
    /// the attempt log are dropped, then finished deliveries and messages
    /// deleted in batches (1 hour to 100 years). Default: keep everything.
    #[arg(long, env = "OUTHOOK_RETENTION", value_parser = duration_within(HOUR, 36_500 * DAY))]
    retention: Option<Duration>,
    /// How often the worker checks for failing endpoints and sweeps held
    /// deliveries past the retry age limit (100ms to 1 day).
    #[arg(long, env = "OUTHOOK_MAINTENANCE_INTERVAL", default_value = "30s",
          value_parser = duration_within(100 * MILLI, DAY))]
    maintenance_interval: Duration,
}

const MILLI: Duration = Duration::from_millis(1);
const MINUTE: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);
const DAY: Duration = Duration::from_secs(86_400);

/// A parser for a duration setting: humane forms (`30s`, `5m`, `1h`),
/// within `min..=max`, so that a zero or absurd value is refused at start
/// with the setting's name (clap adds it) and the range.
pub(crate) fn duration_within(
    min: Duration,
    max: Duration,
) -> impl Fn(&str) -> std::result::Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text: &str| {
        let d = humantime::parse_duration(text.trim()).map_err(|e| format!("{e} (try 30s, 5m, 1h)"))?;
        if d < min || d > max {
            return Err(format!(
                "{} is outside {} to {}",
                humantime::format_duration(d),
                humantime::format_duration(min),
                humantime::format_duration(max)
            ));
        }
        Ok(d)
    }
}

/// Where customers reach the server: an http(s) URL with a host, and no
/// query or fragment.
fn parse_public_url(text: &str) -> std::result::Result<String, String> {
    let url = url::Url::parse(text.trim()).map_err(|e| format!("{e}: give a URL such as https://hooks.example.com"))?;
    if !matches!(url.scheme(), "http" | "https")
        || url.host().is_none()
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err("give an http(s) URL with a host and no query, such as https://hooks.example.com".into());
    }
    Ok(text.trim().to_owned())
}

/// A fraction from 0 to 1 (NaN and infinities refused).
fn parse_fraction(text: &str) -> std::result::Result<f64, String> {
    let x: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a number from 0 to 1"))?;
    if !x.is_finite() || !(0.0..=1.0).contains(&x) {
        return Err(format!("`{text}` is not a number from 0 to 1"));
    }
    Ok(x)
}

/// `--busy-polling`: a rate, or none.
#[derive(Debug, Clone, Copy)]
struct BusyPolling(Option<u32>);

fn parse_busy_polling(s: &str) -> std::result::Result<BusyPolling, String> {
    match s.trim() {
        "off" | "0" => Ok(BusyPolling(None)),
        n => match n.parse::<u32>() {
            Ok(n) if n <= 10_000_000 => Ok(BusyPolling(Some(n))),
            _ => Err(format!(
                "expected deliveries per second (1 to 10000000) or `off`, got {n:?}"
            )),
        },
    }
}

fn parse_proxy(text: &str) -> std::result::Result<String, String> {
    ProxyUrl::parse(text).map(|_| text.to_owned()).map_err(|e| e.reason)
}

impl WorkerArgs {
    /// The dispatcher these settings describe.
    fn dispatcher(&self, pool: PgPool, policy: &AddressPolicy, pooling: Pooling) -> Result<Dispatcher> {
        let mut retry = if self.retry_schedule.is_empty() {
            RetryPolicy::default()
        } else {
            RetryPolicy::schedule(self.retry_schedule.clone())
        };
        retry = retry.with_jitter(self.retry_jitter);
        let mut builder = Dispatcher::builder(pool)
            .concurrency(self.concurrency as usize)
            .batch_size(self.batch_size as usize)
            .request_timeout(self.request_timeout)
            .connect_timeout(self.connect_timeout)
            .poll_interval(self.poll_interval)
            .endpoint_cache_ttl(self.endpoint_cache_ttl)
            .listen(!self.no_listen)
            .pooling(pooling)
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
        if let Some(proxy) = &self.proxy {
            builder = builder.proxy(ProxyUrl::parse(proxy).map_err(|e| anyhow::anyhow!("--proxy: {}", e.reason))?);
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
    // Settings first: a bad one is reported before the database is asked.
    let dispatcher = args.worker.dispatcher(pool.clone(), &policy, db.pooling)?;
    db.ready(&pool, true).await?;
    secrets_at_start(&pool, false).await?;
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
    #[arg(long, env = "OUTHOOK_NO_WORKER")]
    no_worker: bool,
    /// Request bodies larger than this are refused (413); 1 to 268435456.
    #[arg(long, env = "OUTHOOK_MAX_BODY_BYTES", default_value_t = 1024 * 1024,
          value_parser = clap::value_parser!(u32).range(1..=256 * 1024 * 1024))]
    max_body_bytes: u32,
    /// How long a checked token is trusted before it is checked again (a
    /// revocation takes effect within this time; 0s to 1 hour).
    #[arg(long, env = "OUTHOOK_TOKEN_CACHE_TTL", default_value = "1s",
          value_parser = duration_within(Duration::ZERO, HOUR))]
    token_cache_ttl: Duration,
    /// The API's database connections at most, the worker has its own (1 to 1000).
    #[arg(long, env = "OUTHOOK_API_POOL_SIZE", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    api_pool_size: u32,
    /// Where customers reach this server (e.g. `https://hooks.example.com`):
    /// portal links are built on it, and https makes the portal's cookies
    /// Secure. Unset, links use the request's Host.
    #[arg(long, env = "OUTHOOK_PUBLIC_URL", value_parser = parse_public_url)]
    public_url: Option<String>,
    /// An origin that may show the portal in an iframe (CSP frame-ancestors);
    /// repeat or separate with commas. Cross-site iframes also need https.
    #[arg(
        long = "portal-frame-ancestor",
        env = "OUTHOOK_PORTAL_FRAME_ANCESTORS",
        value_delimiter = ','
    )]
    portal_frame_ancestors: Vec<String>,
    /// How long a portal session lasts after signing in or opening a link
    /// (1 minute to 30 days).
    #[arg(long, env = "OUTHOOK_PORTAL_SESSION_TTL", default_value = "1h",
          value_parser = duration_within(MINUTE, 30 * DAY))]
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
    // The worker's settings are checked before the database is asked.
    let worker = if args.no_worker {
        None
    } else {
        let worker_pool = db.pool(args.worker.pool_size).await?;
        Some(args.worker.dispatcher(worker_pool, &policy, db.pooling)?)
    };
    let api_pool = db.pool(args.api_pool_size).await?;
    db.ready(&api_pool, true).await?;
    secrets_at_start(&api_pool, args.no_worker).await?;
    let handle = outhook_server::metrics::install()?;
    let state = AppState::new(
        api_pool.clone(),
        ServerConfig {
            addresses: policy.clone(),
            max_body_bytes: args.max_body_bytes as usize,
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
    if let Some(dispatcher) = worker {
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
