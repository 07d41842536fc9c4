//! One attempt: sign, POST, read a bounded response, classify the outcome,
//! and decide what happens next. Never fails: every problem becomes an
//! [`Outcome`] in the delivery log.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use chrono::Utc;
use http::{HeaderMap, HeaderValue, header};
use outhook_signer::{Message, Scheme};
use sha2::{Digest, Sha256};
use tokio::sync::OwnedSemaphorePermit;

use tracing::Instrument;

use crate::db::attempt::NewAttempt;
use crate::db::completion::Completion;
use crate::db::delivery::{ClaimedRow, DeliveryStatus};
use crate::endpoint::{Target, TargetAuth};
use crate::http::{AddressRefused, DnsFailure, HttpSettings, UrlError};
use crate::retry::{FailureKind, RetryPolicy};

/// How an attempt ended, as stored in the delivery log's `outcome` column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// A 2xx response.
    Delivered,
    /// A non-2xx, non-3xx response.
    HttpStatus,
    /// A 3xx response: redirects are never followed.
    Redirect,
    /// No complete response within the request timeout.
    Timeout,
    /// The connection could not be made.
    Connect,
    /// The host name did not resolve.
    Dns,
    /// The TLS handshake failed.
    Tls,
    /// The destination is private or reserved and not allowlisted.
    AddressRefused,
    /// The request body is larger than allowed.
    BodyTooLarge,
    /// The request could not be signed (no secret, bad key, payload the
    /// scheme cannot sign).
    SigningFailed,
    /// The delivery names an endpoint that does not exist.
    UnknownEndpoint,
    /// The endpoint is disabled.
    EndpointDisabled,
    /// The endpoint's URL is not a usable http(s) URL.
    InvalidUrl,
    /// The delivery's lease ran out without a result too many times (its
    /// workers died holding it): written off unsent, so it cannot stall the
    /// queue or take worker after worker down.
    LeaseLost,
    /// The proxy could not be reached or refused the request: the
    /// sender's side, so it does not count towards disabling the endpoint.
    Proxy,
    /// No OAuth2 token could be had from the endpoint's token server.
    OAuth2Token,
    /// The endpoint's connection settings cannot be used (a sealed key
    /// that does not open).
    ConnectionSettings,
}

impl Outcome {
    /// The outcome's name in the delivery log.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Delivered => "delivered",
            Self::HttpStatus => "http_status",
            Self::Redirect => "redirect",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Dns => "dns",
            Self::Tls => "tls",
            Self::AddressRefused => "address_refused",
            Self::BodyTooLarge => "body_too_large",
            Self::SigningFailed => "signing_failed",
            Self::UnknownEndpoint => "unknown_endpoint",
            Self::EndpointDisabled => "endpoint_disabled",
            Self::InvalidUrl => "invalid_url",
            Self::LeaseLost => "lease_lost",
            Self::Proxy => "proxy",
            Self::OAuth2Token => "oauth2_token",
            Self::ConnectionSettings => "connection_settings",
        }
    }

    /// Whether a later attempt could succeed without anyone changing
    /// anything; the others go straight to the dead letters.
    fn retryable(self) -> bool {
        matches!(
            self,
            Self::HttpStatus
                | Self::Redirect
                | Self::Timeout
                | Self::Connect
                | Self::Dns
                | Self::Tls
                | Self::Proxy
                | Self::OAuth2Token
        )
    }
}

/// What the deliverer needs, shared by every attempt.
pub(crate) struct Context {
    pub client: reqwest::Client,
    /// OAuth2 tokens, shared with the other workers.
    pub tokens: crate::oauth2::TokenStore,
    /// Bounds RSA signatures running at once (two per core), so a burst
    /// does not grow a blocking thread per attempt.
    pub signing_slots: Arc<tokio::sync::Semaphore>,
    pub http: HttpSettings,
    pub retry: RetryPolicy,
    /// KiB of response bodies the attempts in flight and the results not
    /// yet written may hold (see `DispatcherBuilder::response_budget`).
    pub response_budget: Arc<tokio::sync::Semaphore>,
}

