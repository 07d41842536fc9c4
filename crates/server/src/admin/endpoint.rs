//! Endpoints: create, read, list, update, enable/disable, delete, secrets.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue};
use outhook_dispatcher::db::endpoint::{
    Endpoint, EndpointFilter, EndpointUpdate, Limits, NewEndpoint, endpoint_delete, endpoint_get, endpoint_insert,
    endpoint_list_page, endpoint_secret_list, endpoint_secret_rotate, endpoint_set_enabled, endpoint_update,
};
use outhook_dispatcher::db::signing_key::{signing_key_get, signing_key_insert};
use outhook_dispatcher::filter::Filter;
use outhook_dispatcher::http::{AddressPolicy, parse_url};
use outhook_signer::{Ed25519SigningKey, HmacSettings, KeyKind, RsaKeyPair, Scheme, Secret};
use sqlx::PgPool;
use uuid::Uuid;

use super::{Error, Page, Result, Scope};

/// The longest rotation grace period.
pub const MAX_GRACE: Duration = Duration::from_secs(30 * 24 * 3600);

/// A new endpoint, as the CLI and the API take it.
#[derive(Debug, Clone, Default)]
pub struct EndpointInput {
    /// The owner; required for an admin, implied for an owner's scope.
    pub owner: Option<String>,
    /// Where to POST.
    pub url: String,
    /// A scheme name, or `hmac` with `scheme_settings`.
    pub scheme: String,
    /// Custom HMAC settings (scheme `hmac`).
    pub scheme_settings: Option<serde_json::Value>,
    /// Subscribed event types; empty for all.
    pub event_types: Vec<String>,
    /// Static headers added to every request.
    pub headers: BTreeMap<String, String>,
    /// Free text.
    pub description: String,
    /// Use this secret instead of generating one.
    pub secret: Option<Secret>,
    /// The signing key (id or name) for RSA schemes; default: `default`,
    /// created when missing.
    pub signing_key: Option<String>,
    /// The header carrying the message id (default `webhook-id`; empty for
    /// none).
    pub message_id_header: Option<String>,
    /// Disable after this long failing without a success (default: the
    /// worker's, 5 days; zero: never).
    pub auto_disable_after: Option<Duration>,
    /// Ordered: one delivery at a time, in outbox order.
    pub fifo: bool,
    /// Rate and in-flight limits, held across every worker.
    pub limits: Limits,
    /// A content filter on the payload (see `outhook_dispatcher::filter`);
    /// `None` or empty: every event of its types.
    pub filter: Option<String>,
}

/// A created endpoint and, once, its secret.
#[derive(Debug, Clone)]
pub struct Created {
    /// The endpoint.
    pub endpoint: Endpoint,
    /// Its first secret (shared-secret and v1a schemes).
    pub secret: Option<Secret>,
}

/// Changes to an endpoint; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct EndpointPatch {
    /// A new URL.
    pub url: Option<String>,
    /// New subscribed event types (empty for all).
    pub event_types: Option<Vec<String>>,
    /// New static headers.
    pub headers: Option<BTreeMap<String, String>>,
    /// New custom HMAC settings (scheme `hmac` only).
    pub scheme_settings: Option<serde_json::Value>,
    /// A new description.
    pub description: Option<String>,
    /// Enable or disable.
    pub enabled: Option<bool>,
    /// Why, when disabling.
    pub disabled_reason: Option<String>,
    /// A new message-id header name (empty for none).
    pub message_id_header: Option<String>,
    /// A new auto-disable window (zero: never).
    pub auto_disable_after: Option<Duration>,
    /// Ordered or not.
    pub fifo: Option<bool>,
    /// A new rate limit, requests per second (0: none).
    pub rate_limit: Option<f64>,
    /// A new burst (0: the default, 1).
    pub rate_limit_burst: Option<i32>,
    /// A new limit of attempts in flight (0: none).
    pub max_in_flight: Option<i32>,
    /// A new content filter (empty: none).
    pub filter: Option<String>,
}

/// Parses a content filter; empty or blank means none.
pub fn parse_filter(text: &str) -> Result<Option<Filter>> {
    super::rules::check_text("filter", text, 4096)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    Ok(Some(Filter::parse(text)?))
}

/// Checks limits, naming the parameter at fault.
fn check_limits(limits: &Limits) -> Result<()> {
    limits.validate().map_err(|e| {
        let name = if limits.burst.is_some() && limits.rate.is_none() {
            "rate_limit_burst"
        } else {
            "limits"
        };
        Error::parameter(
            name,
            e.to_string().trim_start_matches("invalid configuration: ").to_owned(),
        )
    })
}

