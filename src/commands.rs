//! One module per group of subcommands.

pub mod admin;
pub mod signing;
pub mod worker;