impl Context {
    /// The KiB an attempt reserves for its response body before it is sent
    /// (`max_response_bytes`, rounded up); what the body does not use is
    /// given back once it is read.
    pub(crate) fn response_kib(&self) -> u32 {
        u32::try_from(self.http.max_response_bytes.div_ceil(1024)).unwrap_or(u32::MAX)
    }
}

/// What one attempt observed.
struct Observed {
    outcome: Outcome,
    error: Option<String>,
    status: Option<u16>,
    response_headers: Option<HeaderMap>,
    response_body: Option<Bytes>,
    truncated: bool,
    request_headers: serde_json::Value,
    body_sha256: Option<Vec<u8>>,
    /// The response budget the kept body holds until it is written.
    room: Option<OwnedSemaphorePermit>,
}

impl Observed {
    fn refused(outcome: Outcome, error: String) -> Self {
        Self {
            outcome,
            error: Some(error),
            status: None,
            response_headers: None,
            response_body: None,
            truncated: false,
            request_headers: serde_json::Value::Object(Default::default()),
            body_sha256: None,
            room: None,
        }
    }
}

/// The URL as logged: credentials in it are never stored.
pub(crate) fn loggable_url(url: &reqwest::Url) -> String {
    crate::http::redact_url(url.as_str())
}

/// Makes one attempt at `row` and returns what to write back.
///
/// `room` is the response budget reserved for this attempt
/// ([`Context::response_kib`]); what the body does not use is given back.
pub(crate) async fn attempt(
    ctx: &Context,
    mut row: ClaimedRow,
    target: Option<&Arc<Target>>,
    room: OwnedSemaphorePermit,
) -> Completion {
    row.stamps.started = crate::stages::now_ns();
    let started = Utc::now();
    // The payload moves into the body: no copy per delivery. The claim
    // left it in PostgreSQL if it is over the limit or the row is poison.
    let loaded = row.payload.take();
    let unloaded = loaded.is_none().then(|| unloaded(ctx, &row));
    let payload = Bytes::from(loaded.unwrap_or_default());
    let mut stamps = row.stamps;
    let row = &row;
    let clock = Instant::now();
    let (url_text, observed) = match (target, unloaded) {
        (t, Some(why)) => (
            t.and_then(|t| t.url.as_ref().ok())
                .map(loggable_url)
                .unwrap_or_default(),
            why,
        ),
        (None, None) => (
            String::new(),
            Observed::refused(
                Outcome::UnknownEndpoint,
                format!("endpoint {} does not exist", row.endpoint_id),
            ),
        ),
        (Some(t), None) => match &t.url {
            Err(e) => (String::new(), Observed::refused(Outcome::InvalidUrl, e.clone())),
            Ok(url) => (
                loggable_url(url),
                send(ctx, row, payload, t, url, room, &mut stamps).await,
            ),
        },
    };
    let duration_ms = i32::try_from(clock.elapsed().as_millis()).unwrap_or(i32::MAX);
    stamps.read = crate::stages::now_ns();
    let mut completion = finish(ctx, row, started, duration_ms, url_text, observed);
    completion.stamps = stamps;
    completion.fifo = target.is_some_and(|t| t.fifo);
    completion.in_flight_limited = target.is_some_and(|t| t.max_in_flight);
    completion
}

/// Why a claimed row came without its payload.
fn unloaded(ctx: &Context, row: &ClaimedRow) -> Observed {
    let limit = ctx.http.max_request_bytes;
    if usize::try_from(row.payload_bytes).is_ok_and(|n| n > limit) {
        Observed::refused(
            Outcome::BodyTooLarge,
            format!(
                "payload of {} bytes exceeds the limit of {limit}; it was not sent or loaded",
                row.payload_bytes
            ),
        )
    } else {
        Observed::refused(
            Outcome::LeaseLost,
            format!(
                "the lease ran out {} times without a result (the workers holding it stopped); written off unsent",
                row.lease_losses
            ),
        )
    }
}

