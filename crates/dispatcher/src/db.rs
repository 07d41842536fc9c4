//! All of Outhook's SQL, one file per table, functions named noun-verb.
//!
//! Queries are checked at run time (`query_as` into typed rows), so building
//! never needs a live database; the integration tests run every one of them.

pub mod api_token;
pub mod attempt;
pub mod delivery;
pub mod endpoint;
pub mod endpoint_health;
pub mod event_type;
pub mod idempotency;
pub mod outbox;
pub mod server_key;
pub mod signing_key;