/// The limits `patch` leaves on an endpoint that has `current`.
fn merged_limits(current: Limits, patch: &EndpointPatch) -> Limits {
    let pick_f = |old: Option<f64>, new: Option<f64>| match new {
        None => old,
        Some(0.0) => None,
        Some(v) => Some(v),
    };
    let pick_i = |old: Option<i32>, new: Option<i32>| match new {
        None => old,
        Some(0) => None,
        Some(v) => Some(v),
    };
    let rate = pick_f(current.rate, patch.rate_limit);
    Limits {
        rate,
        // Lifting the rate lifts its burst.
        burst: if patch.rate_limit == Some(0.0) && patch.rate_limit_burst.is_none() {
            None
        } else {
            pick_i(current.burst, patch.rate_limit_burst)
        },
        max_in_flight: pick_i(current.max_in_flight, patch.max_in_flight),
    }
}

/// An auto-disable window in whole seconds, as stored.
fn window_secs(window: Option<Duration>) -> Result<Option<i32>> {
    window
        .map(|w| {
            i32::try_from(w.as_secs())
                .ok()
                .filter(|s| *s <= 365 * 86_400)
                .ok_or_else(|| Error::parameter("auto_disable_after", "at most 365 days"))
        })
        .transpose()
}

/// The scheme an endpoint's settings describe.
pub fn scheme(name: &str, settings: Option<&serde_json::Value>) -> Result<Scheme> {
    if name == "hmac" {
        let settings = settings.ok_or_else(|| Error::Settings("scheme `hmac` needs scheme_settings".into()))?;
        let parsed: HmacSettings =
            serde_json::from_value(settings.clone()).map_err(|e| Error::Settings(format!("scheme_settings: {e}")))?;
        return Scheme::try_from(&parsed).map_err(|e| Error::Settings(format!("scheme_settings: {e}")));
    }
    if settings.is_some() {
        return Err(Error::Settings(format!(
            "scheme `{name}` takes no scheme_settings (only `hmac` does)"
        )));
    }
    Scheme::by_name(name).map_err(|_| Error::UnknownScheme(name.to_owned()))
}

