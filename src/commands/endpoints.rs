//! `outhook endpoint ...`: receivers, their secrets, limits and health.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Subcommand;
use outhook_dispatcher::db::endpoint::{Endpoint, Limits, endpoint_list};
use outhook_dispatcher::http::AddressPolicy;
use outhook_server::admin::endpoint::{EndpointInput, EndpointPatch};
use outhook_server::admin::{self, Scope};
use outhook_signer::Secret;
use uuid::Uuid;

use crate::commands::worker::DbArgs;
use crate::output::print_json;

fn parse_header(h: &str) -> Result<(String, String)> {
    // Validation (names, values, reserved headers) is the admin layer's.
    let (k, v) = h
        .split_once(':')
        .with_context(|| format!("header `{h}` is not `Name: value`"))?;
    Ok((k.trim().to_owned(), v.trim().to_owned()))
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
        e.id,
        e.owner,
        e.scheme,
        state,
        e.display_url(),
        types
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
    /// A client certificate, extra trusted CAs, a proxy, credentials.
    Connection {
        /// What to do.
        #[command(subcommand)]
        cmd: crate::commands::connection::ConnectionCommand,
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
    let pool = db.connect(2).await?;
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
            let expiring = admin::endpoint::certificate_expiry(&pool, &list).await?;
            if json {
                let rows: Vec<serde_json::Value> = list
                    .iter()
                    .map(|e| {
                        let h = health.get(&e.id);
                        serde_json::json!({
                            "id": e.id, "owner": e.owner, "url": e.display_url(), "enabled": e.enabled,
                            "disabled_reason": e.disabled_reason, "disabled_at": e.disabled_at,
                            "last_success_at": h.and_then(|h| h.last_success_at),
                            "last_failure_at": h.and_then(|h| h.last_failure_at),
                            "failure_streak": h.map_or(0, |h| h.failure_streak),
                            "failing_since": h.and_then(|h| h.failing_since),
                            "certificate": expiring.get(&e.id).map(|c| serde_json::json!({
                                "setting": c.setting, "subject": c.subject,
                                "fingerprint_sha256": c.fingerprint_sha256, "not_after": c.not_after,
                                "expires_soon": admin::endpoint::certificate_expires_soon(c.not_after),
                            })),
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
                    let mut state = if e.enabled {
                        "enabled".to_owned()
                    } else {
                        format!(
                            "disabled {}: {}",
                            at(e.disabled_at),
                            e.disabled_reason.as_deref().unwrap_or("")
                        )
                    };
                    if let Some(c) = expiring.get(&e.id)
                        && admin::endpoint::certificate_expires_soon(c.not_after)
                    {
                        let name = if c.setting == "pinned_certificates" {
                            "pinned"
                        } else {
                            "client"
                        };
                        state.push_str(&format!(
                            "; {name} certificate expires {}",
                            c.not_after.format("%Y-%m-%d %H:%M")
                        ));
                    }
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
        EndpointCommand::Connection { cmd } => crate::commands::connection::connection(&pool, &policy, cmd).await?,
        EndpointCommand::RotateSecret { id, grace, secret } => {
            let secret = admin::endpoint::rotate_secret(&pool, &scope, id, grace, secret.map(Secret::new)).await?;
            outln!("secret {}", secret.expose())?;
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
