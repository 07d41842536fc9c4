//! `outhook`: run the dispatcher, administer endpoints and deliveries, and
//! sign or verify webhooks from the shell.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::admin::{DeliveriesCommand, EndpointCommand, SendArgs, SigningKeyCommand};
use commands::worker::{DbArgs, RunArgs};

#[derive(Parser)]
#[command(name = "outhook", version, about = "Reliable, byte-exact webhook sender")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or upgrade the `outhook` schema.
    Migrate(DbArgs),
    /// Run the worker until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Manage endpoints.
    Endpoint {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// Manage the provider's RSA signing keys (cometh).
    SigningKey {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: SigningKeyCommand,
    },
    /// Enqueue an event from the shell.
    Send(SendArgs),
    /// Inspect and re-queue deliveries.
    Deliveries {
        #[command(flatten)]
        db: DbArgs,
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Sign a body: prints {"headers": {...}, "body": "<the exact body to send>"}.
    Sign(commands::signing::SignArgs),
    /// Verify a received request: exit 0 when valid, 1 with a reason when not.
    Verify(commands::signing::VerifyArgs),
    /// Shared secrets.
    #[command(subcommand)]
    Secret(commands::signing::SecretCommand),
    /// RSA keys in files (for the database's keys, see signing-key).
    #[command(subcommand)]
    Key(commands::signing::KeyCommand),
}

/// Runs a database command on a multi-threaded tokio runtime.
fn block_on(command: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(command)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("OUTHOOK_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Sign(args) => commands::signing::sign(args),
        Command::Verify(args) => commands::signing::verify(args),
        Command::Secret(cmd) => commands::signing::secret(cmd),
        Command::Key(cmd) => commands::signing::key(cmd),
        Command::Migrate(db) => block_on(commands::worker::migrate(db)),
        Command::Run(args) => block_on(commands::worker::run(args)),
        Command::Endpoint { db, command } => block_on(commands::admin::endpoint(db, command)),
        Command::SigningKey { db, command } => block_on(commands::admin::signing_key(db, command)),
        Command::Send(args) => block_on(commands::admin::send(args)),
        Command::Deliveries { db, command } => block_on(commands::admin::deliveries(db, command)),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
