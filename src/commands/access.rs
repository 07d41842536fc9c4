//! `outhook token ...` and `outhook portal-link`: who may reach the API and the portal.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use clap::Subcommand;
use outhook_server::admin::{self, Scope};
use uuid::Uuid;

use crate::commands::worker::DbArgs;
use crate::output::print_json;

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Make a token and print it alone on stdout (it is shown only once).
    New {
        /// A token that sees everything.
        #[arg(long, conflicts_with = "owner", required_unless_present = "owner")]
        admin: bool,
        /// A token that sees only this owner's endpoints, messages and deliveries.
        #[arg(long)]
        owner: Option<String>,
        /// It stops working after this long (e.g. `30d`); default: never.
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
        /// A label, for `token list`.
        #[arg(long, default_value = "")]
        name: String,
    },
    /// List tokens (never their secrets).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id (the part after `oh_`, or as `token list` shows it).
    Revoke {
        /// Token id.
        id: Uuid,
    },
}

/// Runs a `token` subcommand.
pub async fn token(db: DbArgs, cmd: TokenCommand) -> Result<ExitCode> {
    let pool = db.connect(1).await?;
    match cmd {
        TokenCommand::New {
            admin: _,
            owner,
            expires,
            name,
        } => {
            let scope = owner.map_or(Scope::Admin, Scope::Owner);
            let (_, text) = admin::token::create(&pool, &name, &scope, expires).await?;
            outln!("{}", text.expose())?;
        }
        TokenCommand::List { json } => {
            let tokens = admin::token::list(&pool).await?;
            if json {
                print_json(&tokens)?;
            } else {
                for t in &tokens {
                    let state = match (t.revoked_at, t.expires_at) {
                        (Some(at), _) => format!("revoked {}", at.format("%Y-%m-%d %H:%M")),
                        (None, Some(at)) if at <= chrono::Utc::now() => {
                            format!("expired {}", at.format("%Y-%m-%d %H:%M"))
                        }
                        (None, Some(at)) => format!("expires {}", at.format("%Y-%m-%d %H:%M")),
                        (None, None) => "active".to_owned(),
                    };
                    outln!(
                        "{}  {:<14} {:<24} {}",
                        t.id,
                        t.owner.as_deref().map_or("admin".to_owned(), |o| format!("owner {o}")),
                        state,
                        t.name
                    )?;
                }
            }
        }
        TokenCommand::Revoke { id } => {
            let t = admin::token::revoke(&pool, id).await?;
            outln!("revoked {}", t.id)?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `outhook portal-link`.
#[derive(clap::Args)]
pub struct PortalLinkArgs {
    /// The owner whose portal the link opens.
    #[arg(long)]
    owner: String,
    /// How long the link works (1m to 7d).
    #[arg(long, default_value = "15m", value_parser = humantime::parse_duration)]
    ttl: Duration,
    /// Where customers reach `outhook serve` (the same as serve's --public-url).
    #[arg(long, env = "OUTHOOK_PUBLIC_URL", default_value = "http://127.0.0.1:8080")]
    public_url: String,
    /// Print JSON (url, owner, expires_at).
    #[arg(long)]
    json: bool,
}

/// Prints a link that opens the delivery portal for one owner.
pub async fn portal_link(db: DbArgs, args: PortalLinkArgs) -> Result<ExitCode> {
    let pool = db.connect(1).await?;
    let link = admin::portal::link(
        &pool,
        &Scope::Admin,
        Some(&args.owner),
        Some(args.ttl),
        &args.public_url,
    )
    .await?;
    if args.json {
        print_json(&serde_json::json!({
            "url": link.url, "owner": link.owner, "expires_at": link.expires_at,
        }))?;
    } else {
        outln!("{}", link.url)?;
    }
    Ok(ExitCode::SUCCESS)
}