async fn send(
    ctx: &Context,
    row: &ClaimedRow,
    payload: Bytes,
    target: &Arc<Target>,
    url: &reqwest::Url,
    mut room: OwnedSemaphorePermit,
    stamps: &mut crate::stages::Stamps,
) -> Observed {
    if !target.enabled {
        let reason = target.disabled_reason.as_deref().unwrap_or("disabled");
        return Observed::refused(Outcome::EndpointDisabled, format!("endpoint is disabled: {reason}"));
    }
    match ctx.http.addresses.check_url(url) {
        Ok(()) => {}
        Err(e @ UrlError::Refused(_)) => return Observed::refused(Outcome::AddressRefused, e.to_string()),
        Err(e) => return Observed::refused(Outcome::InvalidUrl, e.to_string()),
    }
    if let Some(e) = &target.connection_error {
        return Observed::refused(Outcome::ConnectionSettings, e.clone());
    }
    if target.proxied
        && let Err(e) = Box::pin(crate::http::check_target_via_proxy(&ctx.http.addresses, url)).await
    {
        return Observed::refused(Outcome::AddressRefused, e);
    }
    let signer = match &target.signer {
        Ok(s) => s,
        Err(e) => return Observed::refused(Outcome::SigningFailed, e.clone()),
    };
    let message_id = format!("msg_{}", row.message_uid.simple());
    let id_header = target
        .message_id_header
        .as_ref()
        .and_then(|name| Some((name.clone(), HeaderValue::try_from(message_id.as_str()).ok()?)));
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let signed = if matches!(signer.scheme(), Scheme::Rsa(_)) {
        // RSA takes ~0.4 ms of CPU: keep it off the async workers, with
        // at most two signatures per core in flight.
        let Ok(_slot) = ctx.signing_slots.clone().acquire_owned().await else {
            return Observed::refused(Outcome::SigningFailed, "signing pool closed".into());
        };
        let target = target.clone();
        let signing = tokio::task::spawn_blocking(move || match &target.signer {
            Ok(s) => s
                .sign(&Message::new(&message_id, now, &payload))
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        })
        .await;
        match signing {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Observed::refused(Outcome::SigningFailed, e),
            Err(e) => return Observed::refused(Outcome::SigningFailed, format!("signing task failed: {e}")),
        }
    } else {
        let _sign = tracing::debug_span!("sign").entered();
        match signer.sign(&Message::new(&message_id, now, &payload)) {
            Ok(s) => s,
            Err(e) => return Observed::refused(Outcome::SigningFailed, e.to_string()),
        }
    };
    if signed.body.len() > ctx.http.max_request_bytes {
        return Observed::refused(
            Outcome::BodyTooLarge,
            format!(
                "body of {} bytes exceeds the limit of {}",
                signed.body.len(),
                ctx.http.max_request_bytes
            ),
        );
    }
    let mut headers = HeaderMap::with_capacity(signed.headers.len() + target.headers.len() + 2);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    let mut logged = serde_json::Map::new();
    logged.insert("content-type".into(), "application/json".into());
    logged.insert("user-agent".into(), crate::http::USER_AGENT.into());
    for (name, value) in &target.headers {
        headers.insert(name.clone(), value.clone());
        // Static headers may carry credentials: names only in the log.
        logged.insert(name.as_str().to_owned(), "***".into());
    }
    for (name, value) in &signed.headers {
        match HeaderValue::try_from(value.as_str()) {
            Ok(v) => {
                headers.insert(name.clone(), v);
                logged.insert(name.as_str().to_owned(), value.clone().into());
            }
            Err(_) => return Observed::refused(Outcome::SigningFailed, format!("header {name} is not a valid value")),
        }
    }
    // The message id, the same on every retry, for schemes whose own
    // headers do not carry it (Standard Webhooks' `webhook-id` does).
    if let Some((name, value)) = id_header
        && !headers.contains_key(&name)
    {
        logged.insert(name.as_str().to_owned(), value.to_str().unwrap_or_default().into());
        headers.insert(name, value);
    }
    let body_sha256 = Some(Sha256::digest(&signed.body).to_vec());
    let client = target.client.as_ref().unwrap_or(&ctx.client);
    let mut token = None;
    match &target.auth {
        TargetAuth::None => {}
        TargetAuth::Header(value) => {
            headers.insert(header::AUTHORIZATION, value.clone());
            logged.insert("authorization".into(), "***".into());
        }
        TargetAuth::OAuth2(o, settings) => {
            let got = Box::pin(oauth2_token(ctx, target, client, o, *settings, None)).await;
            match got {
                Ok(t) => {
                    headers.insert(header::AUTHORIZATION, bearer(&t));
                    logged.insert("authorization".into(), "***".into());
                    token = Some(t);
                }
                Err(f) => {
                    let mut o = Observed::refused(Outcome::OAuth2Token, f.error);
                    o.request_headers = serde_json::Value::Object(logged);
                    o.body_sha256 = body_sha256;
                    return o;
                }
            }
        }
    }
    let request_headers = serde_json::Value::Object(logged);
    let body = signed.body;
    // Kept for a second try only where a 401 can be cured by a new token.
    let again = token.as_ref().map(|_| (headers.clone(), body.clone()));
    let request = client.post(url.clone()).headers(headers).body(body);
    let cap = ctx.http.max_response_bytes;
    stamps.signed = crate::stages::now_ns();
    let exchange = async {
        let mut answer = exchange(request, cap)
            .instrument(tracing::debug_span!("request"))
            .await?;
        if let (Some((mut headers, body)), Some(used), TargetAuth::OAuth2(o, settings)) =
            (again, token.as_ref(), &target.auth)
            && answer.0 == http::StatusCode::UNAUTHORIZED
        {
            // Expired or revoked before its time: one new token, one more try.
            match Box::pin(oauth2_token(ctx, target, client, o, *settings, Some(used.expose()))).await {
                Ok(fresh) => {
                    headers.insert(header::AUTHORIZATION, bearer(&fresh));
                    let request = client.post(url.clone()).headers(headers).body(body);
                    answer = Box::pin(exchange(request, cap))
                        .instrument(tracing::debug_span!("request", retry_after_401 = true))
                        .await?;
                }
                Err(f) => tracing::debug!(error = %f.error, "no new token after a 401"),
            }
        }
        stamps.answered = crate::stages::now_ns();
        Ok::<_, reqwest::Error>(answer)
    };
    let base = |outcome, error| Observed {
        outcome,
        error,
        status: None,
        response_headers: None,
        response_body: None,
        truncated: false,
        request_headers: request_headers.clone(),
        body_sha256: body_sha256.clone(),
        room: None,
    };
    match tokio::time::timeout(ctx.http.request_timeout, exchange).await {
        Err(_) => base(
            Outcome::Timeout,
            Some(format!("no complete response within {:?}", ctx.http.request_timeout)),
        ),
        Ok(Err(e)) => {
            let (outcome, error) = classify(&e, target.proxied);
            base(outcome, Some(error))
        }
        Ok(Ok((status, response_headers, body, truncated))) => {
            // Keep the body's share of the reservation, give the rest back.
            let used = body.len().div_ceil(1024);
            if let Some(spare) = room.num_permits().checked_sub(used) {
                drop(room.split(spare));
            }
            let (outcome, error) = if status.is_success() {
                (Outcome::Delivered, None)
            } else if status.is_redirection() {
                let to = response_headers
                    .get(header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?");
                (
                    Outcome::Redirect,
                    Some(format!("{status} redirect to {to}: redirects are not followed")),
                )
            } else {
                (Outcome::HttpStatus, Some(format!("receiver answered {status}")))
            };
            Observed {
                outcome,
                error,
                status: Some(status.as_u16()),
                response_headers: Some(response_headers),
                response_body: Some(Bytes::from(body)),
                truncated,
                request_headers,
                body_sha256,
                room: Some(room),
            }
        }
    }
}

/// Sends `request` and reads its answer, at most `cap` bytes of its body.
async fn exchange(
    request: reqwest::RequestBuilder,
    cap: usize,
) -> Result<(http::StatusCode, HeaderMap, Vec<u8>, bool), reqwest::Error> {
    let mut response = request.send().await?;
    let status = response.status();
    let response_headers = response.headers().clone();
    let mut body: Vec<u8> = Vec::new();
    let mut truncated = false;
    while let Some(chunk) = response.chunk().await? {
        let left = cap.saturating_sub(body.len());
        let take = chunk.len().min(left);
        if body.capacity() - body.len() < take {
            // Grow by doubling, but never past the cap.
            let grow = take.max(body.len().min(left));
            body.reserve_exact(grow);
        }
        body.extend_from_slice(&chunk[..take]);
        if chunk.len() > left {
            truncated = true;
            break; // Stop reading; the connection is dropped, not reused.
        }
    }
    Ok((status, response_headers, body, truncated))
}

fn bearer(token: &outhook_signer::Secret) -> HeaderValue {
    let mut v = HeaderValue::try_from(format!("Bearer {}", token.expose()))
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    v.set_sensitive(true);
    v
}

/// A token for `target`, its token server checked against the address
/// policy like the target itself.
async fn oauth2_token(
    ctx: &Context,
    target: &Target,
    client: &reqwest::Client,
    o: &crate::connection::OAuth2,
    settings: u64,
    stale: Option<&str>,
) -> Result<Arc<outhook_signer::Secret>, crate::oauth2::TokenFailure> {
    let refused = |error: String| crate::oauth2::TokenFailure { error };
    let url = crate::http::parse_url(&o.token_url).map_err(|e| refused(format!("token_url: {e}")))?;
    ctx.http
        .addresses
        .check_url(&url)
        .map_err(|e| refused(format!("token_url: {e}")))?;
    if target.proxied {
        crate::http::check_target_via_proxy(&ctx.http.addresses, &url)
            .await
            .map_err(|e| refused(format!("token_url: {e}")))?;
    }
    ctx.tokens
        .token(client, target.id, settings, o, ctx.http.request_timeout, stale)
        .await
}

/// Names a transport failure from its error chain; through a proxy, a
/// failure to reach it or to be let through is the proxy's.
fn classify(error: &reqwest::Error, proxied: bool) -> (Outcome, String) {
    let mut chain = Vec::new();
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    let mut outcome = None;
    while let Some(e) = source {
        if e.downcast_ref::<AddressRefused>().is_some() {
            outcome = outcome.or(Some(Outcome::AddressRefused));
        } else if e.downcast_ref::<DnsFailure>().is_some() {
            outcome = outcome.or(Some(Outcome::Dns));
        }
        chain.push(e.to_string());
        source = e.source();
    }
    // Each error in the chain repeats its source; keep the distinct parts.
    chain.dedup();
    let text = chain.join(": ");
    let lower = text.to_ascii_lowercase();
    let outcome = outcome.unwrap_or(if error.is_timeout() {
        Outcome::Timeout
    } else if proxied && is_proxy_failure(&lower) {
        Outcome::Proxy
    } else if lower.contains("certificate")
        || lower.contains("tls")
        || lower.contains("handshake")
        || lower.contains("fatal alert")
    {
        Outcome::Tls
    } else {
        Outcome::Connect
    });
    // Display the error without its URL (which may hold credentials).
    let mut parts = text.splitn(2, ": ");
    let head = parts.next().unwrap_or_default();
    let head = match head.find(" for url (") {
        Some(i) => &head[..i],
        None => head,
    };
    let text = match parts.next() {
        Some(rest) => format!("{head}: {rest}"),
        None => head.to_owned(),
    };
    (outcome, text)
}

/// Whether an error's text says the proxy failed (could not be reached,
/// refused the tunnel or the SOCKS handshake), rather than the receiver
/// behind it.
fn is_proxy_failure(lower: &str) -> bool {
    const RECEIVER: &[&str] = &[
        "connection refused by destination",
        "host unreachable",
        "network unreachable",
        "ttl expired",
    ];
    if RECEIVER.iter().any(|r| lower.contains(r)) && lower.contains("socks") {
        return false;
    }
    lower.contains("proxy")
        || lower.contains("tunnel")
        || lower.contains("socks")
        || lower.contains("tcp connect error")
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    crate::http::parse_retry_after(headers.get(header::RETRY_AFTER)?.to_str().ok()?, Utc::now())
}

fn headers_json(headers: &HeaderMap) -> serde_json::Value {
    serde_json::Value::Object(
        headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned().into(),
                )
            })
            .collect(),
    )
}

