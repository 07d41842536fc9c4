//! Maintenance, run by every worker on a timer (each step is idempotent, so
//! several workers may run it at once): endpoints that have failed too long
//! are disabled, held deliveries past the retry age limit become dead
//! letters, and held deliveries of enabled endpoints are resumed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::delivery::delivery_held_sweep;
use crate::db::endpoint_health::endpoint_health_disable_failing;
use crate::endpoint::EndpointCache;

/// Runs until `stop`.
pub(crate) async fn run(
    pool: PgPool,
    every: Duration,
    auto_disable_after: Duration,
    max_age: Duration,
    endpoints: Arc<EndpointCache>,
    stop: CancellationToken,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        once(&pool, auto_disable_after, max_age, &endpoints).await;
    }
}

/// One round of maintenance; failures are logged and tried again next time.
pub(crate) async fn once(pool: &PgPool, auto_disable_after: Duration, max_age: Duration, endpoints: &EndpointCache) {
    match endpoint_health_disable_failing(pool, auto_disable_after).await {
        Ok(disabled) if !disabled.is_empty() => {
            tracing::warn!(count = disabled.len(), endpoints = ?disabled, "disabled endpoints that kept failing");
            endpoints.invalidate(&disabled);
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "checking failing endpoints failed"),
    }
    match delivery_held_sweep(pool, max_age).await {
        Ok((dead, resumed)) if dead + resumed > 0 => {
            tracing::info!(dead, resumed, "held deliveries swept");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "sweeping held deliveries failed"),
    }
}
