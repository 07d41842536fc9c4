//! The delivery log: every delivery in scope with filters and cursor
//! paging, a delivery's attempts one by one, retry and replay.

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use outhook_dispatcher::db::attempt::Attempt;
use outhook_dispatcher::db::delivery::{Delivery, DeliveryStatus};
use serde::Deserialize;
use uuid::Uuid;

use super::endpoints::{Plain, parse_local, urlencode};
use super::layout::{Nav, csrf_field, outcome_badge, page, status_badge, when, when_opt};
use super::{Ctx, PageResult, PortalError};
use crate::admin;
use crate::state::AppState;

/// The log's filters, as the form sends them (empty means unset).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    #[serde(default)]
    status: String,
    #[serde(default)]
    event_type: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<String>,
}

impl ListQuery {
    /// The query string of these filters, for the next page's link.
    fn query_string(&self) -> String {
        [
            ("status", &self.status),
            ("event_type", &self.event_type),
            ("endpoint", &self.endpoint),
            ("since", &self.since),
            ("until", &self.until),
        ]
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}&", urlencode(v)))
        .collect()
    }
}

fn nonempty(s: &str) -> Option<&str> {
    Some(s.trim()).filter(|s| !s.is_empty())
}

/// `GET /portal/deliveries`.
pub async fn list(State(state): State<AppState>, ctx: Ctx, Query(q): Query<ListQuery>) -> PageResult {
    let pool = state.pool();
    let bad = |name: &'static str, reason: &str| PortalError::from(admin::Error::parameter(name, reason));
    let status = match nonempty(&q.status) {
        None => None,
        Some("pending") => Some(DeliveryStatus::Pending),
        Some("delivered") => Some(DeliveryStatus::Delivered),
        Some("dead") => Some(DeliveryStatus::Dead),
        Some(_) => return Err(bad("status", "pending, delivered or dead")),
    };
    let endpoint_id = nonempty(&q.endpoint)
        .map(Uuid::parse_str)
        .transpose()
        .map_err(|_| bad("endpoint", "an endpoint id"))?;
    let since = nonempty(&q.since)
        .map(|s| parse_local(s).ok_or_else(|| bad("since", "a date and time such as 2026-11-23T10:00")))
        .transpose()?;
    let until = nonempty(&q.until)
        .map(|s| parse_local(s).ok_or_else(|| bad("until", "a date and time such as 2026-11-23T10:00")))
        .transpose()?;
    let deliveries = admin::delivery::list(
        pool,
        &ctx.scope,
        admin::delivery::ListQuery {
            status,
            endpoint_id,
            event_type: nonempty(&q.event_type).map(str::to_owned),
            since,
            until,
            cursor: q.cursor.clone(),
            limit: Some(50),
        },
    )
    .await?;
    let mut ids: Vec<Uuid> = deliveries.data.iter().map(|d| d.endpoint_id).collect();
    ids.sort();
    ids.dedup();
    let endpoints: HashMap<Uuid, String> = admin::endpoint::get_many(pool, &ctx.scope, &ids)
        .await?
        .into_iter()
        .map(|e| (e.id, e.display_url()))
        .collect();
    let body = html! {
        div.heading {
            h1 { "Delivery log" }
            p.muted { "Every webhook sent, newest first. Open one to see each attempt: what was sent and what came back." }
        }
        form.filters method="get" action=(ctx.href("/portal/deliveries")) aria-label="Filters" {
            div.field {
                label for="status" { "Status" }
                select #status name="status" {
                    @for (value, text) in [("", "Any"), ("delivered", "Delivered"), ("pending", "Pending"), ("dead", "Failed")] {
                        option value=(value) selected[q.status == value] { (text) }
                    }
                }
            }
            div.field {
                label for="event_type" { "Event type" }
                input #event_type name="event_type" value=(q.event_type) placeholder="any";
            }
            div.field {
                label for="endpoint" { "Endpoint id" }
                input #endpoint name="endpoint" value=(q.endpoint) placeholder="any" size="36";
            }
            div.field {
                label for="since" { "From (UTC)" }
                input #since type="datetime-local" name="since" value=(q.since);
            }
            div.field {
                label for="until" { "To (UTC)" }
                input #until type="datetime-local" name="until" value=(q.until);
            }
            button.primary type="submit" { "Apply" }
            a.button href=(ctx.href("/portal/deliveries")) { "Clear" }
        }
        section.card aria-labelledby="results" {
            h2 #results.visually-hidden { "Deliveries" }
            @if deliveries.data.is_empty() {
                p.empty { "No deliveries match." }
            } @else {
                table.list {
                    thead {
                        tr {
                            th scope="col" { "Delivery" }
                            th scope="col" { "Event type" }
                            th scope="col" { "Endpoint" }
                            th scope="col" { "Status" }
                            th scope="col" { "Attempts" }
                            th scope="col" { "Enqueued" }
                            th scope="col" { "Last error / next attempt" }
                        }
                    }
                    tbody {
                        @for d in &deliveries.data {
                            tr {
                                td { a href=(ctx.href(&format!("/portal/deliveries/{}", d.id))) { "#" (d.id) } }
                                td { code { (d.event_type) } }
                                td.url-cell { (endpoints.get(&d.endpoint_id).map_or("(deleted endpoint)", String::as_str)) }
                                td { (status_badge(d.status)) }
                                td { (d.attempts) }
                                td { (when(d.enqueued_at)) }
                                td { (last(d)) }
                            }
                        }
                    }
                }
            }
            @if let Some(next) = &deliveries.next_cursor {
                nav.pager aria-label="Pages" {
                    a href=(ctx.href(&format!("/portal/deliveries?{}cursor={}", q.query_string(), urlencode(next)))) { "Older deliveries →" }
                }
            }
        }
    };
    Ok(page(&ctx, "Delivery log", Nav::Deliveries, None, body).into_response())
}