/// Checks `url` against the same address policy as the worker: the URL's
/// form, then, for a host name, the addresses it resolves to now. A name
/// that does not resolve is accepted (the worker checks every connection
/// again, and logs DNS failures).
pub async fn check_url(policy: &AddressPolicy, url: &str) -> Result<()> {
    let parsed = parse_url(url)?;
    policy.check_url(&parsed)?;
    let Some(host) = parsed.host_str() else {
        return Ok(());
    };
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok()
    {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let lookup = tokio::time::timeout(Duration::from_secs(3), tokio::net::lookup_host((host, port))).await;
    if let Ok(Ok(addrs)) = lookup {
        let addrs: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
        if !addrs.is_empty() && !addrs.iter().any(|ip| policy.permits(*ip)) {
            let list = addrs.iter().map(IpAddr::to_string).collect::<Vec<_>>().join(", ");
            return Err(Error::AddressRefused(format!(
                "every address of {host} is private or reserved ({list}); allowlist its network to deliver there"
            )));
        }
    }
    Ok(())
}

fn check_event_types(types: &[String]) -> Result<()> {
    for t in types {
        super::event_type::check_name("event_types", t)?;
    }
    Ok(())
}

fn check_headers(headers: &BTreeMap<String, String>) -> Result<Vec<(String, String)>> {
    headers
        .iter()
        .map(|(name, value)| {
            let parsed = HeaderName::try_from(name.as_str())
                .map_err(|_| Error::parameter("headers", format!("`{name}` is not a header name")))?;
            if outhook_dispatcher::http::RESERVED_HEADERS.contains(&parsed.as_str()) {
                return Err(Error::parameter("headers", format!("`{name}` is set by Outhook")));
            }
            HeaderValue::try_from(value.as_str())
                .map_err(|_| Error::parameter("headers", format!("the value of `{name}` is not a header value")))?;
            Ok((parsed.as_str().to_owned(), value.clone()))
        })
        .collect()
}

/// A message-id header name: empty (none), or a header name Outhook does
/// not set otherwise (`webhook-id` itself is the default).
fn check_id_header(name: &str) -> Result<()> {
    if name.is_empty() || name.eq_ignore_ascii_case(outhook_dispatcher::http::DEFAULT_MESSAGE_ID_HEADER) {
        return Ok(());
    }
    let parsed = HeaderName::try_from(name)
        .map_err(|_| Error::parameter("message_id_header", format!("`{name}` is not a header name")))?;
    if outhook_dispatcher::http::RESERVED_HEADERS.contains(&parsed.as_str()) {
        return Err(Error::parameter(
            "message_id_header",
            format!("`{name}` is set by Outhook"),
        ));
    }
    Ok(())
}

fn owner_for(scope: &Scope, given: Option<String>) -> Result<String> {
    match (scope, given) {
        (Scope::Admin, Some(o)) => {
            super::rules::check_name("owner", &o)?;
            Ok(o)
        }
        (Scope::Admin, None) => Err(Error::parameter("owner", "required")),
        (Scope::Owner(o), None) => Ok(o.clone()),
        (Scope::Owner(o), Some(given)) if given == *o => Ok(given),
        (Scope::Owner(o), Some(_)) => Err(Error::parameter("owner", format!("this token can only act for `{o}`"))),
    }
}

async fn signing_key_for(pool: &PgPool, name: Option<&str>) -> Result<Uuid> {
    if let Some(name) = name {
        return Ok(signing_key_get(pool, name).await?.id);
    }
    match signing_key_get(pool, "default").await {
        Ok(k) => Ok(k.id),
        Err(outhook_dispatcher::Error::NotFound(_)) => {
            let key = tokio::task::spawn_blocking(|| RsaKeyPair::generate(2048))
                .await
                .map_err(|e| Error::Internal(e.to_string()))?
                .map_err(|e| Error::Settings(e.to_string()))?;
            match signing_key_insert(pool, "default", &key).await {
                Ok(k) => Ok(k.id),
                // Another request made it first.
                Err(_) => Ok(signing_key_get(pool, "default").await?.id),
            }
        }
        Err(e) => Err(e.into()),
    }
}

/// Creates an endpoint: checks every field, generates its secret (or
/// picks its RSA key), and stores both in one transaction.
pub async fn create(pool: &PgPool, scope: &Scope, policy: &AddressPolicy, input: EndpointInput) -> Result<Created> {
    create_limited(pool, scope, policy, None, input).await
}

/// [`create`], refusing an owner's scope that already has `owner_limit`
/// endpoints (the operator's limit for customers; admins are not limited).
/// The count and the insert are one transaction under the owner's lock, so
/// concurrent requests cannot pass the limit together.
pub async fn create_limited(
    pool: &PgPool,
    scope: &Scope,
    policy: &AddressPolicy,
    owner_limit: Option<u32>,
    input: EndpointInput,
) -> Result<Created> {
    let owner = owner_for(scope, input.owner)?;
    let owner_limit = owner_limit.filter(|_| matches!(scope, Scope::Owner(_)));
    let parsed = scheme(&input.scheme, input.scheme_settings.as_ref())?;
    if owner == outhook_dispatcher::OPERATOR_OWNER && !input.scheme.starts_with("standard-webhooks") {
        return Err(Error::Settings(format!(
            "the operator's endpoints (owner `{}`) receive operational events signed with Standard Webhooks: \
             use scheme `standard-webhooks` or `standard-webhooks-v1a`",
            outhook_dispatcher::OPERATOR_OWNER
        )));
    }
    check_url(policy, &input.url).await?;
    check_event_types(&input.event_types)?;
    let filter = parse_filter(input.filter.as_deref().unwrap_or(""))?;
    super::rules::check_text("description", &input.description, super::rules::TEXT_MAX)?;
    check_limits(&input.limits)?;
    let headers = check_headers(&input.headers)?;
    if let Some(name) = &input.message_id_header {
        check_id_header(name)?;
    }
    let (secret, signing_key_id) = match parsed.key_kind() {
        KeyKind::Rsa => {
            if input.secret.is_some() {
                return Err(Error::Settings(format!(
                    "scheme `{}` signs with the provider's RSA key, not a secret",
                    input.scheme
                )));
            }
            (None, Some(signing_key_for(pool, input.signing_key.as_deref()).await?))
        }
        _ => {
            let secret = match input.secret {
                Some(s) => s,
                None => parsed.generate_secret().map_err(|e| Error::Settings(e.to_string()))?,
            };
            // Refuse a secret the scheme cannot sign with now, not at the first delivery.
            outhook_signer::Signer::new(parsed.clone(), std::slice::from_ref(&secret))
                .map_err(|e| Error::Settings(format!("secret: {e}")))?;
            (Some(secret), None)
        }
    };
    let endpoint = endpoint_insert(
        pool,
        &NewEndpoint {
            owner,
            url: input.url,
            scheme: input.scheme,
            scheme_settings: input.scheme_settings,
            event_types: input.event_types,
            headers,
            description: input.description,
            secret: secret.clone(),
            signing_key_id,
            message_id_header: input.message_id_header.map(|n| n.to_ascii_lowercase()),
            auto_disable_after_secs: window_secs(input.auto_disable_after)?,
            fifo: input.fifo,
            limits: input.limits,
            filter,
            max_for_owner: owner_limit,
        },
    )
    .await
    .map_err(|e| match e {
        outhook_dispatcher::Error::OwnerLimit { owner, limit } => Error::EndpointLimit { owner, limit },
        e => e.into(),
    })?;
    Ok(Created { endpoint, secret })
}

/// The endpoints with these ids in the caller's scope (others are left
/// out).
pub async fn get_many(pool: &PgPool, scope: &Scope, ids: &[Uuid]) -> Result<Vec<Endpoint>> {
    let mut found = outhook_dispatcher::db::endpoint::endpoint_get_many(pool, ids).await?;
    found.retain(|e| scope.sees(&e.owner));
    Ok(found)
}

/// One endpoint in the caller's scope.
pub async fn get(pool: &PgPool, scope: &Scope, id: Uuid) -> Result<Endpoint> {
    let endpoint = endpoint_get(pool, id).await?;
    if !scope.sees(&endpoint.owner) {
        return Err(Error::NotFound("endpoint"));
    }
    Ok(endpoint)
}

/// Which endpoints to list.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this owner's (an owner's scope always lists its own).
    pub owner: Option<String>,
    /// Only enabled or disabled ones.
    pub enabled: Option<bool>,
    /// The cursor from the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 250.
    pub limit: Option<i64>,
}

