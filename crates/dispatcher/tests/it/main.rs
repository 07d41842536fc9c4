//! The dispatcher against a real PostgreSQL and real HTTP receivers on
//! 127.0.0.1.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod bad_input;
mod bounds;
mod common;
mod end_to_end;
mod fairness;
mod fifo;
mod health;
mod limits;
mod migrations;
mod operational;
mod outbox;
mod retention;
mod retries;
mod settings;
mod wakeups;
