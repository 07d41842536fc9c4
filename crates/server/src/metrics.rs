//! Prometheus metrics. The dispatcher records attempts by outcome, attempt
//! latency, attempts in flight, claim and completion batch sizes and
//! database errors through the `metrics` facade; this module installs the
//! Prometheus recorder and keeps the queue gauges (deliveries due now,
//! scheduled and dead, the age of the oldest due delivery) fresh from
//! PostgreSQL. Labels are bounded: outcomes and operations, never
//! endpoints.

use std::time::Duration;

use metrics_exporter_prometheus::{BuildError, Matcher, PrometheusBuilder, PrometheusHandle};
use outhook_dispatcher::db::delivery::delivery_queue_depth;
use sqlx::PgPool;

const LATENCY_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0];

/// Installs the process-wide Prometheus recorder and returns the handle
/// that renders it. Call once per process.
pub fn install() -> Result<PrometheusHandle, BuildError> {
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)?
        .set_buckets_for_metric(Matcher::Suffix("_batch_size".into()), BATCH_BUCKETS)?
        .install_recorder()?;
    describe();
    Ok(handle)
}

fn describe() {
    metrics::describe_counter!("outhook_attempts_total", "Delivery attempts by outcome");
    metrics::describe_histogram!(
        "outhook_attempt_duration_seconds",
        metrics::Unit::Seconds,
        "Time of each attempt, from signing to the response read"
    );
    metrics::describe_gauge!("outhook_attempts_in_flight", "Attempts running now");
    metrics::describe_histogram!(
        "outhook_stage_seconds",
        metrics::Unit::Seconds,
        "Each delivery's time per stage: notify_to_wake, wake_to_claim, claim, claimed_to_start, sign, \
         request (sent to response head), response_body, complete (to the committed result)"
    );
    metrics::describe_counter!(
        "outhook_deliveries_deferred_total",
        "Claimed deliveries of limited endpoints given back: over the rate (to a later slot) or the in-flight limit"
    );
    metrics::describe_histogram!("outhook_claim_batch_size", "Deliveries per claim round trip");
    metrics::describe_gauge!(
        "outhook_claimer_polling",
        "1 while the claimer busy-polls (producers skip NOTIFY), else 0"
    );
    metrics::describe_histogram!("outhook_completion_batch_size", "Results per completion write");
    metrics::describe_counter!(
        "outhook_database_errors_total",
        "Failed database calls of the worker, by operation"
    );
    metrics::describe_gauge!("outhook_deliveries_due", "Pending deliveries due now");
    metrics::describe_gauge!(
        "outhook_deliveries_scheduled",
        "Pending deliveries waiting for a later attempt or leased"
    );
    metrics::describe_gauge!("outhook_deliveries_dead", "Dead letters");
    metrics::describe_gauge!(
        "outhook_deliveries_held",
        "Pending deliveries held while their endpoint is disabled"
    );
    metrics::describe_gauge!(
        "outhook_deliveries_waiting",
        "Deliveries waiting their turn: behind an ordered endpoint's head, or for a free in-flight place"
    );
    metrics::describe_gauge!(
        "outhook_oldest_due_seconds",
        metrics::Unit::Seconds,
        "How long the oldest due delivery has been due"
    );
}

/// Refreshes the queue gauges every `every` and drains the histograms,
/// until `stop` resolves.
pub async fn maintain(
    pool: PgPool,
    handle: PrometheusHandle,
    every: Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(stop);
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = &mut stop => return,
        }
        handle.run_upkeep();
        match delivery_queue_depth(&pool).await {
            Ok(d) => {
                metrics::gauge!("outhook_deliveries_due").set(d.due as f64);
                metrics::gauge!("outhook_deliveries_scheduled").set(d.scheduled as f64);
                metrics::gauge!("outhook_deliveries_dead").set(d.dead as f64);
                metrics::gauge!("outhook_deliveries_held").set(d.held as f64);
                metrics::gauge!("outhook_deliveries_waiting").set(d.waiting as f64);
                metrics::gauge!("outhook_oldest_due_seconds").set(d.oldest_due_seconds);
            }
            Err(e) => {
                metrics::counter!("outhook_database_errors_total", "operation" => "queue_depth").increment(1);
                tracing::debug!(error = %e, "queue depth not read");
            }
        }
    }
}
