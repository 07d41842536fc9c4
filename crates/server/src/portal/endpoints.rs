//! Endpoints: the overview with each endpoint's health, an endpoint's page,
//! and what can be done to one (rotate its secret, enable, disable, send a
//! test event, recover its failed deliveries).

use std::collections::HashMap;
use std::time::Duration;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{Markup, html};
use outhook_dispatcher::Event;
use outhook_dispatcher::db::attempt::HourlyOutcome;
use outhook_dispatcher::db::endpoint::Endpoint;
use outhook_dispatcher::db::endpoint_health::EndpointHealth;
use serde::Deserialize;
use uuid::Uuid;

use super::layout::{Nav, csrf_field, outcome_chart, page, success_spark, when, when_opt};
use super::{Ctx, PageResult, PortalError};
use crate::admin::{self, Scope};
use crate::state::AppState;

/// The notices an action may leave for the page it returns to; only these
/// texts are ever shown, so nothing from the address bar is echoed.
fn notice(key: Option<&str>) -> Option<&'static str> {
    Some(match key? {
        "rotated" => "A new secret was made. It is shown below; the previous one keeps signing for the grace period.",
        "enabled" => "The endpoint is enabled. Held deliveries are being sent.",
        "disabled" => "The endpoint is disabled. New and pending deliveries are held until it is enabled.",
        "test" => "A test event was queued for this endpoint.",
        "recovered" => "Failed deliveries since the chosen time were queued again.",
        "retried" => "The delivery was queued for another attempt.",
        "replayed" => "The message was sent again as a new delivery.",
        "saved" => "The endpoint's settings were saved.",
        "connection" => "The connection settings were saved. New deliveries use them.",
        "deleted" => "The endpoint was deleted.",
        _ => return None,
    })
}

/// The overview's query.
#[derive(Debug, Default, Deserialize)]
pub struct OverviewQuery {
    owner: Option<String>,
    cursor: Option<String>,
    notice: Option<String>,
}

/// `GET /portal`: the endpoints in scope with their health.
pub async fn overview(State(state): State<AppState>, ctx: Ctx, Query(q): Query<OverviewQuery>) -> PageResult {
    let pool = state.pool();
    let owner = q.owner.filter(|o| !o.trim().is_empty());
    let endpoints = admin::endpoint::list(
        pool,
        &ctx.scope,
        admin::endpoint::ListQuery {
            owner: owner.clone(),
            cursor: q.cursor.clone(),
            limit: Some(50),
            ..Default::default()
        },
    )
    .await?;
    let health = admin::endpoint::health(pool, &endpoints.data).await?;
    let hourly = admin::endpoint::hourly(pool, &endpoints.data, 24).await?;
    let mut per_endpoint: HashMap<Uuid, Vec<HourlyOutcome>> = HashMap::new();
    let mut all: Vec<HourlyOutcome> = Vec::new();
    for (id, h) in hourly {
        match all.iter_mut().find(|a| a.hour == h.hour && a.outcome == h.outcome) {
            Some(a) => a.count += h.count,
            None => all.push(h.clone()),
        }
        per_endpoint.entry(id).or_default().push(h);
    }
    let is_admin = ctx.scope == Scope::Admin;
    let body = html! {
        div.heading {
            div {
                h1 { "Endpoints" }
                p.muted { "Where webhooks are sent, and how each has been answering." }
            }
            div.actions { a.button.primary href=(ctx.href("/portal/endpoints/new")) { "Add endpoint" } }
        }
        @if is_admin {
            form.filters method="get" action=(ctx.href("/portal")) {
                div.field {
                    label for="owner" { "Owner" }
                    input #owner name="owner" value=[owner.as_deref()] placeholder="every owner";
                }
                button type="submit" { "Filter" }
            }
        }
        section.card aria-labelledby="traffic" {
            h2 #traffic { "Attempts in the last 24 hours" }
            (outcome_chart(&all, 24))
        }
        @if endpoints.data.is_empty() {
            section.card.empty {
                p { "No endpoints yet." }
                p.muted { "Add one to start receiving webhooks: " a href=(ctx.href("/portal/endpoints/new")) { "add an endpoint" } "." }
            }
        } @else {
            section.card aria-labelledby="list" {
                h2 #list.visually-hidden { "Endpoint list" }
                table.list {
                    thead {
                        tr {
                            th scope="col" { "Endpoint" }
                            @if is_admin { th scope="col" { "Owner" } }
                            th scope="col" { "State" }
                            th scope="col" { "Success, 24 h" }
                            th scope="col" { "Last success" }
                            th scope="col" { "Failures in a row" }
                        }
                    }
                    tbody {
                        @for e in &endpoints.data {
                            @let h = health.get(&e.id);
                            tr {
                                td {
                                    a.url href=(ctx.href(&format!("/portal/endpoints/{}", e.id))) { (e.display_url()) }
                                    @if !e.description.is_empty() { div.muted.small { (e.description) } }
                                }
                                @if is_admin { td { (e.owner) } }
                                td { (state_badge(e)) }
                                td { (success_spark(per_endpoint.get(&e.id).map(Vec::as_slice).unwrap_or(&[]), 24)) }
                                td { (when_opt(h.and_then(|h| h.last_success_at), "never")) }
                                td { (streak(h)) }
                            }
                        }
                    }
                }
                @if let Some(next) = &endpoints.next_cursor {
                    nav.pager aria-label="Pages" {
                        a href=(ctx.href(&format!("/portal?cursor={}{}", urlencode(next), owner.as_deref().map(|o| format!("&owner={}", urlencode(o))).unwrap_or_default()))) { "Next page →" }
                    }
                }
            }
        }
    };
    Ok(page(&ctx, "Endpoints", Nav::Endpoints, notice(q.notice.as_deref()), body).into_response())
}

