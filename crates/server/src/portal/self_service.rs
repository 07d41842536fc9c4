//! What a customer does for itself: add an endpoint (its URL, the event
//! types it wants from the provider's catalog, a content filter, custom
//! headers), see its secret once, edit it, delete it, and send a catalog
//! example to it and watch the attempt.
//!
//! Every action goes through [`crate::admin`], as the API's do, so the
//! same checks, limits and operational events apply. Forms post with the
//! session's CSRF token and work without script.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use outhook_dispatcher::Event;
use outhook_dispatcher::db::delivery::{DeliveryFilter, delivery_list};
use outhook_dispatcher::db::endpoint::Endpoint;
use outhook_dispatcher::db::event_type::EventType;
use uuid::Uuid;

use super::layout::{Nav, csrf_field, page};
use super::{Ctx, PageResult, PortalError};
use crate::admin::endpoint::{EndpointInput, EndpointPatch};
use crate::admin::{self, Scope};
use crate::state::AppState;

/// A posted form, as its name and value pairs (checkboxes repeat a name).
type Pairs = Vec<(String, String)>;

fn field<'a>(pairs: &'a Pairs, name: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == name).map_or("", |(_, v)| v.as_str())
}

fn all<'a>(pairs: &'a Pairs, name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// What the form holds, to show again after a refusal.
#[derive(Debug, Default, Clone)]
struct Draft {
    owner: String,
    url: String,
    description: String,
    scheme: String,
    event_types: Vec<String>,
    filter: String,
    headers: String,
}

impl Draft {
    fn from_pairs(pairs: &Pairs) -> Self {
        let mut event_types: Vec<String> = all(pairs, "event_type").into_iter().map(str::to_owned).collect();
        // Typed names, for a catalog that does not list them (or none).
        event_types.extend(
            field(pairs, "event_types_text")
                .split([',', '\n', ' '])
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
        );
        let mut seen = std::collections::HashSet::new();
        event_types.retain(|t| seen.insert(t.clone()));
        Self {
            owner: field(pairs, "owner").trim().to_owned(),
            url: field(pairs, "url").trim().to_owned(),
            description: field(pairs, "description").trim().to_owned(),
            scheme: field(pairs, "scheme").trim().to_owned(),
            event_types,
            filter: field(pairs, "filter").trim().to_owned(),
            headers: field(pairs, "headers").to_owned(),
        }
    }

    fn from_endpoint(e: &Endpoint) -> Self {
        Self {
            owner: e.owner.clone(),
            // Credentials in the URL stay hidden; `***` given back keeps them.
            url: e.display_url(),
            description: e.description.clone(),
            scheme: e.scheme.clone(),
            event_types: e.event_types.clone(),
            filter: e.filter.clone().unwrap_or_default(),
            headers: String::new(),
        }
    }

    /// `Name: value` lines as headers; a line without a colon is refused.
    fn headers(&self) -> Result<BTreeMap<String, String>, admin::Error> {
        let mut headers = BTreeMap::new();
        for line in self.headers.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let (name, value) = line.split_once(':').ok_or_else(|| {
                admin::Error::parameter("headers", format!("write each header as `Name: value`, not `{line}`"))
            })?;
            headers.insert(name.trim().to_owned(), value.trim().to_owned());
        }
        Ok(headers)
    }
}

/// A refusal as a sentence for the form: the admin layer's message with a
/// capital letter, and server faults kept vague.
pub(crate) fn sentence(e: admin::Error) -> Result<String, PortalError> {
    use admin::Error as E;
    if matches!(e, E::Database(_) | E::Unavailable(_) | E::Internal(_)) {
        return Err(PortalError::from(e));
    }
    let text = match &e {
        E::Url(outhook_dispatcher::http::UrlError::Refused(_)) | E::AddressRefused(_) => format!(
            "This URL points to a private or reserved address, which webhooks are not sent to. Use the public \
             address of your server. ({e})"
        ),
        E::Url(_) => format!("This URL cannot be used: {e}. Give an address starting with https://."),
        _ => e.to_string(),
    };
    let mut text = text;
    if let Some(first) = text.get_mut(0..1) {
        first.make_ascii_uppercase();
    }
    Ok(text)
}

/// The catalog's event types that can be picked: those not deprecated,
/// plus any the endpoint already has.
fn pickable<'a>(catalog: &'a [EventType], chosen: &[String]) -> BTreeMap<&'a str, Vec<&'a EventType>> {
    let mut groups: BTreeMap<&str, Vec<&EventType>> = BTreeMap::new();
    for t in catalog {
        if !t.deprecated || chosen.contains(&t.name) {
            let group = if t.group.is_empty() { "Other" } else { t.group.as_str() };
            groups.entry(group).or_default().push(t);
        }
    }
    groups
}

