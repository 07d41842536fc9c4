//! Build a dispatcher, then run it inside the host's tokio runtime until a
//! shutdown future resolves.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use sqlx::PgPool;
use tokio::sync::{Notify, Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use crate::claim::Claimer;
use crate::db::delivery::delivery_release_many;
use crate::deliver::Context;
use crate::endpoint::EndpointCache;
use crate::error::{Error, Result};
use crate::http::{HttpSettings, build_client};
use crate::pooler::Pooling;
use crate::retry::RetryPolicy;
use crate::stats::{Stats, Summary};

/// Configures a [`Dispatcher`]. Start with [`Dispatcher::builder`].
#[derive(Debug, Clone)]
pub struct DispatcherBuilder {
    pool: PgPool,
    concurrency: usize,
    batch_size: usize,
    lease: Option<Duration>,
    poll_interval: Duration,
    listen: bool,
    endpoint_cache_ttl: Duration,
    shutdown_grace: Option<Duration>,
    http: HttpSettings,
    retry: RetryPolicy,
    auto_disable_after: Duration,
    maintenance_interval: Duration,
    retention: Option<Duration>,
    durable_claims: bool,
    pooling: Pooling,
    busy_polling: Option<u32>,
    busy_polling_on_rate_alone: bool,
    payload_budget: usize,
    response_budget: usize,
    max_lease_losses: u16,
}

/// The most response-body bytes an attempt may keep (`max_response_bytes`):
/// every attempt in flight, queued for the completer or in its batch may
/// hold that much, so the cap bounds memory only if it is small.
pub const MAX_RESPONSE_BYTES_CEILING: usize = 1024 * 1024;

/// The most request-body bytes a delivery may have (`max_request_bytes`).
pub const MAX_REQUEST_BYTES_CEILING: usize = 256 * 1024 * 1024;

impl DispatcherBuilder {
    /// Payload bytes the worker holds in memory at once, across every claim
    /// and attempt in flight (default 64 MiB; at least `max_request_bytes`).
    /// A claim takes rows while their payloads fit in what is left, so a
    /// backlog of large payloads is sent a few at a time instead of being
    /// loaded whole: the worker's memory follows its settings, not the data.
    pub fn payload_budget(mut self, bytes: usize) -> Self {
        self.payload_budget = bytes;
        self
    }

    /// Response-body bytes the worker keeps at once, across attempts in
    /// flight and results not yet written (default 32 MiB; at least
    /// `max_response_bytes`). Each attempt reserves `max_response_bytes`
    /// before it is sent and gives back what its body did not use; a claim
    /// takes no more rows than there is room for.
    pub fn response_budget(mut self, bytes: usize) -> Self {
        self.response_budget = bytes;
        self
    }

    /// Leases a delivery may lose (its worker died holding it) before the
    /// next claim writes it off as a dead letter, without loading its
    /// payload (default 5; at least 1).
    pub fn max_lease_losses(mut self, n: u16) -> Self {
        self.max_lease_losses = n;
        self
    }

    /// Claimed deliveries per second past which the claimer watches
    /// whether producers queue on the NOTIFY commit lock (sampling
    /// `pg_locks` every 25 ms); if four or more wait on average, it polls
    /// (300 µs between empty polls) instead of waiting for notifications,
    /// until the rate falls under half of it (default 1,000; `None`:
    /// never). While it polls, producers' transactions skip `pg_notify`:
    /// PostgreSQL lets only one notifying transaction commit at a time, so
    /// with many producers committing one event each, that lock, not the
    /// worker, bounds the rate. No wake-up is lost on the way out (see the
    /// `20261123000010_busy_polling` migration).
    pub fn busy_polling(mut self, per_second: Option<u32>) -> Self {
        self.busy_polling = per_second;
        self
    }

    /// Starts busy polling on the claim rate alone, without waiting to see
    /// producers queue on the NOTIFY lock (default false).
    pub fn busy_polling_on_rate_alone(mut self, on: bool) -> Self {
        self.busy_polling_on_rate_alone = on;
        self
    }

    /// Whether a claim waits for its commit to reach the disk (default
    /// false). Claims run on their own connection with
    /// `synchronous_commit = off`, which halves the claim's round trip; a
    /// PostgreSQL crash (not a clean restart) can then forget the last
    /// fraction of a second of claims: those deliveries are attempted
    /// again, as at-least-once allows, and the forgotten claim's result is
    /// fenced out (leases are random). Nothing is lost either way; on, the
    /// delivery log also keeps every attempt across such a crash.
    pub fn durable_claims(mut self, on: bool) -> Self {
        self.durable_claims = on;
        self
    }

    /// Prune what is older than `age` once an hour, while running: the
    /// attempt log's days before the cutoff are dropped whole, then
    /// finished deliveries and unreferenced messages are deleted in short
    /// batches (default: keep everything).
    pub fn retention(mut self, age: Option<Duration>) -> Self {
        self.retention = age;
        self
    }

    /// Disable an endpoint whose attempts have all failed for this long
    /// (default 5 days, Svix's rule); its deliveries are held, not lost.
    /// An endpoint's own setting wins; zero: never.
    pub fn auto_disable_after(mut self, window: Duration) -> Self {
        self.auto_disable_after = window;
        self
    }

    /// How often maintenance runs: auto-disable, and the sweep of held
    /// deliveries (default 30 s).
    pub fn maintenance_interval(mut self, every: Duration) -> Self {
        self.maintenance_interval = every;
        self
    }

    /// Attempts in flight at most (default 256; 1 to 100,000).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n;
        self
    }

    /// Deliveries claimed per round trip at most (default 256; 1 to 10,000).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// How long a claim holds a delivery before another worker may take it
    /// (default: request timeout + 30 s). Must exceed the request timeout.
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = Some(lease);
        self
    }

    /// How often to look for due deliveries when no notification comes
    /// (default 1 s; retries that come due are found this way).
    pub fn poll_interval(mut self, every: Duration) -> Self {
        self.poll_interval = every;
        self
    }

    /// Whether to LISTEN for new deliveries (default true). Off, the
    /// dispatcher only polls, as it must behind PgBouncer in transaction mode.
    pub fn listen(mut self, on: bool) -> Self {
        self.listen = on;
        self
    }

    /// What stands between the dispatcher and PostgreSQL (default
    /// [`Pooling::Direct`]). Behind a pooler in transaction mode
    /// ([`Pooling::Transaction`]) the dispatcher neither LISTENs nor opens a
    /// claim connection of its own: every statement goes through the pool,
    /// which must then be built with [`crate::pooler::pool_options`] and
    /// [`crate::pooler::connect_options`].
    pub fn pooling(mut self, pooling: Pooling) -> Self {
        self.pooling = pooling;
        self
    }

    /// How long an endpoint's settings are reused before being re-read
    /// (default 1 s).
    pub fn endpoint_cache_ttl(mut self, ttl: Duration) -> Self {
        self.endpoint_cache_ttl = ttl;
        self
    }

    /// How long shutdown waits for attempts in flight before giving their
    /// deliveries back (default: the request timeout).
    pub fn shutdown_grace(mut self, grace: Duration) -> Self {
        self.shutdown_grace = Some(grace);
        self
    }

    /// Time to connect (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.http.connect_timeout = timeout;
        self
    }

    /// Time for a whole attempt (default 30 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.http.request_timeout = timeout;
        self
    }

    /// Response-body bytes read and stored (default 16 KiB; at most
    /// [`MAX_RESPONSE_BYTES_CEILING`]).
    pub fn max_response_bytes(mut self, n: usize) -> Self {
        self.http.max_response_bytes = n;
        self
    }

    /// Request bodies over this are dead-lettered unsent (default 4 MiB; at
    /// most [`MAX_REQUEST_BYTES_CEILING`] and the payload budget). A claim
    /// does not load a payload over it: the row becomes a dead letter
    /// whose bytes never leave PostgreSQL.
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.http.max_request_bytes = n;
        self
    }

    /// Allows deliveries to a private or reserved network (loopback for
    /// tests, an internal subnet). Nothing is allowed by default.
    pub fn allow_network(mut self, net: IpNet) -> Self {
        self.http.addresses.allow.push(net);
        self
    }

    /// Sends every delivery through this proxy, unless an endpoint names its
    /// own or none (see [`crate::connection`]). No proxy by default, and
    /// the proxy's environment variables are never read.
    pub fn proxy(mut self, proxy: crate::connection::ProxyUrl) -> Self {
        self.http.proxy = Some(proxy);
        self
    }

    /// Refuses `http://` endpoints.
    pub fn https_only(mut self, on: bool) -> Self {
        self.http.addresses.https_only = on;
        self
    }

    /// The retry policy (default: Svix's schedule).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Every setting within its range, or an [`Error::Config`] that names it.
    fn check(&self) -> Result<()> {
        let ms = Duration::from_millis;
        let s = Duration::from_secs;
        let count = |name: &str, n: usize, max: usize| {
            if (1..=max).contains(&n) {
                Ok(())
            } else {
                Err(Error::Config(format!("{name} ({n}) must be between 1 and {max}")))
            }
        };
        let span = |name: &str, d: Duration, min: Duration, max: Duration| {
            if d >= min && d <= max {
                Ok(())
            } else {
                Err(Error::Config(format!(
                    "{name} ({d:?}) must be between {min:?} and {max:?}"
                )))
            }
        };
        count("concurrency", self.concurrency, 100_000)?;
        count("batch_size", self.batch_size, 10_000)?;
        span("request_timeout", self.http.request_timeout, ms(1), s(3600))?;
        span("connect_timeout", self.http.connect_timeout, ms(1), s(600))?;
        span("poll_interval", self.poll_interval, ms(1), s(3600))?;
        span("endpoint_cache_ttl", self.endpoint_cache_ttl, Duration::ZERO, s(3600))?;
        if let Some(lease) = self.lease {
            span("lease", lease, ms(1), s(7 * 86_400))?;
        }
        if let Some(grace) = self.shutdown_grace {
            span("shutdown_grace", grace, Duration::ZERO, s(3600))?;
        }
        span(
            "auto_disable_after",
            self.auto_disable_after,
            Duration::ZERO,
            s(3650 * 86_400),
        )?;
        span("maintenance_interval", self.maintenance_interval, ms(100), s(86_400))?;
        if let Some(age) = self.retention {
            span("retention", age, s(3600), s(36_500 * 86_400))?;
        }
        if let Some(rate) = self.busy_polling {
            count("busy_polling", rate as usize, 10_000_000)?;
        }
        self.retry
            .check()
            .map_err(|why| Error::Config(format!("retry_policy: {why}")))?;
        if self.max_lease_losses > 1000 {
            return Err(Error::Config(format!(
                "max_lease_losses ({}) must be between 1 and 1000",
                self.max_lease_losses
            )));
        }
        Ok(())
    }

    /// Checks the settings and builds the HTTP client.
    pub fn build(self) -> Result<Dispatcher> {
        self.check()?;
        let lease = self
            .lease
            .unwrap_or(self.http.request_timeout + Duration::from_secs(30));
        if lease <= self.http.request_timeout {
            return Err(Error::Config(format!(
                "the lease ({lease:?}) must be longer than the request timeout ({:?}), or a slow attempt would be claimed twice",
                self.http.request_timeout
            )));
        }
        if self.http.max_response_bytes > MAX_RESPONSE_BYTES_CEILING {
            return Err(Error::Config(format!(
                "max_response_bytes ({}) is over its ceiling of {MAX_RESPONSE_BYTES_CEILING}: every attempt in flight \
                 or waiting to be written may hold that much",
                self.http.max_response_bytes
            )));
        }
        if self.http.max_request_bytes == 0 || self.http.max_request_bytes > MAX_REQUEST_BYTES_CEILING {
            return Err(Error::Config(format!(
                "max_request_bytes ({}) must be between 1 and {MAX_REQUEST_BYTES_CEILING}",
                self.http.max_request_bytes
            )));
        }
        if self.payload_budget < self.http.max_request_bytes {
            return Err(Error::Config(format!(
                "payload_budget ({}) must be at least max_request_bytes ({}), or the largest payload allowed could never be claimed",
                self.payload_budget, self.http.max_request_bytes
            )));
        }
        let budget_kib = crate::db::delivery::payload_kib(i64::try_from(self.payload_budget).unwrap_or(i64::MAX));
        let Ok(budget_kib) = u32::try_from(budget_kib) else {
            return Err(Error::Config(format!(
                "payload_budget ({}) is over its ceiling of 4 TiB",
                self.payload_budget
            )));
        };
        if self.response_budget < self.http.max_response_bytes {
            return Err(Error::Config(format!(
                "response_budget ({}) must be at least max_response_bytes ({})",
                self.response_budget, self.http.max_response_bytes
            )));
        }
        let response_kib = self
            .response_budget
            .div_ceil(1024)
            .min(tokio::sync::Semaphore::MAX_PERMITS);
        if self.max_lease_losses == 0 {
            return Err(Error::Config(
                "max_lease_losses must be at least 1: a claim counts the leases a delivery lost before it".into(),
            ));
        }
        let client = build_client(&self.http)?;
        let tokens = crate::oauth2::TokenStore::new(self.pool.clone());
        let grace = self.shutdown_grace.unwrap_or(self.http.request_timeout);
        Ok(Dispatcher {
            pool: self.pool,
            ctx: Arc::new(Context {
                client,
                signing_slots: Arc::new(Semaphore::new(
                    2 * std::thread::available_parallelism()
                        .map(std::num::NonZero::get)
                        .unwrap_or(2),
                )),
                tokens,
                http: self.http,
                retry: self.retry,
                response_budget: Arc::new(Semaphore::new(response_kib)),
            }),
            concurrency: self.concurrency,
            batch_size: self.batch_size,
            lease,
            poll_interval: self.poll_interval,
            listen: self.listen && self.pooling == Pooling::Direct,
            endpoint_cache_ttl: self.endpoint_cache_ttl,
            shutdown_grace: grace,
            stats: Arc::new(Stats::default()),
            auto_disable_after: self.auto_disable_after,
            maintenance_interval: self.maintenance_interval,
            retention: self.retention,
            durable_claims: self.durable_claims,
            pooling: self.pooling,
            busy_polling: self.busy_polling,
            busy_polling_on_rate_alone: self.busy_polling_on_rate_alone,
            payload_budget_kib: budget_kib,
            max_lease_losses: i16::try_from(self.max_lease_losses).unwrap_or(i16::MAX),
        })
    }
}