/// Enabled, or disabled with its reason.
fn state_badge(e: &Endpoint) -> Markup {
    if e.enabled {
        html! { span.badge.ok { "Enabled" } }
    } else {
        html! {
            span.badge.bad { "Disabled" }
            @if let Some(r) = &e.disabled_reason { div.small.muted { (r) } }
        }
    }
}

/// What a certificate of the connection settings is, in words.
fn certificate_label(setting: &str) -> &'static str {
    match setting {
        "pinned_certificates" => "pinned server certificate",
        _ => "client certificate",
    }
}

/// The failure streak, highlighted when it is not zero.
fn streak(h: Option<&EndpointHealth>) -> Markup {
    match h.map(|h| h.failure_streak) {
        None => html! { span.muted { "–" } },
        Some(0) => html! { "0" },
        Some(n) => html! { strong.bad-text { (n) } },
    }
}

/// Percent-encodes a query value.
pub(crate) fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// An endpoint page's query.
#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    /// Show the secrets.
    reveal: Option<String>,
    /// 24 or 168.
    hours: Option<i64>,
    notice: Option<String>,
}

/// `GET /portal/endpoints/{id}`.
pub async fn show(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Query(q): Query<ShowQuery>,
) -> PageResult {
    let pool = state.pool();
    let e = admin::endpoint::get(pool, &ctx.scope, id).await?;
    let hours = if q.hours == Some(168) { 168 } else { 24 };
    let one = std::slice::from_ref(&e);
    let health = admin::endpoint::health(pool, one).await?.remove(&e.id);
    let expiring = admin::endpoint::certificate_expiry(pool, one).await?.remove(&e.id);
    let connection = admin::connection::get(pool, &ctx.scope, id).await?;
    let hourly: Vec<HourlyOutcome> = admin::endpoint::hourly(pool, one, hours)
        .await?
        .into_iter()
        .map(|(_, h)| h)
        .collect();
    let reveal = q.reveal.is_some();
    let keys = if reveal {
        Some(admin::endpoint::secrets(pool, &ctx.scope, id).await?)
    } else {
        None
    };
    let parsed = admin::endpoint::scheme(&e.scheme, e.scheme_settings.as_ref()).ok();
    let signs_with_secret = parsed.is_some_and(|s| s.key_kind() != outhook_signer::KeyKind::Rsa);
    let header_names: Vec<&String> = e.headers.as_object().map(|m| m.keys().collect()).unwrap_or_default();
    let base = ctx.href(&format!("/portal/endpoints/{id}"));
    let since_default = (Utc::now() - chrono::Duration::hours(24))
        .format("%Y-%m-%dT%H:%M")
        .to_string();
    let catalog = admin::event_type::list(pool).await?;
    let examples = super::self_service::example_choices(&catalog, &e.event_types);
    let test_type = e
        .event_types
        .first()
        .cloned()
        .unwrap_or_else(|| "webhook.test".to_owned());
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href=(ctx.href("/portal")) { "Endpoints" } " / " span { "Endpoint" } }
        div.heading {
            h1.url-title { (e.display_url()) }
            div.actions {
                (state_badge(&e))
                a.button href={(base) "/edit"} { "Edit" }
                a.button href={(base) "/delete"} { "Delete" }
            }
        }
        div.grid {
            section.card aria-labelledby="settings" {
                h2 #settings { "Settings" }
                dl.props {
                    dt { "Endpoint id" } dd { code { (e.id) } }
                    dt { "Owner" } dd { (e.owner) }
                    dt { "Signing scheme" } dd { code { (e.scheme) } }
                    dt { "Event types" } dd {
                        @if e.event_types.is_empty() { span.muted { "All event types" } }
                        @for t in &e.event_types { span.chip { (t) } " " }
                    }
                    dt { "Content filter" } dd {
                        @match &e.filter {
                            None => span.muted { "None: every event of these types" },
                            Some(f) => code { (f) },
                        }
                    }
                    dt { "Static headers" } dd {
                        @if header_names.is_empty() { span.muted { "None" } }
                        @for h in &header_names { span.chip { (h) ": •••" } " " }
                    }
                    dt { "Delivery order" } dd {
                        @if e.fifo { "One at a time, in order (FIFO)" } @else { "Concurrent" }
                    }
                    dt { "Rate limit" } dd {
                        @match e.rate_limit {
                            None => span.muted { "None" },
                            Some(r) => { (r) " requests per second, bursts of " (e.rate_limit_burst.unwrap_or(1)) }
                        }
                    }
                    dt { "In flight at most" } dd {
                        @match e.max_in_flight {
                            None => span.muted { "No limit" },
                            Some(n) => { (n) " requests at once" }
                        }
                    }
                    dt { "Message id header" } dd {
                        @match e.message_id_header.as_deref() {
                            None => code { "webhook-id" },
                            Some("") => span.muted { "None" },
                            Some(h) => code { (h) },
                        }
                    }
                    @if !e.description.is_empty() { dt { "Description" } dd { (e.description) } }
                    dt { "Created" } dd { (when(e.created_at)) }
                }
            }
            section.card aria-labelledby="health" {
                h2 #health { "Health" }
                dl.props {
                    dt { "Last success" } dd { (when_opt(health.as_ref().and_then(|h| h.last_success_at), "never")) }
                    dt { "Last failure" } dd { (when_opt(health.as_ref().and_then(|h| h.last_failure_at), "never")) }
                    dt { "Failures in a row" } dd { (streak(health.as_ref())) }
                    @if let Some(since) = health.as_ref().and_then(|h| h.failing_since) {
                        dt { "Failing since" } dd { (when(since)) }
                    }
                    dt { "Last attempt" } dd { (when_opt(health.as_ref().map(|h| h.last_attempt_at), "never")) }
                    @if let Some(c) = &expiring {
                        dt { "Certificate expires" }
                        dd #certificate-expiry {
                            @if admin::endpoint::certificate_expires_soon(c.not_after) {
                                strong.bad-text { (when(c.not_after)) }
                                div.small { "Renew the " (certificate_label(&c.setting)) " " code { (c.subject) } " before then." }
                            } @else {
                                (when(c.not_after))
                                div.small.muted { "The " (certificate_label(&c.setting)) ", the first to expire." }
                            }
                        }
                    }
                    @if let Some(r) = &e.disabled_reason { dt { "Disabled because" } dd { (r) } }
                    @if let Some(at) = e.disabled_at { dt { "Disabled" } dd { (when(at)) } }
                    @if !e.enabled {
                        dt { "Deliveries" } dd { "Held: they are sent when the endpoint is enabled again." }
                    }
                }
                div.actions {
                    @if e.enabled {
                        form.inline method="post" action={(base) "/disable"} {
                            (csrf_field(&ctx))
                            label.visually-hidden for="reason" { "Reason for disabling" }
                            input #reason name="reason" placeholder="Reason (optional)";
                            button.danger type="submit" { "Disable endpoint" }
                        }
                    } @else {
                        form.inline method="post" action={(base) "/enable"} {
                            (csrf_field(&ctx))
                            button.primary type="submit" { "Enable endpoint" }
                        }
                    }
                }
            }
        }
        section.card aria-labelledby="chart" {
            div.card-head {
                h2 #chart { "Attempts per hour" }
                nav.tabs aria-label="Period" {
                    a href={(base) "?hours=24"} aria-current=[(hours == 24).then_some("page")] { "24 hours" }
                    a href={(base) "?hours=168"} aria-current=[(hours == 168).then_some("page")] { "7 days" }
                }
            }
            (outcome_chart(&hourly, hours))
            p { a href=(ctx.href(&format!("/portal/deliveries?endpoint={id}"))) { "See this endpoint's deliveries →" } }
        }
        section.card #connection aria-labelledby="connection-title" {
            div.card-head {
                h2 #connection-title { "Connection" }
                a.button href={(base) "/connection"} { "Connection settings" }
            }
            p.muted { "A client certificate, your server's certificate authority or pinned certificate, and credentials, if your server demands them." }
            (super::connection::summary(&connection))
        }
        section.card #secret aria-labelledby="secret-title" {
            h2 #secret-title { "Signing secret" }
            @if !signs_with_secret {
                p { "Requests are signed with the provider's RSA key; verify them with its public key." }
                @if let Some(k) = e.signing_key_id {
                    p { "Key id: " code { (k) } }
                }
            } @else if let Some(keys) = &keys {
                p.muted { "Verify requests with any of these. Keep them secret." }
                ul.secrets {
                    @for (secret, expires) in &keys.secrets {
                        li {
                            code.secret { (secret.expose()) }
                            @if let Some(x) = expires { " " span.small.muted { "stops signing " (when(*x)) } }
                        }
                    }
                }
                p { a href=(base) { "Hide" } }
            } @else {
                p { code.secret.masked { "••••••••••••••••••••••••" } " " a href={(base) "?reveal=1#secret"} { "Reveal secret" } }
            }
            p { a href={(base) "/verify"} { "How your server verifies these requests, with code for Node and Python →" } }
            @if signs_with_secret {
                form.inline method="post" action={(base) "/rotate"} {
                    (csrf_field(&ctx))
                    label for="grace" { "Keep the current secret signing for" }
                    select #grace name="grace_hours" {
                        option value="0" { "no time (stop now)" }
                        option value="1" { "1 hour" }
                        option value="24" selected { "24 hours" }
                        option value="168" { "7 days" }
                    }
                    button type="submit" { "Rotate secret" }
                }
            }
        }
        @if !examples.is_empty() {
            section.card aria-labelledby="example-title" {
                h2 #example-title { "Send an example" }
                p.muted { "Sends one of the provider's example events to this endpoint only, then shows the attempt." }
                form.inline method="post" action={(base) "/example"} {
                    (csrf_field(&ctx))
                    label for="example" { "Example" }
                    select #example name="example" {
                        @for (value, label) in &examples { option value=(value) { (label) } }
                    }
                    button.primary type="submit" { "Send example" }
                }
            }
        }
        div.grid {
            section.card aria-labelledby="test-title" {
                h2 #test-title { "Send a test event" }
                p.muted { "Sends a small signed event to this endpoint only, as a real delivery." }
                form.stack method="post" action={(base) "/test"} {
                    (csrf_field(&ctx))
                    label for="event_type" { "Event type" }
                    input #event_type name="event_type" value=(test_type) required;
                    button.primary type="submit" { "Send test event" }
                }
            }
            section.card aria-labelledby="recover-title" {
                h2 #recover-title { "Recover failed deliveries" }
                p.muted { "Queues again every failed delivery to this endpoint enqueued since a time (UTC)." }
                form.stack method="post" action={(base) "/recover"} {
                    (csrf_field(&ctx))
                    label for="since" { "Since" }
                    input #since type="datetime-local" name="since" value=(since_default) required;
                    button type="submit" { "Recover" }
                }
            }
        }
    };
    Ok(page(&ctx, "Endpoint", Nav::Endpoints, notice(q.notice.as_deref()), body).into_response())
}

