//! Endpoint, signing-key and delivery administration, and `send`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use outhook_dispatcher::Event;
use outhook_dispatcher::db::attempt::attempt_list;
use outhook_dispatcher::db::delivery::{
    DeliveryFilter, DeliveryStatus, delivery_get, delivery_list, delivery_requeue, delivery_requeue_dead,
};
use outhook_dispatcher::db::endpoint::{Endpoint, Limits, endpoint_list};
use outhook_dispatcher::db::signing_key::{signing_key_get, signing_key_insert, signing_key_list};
use outhook_dispatcher::http::AddressPolicy;
use outhook_server::admin::endpoint::{EndpointInput, EndpointPatch};
use outhook_server::admin::{self, Scope};
use outhook_signer::{RsaKeyPair, Secret};
use uuid::Uuid;

use crate::commands::worker::DbArgs;

fn parse_header(h: &str) -> Result<(String, String)> {
    // Validation (names, values, reserved headers) is the admin layer's.
    let (k, v) = h
        .split_once(':')
        .with_context(|| format!("header `{h}` is not `Name: value`"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
}

fn print_json(value: &impl serde::Serialize) -> Result<()> {
    outln!("{}", serde_json::to_string_pretty(value)?)?;
    Ok(())
}

fn endpoint_line(e: &Endpoint) -> String {
    let types = if e.event_types.is_empty() {
        "*".to_owned()
    } else {
        e.event_types.join(",")
    };
    let state = if e.enabled {
        "enabled".to_owned()
    } else {
        format!("disabled ({})", e.disabled_reason.as_deref().unwrap_or(""))
    };
    let mut limits = String::new();
    if let Some(rate) = e.rate_limit {
        limits.push_str(&format!("  limit {rate}/s burst {}", e.rate_limit_burst.unwrap_or(1)));
    }
    if let Some(n) = e.max_in_flight {
        limits.push_str(&format!("  {n} in flight"));
    }
    format!(
        "{}  {:<12} {:<18} {:<10} {}  [{}]{limits}",
        e.id, e.owner, e.scheme, state, e.url, types
    )
}

/// `outhook endpoint ...`.
#[derive(Subcommand)]
pub enum EndpointCommand {
    /// Create an endpoint; prints its id and, once, its secret.
    Add {
        /// The provider's customer, vendor or tenant id.
        #[arg(long)]
        owner: String,
        /// Where to POST.
        #[arg(long)]
        url: String,
        /// Signing scheme (see `outhook sign --help`), or `hmac` with --settings.
        #[arg(long)]
        scheme: String,
        /// Custom HMAC settings as JSON, for --scheme hmac.
        #[arg(long)]
        settings: Option<String>,
        /// Subscribe to this event type; repeat. None: every type.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// A static header, `Name: value`; repeat.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// Free text.
        #[arg(long, default_value = "")]
        description: String,
        /// Use this secret instead of generating one.
        #[arg(long)]
        secret: Option<String>,
        /// The signing key (id or name) for RSA schemes; default: the key named `default`, created if missing.
        #[arg(long)]
        signing_key: Option<String>,
        /// The header carrying the message id for schemes that send none of their own
        /// (default `webhook-id`; "" for none).
        #[arg(long)]
        message_id_header: Option<String>,
        /// Disable it after failing this long without a success (default: the
        /// worker's --auto-disable-after; 0s: never).
        #[arg(long, value_parser = humantime::parse_duration)]
        auto_disable_after: Option<Duration>,
        /// Ordered: deliveries one at a time, in outbox order; a failing one
        /// holds its successors back until it is delivered or dead.
        #[arg(long)]
        fifo: bool,
        /// At most this many requests, across every worker: `20` or `20/s`,
        /// `600/min`, `1000/h`.
        #[arg(long, value_parser = parse_rate)]
        rate_limit: Option<f64>,
        /// Requests that may go back to back within --rate-limit (default 1).
        #[arg(long, requires = "rate_limit")]
        burst: Option<i32>,
        /// At most this many attempts in flight at once, across every worker.
        #[arg(long)]
        max_in_flight: Option<i32>,
        /// Deliver only events whose payload matches, such as
        /// `collection = "0xabc" and amount >= 10` (see the README).
        #[arg(long)]
        filter: Option<String>,
    },
    /// List endpoints.
    List {
        /// Only this owner's.
        #[arg(long)]
        owner: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one endpoint (secrets are never shown).
    Show {
        /// Endpoint id.
        id: Uuid,
    },
    /// Change an endpoint.
    Update {
        /// Endpoint id.
        id: Uuid,
        /// A new URL.
        #[arg(long)]
        url: Option<String>,
        /// Replace the subscribed event types; repeat.
        #[arg(long = "event-type")]
        event_types: Vec<String>,
        /// Subscribe to every event type.
        #[arg(long, conflicts_with = "event_types")]
        all_event_types: bool,
        /// Replace the static headers; repeat.
        #[arg(long = "header")]
        headers: Vec<String>,
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        /// A new message-id header name ("" for none).
        #[arg(long)]
        message_id_header: Option<String>,
        /// A new auto-disable window (0s: never).
        #[arg(long, value_parser = humantime::parse_duration)]
        auto_disable_after: Option<Duration>,
        /// Ordered or not: `--fifo true` or `--fifo false`.
        #[arg(long)]
        fifo: Option<bool>,
        /// A new rate limit (`20/s`, `600/min`; `0`: none).
        #[arg(long, value_parser = parse_rate)]
        rate_limit: Option<f64>,
        /// A new burst (`0`: the default, 1).
        #[arg(long)]
        burst: Option<i32>,
        /// A new limit of attempts in flight (`0`: none).
        #[arg(long)]
        max_in_flight: Option<i32>,
        /// A new content filter ("" removes it).
        #[arg(long)]
        filter: Option<String>,
    },
    /// Each endpoint's health: last success, failures in a row, state.
    Health {
        /// Only this owner's.
        #[arg(long)]
        owner: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop deliveries to an endpoint.
    Disable {
        /// Endpoint id.
        id: Uuid,
        /// Why.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Resume deliveries to an endpoint.
    Enable {
        /// Endpoint id.
        id: Uuid,
    },
    /// Delete an endpoint; its pending deliveries become dead letters.
    Delete {
        /// Endpoint id.
        id: Uuid,
    },
    /// Add a new secret; current ones keep signing for the grace period. Prints the new secret once.
    RotateSecret {
        /// Endpoint id.
        id: Uuid,
        /// How long the old secrets stay valid.
        #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
        grace: Duration,
        /// Use this secret instead of generating one.
        #[arg(long)]
        secret: Option<String>,
    },
}

/// Runs an `endpoint` subcommand, as an admin, through the same
/// administration layer as the HTTP API.
pub async fn endpoint(db: DbArgs, policy: AddressPolicy, cmd: EndpointCommand) -> Result<ExitCode> {
    let pool = db.pool(2).await?;
    let scope = Scope::Admin;
    match cmd {
        EndpointCommand::Add {
            owner,
            url,
            scheme,
            settings,
            event_types,
            headers,
            description,
            secret,
            signing_key,
            message_id_header,
            auto_disable_after,
            fifo,
            rate_limit,
            burst,
            max_in_flight,
            filter,
        } => {
            let scheme_settings: Option<serde_json::Value> = settings
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .context("--settings is not JSON")?;
            let headers = headers.iter().map(|h| parse_header(h)).collect::<Result<_>>()?;
            let created = admin::endpoint::create(
                &pool,
                &scope,
                &policy,
                EndpointInput {
                    owner: Some(owner),
                    url,
                    scheme,
                    scheme_settings,
                    event_types,
                    headers,
                    description,
                    secret: secret.map(Secret::new),
                    signing_key,
                    message_id_header,
                    auto_disable_after,
                    fifo,
                    limits: Limits {
                        rate: rate_limit.filter(|r| *r != 0.0),
                        burst: burst.filter(|b| *b != 0),
                        max_in_flight: max_in_flight.filter(|m| *m != 0),
                    },
                    filter,
                },
            )
            .await?;
            outln!("endpoint {}", created.endpoint.id)?;
            if let Some(s) = created.secret {
                outln!("secret {}", s.expose())?;
            }
            if let Some(k) = created.endpoint.signing_key_id {
                outln!("signing key {k} (publish it: outhook signing-key public {k})")?;
            }
        }
        EndpointCommand::List { owner, json } => {
            let list = endpoint_list(&pool, owner.as_deref()).await?;
            if json {
                print_json(&list)?;
            } else {
                for e in &list {
                    outln!("{}", endpoint_line(e))?;
                }
            }
        }
        EndpointCommand::Show { id } => print_json(&admin::endpoint::get(&pool, &scope, id).await?)?,
        EndpointCommand::Update {
            id,
            url,
            event_types,
            all_event_types,
            headers,
            description,
            message_id_header,
            auto_disable_after,
            fifo,
            rate_limit,
            burst,
            max_in_flight,
            filter,
        } => {
            let patch = EndpointPatch {
                url,
                event_types: if all_event_types {
                    Some(Vec::new())
                } else if event_types.is_empty() {
                    None
                } else {
                    Some(event_types)
                },
                headers: if headers.is_empty() {
                    None
                } else {
                    Some(headers.iter().map(|h| parse_header(h)).collect::<Result<_>>()?)
                },
                description,
                message_id_header,
                auto_disable_after,
                fifo,
                rate_limit,
                rate_limit_burst: burst,
                max_in_flight,
                filter,
                ..EndpointPatch::default()
            };
            let e = admin::endpoint::update(&pool, &scope, &policy, id, patch).await?;
            outln!("{}", endpoint_line(&e))?;
        }
        EndpointCommand::Health { owner, json } => {
            let list = endpoint_list(&pool, owner.as_deref()).await?;
            let health = admin::endpoint::health(&pool, &list).await?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|e| {
                        let h = health.get(&e.id);
                        serde_json::json!({
                            "id": e.id, "owner": e.owner, "url": e.url, "enabled": e.enabled,
                            "disabled_reason": e.disabled_reason, "disabled_at": e.disabled_at,
                            "last_success_at": h.and_then(|h| h.last_success_at),
                            "last_failure_at": h.and_then(|h| h.last_failure_at),
                            "failure_streak": h.map_or(0, |h| h.failure_streak),
                            "failing_since": h.and_then(|h| h.failing_since),
                        })
                    })
                    .collect();
                print_json(&rows)?;
            } else {
                let at = |t: Option<chrono::DateTime<chrono::Utc>>| {
                    t.map_or("never".to_owned(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                };
                outln!(
                    "{:<36}  {:<12} {:<19}  {:>7}  {:<19}  {}",
                    "endpoint",
                    "owner",
                    "last success",
                    "failing",
                    "failing since",
                    "state"
                )?;
                for e in &list {
                    let h = health.get(&e.id);
                    let state = if e.enabled {
                        "enabled".to_owned()
                    } else {
                        format!(
                            "disabled {}: {}",
                            at(e.disabled_at),
                            e.disabled_reason.as_deref().unwrap_or("")
                        )
                    };
                    outln!(
                        "{:<36}  {:<12} {:<19}  {:>7}  {:<19}  {}",
                        e.id,
                        e.owner,
                        at(h.and_then(|h| h.last_success_at)),
                        h.map_or(0, |h| h.failure_streak),
                        h.and_then(|h| h.failing_since).map_or("-".to_owned(), |t| at(Some(t))),
                        state
                    )?;
                }
            }
        }
        EndpointCommand::Disable { id, reason } => {
            let e = admin::endpoint::set_enabled(&pool, &scope, id, false, reason.as_deref()).await?;
            outln!("{}", endpoint_line(&e))?;
        }
        EndpointCommand::Enable { id } => {
            let e = admin::endpoint::set_enabled(&pool, &scope, id, true, None).await?;
            outln!("{}", endpoint_line(&e))?;
        }
        EndpointCommand::Delete { id } => {
            let e = admin::endpoint::delete(&pool, &scope, id).await?;
            outln!("deleted {}", e.id)?;
        }
        EndpointCommand::RotateSecret { id, grace, secret } => {
            let secret = admin::endpoint::rotate_secret(&pool, &scope, id, grace, secret.map(Secret::new)).await?;
            outln!("secret {}", secret.expose())?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `outhook signing-key ...`.
#[derive(Subcommand)]
pub enum SigningKeyCommand {
    /// Generate and store a new RSA key pair.
    New {
        /// A unique name.
        #[arg(long)]
        name: String,
        /// Modulus size: 2048, 3072 or 4096.
        #[arg(long, default_value_t = 2048)]
        bits: u32,
    },
    /// List signing keys.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a key's public half, to publish.
    Public {
        /// Key id or name.
        key: String,
        /// As a JWK instead of PEM.
        #[arg(long)]
        jwk: bool,
    },
}

/// Runs a `signing-key` subcommand.
pub async fn signing_key(db: DbArgs, cmd: SigningKeyCommand) -> Result<ExitCode> {
    let pool = db.pool(2).await?;
    match cmd {
        SigningKeyCommand::New { name, bits } => {
            let key = tokio::task::spawn_blocking(move || RsaKeyPair::generate(bits)).await??;
            let k = signing_key_insert(&pool, &name, &key).await?;
            outln!("signing key {} ({})", k.id, k.name)?;
        }
        SigningKeyCommand::List { json } => {
            let keys = signing_key_list(&pool).await?;
            if json {
                print_json(&keys)?;
            } else {
                for k in &keys {
                    outln!("{}  {:<16} {}  {}", k.id, k.name, k.algorithm, k.created_at)?;
                }
            }
        }
        SigningKeyCommand::Public { key, jwk } => {
            let k = signing_key_get(&pool, &key).await?;
            if jwk {
                outln!("{}", k.public_key_jwk)?;
            } else {
                out!("{}", k.public_key_pem)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `outhook send` arguments.
#[derive(clap::Args)]
pub struct SendArgs {
    /// The event type.
    #[arg(long)]
    event_type: String,
    /// Fan out to this owner's subscribed endpoints.
    #[arg(long, required_unless_present = "endpoint", conflicts_with = "endpoint")]
    owner: Option<String>,
    /// Or deliver to this endpoint.
    #[arg(long)]
    endpoint: Option<Uuid>,
    /// Idempotency key: sending it again does nothing.
    #[arg(long)]
    event_id: Option<String>,
    /// The JSON payload file; `-` or nothing for stdin.
    body: Option<PathBuf>,
}

/// Enqueues one event, through the same checks as `POST /v1/messages`.
pub async fn send(db: DbArgs, args: SendArgs) -> Result<ExitCode> {
    let mut payload = String::new();
    match args.body.as_deref() {
        Some(p) if p != std::path::Path::new("-") => payload = std::fs::read_to_string(p)?,
        _ => {
            std::io::stdin().read_to_string(&mut payload)?;
        }
    }
    let pool = db.pool(1).await?;
    let done = admin::message::create(
        &pool,
        &Scope::Admin,
        Event {
            event_type: &args.event_type,
            payload: &payload,
            owner: args.owner.as_deref(),
            endpoint_id: args.endpoint,
            event_id: args.event_id.as_deref(),
        },
    )
    .await?;
    if done.duplicate {
        outln!("duplicate event id: nothing enqueued (message {})", done.message.id)?;
    } else {
        outln!("message {}: {} deliveries", done.message.id, done.deliveries)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `outhook deliveries ...`.
#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// List deliveries, newest first.
    List {
        /// pending, delivered or dead.
        #[arg(long)]
        status: Option<DeliveryStatus>,
        /// Only this endpoint.
        #[arg(long)]
        endpoint: Option<Uuid>,
        /// Only this event type.
        #[arg(long)]
        event_type: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show a delivery and its attempt log.
    Show {
        /// Delivery id.
        id: i64,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete deliveries finished longer ago than --older-than, their attempt logs, and outbox rows no
    /// longer referenced (their idempotency keys go with them).
    Prune {
        /// Keep everything newer than this.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Duration,
    },
    /// Re-queue deliveries now (dead letters come back; delivered ones are sent again).
    Retry {
        /// Delivery ids.
        ids: Vec<i64>,
        /// Re-queue every dead letter (of --endpoint, if given).
        #[arg(long, conflicts_with = "ids")]
        dead: bool,
        /// With --dead: only this endpoint's.
        #[arg(long, requires = "dead")]
        endpoint: Option<Uuid>,
    },
}

/// Runs a `deliveries` subcommand.
pub async fn deliveries(db: DbArgs, cmd: DeliveriesCommand) -> Result<ExitCode> {
    let pool = db.pool(2).await?;
    match cmd {
        DeliveriesCommand::List {
            status,
            endpoint,
            event_type,
            limit,
            json,
        } => {
            let filter = DeliveryFilter {
                status,
                endpoint_id: endpoint,
                event_type,
                limit: Some(limit),
                ..DeliveryFilter::default()
            };
            let list = delivery_list(&pool, &filter).await?;
            if json {
                print_json(&list)?;
            } else {
                outln!(
                    "{:>8}  {:<9} {:>3}  {:<28} {:<36}  last error",
                    "id",
                    "status",
                    "try",
                    "event type",
                    "endpoint"
                )?;
                for d in &list {
                    outln!(
                        "{:>8}  {:<9} {:>3}  {:<28} {}  {}",
                        d.id,
                        d.status.as_str(),
                        d.attempts,
                        d.event_type,
                        d.endpoint_id,
                        d.last_error.as_deref().unwrap_or("")
                    )?;
                }
            }
        }
        DeliveriesCommand::Show { id, json } => {
            let d = delivery_get(&pool, id).await?;
            let attempts = attempt_list(&pool, id).await?;
            if json {
                print_json(&serde_json::json!({"delivery": d, "attempts": attempts}))?;
            } else {
                outln!(
                    "delivery {} of message {} (msg_{}) to {}",
                    d.id,
                    d.message_id,
                    d.message_uid.simple(),
                    d.endpoint_id
                )?;
                outln!(
                    "event type {}, status {}, {} attempts",
                    d.event_type,
                    d.status.as_str(),
                    d.attempts
                )?;
                if d.held {
                    outln!("held until the endpoint is enabled")?;
                } else if let Some(at) = d.next_attempt_at {
                    outln!("next attempt at {at}")?;
                }
                for a in &attempts {
                    outln!(
                        "  #{:<2} {}  {:>5} ms  {:<16} {:>3}  {}{}{}",
                        a.attempt,
                        a.started_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                        a.duration_ms,
                        a.outcome,
                        a.status_code.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                        a.error.as_deref().unwrap_or(""),
                        a.next_attempt_at.map(|t| format!(" (next at {t})")).unwrap_or_default(),
                        if a.superseded {
                            " (superseded: the delivery had moved on)"
                        } else {
                            ""
                        }
                    )?;
                }
            }
        }
        DeliveriesCommand::Prune { older_than } => {
            let p = outhook_dispatcher::db::delivery::delivery_prune(&pool, older_than, 10_000).await?;
            outln!(
                "pruned {} deliveries, {} attempts, {} messages",
                p.deliveries,
                p.attempts,
                p.messages
            )?;
        }
        DeliveriesCommand::Retry { ids, dead, endpoint } => {
            let n = if dead {
                delivery_requeue_dead(&pool, endpoint).await?
            } else {
                if ids.is_empty() {
                    bail!("give delivery ids or --dead");
                }
                delivery_requeue(&pool, &ids).await?
            };
            outln!("re-queued {n} deliveries")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `outhook token ...`: bearer tokens for the HTTP API.
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
    let pool = db.pool(1).await?;
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
    let pool = db.pool(1).await?;
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

/// `outhook secrets ...`: the main key that seals secrets at rest.
#[derive(Subcommand)]
pub enum SecretsCommand {
    /// Print a new random main key (base64 of 32 bytes) for OUTHOOK_MAIN_KEY.
    NewMainKey,
    /// How the stored secrets are sealed: plain, or by which main key.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Seal every stored secret with OUTHOOK_MAIN_KEY, opening those sealed
    /// with an older key given in OUTHOOK_OLD_MAIN_KEYS; plain ones are
    /// sealed too. Online: a batch of rows at a time, each its own
    /// transaction. Workers must hold both keys while it runs.
    RotateMainKey {
        /// Rows per transaction.
        #[arg(long, default_value_t = 500)]
        batch: i64,
    },
}

/// Runs a `secrets` subcommand.
pub async fn secrets(db: DbArgs, cmd: SecretsCommand) -> Result<ExitCode> {
    use outhook_dispatcher::secrets;
    if let SecretsCommand::NewMainKey = cmd {
        outln!("{}", secrets::MainKey::generate()?)?;
        return Ok(ExitCode::SUCCESS);
    }
    let pool = db.pool(2).await?;
    let keyring = secrets::keyring()?;
    match cmd {
        SecretsCommand::NewMainKey => {}
        SecretsCommand::Status { json } => {
            let inventory = secrets::check(&pool, keyring).await?;
            if json {
                print_json(&serde_json::json!({
                    "main_key": keyring.current_id(),
                    "plain": inventory.plain,
                    "sealed": inventory.sealed.iter().map(|(k, n)| serde_json::json!({"main_key": k, "count": n})).collect::<Vec<_>>(),
                }))?;
            } else {
                outln!("this process's main key: {}", keyring.current_id().unwrap_or("none"))?;
                outln!("plain text: {}", inventory.plain)?;
                for (k, n) in &inventory.sealed {
                    outln!("sealed with {k}: {n}")?;
                }
            }
        }
        SecretsCommand::RotateMainKey { batch } => {
            let Some(id) = keyring.current_id() else {
                anyhow::bail!("set OUTHOOK_MAIN_KEY to the new main key (and OUTHOOK_OLD_MAIN_KEYS to the old ones)");
            };
            secrets::check(&pool, keyring).await?;
            let n = secrets::reseal_all(&pool, keyring, batch.clamp(1, 10_000)).await?;
            outln!("{n} secrets sealed with main key {id}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A rate as requests per second: `20`, `20/s`, `600/min` or `1000/h`.
fn parse_rate(text: &str) -> std::result::Result<f64, String> {
    let (count, per) = text.split_once('/').unwrap_or((text, "s"));
    let count: f64 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a rate: try 20/s, 600/min or 1000/h"))?;
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("unknown unit `{other}` in `{text}`: use s, min or h")),
    };
    if !count.is_finite() || count < 0.0 {
        return Err(format!("`{text}` is not a rate: the count must be 0 or more"));
    }
    Ok(count / seconds)
}

#[cfg(test)]
mod tests {
    use super::parse_rate;

    #[test]
    fn rates_read_in_any_unit_as_per_second() {
        assert_eq!(parse_rate("20"), Ok(20.0));
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("600/min"), Ok(10.0));
        assert_eq!(parse_rate("1800/h"), Ok(0.5));
        assert_eq!(parse_rate("0"), Ok(0.0));
        for bad in ["fast", "20/day", "-1/s", "inf", "NaN/s"] {
            assert!(parse_rate(bad).is_err(), "{bad} was taken");
        }
    }
}
