//! One module per group of subcommands.

pub mod admin;
pub mod event_types;
pub mod signing;
pub mod worker;