/// The endpoint form, for adding (`editing: None`) or editing.
fn form(
    ctx: &Ctx,
    state: &AppState,
    catalog: &[EventType],
    draft: &Draft,
    editing: Option<Uuid>,
    error: Option<&str>,
) -> Markup {
    let action = match editing {
        Some(id) => ctx.href(&format!("/portal/endpoints/{id}/edit")),
        None => ctx.href("/portal/endpoints"),
    };
    let groups = pickable(catalog, &draft.event_types);
    let in_catalog = |t: &str| catalog.iter().any(|c| c.name == t);
    let typed: Vec<&str> = draft
        .event_types
        .iter()
        .map(String::as_str)
        .filter(|t| !in_catalog(t))
        .collect();
    let default_scheme = if draft.scheme.is_empty() {
        state.config().portal_default_scheme.as_str()
    } else {
        draft.scheme.as_str()
    };
    html! {
        @if let Some(e) = error {
            div.error role="alert" id="form-error" { (e) }
        }
        form.stack.endpoint-form method="post" action=(action) aria-describedby=[error.map(|_| "form-error")] {
            (csrf_field(ctx))
            @if ctx.scope == Scope::Admin && editing.is_none() {
                label for="owner" { "Owner" }
                input #owner name="owner" value=(draft.owner) required placeholder="the customer's id";
            }
            label for="url" { "Endpoint URL" }
            input #url name="url" type="url" value=(draft.url) required placeholder="https://example.com/webhooks"
                aria-describedby="url-help";
            span.small.muted #url-help { "Where webhooks are sent, with a POST request." }
            label for="description" { "Description" }
            input #description name="description" value=(draft.description) maxlength="500" placeholder="optional";
            @if editing.is_none() {
                label for="scheme" { "Signing scheme" }
                select #scheme name="scheme" aria-describedby="scheme-help" {
                    @for name in outhook_signer::Scheme::NAMES {
                        option value=(name) selected[*name == default_scheme] { (name) }
                    }
                }
                span.small.muted #scheme-help { "How requests are signed; the endpoint's page then shows how to verify them." }
            }
            fieldset.types {
                legend { "Event types" }
                p.small.muted { "Pick the events to receive. Pick none to receive every event." }
                @for (group, types) in &groups {
                    fieldset.group {
                        legend { (group) }
                        @for t in types {
                            @let id = format!("type-{}", t.name.replace([':', '.'], "-"));
                            div.check {
                                input type="checkbox" id=(id) name="event_type" value=(t.name)
                                    checked[draft.event_types.contains(&t.name)];
                                label for=(id) {
                                    code { (t.name) }
                                    @if t.deprecated { " " span.badge.wait { "deprecated" } }
                                    @if !t.description.is_empty() { " " span.small.muted { (t.description) } }
                                }
                            }
                        }
                    }
                }
                label for="event_types_text" {
                    @if groups.is_empty() { "Event type names" } @else { "Other event type names" }
                }
                input #event_types_text name="event_types_text" value=(typed.join(", "))
                    placeholder="item.sold, item.listed" aria-describedby="types-help";
                span.small.muted #types-help { "Separated by commas." }
            }
            label for="filter" { "Content filter" }
            input #filter name="filter" value=(draft.filter) maxlength="4096"
                placeholder="collection = \"0xabc\" and price.amount >= 100" aria-describedby="filter-help";
            span.small.muted #filter-help {
                "Optional: only events whose payload matches are sent. Compare fields with "
                code { "=" } ", " code { "!=" } ", " code { "<" } ", " code { ">=" } " …, test lists with "
                code { "status in [\"paid\", \"shipped\"]" } " and presence with " code { "exists buyer.id" }
                "; combine with " code { "and" } ", " code { "or" } ", " code { "not" } "."
            }
            label for="headers" { "Custom headers" }
            textarea #headers name="headers" rows="3" placeholder="X-Api-Key: value" aria-describedby="headers-help" {
                (draft.headers)
            }
            span.small.muted #headers-help {
                "One " code { "Name: value" } " per line, added to every request."
                @if editing.is_some() { " Leave empty to keep the current headers; their values are never shown." }
            }
            div.actions {
                button.primary type="submit" { @if editing.is_some() { "Save changes" } @else { "Add endpoint" } }
                a.button href=(match editing { Some(id) => ctx.href(&format!("/portal/endpoints/{id}")), None => ctx.href("/portal") }) { "Cancel" }
            }
        }
    }
}

/// `GET /portal/endpoints/new`.
pub async fn new(State(state): State<AppState>, ctx: Ctx) -> PageResult {
    let catalog = admin::event_type::list(state.pool()).await?;
    Ok(new_page(&ctx, &state, &catalog, &Draft::default(), None).into_response())
}

