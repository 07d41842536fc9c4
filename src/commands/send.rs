//! `outhook send`: one event into the outbox.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use outhook_dispatcher::Event;
use outhook_server::admin::{self, Scope};
use uuid::Uuid;

use crate::commands::worker::DbArgs;

/// `outhook send` arguments.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The event type.
    #[arg(long)]
    event_type: String,
    /// Fan out to this owner's subscribed endpoints.
    #[arg(long, required_unless_present = "endpoint", conflicts_with = "endpoint")]
    owner: Option<String>,
    /// Or deliver to this endpoint.
    #[arg(long)]
    endpoint: Option<Uuid>,
    /// Idempotency key: sending it again does nothing.
    #[arg(long)]
    event_id: Option<String>,
    /// The JSON payload file; `-` or nothing for stdin.
    body: Option<PathBuf>,
}

/// Enqueues one event, through the same checks as `POST /v1/messages`.
pub async fn send(db: DbArgs, args: SendArgs) -> Result<ExitCode> {
    let mut payload = String::new();
    match args.body.as_deref() {
        Some(p) if p != std::path::Path::new("-") => payload = std::fs::read_to_string(p)?,
        _ => {
            std::io::stdin().read_to_string(&mut payload)?;
        }
    }
    let pool = db.connect(1).await?;
    let done = admin::message::create(
        &pool,
        &Scope::Admin,
        Event {
            event_type: &args.event_type,
            payload: &payload,
            owner: args.owner.as_deref(),
            endpoint_id: args.endpoint,
            event_id: args.event_id.as_deref(),
            traceparent: None,
        },
    )
    .await?;
    if done.duplicate {
        outln!("duplicate event id: nothing enqueued (message {})", done.message.id)?;
    } else {
        outln!("message {}: {} deliveries", done.message.id, done.deliveries)?;
    }
    Ok(ExitCode::SUCCESS)
}