/// The last error, or when the next attempt is due.
fn last(d: &Delivery) -> Markup {
    html! {
        @if let Some(e) = &d.last_error { span.small { (e) } }
        @if d.held {
            div.small.muted { "held until the endpoint is enabled" }
        } @else if d.queued {
            div.small.muted { "waits for earlier deliveries (ordered endpoint)" }
        } @else if d.status == DeliveryStatus::Pending {
            @if let Some(n) = d.next_attempt_at { div.small.muted { "next " (when(n)) } }
        }
    }
}

/// A delivery page's query.
#[derive(Debug, Default, Deserialize)]
pub struct ShowQuery {
    /// The attempt to show, by its id; the latest by default. (Two attempts
    /// can share a number: a request whose claim a PostgreSQL crash forgot
    /// is logged as superseded, beside the one that went again.)
    attempt_id: Option<i64>,
    /// Or by its number (the latest with that number).
    attempt: Option<i32>,
    notice: Option<String>,
}

/// `GET /portal/deliveries/{id}`: the delivery, its attempts, and one
/// attempt in full.
pub async fn show(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<i64>,
    Query(q): Query<ShowQuery>,
) -> PageResult {
    let pool = state.pool();
    let (d, attempts) = admin::delivery::get(pool, &ctx.scope, id).await?;
    let (message, _) = admin::message::get(pool, &ctx.scope, d.message_id).await?;
    let endpoint = admin::endpoint::get(pool, &ctx.scope, d.endpoint_id).await.ok();
    let selected = q
        .attempt_id
        .and_then(|id| attempts.iter().find(|a| a.id == id))
        .or_else(|| q.attempt.and_then(|n| attempts.iter().rfind(|a| a.attempt == n)))
        .or_else(|| attempts.last());
    let payload = serde_json::from_str::<serde_json::Value>(&message.payload)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| message.payload.clone());
    let base = ctx.href(&format!("/portal/deliveries/{id}"));
    let notice = match q.notice.as_deref() {
        Some("retried") => Some("The delivery was queued for another attempt. Reload to see it."),
        Some("replayed") => Some("The message was sent again as this new delivery."),
        Some("example") => Some("The example was sent as this delivery. Reload to see its attempt."),
        _ => None,
    };
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href=(ctx.href("/portal/deliveries")) { "Delivery log" } " / " span { "Delivery #" (d.id) } }
        div.heading {
            h1 { "Delivery #" (d.id) " " (status_badge(d.status)) }
            div.actions {
                @if d.status == DeliveryStatus::Delivered {
                    form.inline method="post" action={(base) "/replay"} {
                        (csrf_field(&ctx))
                        button type="submit" { "Replay" }
                    }
                } @else {
                    form.inline method="post" action={(base) "/retry"} {
                        (csrf_field(&ctx))
                        button.primary type="submit" { @if d.status == DeliveryStatus::Dead { "Retry" } @else { "Retry now" } }
                    }
                }
            }
        }
        section.card aria-labelledby="summary" {
            h2 #summary.visually-hidden { "Summary" }
            dl.props.cols {
                dt { "Event type" } dd { code { (d.event_type) } }
                dt { "Message id" } dd { code { (d.message_uid) } }
                dt { "Endpoint" } dd {
                    @match &endpoint {
                        Some(e) => a.url href=(ctx.href(&format!("/portal/endpoints/{}", e.id))) { (e.display_url()) },
                        None => span.muted { "(deleted endpoint)" },
                    }
                }
                dt { "Enqueued" } dd { (when(d.enqueued_at)) }
                dt { "Attempts" } dd { (d.attempts) }
                @if let Some(f) = d.finished_at { dt { "Finished" } dd { (when(f)) } }
                @if d.held {
                    dt { "Next attempt" } dd { "Held: sent when the endpoint is enabled again" }
                } @else if d.queued {
                    dt { "Next attempt" } dd { "After the earlier deliveries to this ordered endpoint" }
                } @else if d.status == DeliveryStatus::Pending {
                    dt { "Next attempt" } dd { (when_opt(d.next_attempt_at, "now")) }
                }
                @if let Some(e) = &d.last_error { dt { "Last error" } dd { (e) } }
            }
        }
        div.split {
            section.card aria-labelledby="attempts" {
                h2 #attempts { "Attempts" }
                @if attempts.is_empty() {
                    p.muted { "No attempt yet." }
                } @else {
                    ol.attempts {
                        @for a in attempts.iter().rev() {
                            @let current = selected.is_some_and(|s| s.id == a.id);
                            li {
                                a href={(base) "?attempt_id=" (a.id)} aria-current=[current.then_some("true")] {
                                    span { "Attempt " (a.attempt) }
                                    " " (outcome_badge(&a.outcome))
                                    @if a.superseded { " " span.small.muted { "superseded" } }
                                    div.small.muted { (a.started_at.format("%Y-%m-%d %H:%M:%S")) " · " (a.duration_ms) " ms" }
                                }
                            }
                        }
                    }
                }
            }
            @if let Some(a) = selected {
                (attempt_detail(a))
            }
        }
        section.card aria-labelledby="payload" {
            h2 #payload { "Payload" }
            pre.code { code { (payload) } }
        }
    };
    Ok(page(&ctx, &format!("Delivery #{}", d.id), Nav::Deliveries, notice, body).into_response())
}

