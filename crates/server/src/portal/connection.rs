//! An endpoint's connection settings, by its owner: upload a client
//! certificate and its key for mutual TLS, the CA certificates that vouch
//! for the receiver's server or the server certificate to pin, and set
//! Basic, bearer or OAuth2 client-credentials details. Secrets go in and
//! never come back out: the page shows certificates' subjects, fingerprints
//! and expiry, and which credentials are set. The proxy is the provider's
//! choice, shown and not changed here.
//!
//! The form is `multipart/form-data` so that PEM files upload without
//! script; it goes through [`crate::admin::connection`], as the API and CLI
//! do.

use std::collections::HashMap;

use axum::extract::{Multipart, Path, State};
use axum::response::{IntoResponse, Redirect};
use maud::{Markup, html};
use outhook_dispatcher::connection::CertificateInfo;
use outhook_signer::Secret;
use uuid::Uuid;

use super::layout::{Nav, csrf_field, page, when};
use super::{Ctx, PageResult};
use crate::admin::connection::{AuthInput, AuthView, ConnectionPatch, ConnectionView, MAX_PEM_BYTES, ProxyView};
use crate::admin::{self, Scope};
use crate::state::AppState;

/// `GET /portal/endpoints/{id}/connection`.
pub async fn show(State(state): State<AppState>, ctx: Ctx, Path(id): Path<Uuid>) -> PageResult {
    let view = admin::connection::get(state.pool(), &ctx.scope, id).await?;
    Ok(settings_page(&ctx, &view, None).into_response())
}

/// The posted form: text fields, and the uploaded files' text.
struct Posted(HashMap<String, String>);

impl Posted {
    fn text(&self, name: &str) -> &str {
        self.0.get(name).map_or("", |v| v.trim())
    }

    /// A text field or an uploaded file's text; empty (or no file chosen) is
    /// `None`.
    fn optional(&self, name: &str) -> Option<String> {
        let v = self.text(name);
        (!v.is_empty()).then(|| v.to_owned())
    }

    fn checked(&self, name: &str) -> bool {
        !self.text(name).is_empty()
    }

    /// A secret as typed (not trimmed: a space may be part of it); empty
    /// keeps the stored one.
    fn secret(&self, name: &str) -> Option<Secret> {
        match self.0.get(name) {
            Some(v) if !v.is_empty() => Some(Secret::new(v.clone())),
            _ => None,
        }
    }
}

/// Reads the multipart form, each part at most a PEM text's bound.
async fn read(mut form: Multipart) -> Result<Posted, admin::Error> {
    let mut fields = HashMap::new();
    let malformed = |e: axum::extract::multipart::MultipartError| admin::Error::parameter("form", e.body_text());
    while let Some(mut part) = form.next_field().await.map_err(malformed)? {
        let Some(name) = part.name().map(str::to_owned) else {
            continue;
        };
        let mut bytes = Vec::new();
        while let Some(chunk) = part.chunk().await.map_err(malformed)? {
            bytes.extend_from_slice(&chunk);
            if bytes.len() > MAX_PEM_BYTES {
                return Err(admin::Error::parameter(
                    field_name(&name),
                    format!("at most {MAX_PEM_BYTES} bytes"),
                ));
            }
        }
        let text = String::from_utf8(bytes)
            .map_err(|_| admin::Error::parameter(field_name(&name), "not text: upload the PEM file"))?;
        fields.insert(name, text);
    }
    Ok(Posted(fields))
}

/// The form's fields the admin layer's messages name; any other is "form".
const NAMED_FIELDS: &[&str] = &[
    "client_certificate",
    "client_key",
    "ca_certificates",
    "pinned_certificates",
    "password",
    "token",
    "client_secret",
];

/// A form field's name as the admin layer's messages name it.
fn field_name(name: &str) -> &'static str {
    NAMED_FIELDS.iter().find(|f| **f == name).copied().unwrap_or("form")
}

/// The admin layer's patch from the form. Files not chosen and secrets
/// left empty keep what is stored; the proxy is never changed here.
fn patch_of(posted: &Posted) -> ConnectionPatch {
    let replaced = |remove: &str, file: &str| {
        if posted.checked(remove) {
            Some(None)
        } else {
            posted.optional(file).map(Some)
        }
    };
    let auth = match posted.text("auth") {
        "none" => Some(None),
        "basic" => Some(Some(AuthInput::Basic {
            username: posted.text("username").to_owned(),
            password: posted.secret("password"),
        })),
        "bearer" => Some(Some(AuthInput::Bearer {
            token: posted.secret("token"),
        })),
        "oauth2" => Some(Some(AuthInput::OAuth2 {
            token_url: posted.text("token_url").to_owned(),
            client_id: posted.text("client_id").to_owned(),
            client_secret: posted.secret("client_secret"),
            scope: posted.optional("scope"),
            audience: posted.optional("audience"),
        })),
        _ => None,
    };
    ConnectionPatch {
        proxy: None,
        client_certificate: replaced("remove_client_certificate", "client_certificate"),
        client_key: if posted.checked("remove_client_certificate") {
            None
        } else {
            posted.secret("client_key")
        },
        ca_certificates: replaced("remove_ca_certificates", "ca_certificates"),
        pinned_certificates: replaced("remove_pinned_certificates", "pinned_certificates"),
        auth,
    }
}

