//! `outhook`: run the dispatcher, administer endpoints and deliveries, and
//! sign or verify webhooks from the shell.

mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "outhook", version, about = "Reliable, byte-exact webhook sender")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Sign a body: prints {"headers": {...}, "body": "<the exact body to send>"}.
    Sign(commands::signing::SignArgs),
    /// Verify a received request: exit 0 when valid, 1 with a reason when not.
    Verify(commands::signing::VerifyArgs),
    /// Shared secrets.
    #[command(subcommand)]
    Secret(commands::signing::SecretCommand),
    /// RSA signing keys (the `cometh` scheme).
    #[command(subcommand)]
    Key(commands::signing::KeyCommand),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Sign(args) => commands::signing::sign(args),
        Command::Verify(args) => commands::signing::verify(args),
        Command::Secret(cmd) => commands::signing::secret(cmd),
        Command::Key(cmd) => commands::signing::key(cmd),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