/// A form with only its CSRF token.
#[derive(Deserialize)]
pub struct Plain {
    #[serde(default)]
    csrf: String,
}

impl Plain {
    /// The CSRF token it carried.
    pub fn csrf(&self) -> &str {
        &self.csrf
    }
}

/// The rotation form.
#[derive(Deserialize)]
pub struct RotateForm {
    #[serde(default)]
    csrf: String,
    grace_hours: u64,
}

/// `POST /portal/endpoints/{id}/rotate`.
pub async fn rotate(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Form(f): Form<RotateForm>,
) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, &f.csrf)?;
    let grace = Duration::from_secs(f.grace_hours.min(24 * 30) * 3600);
    admin::endpoint::rotate_secret(state.pool(), &ctx.scope, id, grace, None).await?;
    back(&ctx, id, "rotated&reveal=1#secret")
}

/// `POST /portal/endpoints/{id}/enable`.
pub async fn enable(State(state): State<AppState>, ctx: Ctx, Path(id): Path<Uuid>, Form(f): Form<Plain>) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, &f.csrf)?;
    admin::endpoint::set_enabled(state.pool(), &ctx.scope, id, true, None).await?;
    back(&ctx, id, "enabled")
}

/// The disable form.
#[derive(Deserialize)]
pub struct DisableForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// `POST /portal/endpoints/{id}/disable`.
pub async fn disable(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Form(f): Form<DisableForm>,
) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, &f.csrf)?;
    let who = if ctx.scope == Scope::Admin {
        "an operator"
    } else {
        "the customer"
    };
    let reason = match f.reason.trim() {
        "" => format!("disabled in the portal by {who}"),
        r => format!(
            "disabled in the portal by {who}: {}",
            r.chars().take(200).collect::<String>()
        ),
    };
    admin::endpoint::set_enabled(state.pool(), &ctx.scope, id, false, Some(&reason)).await?;
    back(&ctx, id, "disabled")
}

