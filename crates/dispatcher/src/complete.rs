//! The completer: writes attempt results back in batches.
//!
//! It takes whatever results have arrived, writes them in one transaction,
//! and repeats; while a write is in flight the next batch gathers, so batch
//! size grows with load and latency stays one round trip when idle. If the
//! database is unreachable it keeps the batch and retries with backoff;
//! the bounded channel then slows the deliverers down instead of growing.
//!
//! It also adds the attempts up into each endpoint's health and writes that
//! about once a second, off the delivery path.

use std::collections::HashMap;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::db::completion::{Completion, CompletionBatch, delivery_complete_many};
use crate::db::endpoint_health::{HealthDelta, HourlyCounts, endpoint_health_add};
use crate::endpoint::EndpointCache;
use crate::retry::reconnect_backoff;
use crate::stages::{StageRecorder, now_ns};
use crate::stats::Stats;

/// Runs until the channel closes (every sender dropped) and all is written,
/// or until `give_up` resolves while the database stays unreachable.
pub(crate) async fn run(
    pool: PgPool,
    mut results: mpsc::Receiver<Completion>,
    max_batch: usize,
    stats: std::sync::Arc<Stats>,
    endpoints: std::sync::Arc<EndpointCache>,
    give_up: CancellationToken,
) {
    let mut batch = Vec::with_capacity(max_batch);
    let mut health = Health::default();
    let mut stages = StageRecorder::new();
    let mut tick = tokio::time::interval(HEALTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let received = tokio::select! {
            n = results.recv_many(&mut batch, max_batch) => n,
            _ = tick.tick() => {
                health.flush(&pool).await;
                stages.flush();
                continue;
            }
        };
        if received == 0 {
            health.flush(&pool).await;
            stages.flush();
            return;
        }
        for part in split_by_weight(std::mem::replace(&mut batch, Vec::with_capacity(max_batch))) {
            write(&pool, part, &mut health, &mut stages, &stats, &endpoints, &give_up).await;
        }
    }
}

/// Bytes a completion statement carries at most, far under PostgreSQL's
/// 1 GiB message limit: a batch of large logged responses is written in
/// parts rather than growing past what the server accepts.
pub(crate) const MAX_BATCH_BYTES: usize = 32 * 1024 * 1024;

/// Splits results into runs whose [`Completion::weight`] adds up to at
/// most [`MAX_BATCH_BYTES`] (a single heavier result goes alone).
pub(crate) fn split_by_weight(batch: Vec<Completion>) -> Vec<Vec<Completion>> {
    let mut parts = Vec::with_capacity(1);
    let mut part = Vec::with_capacity(batch.len());
    let mut weight = 0;
    for c in batch {
        let w = c.weight();
        if !part.is_empty() && weight + w > MAX_BATCH_BYTES {
            parts.push(std::mem::take(&mut part));
            weight = 0;
        }
        weight += w;
        part.push(c);
    }
    if !part.is_empty() {
        parts.push(part);
    }
    parts
}

/// Writes one batch, retrying while the database is unreachable.
async fn write(
    pool: &PgPool,
    part: Vec<Completion>,
    health: &mut Health,
    stages: &mut StageRecorder,
    stats: &Stats,
    endpoints: &EndpointCache,
    give_up: &CancellationToken,
) {
    // Each delivery's trace shows the write of its result (at debug level:
    // no cost unless traces are exported).
    let spans: Vec<tracing::Span> = part
        .iter()
        .map(|c| tracing::debug_span!(parent: &c.span, "complete", batch = part.len()))
        .collect();
    let mut columns = CompletionBatch::new(part);
    health.add(std::mem::take(&mut columns.health), std::mem::take(&mut columns.hourly));
    metrics::histogram!("outhook_completion_batch_size").record(columns.len() as f64);
    let mut delays = reconnect_backoff(Duration::from_millis(50));
    loop {
        match delivery_complete_many(pool, &columns).await {
            Ok(written) => {
                drop(spans);
                stages.record(&columns.stamps, now_ns());
                stats.record(&columns, written);
                if !columns.gone.is_empty() {
                    endpoints.invalidate(&columns.gone);
                }
                break;
            }
            Err(e) => {
                metrics::counter!("outhook_database_errors_total", "operation" => "complete").increment(1);
                tracing::warn!(error = %e, batch = columns.len(), "writing results failed; retrying");
                if give_up.is_cancelled() {
                    tracing::error!(
                        batch = columns.len(),
                        "database unreachable at shutdown: these deliveries will be attempted again when their lease expires"
                    );
                    break;
                }
                let pause = delays.next().unwrap_or(Duration::from_secs(5));
                tokio::select! {
                    () = tokio::time::sleep(pause) => {}
                    () = give_up.cancelled() => {}
                }
            }
        }
    }
}

/// How often the health deltas are written.
const HEALTH_EVERY: Duration = Duration::from_secs(1);

/// Health deltas not yet written.
#[derive(Default)]
struct Health {
    pending: HashMap<uuid::Uuid, HealthDelta>,
    hourly: HourlyCounts,
}

impl Health {
    fn add(&mut self, deltas: HashMap<uuid::Uuid, HealthDelta>, hourly: HourlyCounts) {
        for (key, n) in hourly {
            *self.hourly.entry(key).or_insert(0) += n;
        }
        for (id, later) in deltas {
            crate::db::endpoint_health::merge(&mut self.pending, id, later);
        }
    }

    /// Writes what is pending; on failure keeps it for the next tick (the
    /// health is a summary, so a database outage only delays it).
    async fn flush(&mut self, pool: &PgPool) {
        if self.pending.is_empty() && self.hourly.is_empty() {
            return;
        }
        match endpoint_health_add(pool, &self.pending, &self.hourly).await {
            Ok(()) => {
                self.pending.clear();
                self.hourly.clear();
            }
            Err(e) => {
                metrics::counter!("outhook_database_errors_total", "operation" => "health").increment(1);
                tracing::warn!(error = %e, endpoints = self.pending.len(), "writing endpoint health failed; will retry");
            }
        }
    }
}
