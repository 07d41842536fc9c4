//! Shared setup: a migrated database, endpoints, and a running dispatcher.

use std::time::{Duration, Instant};

use outhook_dispatcher::db::endpoint::{NewEndpoint, endpoint_insert};
use outhook_dispatcher::{Dispatcher, DispatcherBuilder, RetryPolicy, Summary};
use outhook_signer::Secret;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

/// A fresh, migrated database.
pub async fn db() -> PgPool {
    let (_, pool) = outhook_testkit::postgres::database().await.unwrap();
    outhook_dispatcher::migrate(&pool).await.unwrap();
    pool
}

/// A dispatcher for tests: loopback allowed, fast polling, short timeouts,
/// a quick retry schedule without jitter.
pub fn builder(pool: &PgPool) -> DispatcherBuilder {
    Dispatcher::builder(pool.clone())
        .allow_network("127.0.0.0/8".parse().unwrap())
        .poll_interval(Duration::from_millis(50))
        .request_timeout(Duration::from_secs(2))
        .lease(Duration::from_secs(10))
        .endpoint_cache_ttl(Duration::from_millis(50))
        .retry_policy(quick_retries(4))
}

/// Attempts 50 ms, 100 ms, 200 ms ... apart, no jitter.
pub fn quick_retries(attempts: u32) -> RetryPolicy {
    RetryPolicy::exponential(Duration::from_millis(50), 2.0, Duration::from_secs(1), attempts)
        .with_jitter(0.0)
        .with_overload_floor(Duration::from_millis(100))
}

/// A running dispatcher; stop it to get its summary.
pub struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<outhook_dispatcher::Result<Summary>>,
}

impl Running {
    pub fn start(builder: DispatcherBuilder) -> Self {
        let dispatcher = builder.build().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(dispatcher.run(async {
            let _ = stopped.await;
        }));
        Self { stop, task }
    }

    pub async fn stop(self) -> Summary {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap()
    }
}

/// Creates an endpoint with a fresh secret; returns its id and secret.
pub async fn endpoint(pool: &PgPool, owner: &str, url: &str, scheme: &str) -> (Uuid, Secret) {
    let s = outhook_signer::Scheme::by_name(scheme).unwrap();
    let secret = s.generate_secret().ok();
    let signing_key_id = if scheme == "cometh" {
        let key = outhook_signer::RsaKeyPair::generate(2048).unwrap();
        Some(
            outhook_dispatcher::db::signing_key::signing_key_insert(pool, &format!("k-{}", Uuid::new_v4()), &key)
                .await
                .unwrap()
                .id,
        )
    } else {
        None
    };
    let e = endpoint_insert(
        pool,
        &NewEndpoint {
            owner: owner.into(),
            url: url.into(),
            scheme: scheme.into(),
            secret: secret.clone(),
            signing_key_id,
            ..Default::default()
        },
    )
    .await
    .unwrap();
    (e.id, secret.unwrap_or_else(|| Secret::new("")))
}

/// Waits until `sql` (a query returning one bigint) returns `want`.
pub async fn wait_for_count(pool: &PgPool, sql: &'static str, want: i64, timeout: Duration) -> i64 {
    let deadline = Instant::now() + timeout;
    loop {
        let n: i64 = sqlx::query_scalar(sql).fetch_one(pool).await.unwrap();
        if n == want || Instant::now() > deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Deliveries not yet final.
pub const PENDING: &str = "SELECT count(*) FROM outhook.delivery WHERE status = 0";
/// Deliveries delivered.
pub const DELIVERED: &str = "SELECT count(*) FROM outhook.delivery WHERE status = 1";
/// Dead letters.
pub const DEAD: &str = "SELECT count(*) FROM outhook.delivery WHERE status = 2";