fn new_page(ctx: &Ctx, state: &AppState, catalog: &[EventType], draft: &Draft, error: Option<&str>) -> Markup {
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href=(ctx.href("/portal")) { "Endpoints" } " / " span { "Add" } }
        div.heading { h1 { "Add an endpoint" } }
        section.card { (form(ctx, state, catalog, draft, None, error)) }
    };
    page(ctx, "Add an endpoint", Nav::Endpoints, None, body)
}

/// `POST /portal/endpoints`: creates it and shows its secret, once.
pub async fn create(State(state): State<AppState>, ctx: Ctx, Form(pairs): Form<Pairs>) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, field(&pairs, "csrf"))?;
    let draft = Draft::from_pairs(&pairs);
    let catalog = admin::event_type::list(state.pool()).await?;
    let refused = |e: admin::Error| -> PageResult {
        let text = sentence(e)?;
        Ok((
            http::StatusCode::UNPROCESSABLE_ENTITY,
            new_page(&ctx, &state, &catalog, &draft, Some(&text)),
        )
            .into_response())
    };
    let headers = match draft.headers() {
        Ok(h) => h,
        Err(e) => return refused(e),
    };
    let input = EndpointInput {
        owner: (ctx.scope == Scope::Admin).then(|| draft.owner.clone()),
        url: draft.url.clone(),
        scheme: draft.scheme.clone(),
        event_types: draft.event_types.clone(),
        headers,
        description: draft.description.clone(),
        filter: Some(draft.filter.clone()),
        ..EndpointInput::default()
    };
    let created = match admin::endpoint::create_limited(
        state.pool(),
        &ctx.scope,
        &state.config().addresses,
        Some(state.config().max_endpoints_per_owner),
        input,
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return refused(e),
    };
    let e = &created.endpoint;
    let href = ctx.href(&format!("/portal/endpoints/{}", e.id));
    // What the customer verifies with: for `standard-webhooks-v1a` the
    // public `whpk_` key, never the private one the provider signs with.
    let shown = admin::endpoint::secrets(state.pool(), &ctx.scope, e.id)
        .await?
        .secrets
        .into_iter()
        .next()
        .map(|(s, _)| s);
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" { a href=(ctx.href("/portal")) { "Endpoints" } " / " span { "Added" } }
        div.heading { h1 { "Endpoint added" } }
        section.card aria-labelledby="secret-title" {
            h2 #secret-title { "Your signing secret" }
            @if let Some(secret) = &shown {
                p { "Copy it now and keep it safe: it is shown once here. Your server verifies every request with it." }
                label for="secret" { "Secret" }
                input #secret.secret-copy readonly value=(secret.expose()) aria-describedby="secret-help";
                p.small.muted #secret-help { "Select the field and copy it. You can reveal it again on the endpoint's page." }
            } @else {
                p { "Requests to it are signed with the provider's key; its page shows how to verify them." }
            }
            p { a.button.primary href=(href) { "Go to the endpoint" } }
        }
    };
    Ok(page(&ctx, "Endpoint added", Nav::Endpoints, None, body).into_response())
}

/// `GET /portal/endpoints/{id}/edit`.
pub async fn edit(State(state): State<AppState>, ctx: Ctx, Path(id): Path<Uuid>) -> PageResult {
    let e = admin::endpoint::get(state.pool(), &ctx.scope, id).await?;
    let catalog = admin::event_type::list(state.pool()).await?;
    Ok(edit_page(&ctx, &state, &catalog, &Draft::from_endpoint(&e), id, None).into_response())
}

fn edit_page(
    ctx: &Ctx,
    state: &AppState,
    catalog: &[EventType],
    draft: &Draft,
    id: Uuid,
    error: Option<&str>,
) -> Markup {
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href=(ctx.href("/portal")) { "Endpoints" } " / "
            a href=(ctx.href(&format!("/portal/endpoints/{id}"))) { "Endpoint" } " / " span { "Edit" }
        }
        div.heading { h1 { "Edit the endpoint" } }
        section.card { (form(ctx, state, catalog, draft, Some(id), error)) }
    };
    page(ctx, "Edit the endpoint", Nav::Endpoints, None, body)
}