/// Claims due deliveries, sends them, and records every attempt.
pub struct Dispatcher {
    pool: PgPool,
    ctx: Arc<Context>,
    concurrency: usize,
    batch_size: usize,
    lease: Duration,
    poll_interval: Duration,
    listen: bool,
    endpoint_cache_ttl: Duration,
    shutdown_grace: Duration,
    stats: Arc<Stats>,
    auto_disable_after: Duration,
    maintenance_interval: Duration,
    retention: Option<Duration>,
    durable_claims: bool,
    pooling: Pooling,
    busy_polling: Option<u32>,
    busy_polling_on_rate_alone: bool,
    payload_budget_kib: u32,
    max_lease_losses: i16,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("concurrency", &self.concurrency)
            .field("batch_size", &self.batch_size)
            .field("lease", &self.lease)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A builder over the pool the dispatcher will use. Size the pool for
    /// database statements, not for deliveries: a few connections suffice
    /// (claim, completion, LISTEN, endpoint reads).
    pub fn builder(pool: PgPool) -> DispatcherBuilder {
        DispatcherBuilder {
            pool,
            concurrency: 256,
            batch_size: 256,
            lease: None,
            poll_interval: Duration::from_secs(1),
            listen: true,
            endpoint_cache_ttl: Duration::from_secs(1),
            shutdown_grace: None,
            http: HttpSettings::default(),
            retry: RetryPolicy::default(),
            auto_disable_after: Duration::from_secs(5 * 24 * 3600),
            maintenance_interval: Duration::from_secs(30),
            retention: None,
            durable_claims: false,
            pooling: Pooling::Direct,
            busy_polling: Some(1000),
            busy_polling_on_rate_alone: false,
            payload_budget: 64 * 1024 * 1024,
            response_budget: 32 * 1024 * 1024,
            max_lease_losses: 5,
        }
    }