fn endpoint_cursor(e: &Endpoint) -> String {
    format!("{}_{}", e.created_at.timestamp_micros(), e.id.simple())
}

fn parse_endpoint_cursor(cursor: &str) -> Result<(DateTime<Utc>, Uuid)> {
    let bad = || Error::parameter("cursor", "not a cursor this API returned");
    let (micros, id) = cursor.split_once('_').ok_or_else(bad)?;
    let micros: i64 = micros.parse().map_err(|_| bad())?;
    let at = DateTime::from_timestamp_micros(micros).ok_or_else(bad)?;
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

/// A page of endpoints in the caller's scope, oldest first.
pub async fn list(pool: &PgPool, scope: &Scope, query: ListQuery) -> Result<Page<Endpoint>> {
    let limit = super::page_limit(query.limit)?;
    let owner = match scope {
        Scope::Admin => query.owner,
        Scope::Owner(o) => {
            if query.owner.as_ref().is_some_and(|q| q != o) {
                return Ok(Page {
                    data: Vec::new(),
                    next_cursor: None,
                });
            }
            Some(o.clone())
        }
    };
    let after = query.cursor.as_deref().map(parse_endpoint_cursor).transpose()?;
    let data = endpoint_list_page(
        pool,
        &EndpointFilter {
            owner,
            enabled: query.enabled,
            after,
            limit: limit + 1,
        },
    )
    .await?;
    Ok(Page::from_overfetch(data, limit, endpoint_cursor))
}

/// Applies a partial update.
pub async fn update(
    pool: &PgPool,
    scope: &Scope,
    policy: &AddressPolicy,
    id: Uuid,
    patch: EndpointPatch,
) -> Result<Endpoint> {
    let current = get(pool, scope, id).await?;
    // A URL read back from a listing has its user-info as `***`: the
    // stored credentials stay.
    let mut patch = patch;
    patch.url = patch
        .url
        .map(|url| outhook_dispatcher::http::restore_redacted_url(&url, &current.url));
    if let Some(url) = &patch.url {
        if url.split_once("://").is_some_and(|(_, rest)| rest.starts_with("***@")) {
            return Err(Error::parameter(
                "url",
                "its credentials are hidden (`***`) and kept only for the same host: give them again for another",
            ));
        }
        check_url(policy, url).await?;
    }
    if let Some(types) = &patch.event_types {
        check_event_types(types)?;
    }
    let filter = patch.filter.as_deref().map(parse_filter).transpose()?;
    for (field, text) in [
        ("description", &patch.description),
        ("disabled_reason", &patch.disabled_reason),
    ] {
        if let Some(text) = text {
            super::rules::check_text(field, text, super::rules::TEXT_MAX)?;
        }
    }
    let headers = patch.headers.as_ref().map(check_headers).transpose()?;
    if let Some(settings) = &patch.scheme_settings {
        if current.scheme != "hmac" {
            return Err(Error::Conflict(format!(
                "scheme `{}` takes no scheme_settings (only `hmac` does)",
                current.scheme
            )));
        }
        scheme(&current.scheme, Some(settings))?;
    }
    if let Some(name) = &patch.message_id_header {
        check_id_header(name)?;
    }
    if let Err(e) = check_limits(&merged_limits(current.limits(), &patch)) {
        // A burst for a rate the endpoint does not have is a conflict with
        // its state; a patch that lifts the rate and sets a burst is wrong
        // by itself.
        let from_state = patch.rate_limit != Some(0.0) || patch.rate_limit_burst.is_none_or(|b| b == 0);
        return Err(match e {
            Error::Parameter {
                name: "rate_limit_burst",
                reason,
            } if from_state => Error::Conflict(format!("rate_limit_burst: {reason}, and the endpoint has none")),
            e => e,
        });
    }
    let mut endpoint = current;
    if patch.url.is_some()
        || patch.event_types.is_some()
        || headers.is_some()
        || patch.scheme_settings.is_some()
        || patch.description.is_some()
        || patch.message_id_header.is_some()
        || patch.auto_disable_after.is_some()
        || patch.fifo.is_some()
        || patch.rate_limit.is_some()
        || patch.rate_limit_burst.is_some()
        || patch.max_in_flight.is_some()
        || filter.is_some()
    {
        endpoint = endpoint_update(
            pool,
            id,
            &EndpointUpdate {
                url: patch.url,
                event_types: patch.event_types,
                headers,
                description: patch.description,
                scheme_settings: patch.scheme_settings,
                message_id_header: patch.message_id_header.map(|n| n.to_ascii_lowercase()),
                auto_disable_after_secs: window_secs(patch.auto_disable_after)?,
                fifo: patch.fifo,
                rate_limit: patch.rate_limit,
                rate_limit_burst: patch.rate_limit_burst,
                max_in_flight: patch.max_in_flight,
                filter,
            },
        )
        .await?;
    }
    if let Some(enabled) = patch.enabled
        && enabled != endpoint.enabled
    {
        endpoint = endpoint_set_enabled(pool, id, enabled, patch.disabled_reason.as_deref()).await?;
    }
    Ok(endpoint)
}

/// Enables an endpoint, or disables it with a reason.
pub async fn set_enabled(
    pool: &PgPool,
    scope: &Scope,
    id: Uuid,
    enabled: bool,
    reason: Option<&str>,
) -> Result<Endpoint> {
    get(pool, scope, id).await?;
    Ok(endpoint_set_enabled(pool, id, enabled, reason).await?)
}

/// Deletes an endpoint; its pending deliveries become dead letters.
pub async fn delete(pool: &PgPool, scope: &Scope, id: Uuid) -> Result<Endpoint> {
    get(pool, scope, id).await?;
    Ok(endpoint_delete(pool, id).await?)
}

/// What an endpoint's owner needs to verify its requests.
#[derive(Debug, Clone)]
pub struct VerificationKeys {
    /// Unexpired shared secrets, newest first, with when each stops
    /// signing. For `standard-webhooks-v1a`, the public `whpk_` keys: the
    /// private half never leaves Outhook.
    pub secrets: Vec<(Secret, Option<DateTime<Utc>>)>,
    /// The RSA signing key's id, for `cometh`-style schemes (its public key
    /// is published without a token).
    pub signing_key_id: Option<Uuid>,
}

/// The keys an endpoint's owner verifies with.
pub async fn secrets(pool: &PgPool, scope: &Scope, id: Uuid) -> Result<VerificationKeys> {
    let endpoint = get(pool, scope, id).await?;
    let parsed = scheme(&endpoint.scheme, endpoint.scheme_settings.as_ref())?;
    let stored = endpoint_secret_list(pool, id).await?;
    let secrets = stored
        .into_iter()
        .map(|s| {
            let shown = if parsed.key_kind() == KeyKind::Ed25519 {
                Ed25519SigningKey::from_whsk(s.secret.expose())
                    .map(|k| Secret::new(k.public_key().to_whpk()))
                    .map_err(|e| Error::Settings(e.to_string()))?
            } else {
                s.secret
            };
            Ok((shown, s.expires_at))
        })
        .collect::<Result<_>>()?;
    Ok(VerificationKeys {
        secrets,
        signing_key_id: endpoint.signing_key_id,
    })
}

/// Adds a new secret (generated unless given); the current ones keep
/// signing for `grace`. Returns the new secret, to show once.
pub async fn rotate_secret(
    pool: &PgPool,
    scope: &Scope,
    id: Uuid,
    grace: Duration,
    secret: Option<Secret>,
) -> Result<Secret> {
    if grace > MAX_GRACE {
        return Err(Error::parameter("grace_period_seconds", "at most 30 days"));
    }
    let endpoint = get(pool, scope, id).await?;
    // Settings stored by an older version or by SQL that no longer sign
    // are the endpoint's state, not this request's fault.
    let parsed = scheme(&endpoint.scheme, endpoint.scheme_settings.as_ref()).map_err(|e| match e {
        Error::Settings(reason) | Error::UnknownScheme(reason) => {
            Error::Conflict(format!("the endpoint's scheme cannot sign: {reason}"))
        }
        e => e,
    })?;
    if parsed.key_kind() == KeyKind::Rsa {
        return Err(Error::Conflict(format!(
            "scheme `{}` signs with the provider's key, not a secret",
            endpoint.scheme
        )));
    }
    let secret = match secret {
        Some(s) => s,
        None => parsed.generate_secret().map_err(|e| Error::Settings(e.to_string()))?,
    };
    outhook_signer::Signer::new(parsed, std::slice::from_ref(&secret))
        .map_err(|e| Error::Conflict(format!("secret: {e} (for scheme `{}`)", endpoint.scheme)))?;
    endpoint_secret_rotate(pool, id, &secret, grace).await?;
    Ok(secret)
}

/// The health of endpoints already read in the caller's scope, keyed by
/// id; endpoints never attempted are absent.
pub async fn health(
    pool: &PgPool,
    endpoints: &[Endpoint],
) -> Result<std::collections::HashMap<Uuid, outhook_dispatcher::db::endpoint_health::EndpointHealth>> {
    let ids: Vec<Uuid> = endpoints.iter().map(|e| e.id).collect();
    Ok(
        outhook_dispatcher::db::endpoint_health::endpoint_health_list(pool, &ids)
            .await?
            .into_iter()
            .map(|h| (h.endpoint_id, h))
            .collect(),
    )
}

/// The certificate that expires first in the connection settings of
/// endpoints already read in the caller's scope (the client certificate or
/// a pinned one), keyed by id; endpoints with neither are absent.
pub async fn certificate_expiry(
    pool: &PgPool,
    endpoints: &[Endpoint],
) -> Result<std::collections::HashMap<Uuid, outhook_dispatcher::connection::ExpiringCertificate>> {
    let ids: Vec<Uuid> = endpoints.iter().map(|e| e.id).collect();
    Ok(
        outhook_dispatcher::db::endpoint_connection::certificate_expiry_list(pool, &ids)
            .await?
            .into_iter()
            .map(|(id, c)| (id, c.0))
            .collect(),
    )
}

/// Whether a certificate expiring at `not_after` is within the warning
/// period (or has expired).
pub fn certificate_expires_soon(not_after: chrono::DateTime<chrono::Utc>) -> bool {
    let warning = chrono::Duration::from_std(outhook_dispatcher::connection::CERTIFICATE_WARNING)
        .unwrap_or(chrono::Duration::days(30));
    not_after < chrono::Utc::now() + warning
}

/// Attempts to endpoints already read in the caller's scope, by endpoint,
/// hour and outcome, over the last `hours` hours.
pub async fn hourly(
    pool: &PgPool,
    endpoints: &[Endpoint],
    hours: i64,
) -> Result<Vec<(Uuid, outhook_dispatcher::db::attempt::HourlyOutcome)>> {
    let ids: Vec<Uuid> = endpoints.iter().map(|e| e.id).collect();
    let since = chrono::Utc::now() - chrono::Duration::hours(hours.clamp(1, 24 * 35));
    Ok(outhook_dispatcher::db::endpoint_health::endpoint_hourly_list(pool, &ids, since).await?)
}
