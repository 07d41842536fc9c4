//! The completer: writes attempt results back in batches.
//!
//! It takes whatever results have arrived, writes them in one transaction,
//! and repeats; while a write is in flight the next batch gathers, so batch
//! size grows with load and latency stays one round trip when idle. If the
//! database is unreachable it keeps the batch and retries with backoff;
//! the bounded channel then slows the deliverers down instead of growing.

use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::db::delivery::{Completion, CompletionBatch, delivery_complete_many};
use crate::endpoint::EndpointCache;
use crate::retry::reconnect_backoff;
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
    loop {
        if results.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        let columns = CompletionBatch::new(std::mem::replace(&mut batch, Vec::with_capacity(max_batch)));
        metrics::histogram!("outhook_completion_batch_size").record(columns.len() as f64);
        let mut delays = reconnect_backoff(Duration::from_millis(50));
        loop {
            match delivery_complete_many(&pool, &columns).await {
                Ok(written) => {
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
}
