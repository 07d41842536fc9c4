//! `outhook`: run the dispatcher, administer endpoints and deliveries, and
//! sign or verify webhooks from the shell.

#[macro_use]
mod output;
mod commands;
mod config;
mod telemetry;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
    /// A TOML file with settings, keyed by their flags' long names
    /// (`concurrency = 64`); flags and the environment override it (see
    /// `outhook config`).
    #[arg(long, env = config::CONFIG_ENV, global = true, value_name = "FILE")]
    config: Option<std::path::PathBuf>,
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
    /// Export traces over OTLP/HTTP (protobuf) to this collector, as
    /// `<URL>/v1/traces` (for example `http://127.0.0.1:4318`). Off when
    /// unset.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT", global = true, value_parser = parse_otlp_endpoint)]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

/// `--otlp-endpoint`: an http(s) URL.
fn parse_otlp_endpoint(text: &str) -> Result<String, String> {
    match url::Url::parse(text) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.has_host() => Ok(text.to_owned()),
        _ => Err("give the collector's http(s) URL, such as http://127.0.0.1:4318".into()),
    }
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
    /// Ask a running `outhook serve` whether it answers (GET /healthz): exit
    /// 0 when it does, 1 when not. For a container's HEALTHCHECK.
    Healthcheck(commands::health::HealthcheckArgs),
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
    /// The settings file (`--config` or OUTHOOK_CONFIG): check one, or show
    /// what a command would run with.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

/// `outhook config`.
#[derive(Subcommand)]
enum ConfigCommand {
    /// Check a settings file: every key a setting's, every value valid for
    /// it. Exits 0 when it is, 2 with every problem when not.
    Check {
        /// The file; by default the one `--config` or OUTHOOK_CONFIG names.
        file: Option<std::path::PathBuf>,
    },
    /// Print the settings a command would run with, flags, environment,
    /// file and defaults merged, and where each comes from; secrets
    /// redacted. `outhook config show -- run --concurrency 64`.
    Show {
        /// One JSON object per setting, in an array.
        #[arg(long)]
        json: bool,
        /// The command line to show (default: `serve`).
        #[arg(last = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// Runs a database command on a multi-threaded tokio runtime.
fn block_on(command: impl std::future::Future<Output = anyhow::Result<ExitCode>>) -> anyhow::Result<ExitCode> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(command)
}

/// The settings file as `main` found it.
struct Settings {
    /// Every setting there is.
    all: Vec<config::Setting>,
    /// The file, if one was named, and what came of reading it.
    file: Option<Result<config::Loaded, config::Problems>>,
}

impl Settings {
    /// The file's settings, when it was read and is valid.
    fn loaded(&self) -> Option<&config::Loaded> {
        self.file.as_ref().and_then(|f| f.as_ref().ok())
    }

    /// The command line's definition with the file's values as defaults.
    fn command(&self) -> clap::Command {
        match self.loaded() {
            Some(loaded) => config::apply(Cli::command(), loaded),
            None => Cli::command(),
        }
    }

    /// An environment-only setting's value: the environment's, else the file's.
    fn environment_only(&self, key: &str) -> Option<String> {
        config::environment_only(key, &self.all, self.loaded()).map(|(v, _)| v)
    }
}

/// `outhook config check` and `outhook config show`.
fn config_command(command: ConfigCommand, settings: Settings) -> anyhow::Result<ExitCode> {
    match command {
        ConfigCommand::Check { file } => {
            let loaded = match file {
                Some(path) => config::load(&path, &settings.all),
                None => settings.file.ok_or_else(|| {
                    anyhow::anyhow!("no settings file: give one, or --config FILE, or set OUTHOOK_CONFIG")
                })?,
            };
            match loaded {
                Ok(loaded) => {
                    outln!("valid: {} settings", loaded.values.len())?;
                    Ok(ExitCode::SUCCESS)
                }
                Err(problems) => {
                    for problem in &problems.problems {
                        eprintln!("{}: {problem}", problems.path.display());
                    }
                    Ok(ExitCode::from(2))
                }
            }
        }
        ConfigCommand::Show { json, args } => {
            if let Some(Err(problems)) = settings.file {
                return Err(problems.into());
            }
            let root = settings.command();
            let mut argv = vec![std::ffi::OsString::from("outhook")];
            if args.is_empty() {
                argv.push("serve".into());
            }
            argv.extend(args);
            let matches = root.clone().try_get_matches_from(argv)?;
            let shown = config::shown(&root, &matches, &settings.all, settings.loaded());
            if json {
                outln!("{}", serde_json::to_string_pretty(&shown)?)?;
            } else {
                for s in shown {
                    match s.value {
                        Some(v) => outln!("{} = {}  # {}", s.key, toml::Value::String(v), s.source)?,
                        None => outln!("# {} (unset)", s.key)?,
                    }
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let all = config::settings(&Cli::command());
    let file = config::path(&args).map(|path| config::load(&path, &all));
    let settings = Settings { all, file };
    let cli = match settings
        .command()
        .try_get_matches_from(&args)
        .and_then(|m| Cli::from_arg_matches(&m))
    {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let filter = settings
        .environment_only("log")
        .and_then(|f| tracing_subscriber::EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
    let format = match cli.log_format {
        LogFormat::Text => telemetry::Format::Text { colour: colour() },
        LogFormat::Json => telemetry::Format::Json,
    };
    let exporter = match telemetry::install(format, filter, cli.otlp_endpoint.as_deref()) {
        Ok(exporter) => exporter,
        Err(e) => {
            eprintln!("error: --otlp-endpoint: {}", render_error(&e));
            return ExitCode::from(2);
        }
    };
    let code = run(cli, settings);
    if let Some(exporter) = exporter {
        exporter.shutdown();
    }
    code
}

/// Runs the command line's command.
fn run(cli: Cli, settings: Settings) -> ExitCode {
    if let Command::Config { command } = cli.command {
        return finish(config_command(command, settings));
    }
    if let Some(Err(problems)) = &settings.file {
        eprintln!("error: {problems}");
        return ExitCode::from(2);
    }
    if settings.loaded().is_some() {
        // The main keys may come from the file: the keyring is made here
        // rather than from the environment alone. The key and its file are
        // one setting: either in the environment overrides both in the file.
        let env_key = ["OUTHOOK_MAIN_KEY", "OUTHOOK_MAIN_KEY_FILE"]
            .iter()
            .any(|v| std::env::var(v).is_ok_and(|v| !v.trim().is_empty()));
        let key = |name: &str, env: &str| match env_key {
            true => std::env::var(env).ok(),
            false => settings.environment_only(name),
        };
        let keyring = outhook_dispatcher::secrets::Keyring::from_values(
            key("main-key", "OUTHOOK_MAIN_KEY").as_deref(),
            key("main-key-file", "OUTHOOK_MAIN_KEY_FILE").as_deref(),
            settings.environment_only("old-main-keys").as_deref(),
        );
        match keyring {
            Ok(keyring) => {
                // Nothing has read a secret yet, so this cannot be taken.
                let _ = outhook_dispatcher::secrets::install(keyring);
            }
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
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
        Command::Healthcheck(args) => block_on(commands::health::healthcheck(args)),
        Command::Config { .. } => unreachable!("handled above"),
    };
    finish(result)
}

/// The exit status for a command's result, with its error on stderr.
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
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
