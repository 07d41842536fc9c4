//! `outhook deliveries ...`: the queue, its attempts and its dead letters.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Result, bail};
use clap::Subcommand;
use outhook_dispatcher::db::attempt::attempt_list;
use outhook_dispatcher::db::delivery::{
    DeliveryFilter, DeliveryStatus, delivery_get, delivery_list, delivery_requeue, delivery_requeue_dead,
};
use uuid::Uuid;

use crate::commands::worker::DbArgs;
use crate::output::print_json;

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// pending, delivered or dead.
        #[arg(long)]
        status: Option<DeliveryStatus>,
        /// Only this endpoint.
        #[arg(long)]
        endpoint: Option<Uuid>,
        /// Only this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a delivery and its attempt log.
    Show {
        /// Delivery id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete deliveries finished longer ago than --older-than, their attempt logs, and outbox rows no
    /// longer referenced (their idempotency keys go with them).
    Prune {
        /// Keep everything newer than this.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// Re-queue deliveries now (dead letters come back; delivered ones are sent again).
    Retry {
        /// Delivery ids.
        ids: Vec<i64>,
        /// Re-queue every dead letter (of --endpoint, if given).
        #[arg(long, conflicts_with = "ids")]
        dead: bool,
        /// With --dead: only this endpoint's.
        #[arg(long, requires = "dead")]
        endpoint: Option<Uuid>,
    },
}

/// Runs a `deliveries` subcommand.
pub async fn deliveries(db: DbArgs, cmd: DeliveriesCommand) -> Result<ExitCode> {
    let pool = db.connect(2).await?;
    match cmd {
        DeliveriesCommand::List {
            status,
            endpoint,
            event_type,
            limit,
            json,
        } => {
            let filter = DeliveryFilter {
                status,
                endpoint_id: endpoint,
                event_type,
                limit: Some(limit),
                ..DeliveryFilter::default()
            };
            let list = delivery_list(&pool, &filter).await?;
            if json {
                print_json(&list)?;
            } else {
                outln!(
                    "{:>8}  {:<9} {:>3}  {:<28} {:<36}  last error",
                    "id",
                    "status",
                    "try",
                    "event type",
                    "endpoint"
                )?;
                for d in &list {
                    outln!(
                        "{:>8}  {:<9} {:>3}  {:<28} {}  {}",
                        d.id,
                        d.status.as_str(),
                        d.attempts,
                        d.event_type,
                        d.endpoint_id,
                        d.last_error.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        DeliveriesCommand::Show { id, json } => {
            let d = delivery_get(&pool, id).await?;
            let attempts = attempt_list(&pool, id).await?;
            if json {
                print_json(&serde_json::json!({"delivery": d, "attempts": attempts}))?;
            } else {
                outln!(
                    "delivery {} of message {} (msg_{}) to {}",
                    d.id,
                    d.message_id,
                    d.message_uid.simple(),
                    d.endpoint_id
                )?;
                outln!(
                    "event type {}, status {}, {} attempts",
                    d.event_type,
                    d.status.as_str(),
                    d.attempts
                )?;
                if d.held {
                    outln!("held until the endpoint is enabled")?;
                } else if let Some(at) = d.next_attempt_at {
                    outln!("next attempt at {at}")?;
                }
                for a in &attempts {
                    outln!(
                        "  #{:<2} {}  {:>5} ms  {:<16} {:>3}  {}{}{}",
                        a.attempt,
                        a.started_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                        a.duration_ms,
                        a.outcome,
                        a.status_code.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                        a.error.as_deref().unwrap_or(""),
                        a.next_attempt_at.map(|t| format!(" (next at {t})")).unwrap_or_default(),
                        if a.superseded {
                            " (superseded: the delivery had moved on)"
                        } else {
                            ""
                        }
                    )?;
                }
            }
        }
        DeliveriesCommand::Prune { older_than } => {
            let p = outhook_dispatcher::db::delivery::delivery_prune(&pool, older_than, 10_000).await?;
            outln!(
                "pruned {} deliveries, {} attempts, {} messages",
                p.deliveries,
                p.attempts,
                p.messages
            )?;
        }
        DeliveriesCommand::Retry { ids, dead, endpoint } => {
            let n = if dead {
                delivery_requeue_dead(&pool, endpoint).await?
            } else {
                if ids.is_empty() {
                    bail!("give delivery ids or --dead");
                }
                delivery_requeue(&pool, &ids).await?
            };
            outln!("re-queued {n} deliveries")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