/// `POST /portal/endpoints/{id}/edit`.
pub async fn update(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Form(pairs): Form<Pairs>,
) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, field(&pairs, "csrf"))?;
    let draft = Draft::from_pairs(&pairs);
    let catalog = admin::event_type::list(state.pool()).await?;
    let refused = |e: admin::Error| -> PageResult {
        let text = sentence(e)?;
        Ok((
            http::StatusCode::UNPROCESSABLE_ENTITY,
            edit_page(&ctx, &state, &catalog, &draft, id, Some(&text)),
        )
            .into_response())
    };
    let headers = match draft.headers() {
        Ok(h) => h,
        Err(e) => return refused(e),
    };
    let patch = EndpointPatch {
        url: Some(draft.url.clone()),
        description: Some(draft.description.clone()),
        event_types: Some(draft.event_types.clone()),
        filter: Some(draft.filter.clone()),
        headers: (!headers.is_empty()).then_some(headers),
        ..EndpointPatch::default()
    };
    if let Err(e) = admin::endpoint::update(state.pool(), &ctx.scope, &state.config().addresses, id, patch).await {
        return refused(e);
    }
    Ok(Redirect::to(&ctx.href(&format!("/portal/endpoints/{id}?notice=saved"))).into_response())
}

/// `GET /portal/endpoints/{id}/delete`: asks to confirm.
pub async fn confirm_delete(State(state): State<AppState>, ctx: Ctx, Path(id): Path<Uuid>) -> PageResult {
    let e = admin::endpoint::get(state.pool(), &ctx.scope, id).await?;
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href=(ctx.href("/portal")) { "Endpoints" } " / "
            a href=(ctx.href(&format!("/portal/endpoints/{id}"))) { "Endpoint" } " / " span { "Delete" }
        }
        div.heading { h1 { "Delete this endpoint?" } }
        section.card {
            p { "Webhooks will no longer be sent to " strong.url { (e.display_url()) } "." }
            p.muted { "Deliveries still waiting for it are given up, and its secret stops working. This cannot be undone." }
            form.inline method="post" action=(ctx.href(&format!("/portal/endpoints/{id}/delete"))) {
                (csrf_field(&ctx))
                button.danger type="submit" { "Delete the endpoint" }
                a.button href=(ctx.href(&format!("/portal/endpoints/{id}"))) { "Keep it" }
            }
        }
    };
    Ok(page(&ctx, "Delete the endpoint", Nav::Endpoints, None, body).into_response())
}

/// `POST /portal/endpoints/{id}/delete`.
pub async fn delete(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Form(pairs): Form<Pairs>,
) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, field(&pairs, "csrf"))?;
    admin::endpoint::delete(state.pool(), &ctx.scope, id).await?;
    Ok(Redirect::to(&ctx.href("/portal?notice=deleted")).into_response())
}

/// The examples a customer can send: `(value, label)` per catalog example.
pub(crate) fn example_choices(catalog: &[EventType], subscribed: &[String]) -> Vec<(String, String)> {
    catalog
        .iter()
        .filter(|t| subscribed.is_empty() || subscribed.contains(&t.name))
        .flat_map(|t| {
            t.examples.iter().enumerate().map(move |(i, _)| {
                let label = if t.examples.len() > 1 {
                    format!("{} (example {})", t.name, i + 1)
                } else {
                    t.name.clone()
                };
                (format!("{}#{i}", t.name), label)
            })
        })
        .collect()
}

/// `POST /portal/endpoints/{id}/example`: sends a catalog example to this
/// endpoint only, and opens the delivery to watch its attempt.
pub async fn send_example(
    State(state): State<AppState>,
    ctx: Ctx,
    Path(id): Path<Uuid>,
    Form(pairs): Form<Pairs>,
) -> PageResult {
    ctx.check_csrf(state.portal_key().await?, field(&pairs, "csrf"))?;
    let pool = state.pool();
    admin::endpoint::get(pool, &ctx.scope, id).await?;
    let chosen = field(&pairs, "example");
    let (name, index) = chosen.rsplit_once('#').unwrap_or((chosen, "0"));
    let event_type = admin::event_type::get(pool, name).await?;
    let payload = index
        .parse::<usize>()
        .ok()
        .and_then(|i| event_type.examples.get(i))
        .ok_or_else(|| PortalError::from(admin::Error::NotFound("example")))?;
    let sent = admin::message::create(
        pool,
        &ctx.scope,
        Event {
            event_type: &event_type.name,
            payload: payload.get(),
            owner: None,
            endpoint_id: Some(id),
            event_id: None,
            traceparent: None,
        },
    )
    .await?;
    let delivery = delivery_list(
        pool,
        &DeliveryFilter {
            message_id: Some(sent.message.id),
            endpoint_id: Some(id),
            limit: Some(1),
            ..DeliveryFilter::default()
        },
    )
    .await
    .map_err(|e| PortalError::from(admin::Error::from(e)))?;
    Ok(match delivery.first() {
        Some(d) => Redirect::to(&ctx.href(&format!("/portal/deliveries/{}?notice=example", d.id))),
        None => Redirect::to(&ctx.href(&format!("/portal/endpoints/{id}?notice=test"))),
    }
    .into_response())
}
