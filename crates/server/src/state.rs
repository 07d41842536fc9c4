//! What every handler shares: the pool, the settings, the token cache.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outhook_dispatcher::http::AddressPolicy;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::admin::Scope;

/// The server's settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Which endpoint URLs may be registered: the worker's own policy.
    pub addresses: AddressPolicy,
    /// Request bodies larger than this are refused (413).
    pub max_body_bytes: usize,
    /// How long a checked token is trusted before it is checked again; a
    /// revocation takes effect within this time.
    pub token_cache_ttl: Duration,
    /// Where customers reach this server (`https://hooks.example.com`):
    /// portal links are built on it, and an `https` address makes the
    /// portal's cookies `Secure`. Unset, links use the request's `Host`.
    pub public_url: Option<String>,
    /// Origins that may put the portal in an iframe (CSP `frame-ancestors`);
    /// empty: none may.
    pub portal_frame_ancestors: Vec<String>,
    /// How long a portal session lasts after signing in or opening a link.
    pub portal_session_ttl: Duration,
    /// The most endpoints an owner's scope (a customer in the portal, an
    /// owner token) may have; admins are not limited.
    pub max_endpoints_per_owner: u32,
    /// The scheme the portal's form offers first for a new endpoint.
    pub portal_default_scheme: String,
    /// The provider's brand on the portal.
    pub portal_brand: std::sync::Arc<crate::portal::Brand>,
    /// Check every message's payload against its event type's JSON Schema
    /// (when it has one), not only types marked `validate`.
    pub validate_event_schemas: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addresses: AddressPolicy::default(),
            max_body_bytes: 1024 * 1024,
            token_cache_ttl: Duration::from_secs(1),
            public_url: None,
            portal_frame_ancestors: Vec::new(),
            portal_session_ttl: Duration::from_secs(3600),
            max_endpoints_per_owner: 20,
            portal_default_scheme: "standard-webhooks".to_owned(),
            portal_brand: std::sync::Arc::default(),
            validate_event_schemas: false,
        }
    }
}

/// The state every route shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    /// The database.
    pool: PgPool,
    /// The settings.
    config: ServerConfig,
    /// Checked tokens, keyed by the SHA-256 of the whole token text (the
    /// text itself is never kept), with when they were checked.
    tokens: Mutex<HashMap<[u8; 32], (Scope, Instant)>>,
    /// Renders `/metrics`, when a Prometheus recorder is installed.
    metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Shares commits between concurrent `POST /v1/messages`.
    ingest: crate::admin::message::Ingest,
    schemas: crate::admin::schema::SchemaCache,
    /// The portal's signing key, read from the database on first use.
    portal_key: tokio::sync::OnceCell<crate::admin::portal::PortalKey>,
}

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl AppState {
    /// State for [`crate::router`]. `metrics` renders `/metrics` (see
    /// [`crate::metrics::install`]); without it the route answers 404.
    /// Call inside a tokio runtime: it starts the task that batches message
    /// inserts.
    pub fn new(
        pool: PgPool,
        config: ServerConfig,
        metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                tokens: Mutex::new(HashMap::new()),
                metrics,
                ingest: crate::admin::message::Ingest::start(pool.clone(), 256),
                schemas: crate::admin::schema::SchemaCache::default(),
                portal_key: tokio::sync::OnceCell::new(),
                pool,
            }),
        }
    }

    /// The database pool.
    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// The message batcher.
    pub fn ingest(&self) -> &crate::admin::message::Ingest {
        &self.inner.ingest
    }

    /// The catalog's compiled JSON Schemas.
    pub fn schemas(&self) -> &crate::admin::schema::SchemaCache {
        &self.inner.schemas
    }

    /// The server's settings.
    pub fn config(&self) -> &ServerConfig {
        &self.inner.config
    }

    /// The portal's signing key (made in the database on first use).
    pub async fn portal_key(&self) -> crate::admin::Result<&crate::admin::portal::PortalKey> {
        self.inner
            .portal_key
            .get_or_try_init(|| crate::admin::portal::PortalKey::load(&self.inner.pool))
            .await
    }

    /// The metrics renderer, if installed.
    pub fn metrics(&self) -> Option<&metrics_exporter_prometheus::PrometheusHandle> {
        self.inner.metrics.as_ref()
    }

    /// The scope of a bearer token: from the cache while fresh, else checked
    /// against the database (unknown, revoked and expired tokens are `None`).
    pub async fn authenticate(&self, token: &str) -> crate::admin::Result<Option<Scope>> {
        let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let ttl = self.inner.config.token_cache_ttl;
        if let Ok(cache) = self.inner.tokens.lock()
            && let Some((scope, at)) = cache.get(&key)
            && at.elapsed() < ttl
        {
            return Ok(Some(scope.clone()));
        }
        let scope = crate::admin::token::authenticate(&self.inner.pool, token).await?;
        if let Ok(mut cache) = self.inner.tokens.lock() {
            match &scope {
                Some(s) if !ttl.is_zero() => {
                    if cache.len() > 10_000 {
                        cache.retain(|_, (_, at)| at.elapsed() < ttl);
                    }
                    cache.insert(key, (s.clone(), Instant::now()));
                }
                _ => {
                    cache.remove(&key);
                }
            }
        }
        Ok(scope)
    }
}