/// `POST /portal/endpoints/{id}/connection`.
pub async fn update(State(state): State<AppState>, ctx: Ctx, Path(id): Path<Uuid>, form: Multipart) -> PageResult {
    let posted = read(form).await;
    if let Ok(p) = &posted {
        ctx.check_csrf(state.portal_key().await?, p.text("csrf"))?;
    }
    let result = match posted {
        Ok(p) => admin::connection::update(state.pool(), &ctx.scope, &state.config().addresses, id, patch_of(&p)).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => Ok(Redirect::to(&ctx.href(&format!("/portal/endpoints/{id}?notice=connection"))).into_response()),
        Err(e) => {
            let text = super::self_service::sentence(e)?;
            let view = admin::connection::get(state.pool(), &ctx.scope, id).await?;
            Ok((
                http::StatusCode::UNPROCESSABLE_ENTITY,
                settings_page(&ctx, &view, Some(&text)),
            )
                .into_response())
        }
    }
}

/// A certificate as a line: subject, issuer, fingerprint, expiry (marked
/// when it is soon).
fn certificate(c: &CertificateInfo) -> Markup {
    html! {
        div.certificate {
            strong { (c.subject) } " " span.small.muted { "issued by " (c.issuer) }
            div.small { "SHA-256 " code.fingerprint { (c.fingerprint_sha256) } }
            div.small {
                "Expires "
                @if admin::endpoint::certificate_expires_soon(c.not_after) {
                    strong.bad-text { (when(c.not_after)) }
                } @else {
                    (when(c.not_after))
                }
            }
        }
    }
}

/// The endpoint page's summary of its connection settings.
pub(crate) fn summary(view: &ConnectionView) -> Markup {
    html! {
        dl.props {
            dt { "Client certificate" } dd {
                @match &view.client_certificate {
                    None => span.muted { "None" },
                    Some(c) => (certificate(c)),
                }
            }
            dt { "Server certificate" } dd {
                @if !view.pinned_certificates.is_empty() {
                    "Pinned: " @for c in &view.pinned_certificates { (certificate(c)) }
                } @else if !view.ca_certificates.is_empty() {
                    "Issued by: " @for c in &view.ca_certificates { span.chip { (c.subject) } " " }
                } @else {
                    span.muted { "Any one a public authority issued" }
                }
            }
            dt { "Credentials" } dd { (auth_line(view.auth.as_ref())) }
            dt { "Proxy" } dd { (proxy_line(&view.proxy)) }
        }
    }
}

fn auth_line(auth: Option<&AuthView>) -> Markup {
    html! {
        @match auth {
            None => span.muted { "None" },
            Some(AuthView::Basic { username }) => { "HTTP Basic as " code { (username) } },
            Some(AuthView::Bearer) => "A bearer token",
            Some(AuthView::OAuth2 { token_url, client_id, .. }) => {
                "OAuth2 client credentials: client " code { (client_id) } " at " code { (token_url) }
            },
        }
    }
}

fn proxy_line(proxy: &ProxyView) -> Markup {
    html! {
        @match proxy {
            ProxyView::Worker => "The provider's outgoing proxy, if it uses one",
            ProxyView::Direct => "None: requests go out directly",
            ProxyView::Url(u) => { "Through " code { (u) } },
        }
    }
}

/// A checkbox that removes a stored setting.
fn remove_box(name: &str, label: &str) -> Markup {
    html! {
        div.check {
            input id=(name) type="checkbox" name=(name) value="1";
            label for=(name) { (label) }
        }
    }
}

