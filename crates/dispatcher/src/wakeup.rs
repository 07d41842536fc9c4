//! LISTEN for new deliveries. A notification is only a hint: the claimer
//! polls anyway, and after every reconnect it claims at once, since
//! notifications sent while disconnected are lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::retry::reconnect_backoff;

/// The channel the outbox trigger notifies.
pub const CHANNEL: &str = "outhook_delivery";

/// Wakes `wake` on every notification and after every (re)connect, until
/// `stop` is cancelled. Checks the connection with `SELECT 1` every
/// `heartbeat` so a half-open connection is noticed.
/// Each notification's arrival is stamped in `last_notified` (for the
/// stage timings).
pub(crate) async fn listen(
    pool: PgPool,
    wake: Arc<Notify>,
    last_notified: Arc<AtomicU64>,
    stop: CancellationToken,
    heartbeat: Duration,
) {
    let mut delays = reconnect_backoff(Duration::from_millis(100));
    while !stop.is_cancelled() {
        let mut listener = match connect(&pool).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "LISTEN connection failed; polling meanwhile");
                wake.notify_one();
                let pause = delays.next().unwrap_or(Duration::from_secs(5));
                tokio::select! {
                    () = tokio::time::sleep(pause) => continue,
                    () = stop.cancelled() => return,
                }
            }
        };
        delays = reconnect_backoff(Duration::from_millis(100));
        // Anything enqueued while we were not listening is claimed now.
        wake.notify_one();
        let mut tick = tokio::time::interval(heartbeat);
        tick.tick().await;
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                received = listener.try_recv() => match received {
                    Ok(Some(_)) => {
                        last_notified.store(crate::stages::now_ns(), Ordering::Relaxed);
                        wake.notify_one();
                    }
                    // The listener reconnected (and re-listened): catch up.
                    Ok(None) => wake.notify_one(),
                    Err(e) => {
                        tracing::warn!(error = %e, "LISTEN connection lost");
                        wake.notify_one();
                        break;
                    }
                },
                _ = tick.tick() => {
                    if let Err(e) = sqlx::query("SELECT 1").execute(&mut listener).await {
                        tracing::warn!(error = %e, "LISTEN connection unhealthy");
                        wake.notify_one();
                        break;
                    }
                }
            }
        }
    }
}

async fn connect(pool: &PgPool) -> Result<PgListener, sqlx::Error> {
    let mut listener = PgListener::connect_with(pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}
