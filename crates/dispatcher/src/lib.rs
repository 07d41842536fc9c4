#![doc = include_str!("../README.md")]

mod claim;
mod complete;
pub mod connection;
pub mod db;
mod deliver;
mod dispatcher;
mod endpoint;
mod error;
pub mod filter;
pub mod http;
mod maintain;
mod migrate;
mod oauth2;
mod pinned;
mod polling;
pub mod pooler;
mod retry;
pub mod secrets;
mod stages;
mod stats;
pub mod trace_context;
mod wakeup;

pub use crate::db::outbox::{EnqueueOn, Enqueued, Event, outbox_insert as enqueue, outbox_insert_many as enqueue_many};
pub use crate::deliver::Outcome;
pub use crate::dispatcher::{Dispatcher, DispatcherBuilder, MAX_REQUEST_BYTES_CEILING, MAX_RESPONSE_BYTES_CEILING};
pub use crate::error::{Error, Result};
pub use crate::migrate::{MigrationState, migrate, migration_state, migrations_current};
pub use crate::pooler::Pooling;
pub use crate::retry::{FailureKind, RetryPolicy};
pub use crate::stats::Summary;
pub use crate::wakeup::CHANNEL as NOTIFY_CHANNEL;
pub use ipnet::IpNet;

/// The reserved owner whose endpoints receive Outhook's operational events
/// (`endpoint.disabled`, `message.attempt.exhausted`, ...): add a Standard
/// Webhooks endpoint for it to be told.
pub const OPERATOR_OWNER: &str = "outhook:operator";