fn settings_page(ctx: &Ctx, view: &ConnectionView, error: Option<&str>) -> Markup {
    let id = view.endpoint_id;
    let base = ctx.href(&format!("/portal/endpoints/{id}"));
    let (auth_kind, username, token_url, client_id, scope, audience) = match &view.auth {
        None => ("none", "", "", "", "", ""),
        Some(AuthView::Basic { username }) => ("basic", username.as_str(), "", "", "", ""),
        Some(AuthView::Bearer) => ("bearer", "", "", "", "", ""),
        Some(AuthView::OAuth2 {
            token_url,
            client_id,
            scope,
            audience,
            ..
        }) => (
            "oauth2",
            "",
            token_url.as_str(),
            client_id.as_str(),
            scope.as_deref().unwrap_or(""),
            audience.as_deref().unwrap_or(""),
        ),
    };
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href=(ctx.href("/portal")) { "Endpoints" } " / "
            a href=(base) { "Endpoint" } " / " span { "Connection" }
        }
        div.heading { h1 { "Connection settings" } }
        @if let Some(e) = error {
            div.error role="alert" id="form-error" { (e) " Choose the files again: they are not kept." }
        }
        section.card aria-labelledby="current-title" {
            h2 #current-title { "Now" }
            (summary(view))
            p.small.muted { "Private keys, passwords, tokens and client secrets are stored sealed and never shown again." }
        }
        form.stack method="post" action={(base) "/connection"} enctype="multipart/form-data"
            aria-describedby=[error.map(|_| "form-error")] {
            (csrf_field(ctx))
            section.card aria-labelledby="mtls-title" {
                h2 #mtls-title { "Client certificate (mutual TLS)" }
                p.small.muted { "If your server asks for a client certificate, upload it (PEM, leaf first) and its private key." }
                label for="client_certificate" { "Certificate file" }
                input #client_certificate type="file" name="client_certificate" accept=".pem,.crt,.cer";
                label for="client_key" { "Private key file" }
                input #client_key type="file" name="client_key" accept=".pem,.key"
                    aria-describedby="client-key-help";
                span.small.muted #client-key-help { "Not needed for a renewed certificate with the same key." }
                @if view.client_certificate.is_some() {
                    (remove_box("remove_client_certificate", "Remove the client certificate and its key"))
                }
            }
            section.card aria-labelledby="server-title" {
                h2 #server-title { "Your server's certificate" }
                p.small.muted {
                    "If a private authority issued it, upload that authority's certificate; or pin the server certificate itself, "
                    "and only that exact certificate is accepted. One or the other."
                }
                label for="ca_certificates" { "Authority certificates file" }
                input #ca_certificates type="file" name="ca_certificates" accept=".pem,.crt,.cer";
                @if !view.ca_certificates.is_empty() {
                    (remove_box("remove_ca_certificates", "Remove the authority certificates"))
                }
                label for="pinned_certificates" { "Pinned server certificate file" }
                input #pinned_certificates type="file" name="pinned_certificates" accept=".pem,.crt,.cer";
                @if !view.pinned_certificates.is_empty() {
                    (remove_box("remove_pinned_certificates", "Remove the pinned certificate"))
                }
            }
            section.card aria-labelledby="auth-title" {
                h2 #auth-title { "Credentials" }
                p.small.muted { "Sent with every request in the Authorization header. Secrets left empty keep the stored ones." }
                label for="auth" { "Kind" }
                select #auth name="auth" aria-describedby="auth-help" {
                    option value="keep" selected { "Keep as it is" }
                    option value="none" { "None" }
                    option value="basic" { "HTTP Basic" }
                    option value="bearer" { "Bearer token" }
                    option value="oauth2" { "OAuth2 client credentials" }
                }
                span.small.muted #auth-help { "Then fill in the fields of that kind below." }
                fieldset.credentials {
                    legend { "HTTP Basic" }
                    label for="username" { "Username" }
                    input #username name="username" value=(username) maxlength="256" autocomplete="off";
                    label for="password" { "Password" }
                    input #password name="password" type="password" autocomplete="new-password";
                }
                fieldset.credentials {
                    legend { "Bearer token" }
                    label for="token" { "Token" }
                    input #token name="token" type="password" autocomplete="off";
                }
                fieldset.credentials {
                    legend { "OAuth2 client credentials" }
                    label for="token_url" { "Token URL" }
                    input #token_url name="token_url" type="url" value=(token_url) placeholder="https://auth.example.com/oauth/token";
                    label for="client_id" { "Client id" }
                    input #client_id name="client_id" value=(client_id) autocomplete="off";
                    label for="client_secret" { "Client secret" }
                    input #client_secret name="client_secret" type="password" autocomplete="off";
                    label for="scope" { "Scope" }
                    input #scope name="scope" value=(scope) placeholder="optional";
                    label for="audience" { "Audience" }
                    input #audience name="audience" value=(audience) placeholder="optional";
                }
                @if auth_kind != "none" {
                    p.small.muted { "Now: " (auth_line(view.auth.as_ref())) }
                }
            }
            section.card aria-labelledby="proxy-title" {
                h2 #proxy-title { "Proxy" }
                p { (proxy_line(&view.proxy)) }
                @if ctx.scope == Scope::Admin {
                    p.small.muted { "Operators choose the proxy with the CLI or the API." }
                } @else {
                    p.small.muted { "The provider chooses it: ask them for the addresses requests come from." }
                }
            }
            div.actions {
                button.primary type="submit" { "Save connection settings" }
                a.button href=(base) { "Cancel" }
            }
        }
    };
    page(ctx, "Connection settings", Nav::Endpoints, None, body)
}