/// One attempt in full: the request as sent and the response as received.
fn attempt_detail(a: &Attempt) -> Markup {
    let sha = a
        .body_sha256
        .as_deref()
        .map(hex::encode)
        .unwrap_or_else(|| "–".to_owned());
    html! {
        section.card.attempt aria-labelledby="attempt-title" {
            h2 #attempt-title { "Attempt " (a.attempt) " " (outcome_badge(&a.outcome)) }
            dl.props {
                dt { "Started" } dd { (when(a.started_at)) }
                dt { "Duration" } dd { (a.duration_ms) " ms" }
                dt { "URL" } dd { code.break { (a.url) } }
                dt { "Response status" } dd {
                    @match a.status_code { Some(s) => strong { (s) }, None => span.muted { "no response" } }
                }
                @if let Some(e) = &a.error { dt { "Error" } dd { (e) } }
                @if a.superseded {
                    dt { "Superseded" } dd { "The delivery had moved on (re-queued, or taken over by another attempt) before this result came back: the request went out, but its result changed nothing." }
                } @else {
                    dt { "Next attempt" } dd { (when_opt(a.next_attempt_at, "none (this was the last)")) }
                }
                dt { "Body SHA-256" } dd { code.break { (sha) } }
            }
            h3 { "Request headers" }
            (headers_table(&a.request_headers, "Request headers"))
            h3 { "Response headers" }
            @match &a.response_headers {
                Some(h) => (headers_table(h, "Response headers")),
                None => p.muted { "No response." },
            }
            h3 { "Response body" @if a.response_truncated { " " span.small.muted { "(first part only)" } } }
            @match a.response_body.as_deref() {
                Some("") | None => p.muted { "Empty." },
                Some(b) => pre.code { code { (b) } },
            }
        }
    }
}

/// Headers stored as a JSON object (or a list of pairs) as a table.
fn headers_table(headers: &serde_json::Value, caption: &str) -> Markup {
    let pairs: Vec<(String, String)> = match headers {
        serde_json::Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map_or_else(|| v.to_string(), str::to_owned)))
            .collect(),
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|p| {
                let p = p.as_array()?;
                Some((p.first()?.as_str()?.to_owned(), p.get(1)?.as_str()?.to_owned()))
            })
            .collect(),
        _ => Vec::new(),
    };
    html! {
        table.headers {
            caption.visually-hidden { (caption) }
            thead { tr { th scope="col" { "Name" } th scope="col" { "Value" } } }
            tbody {
                @for (k, v) in &pairs {
                    tr { th scope="row" { code { (k) } } td { code.break { (v) } } }
                }
            }
        }
    }
}

/// `POST /portal/deliveries/{id}/retry`.
pub async fn retry(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, Form(f): Form<Plain>) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, f.csrf())?;
    admin::delivery::retry(state.pool(), &ctx.scope, id).await?;
    Ok(Redirect::to(&ctx.href(&format!("/portal/deliveries/{id}?notice=retried"))).into_response())
}

/// `POST /portal/deliveries/{id}/replay`: the message again, as a new
/// delivery to the same endpoint.
pub async fn replay(State(state): State<AppState>, ctx: Ctx, Path(id): Path<i64>, Form(f): Form<Plain>) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, f.csrf())?;
    let (d, _) = admin::delivery::get(state.pool(), &ctx.scope, id).await?;
    let new_id = admin::message::replay(state.pool(), &ctx.scope, d.message_id, d.endpoint_id).await?;
    Ok(Redirect::to(&ctx.href(&format!("/portal/deliveries/{new_id}?notice=replayed"))).into_response())
}