/// The test-event form.
#[derive(Deserialize)]
pub struct TestForm {
    #[serde(default)]
    csrf: String,
    event_type: String,
}

/// `POST /portal/endpoints/{id}/test`: a real message to this endpoint only.
pub async fn send_test(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Form(f): Form<TestForm>,
) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, &f.csrf)?;
    admin::endpoint::get(state.pool(), &ctx.scope, id).await?;
    let payload = serde_json::json!({
        "type": f.event_type.trim(),
        "test": true,
        "message": "A test event sent from the webhook portal.",
        "sent_at": Utc::now().to_rfc3339(),
    })
    .to_string();
    admin::message::create(
        state.pool(),
        &ctx.scope,
        Event {
            event_type: f.event_type.trim(),
            payload: &payload,
            owner: None,
            endpoint_id: Some(id),
            event_id: None,
            traceparent: None,
        },
    )
    .await?;
    back(&ctx, id, "test")
}

/// The recovery form.
#[derive(Deserialize)]
pub struct RecoverForm {
    #[serde(default)]
    csrf: String,
    since: String,
}

/// `POST /portal/endpoints/{id}/recover`.
pub async fn recover(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Form(f): Form<RecoverForm>,
) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, &f.csrf)?;
    let since = parse_local(&f.since).ok_or_else(|| {
        PortalError::from(admin::Error::parameter(
            "since",
            "a date and time such as 2026-11-23T10:00",
        ))
    })?;
    admin::delivery::recover(state.pool(), &ctx.scope, id, since).await?;
    back(&ctx, id, "recovered")
}

/// A `datetime-local` value (UTC), with or without seconds.
pub(crate) fn parse_local(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S"))
        .ok()
        .map(|n| n.and_utc())
}

/// Back to the endpoint's page with a notice.
fn back(ctx: &Ctx, id: Uuid, notice: &str) -> PageResult {
    Ok(Redirect::to(&ctx.href(&format!("/portal/endpoints/{id}?notice={notice}"))).into_response())
}