fn finish(
    ctx: &Context,
    row: &ClaimedRow,
    started: chrono::DateTime<Utc>,
    duration_ms: i32,
    url: String,
    o: Observed,
) -> Completion {
    metrics::counter!("outhook_attempts_total", "outcome" => o.outcome.as_str()).increment(1);
    metrics::histogram!("outhook_attempt_duration_seconds").record(f64::from(duration_ms) / 1000.0);
    let gone = o.status == Some(410);
    let held = o.outcome == Outcome::EndpointDisabled;
    let (status, next_attempt_at, mut error) = if o.outcome == Outcome::Delivered {
        (DeliveryStatus::Delivered, None, None)
    } else if held {
        // Not lost: it waits until the endpoint is enabled again.
        (
            DeliveryStatus::Pending,
            None,
            Some(format!(
                "held until the endpoint is enabled ({})",
                o.error.as_deref().unwrap_or("disabled")
            )),
        )
    } else if gone || !o.outcome.retryable() {
        (DeliveryStatus::Dead, None, o.error.clone())
    } else {
        let kind = match (o.outcome, o.status) {
            (Outcome::Timeout, _) => FailureKind::Timeout,
            (_, Some(429)) => FailureKind::RateLimited,
            (_, Some(503)) => FailureKind::Unavailable,
            _ => FailureKind::Other,
        };
        let made = u32::try_from(row.attempts - row.attempts_base).unwrap_or(1).max(1);
        let age = (Utc::now() - row.cycle_started_at).to_std().unwrap_or_default();
        let asked = o.response_headers.as_ref().and_then(retry_after);
        match ctx
            .retry
            .next_delay(made, kind, asked, age, fastrand::f64() * 2.0 - 1.0)
        {
            Some(delay) => {
                let at = Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                (DeliveryStatus::Pending, Some(at), o.error.clone())
            }
            None => (
                DeliveryStatus::Dead,
                None,
                Some(format!(
                    "{} (retries exhausted after {made} attempts)",
                    o.error.as_deref().unwrap_or("failed")
                )),
            ),
        }
    };
    if gone {
        error = Some("410 Gone: the endpoint is disabled".into());
    }
    let outcome = o.outcome;
    Completion {
        id: row.id,
        lease: row.lease,
        endpoint_id: row.endpoint_id,
        status,
        next_attempt_at,
        error: error.clone(),
        disable_endpoint: gone.then(|| "410 Gone".to_owned()),
        held,
        made: row.attempts - row.attempts_base,
        fifo: false,
        in_flight_limited: false,
        message_uid: row.message_uid,
        stamps: row.stamps,
        span: tracing::Span::current(),
        room: o.room,
        attempt: NewAttempt {
            attempt: row.attempts,
            started_at: started,
            duration_ms,
            url,
            request_headers: o.request_headers,
            body_sha256: o.body_sha256,
            status_code: o.status.and_then(|s| i16::try_from(s).ok()),
            response_headers: o.response_headers.as_ref().map(headers_json),
            response_body: o.response_body.map(|b| String::from_utf8_lossy(&b).into_owned()),
            response_truncated: o.truncated,
            outcome: outcome.as_str(),
            error: o.error,
            next_attempt_at,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_urls_are_never_logged() {
        let url = reqwest::Url::parse("https://user:hunter2@example.com/hook").unwrap();
        assert_eq!(loggable_url(&url), "https://***@example.com/hook");
    }

    /// The size of the future an async fn of four arguments returns, read
    /// from its type: nothing is called.
    /// 3,240 bytes in debug and release builds when this was written.
    const SIZE_BOUND: usize = 4096;

    fn future_size<A, B, C, D, F: std::future::Future>(_: impl FnOnce(A, B, C, D) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn an_attempt_in_flight_stays_small() {
        // Every attempt in flight holds one of these: at 1,024 in flight,
        // each KiB here is a MiB of memory. The rarely taken awaits (the
        // OAuth2 token fetch, the proxy's target check, the resend after a
        // 401) are boxed so that their state is paid for only when taken;
        // unboxed, this was 5,712 bytes in a debug build and 11,808 in a
        // release build, and the burst's peak RSS 8 MiB larger.
        let size = future_size(attempt);
        assert!(size <= SIZE_BOUND, "an attempt's future is {size} bytes");
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("120"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(120)));
        let later = (Utc::now() + chrono::Duration::seconds(600)).to_rfc2822();
        h.insert(header::RETRY_AFTER, HeaderValue::from_str(&later).unwrap());
        let d = retry_after(&h).unwrap();
        assert!(d > Duration::from_secs(590) && d <= Duration::from_secs(600), "{d:?}");
    }
}
