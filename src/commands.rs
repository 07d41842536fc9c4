//! One module per group of subcommands.

pub mod access;
pub mod connection;
pub mod deliveries;
pub mod endpoints;
pub mod event_types;
pub mod health;
pub mod secrets;
pub mod send;
pub mod signing;
pub mod signing_keys;
pub mod worker;
