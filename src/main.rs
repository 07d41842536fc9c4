//! `outhook`: run the dispatcher, administer endpoints and deliveries, and
//! sign or verify webhooks from the shell.

#[macro_use]
mod output;
mod commands;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use commands::access::{PortalLinkArgs, TokenCommand};
use commands::deliveries::DeliveriesCommand;
use commands::endpoints::EndpointCommand;
use commands::secrets::SecretsCommand;
use commands::send::SendArgs;
use commands::signing_keys::SigningKeyCommand;
use commands::worker::{DbArgs, RunArgs, ServeArgs};
use outhook_dispatcher::IpNet;
use outhook_dispatcher::http::AddressPolicy;

const EXIT_CODES: &str = "\
Exit status:
  0  success (for `verify`: the request is valid)
  1  `verify` only: the request did not verify; the reason is printed
  2  usage error, bad input, or a failure (database, file, key); the error is printed on stderr

Output written to a closed pipe (`outhook endpoint list | head -1`) ends quietly with status 0.";

#[derive(Parser)]
#[command(name = "outhook", version, about = "Reliable, byte-exact webhook sender", after_help = EXIT_CODES)]
struct Cli {
    /// PostgreSQL URL, for the commands that use the database; accepted
    /// before or after the subcommand.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, global = true)]
    database_url: Option<String>,
    /// What stands between Outhook and PostgreSQL: `direct` (or a pooler
    /// in session mode), or `transaction` for a pooler in transaction mode
    /// such as PgBouncer's, where every use of a connection is one
    /// transaction, no statement is cached and workers poll instead of
    /// LISTEN (see the README's *Behind a connection pooler*).
    #[arg(long, env = "OUTHOOK_POOLER", global = true, value_enum, default_value_t = Pooler::Direct)]
    pooler: Pooler,
    /// Allow endpoints in this private network (CIDR), for deliveries and
    /// when registering endpoints; repeat as needed.
    #[arg(
        long = "allow-network",
        env = "OUTHOOK_ALLOW_NETWORKS",
        value_delimiter = ',',
        global = true
    )]
    allow: Vec<IpNet>,
    /// Refuse http:// endpoints.
    #[arg(long, env = "OUTHOOK_HTTPS_ONLY", global = true)]
    https_only: bool,
    /// How logs are written to stderr: `text` for people (coloured only on
    /// a terminal, and never with NO_COLOR set), `json` for log shippers
    /// (one object per line).
    #[arg(long, env = "OUTHOOK_LOG_FORMAT", global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--pooler`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Pooler {
    /// Straight to PostgreSQL, or a pooler in session mode.
    Direct,
    /// A pooler in transaction mode.
    Transaction,
}

/// `--log-format`.
#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    /// Lines for people.
    Text,
    /// One JSON object per line.
    Json,
}

/// Whether stderr gets colour: a terminal, and `NO_COLOR` unset or empty
/// (<https://no-color.org>).
fn colour() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// An error and its causes in one line, each said once: a cause whose text
/// the line already holds (a wrapper that repeats its source) is left out.
fn render_error(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if text.is_empty() || line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// `outhook migrate`.
#[derive(clap::Args)]
struct MigrateArgs {
    /// Apply nothing: say whether migrations are pending, for a deploy
    /// script. Exits 0 when the schema is current, 1 when migrations are
    /// pending (or there is no schema yet), 3 when the database was
    /// migrated by a newer outhook, 2 when it cannot tell.
    #[arg(long)]
    check: bool,
}

#[derive(Subcommand)]
enum Command {
    /// Create or upgrade the `outhook` schema.
    Migrate(MigrateArgs),
    /// Run the worker until SIGINT or SIGTERM.
    Run(RunArgs),
    /// Serve the HTTP API, with the worker unless --no-worker, until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Print the HTTP API's OpenAPI 3.1 document (the committed openapi.json).
    Openapi,
    /// Bearer tokens for the HTTP API.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// The main key that seals secrets at rest (OUTHOOK_MAIN_KEY).
    Secrets {
        #[command(subcommand)]
        command: SecretsCommand,
    },
    /// Print a short-lived link that opens the delivery portal for one owner.
    PortalLink(PortalLinkArgs),
    /// Manage endpoints.
    Endpoint {
        #[command(subcommand)]
        command: EndpointCommand,
    },
    /// The event catalog: event types customers pick from, and strict mode.
    EventType {
        #[command(subcommand)]
        command: commands::event_types::EventTypeCommand,
    },
    /// Manage the provider's RSA signing keys (cometh).
    SigningKey {
        #[command(subcommand)]
        command: SigningKeyCommand,
    },
    /// Enqueue an event from the shell.
    Send(SendArgs),
    /// Inspect and re-queue deliveries.
    Deliveries {
        #[command(subcommand)]
        command: DeliveriesCommand,
    },
    /// Sign a body: prints `{"headers": {...}, "body": "<the exact body to send>"}`.
    Sign(commands::signing::SignArgs),
    /// Verify a received request: exit 0 when valid, 1 with a reason when not.
    #[command(
        after_help = "Exit status: 0 valid, 1 invalid (the reason is printed), 2 usage error or unreadable input."
    )]
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
    let filter = tracing_subscriber::EnvFilter::try_from_env("OUTHOOK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    match cli.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(colour())
            .with_writer(std::io::stderr)
            .init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
    }
    let db = DbArgs::new(
        cli.database_url,
        match cli.pooler {
            Pooler::Direct => outhook_dispatcher::Pooling::Direct,
            Pooler::Transaction => outhook_dispatcher::Pooling::Transaction,
        },
    );
    let policy = AddressPolicy {
        allow: cli.allow,
        https_only: cli.https_only,
    };
    let result = match cli.command {
        Command::Sign(args) => commands::signing::sign(args),
        Command::Verify(args) => commands::signing::verify(args),
        Command::Secret(cmd) => commands::signing::secret(cmd),
        Command::Key(cmd) => commands::signing::key(cmd),
        Command::Migrate(args) => block_on(commands::worker::migrate(db, args.check)),
        Command::Run(args) => block_on(commands::worker::run(db, policy, args)),
        Command::Serve(args) => block_on(commands::worker::serve(db, policy, args)),
        Command::Openapi => out!("{}", outhook_server::openapi_json())
            .map(|()| ExitCode::SUCCESS)
            .map_err(Into::into),
        Command::Token { command } => block_on(commands::access::token(db, command)),
        Command::Secrets { command } => block_on(commands::secrets::secrets(db, command)),
        Command::PortalLink(args) => block_on(commands::access::portal_link(db, args)),
        Command::Endpoint { command } => block_on(commands::endpoints::endpoint(db, policy, command)),
        Command::EventType { command } => block_on(commands::event_types::event_type(db, command)),
        Command::SigningKey { command } => block_on(commands::signing_keys::signing_key(db, command)),
        Command::Send(args) => block_on(commands::send::send(db, args)),
        Command::Deliveries { command } => block_on(commands::deliveries::deliveries(db, command)),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`| head`) is not an error: stop quietly.
        Err(e) if output::is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", render_error(&e));
            ExitCode::from(2)
        }
    }
}