    /// Counters so far.
    pub fn summary(&self) -> Summary {
        self.stats.summary()
    }

    /// Runs until `shutdown` resolves, then stops claiming, lets attempts in
    /// flight finish (up to the shutdown grace), writes every result, gives
    /// back what was cut short, and returns what it did.
    ///
    /// Losing the database is not an error: claims and writes retry with
    /// backoff until it is back.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> Result<Summary> {
        // Secrets sealed with a key this process lacks would fail every
        // delivery to their endpoints: refuse to start instead.
        let keyring = crate::secrets::keyring()?;
        match crate::secrets::check(&self.pool, keyring).await {
            Ok(_) => {}
            Err(e @ Error::Config(_)) => return Err(e),
            Err(e) => tracing::warn!(error = %e, "could not check how secrets are stored"),
        }
        if keyring.current_id().is_none() {
            tracing::warn!(
                "SECRETS ARE STORED IN PLAIN TEXT: set OUTHOOK_MAIN_KEY (outhook secrets new-main-key) to seal \
                 endpoint secrets and RSA private keys with AES-256-GCM"
            );
        }
        let stop = CancellationToken::new();
        let wake = Arc::new(Notify::new());
        let last_notified = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (results_tx, results_rx) = mpsc::channel(self.concurrency.max(self.batch_size) * 2);
        let completer_stop = CancellationToken::new();
        let endpoints = Arc::new(EndpointCache::new(self.endpoint_cache_ttl, self.ctx.http.clone()));
        let completer = tokio::spawn(crate::complete::run(
            self.pool.clone(),
            results_rx,
            self.batch_size.max(64) * 4,
            self.stats.clone(),
            endpoints.clone(),
            completer_stop.clone(),
        ));
        let listener = self.listen.then(|| {
            tokio::spawn(crate::wakeup::listen(
                self.pool.clone(),
                wake.clone(),
                last_notified.clone(),
                stop.clone(),
                Duration::from_secs(15),
            ))
        });
        let maintenance = tokio::spawn(crate::maintain::run(
            self.pool.clone(),
            crate::maintain::Settings {
                every: self.maintenance_interval,
                auto_disable_after: self.auto_disable_after,
                max_age: self.ctx.retry.max_age(),
                retention: self.retention,
                prune_every: Duration::from_secs(3600).min(self.maintenance_interval * 120),
            },
            endpoints.clone(),
            stop.clone(),
        ));
        let held = Arc::new(Mutex::new(HashMap::new()));
        let claimer = Claimer {
            pool: self.pool.clone(),
            ctx: self.ctx.clone(),
            endpoints,
            slots: Arc::new(Semaphore::new(self.concurrency)),
            batch_size: self.batch_size,
            lease: self.lease,
            poll_interval: self.poll_interval,
            wake: wake.clone(),
            last_notified,
            durable_claims: self.durable_claims,
            own_connection: self.pooling == Pooling::Direct,
            busy_polling: self.busy_polling,
            busy_polling_on_rate_alone: self.busy_polling_on_rate_alone,
            results: results_tx,
            held: held.clone(),
            payload_budget: Arc::new(Semaphore::new(self.payload_budget_kib as usize)),
            max_lease_losses: self.max_lease_losses,
            concurrency: self.concurrency,
            in_flight: Arc::new(Mutex::new(HashMap::new())),
            freed: Arc::new(Notify::new()),
        };
        let claiming = tokio::spawn(claimer.run(stop.clone()));
        shutdown.await;
        tracing::info!("shutting down: no new claims");
        stop.cancel();
        let mut running = claiming
            .await
            .map_err(|e| Error::Config(format!("claimer panicked: {e}")))?;
        let finished = tokio::time::timeout(self.shutdown_grace, async {
            while running.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            running.abort_all();
            while running.join_next().await.is_some() {}
            let cut: Vec<(i64, i64)> = held
                .lock()
                .map(|h| h.iter().map(|(k, v)| (*k, *v)).collect())
                .unwrap_or_default();
            tracing::info!(count = cut.len(), "giving back deliveries cut short by shutdown");
            if let Err(e) = delivery_release_many(&self.pool, &cut).await {
                tracing::warn!(error = %e, "could not give deliveries back; they return when their lease expires");
            }
        }
        // Every sender is gone now; the completer drains and ends. Bound
        // the wait in case the database is unreachable.
        let drain = tokio::time::timeout(self.shutdown_grace, completer);
        tokio::pin!(drain);
        tokio::select! {
            _ = &mut drain => {}
            () = tokio::time::sleep(self.shutdown_grace) => completer_stop.cancel(),
        }
        if let Some(l) = listener {
            let _ = l.await;
        }
        let _ = maintenance.await;
        Ok(self.stats.summary())
    }
}
