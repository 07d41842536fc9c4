//! Maintenance, run by every worker on a timer (each step is idempotent, so
//! several workers may run it at once): endpoints that have failed too long
//! are disabled, certificates that expire soon are warned about once,
//! held deliveries past the retry age limit become dead
//! letters, held deliveries of enabled endpoints are resumed, the attempt
//! log's daily partitions are made a week ahead, and, with a retention
//! period, what is older is pruned once an hour.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::attempt::attempt_partitions_ensure;
use crate::db::delivery::{delivery_held_sweep, delivery_prune_paced};
use crate::db::endpoint_connection::certificate_expiry_warn;
use crate::db::endpoint_health::endpoint_health_disable_failing;
use crate::endpoint::EndpointCache;

/// What maintenance needs to know.
pub(crate) struct Settings {
    pub every: Duration,
    pub auto_disable_after: Duration,
    pub max_age: Duration,
    pub retention: Option<Duration>,
    pub prune_every: Duration,
}

/// Runs until `stop`.
pub(crate) async fn run(pool: PgPool, settings: Settings, endpoints: Arc<EndpointCache>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(settings.every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = stop.cancelled() => return,
        }
        once(&pool, settings.auto_disable_after, settings.max_age, &endpoints).await;
        if let Err(e) = attempt_partitions_ensure(&pool, 7).await {
            tracing::warn!(error = %e, "making the attempt log's partitions failed");
        }
        if let Some(age) = settings.retention
            && last_prune.is_none_or(|at| at.elapsed() >= settings.prune_every)
        {
            last_prune = Some(tokio::time::Instant::now());
            // Batches of 1,000 with a rest between them: pruning is never
            // urgent, and the deliveries share the database with it.
            let pruning = delivery_prune_paced(&pool, age, 1_000, Duration::from_millis(50));
            tokio::select! {
                result = pruning => match result {
                    Ok(p) => tracing::info!(
                        deliveries = p.deliveries, attempts = p.attempts, attempt_days = p.attempt_days,
                        messages = p.messages, "pruned what is older than the retention period"
                    ),
                    Err(e) => tracing::warn!(error = %e, "pruning failed; trying again later"),
                },
                () = stop.cancelled() => return,
            }
        }
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
    match certificate_expiry_warn(pool, crate::connection::CERTIFICATE_WARNING).await {
        Ok(warned) if !warned.is_empty() => {
            tracing::warn!(endpoints = ?warned, "endpoints' certificates expire soon (or have expired)");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "checking certificates' expiry failed"),
    }
    match delivery_held_sweep(pool, max_age).await {
        Ok((dead, resumed)) if dead + resumed > 0 => {
            tracing::info!(dead, resumed, "held deliveries swept");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "sweeping held deliveries failed"),
    }
}
