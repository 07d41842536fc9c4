//! Outhook's integration tests: one binary, a module per area.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod api;
mod api_fuzz;
mod catalog;
mod cli_admin;
mod cli_signing;
mod config_file;
mod connection;
mod container;
mod errors;
mod filter_hints;
mod limits;
mod pooler;
mod portal;
mod portal_self_service;
mod roles;
mod secrets;
mod settings;
mod signing_interop;
mod signing_tamper;
mod traces;
mod upgrade;
mod verify_page;
mod worker_process;
