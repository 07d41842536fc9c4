//! An endpoint's verification page: what the customer's code must check
//! for its scheme (the headers, what is signed, the encoding, the secret's
//! form) and a short verification function in Node and in Python, written
//! for this project. The test suite runs the snippets as rendered here
//! against real deliveries.

use axum::extract::{Path, State};
use axum::response::IntoResponse;
use maud::{Markup, html};
use uuid::Uuid;

use super::layout::{Nav, page};
use super::{Ctx, PageResult};
use crate::admin;
use crate::state::AppState;

/// What a receiver checks for one scheme.
#[derive(Debug, Clone)]
pub struct Guide {
    /// The headers that carry the signature and what it covers.
    pub headers: &'static [&'static str],
    /// What the signature covers.
    pub signed: &'static str,
    /// The algorithm and how the signature is written.
    pub encoding: &'static str,
    /// The form of the secret or key, and how it is used.
    pub secret: &'static str,
    /// A Node function `verifyWebhook(headers, rawBody, secret)`.
    pub node: String,
    /// A Python function `verify_webhook(headers, raw_body, secret)`.
    pub python: String,
}

const RAW: &str = "The body exactly as received: its raw bytes, before any JSON parsing.";
const STRINGIFIED: &str = "JSON.stringify of the payload. The body is sent in that form already, so its raw bytes \
                           are what was signed; verify those. (A Python receiver must not re-serialise with \
                           json.dumps, which escapes non-ASCII characters and writes numbers differently.)";
const UTF8_SECRET: &str = "The secret as it is written, used as UTF-8 bytes for the HMAC key.";

fn hmac_hex(header: &str, prefix: &str) -> (String, String) {
    let fill = |t: &str| t.replace("{{HEADER}}", header).replace("{{PREFIX}}", prefix);
    (
        fill(include_str!("snippets/hmac-hex.js")),
        fill(include_str!("snippets/hmac-hex.py")),
    )
}

/// The guide for a scheme name, `None` for custom HMAC settings (`hmac`).
pub fn guide(scheme: &str) -> Option<Guide> {
    let standard_headers: &'static [&'static str] = &["webhook-id", "webhook-timestamp", "webhook-signature"];
    let standard_signed = "`{webhook-id}.{webhook-timestamp}.{body}`: the message id, the Unix timestamp in seconds \
                           and the raw body, joined by dots. Refuse a timestamp more than five minutes from now.";
    Some(match scheme {
        "standard-webhooks" => Guide {
            headers: standard_headers,
            signed: standard_signed,
            encoding: "HMAC-SHA256, base64, written `v1,<signature>`. While a secret is rotated, several are sent, \
                       separated by spaces: accept the request when any one matches.",
            secret: "`whsec_` followed by base64: the HMAC key is the decoded bytes.",
            node: include_str!("snippets/standard-webhooks.js").to_owned(),
            python: include_str!("snippets/standard-webhooks.py").to_owned(),
        },
        "standard-webhooks-v1a" => Guide {
            headers: standard_headers,
            signed: standard_signed,
            encoding: "An Ed25519 signature, base64, written `v1a,<signature>`; several may be sent, separated by \
                       spaces.",
            secret: "A public key, `whpk_` followed by the base64 of its 32 bytes. It is not secret: the private \
                     half never leaves the provider.",
            node: include_str!("snippets/standard-webhooks-v1a.js").to_owned(),
            python: include_str!("snippets/standard-webhooks-v1a.py").to_owned(),
        },
        "trr" | "real-id" | "rheo" | "github" => {
            let (header, prefix, signed) = match scheme {
                "trr" => ("x-trr-signature", "", RAW),
                "real-id" => ("x-real-id-signature", "", STRINGIFIED),
                "rheo" => ("x-rheo-signature", "sha256=", RAW),
                _ => ("x-hub-signature-256", "sha256=", RAW),
            };
            let (node, python) = hmac_hex(header, prefix);
            Guide {
                headers: match scheme {
                    "trr" => &["x-trr-signature"],
                    "real-id" => &["x-real-id-signature"],
                    "rheo" => &["x-rheo-signature"],
                    _ => &["x-hub-signature-256"],
                },
                signed,
                encoding: if prefix.is_empty() {
                    "HMAC-SHA256 in lower-case hexadecimal."
                } else {
                    "HMAC-SHA256 in lower-case hexadecimal, after `sha256=`."
                },
                secret: UTF8_SECRET,
                node,
                python,
            }
        }
        "stripe" => Guide {
            headers: &["stripe-signature"],
            signed: "`{t}.{body}`: the timestamp `t` from the header and the raw body, joined by a dot. Refuse a \
                     timestamp more than five minutes from now.",
            encoding: "HMAC-SHA256 in lower-case hexadecimal, in a header written `t=<unix seconds>,v1=<signature>` \
                       (one `v1=` per secret while a secret is rotated).",
            secret: UTF8_SECRET,
            node: include_str!("snippets/stripe.js").to_owned(),
            python: include_str!("snippets/stripe.py").to_owned(),
        },
        "cometh" => Guide {
            headers: &["x-cometh-indexer-signature"],
            signed: STRINGIFIED,
            encoding: "RSA-SHA256 (PKCS #1 v1.5), base64.",
            secret: "No secret: the provider's public RSA key, as PEM at the address below (or as a JSON Web Key \
                     at /.well-known/jwks.json).",
            node: include_str!("snippets/cometh.js").to_owned(),
            python: include_str!("snippets/cometh.py").to_owned(),
        },
        _ => return None,
    })
}

/// Text with `backticked` parts shown as code.
fn prose(text: &str) -> Markup {
    html! {
        @for (i, part) in text.split('`').enumerate() {
            @if i % 2 == 1 { code { (part) } } @else { (part) }
        }
    }
}

fn snippet(id: &str, lang: &str, title: &str, code: &str) -> Markup {
    html! {
        section.card aria-labelledby=(id) {
            h2 id=(id) { (title) }
            pre.snippet { code class={"snippet " (lang)} { (code) } }
        }
    }
}

/// `GET /portal/endpoints/{id}/verify`.
pub async fn show(State(state): State<AppState>, ctx: Ctx, Path(id): Path<Uuid>) -> PageResult {
    let e = admin::endpoint::get(state.pool(), &ctx.scope, id).await?;
    let endpoint_href = ctx.href(&format!("/portal/endpoints/{id}"));
    let guide = guide(&e.scheme);
    let id_header = match e.message_id_header.as_deref() {
        None => Some(outhook_dispatcher::http::DEFAULT_MESSAGE_ID_HEADER),
        Some("") => None,
        Some(h) => Some(h),
    };
    let body = html! {
        nav.crumbs aria-label="Breadcrumb" {
            a href=(ctx.href("/portal")) { "Endpoints" } " / "
            a href=(endpoint_href) { "Endpoint" } " / " span { "Verify requests" }
        }
        div.heading {
            div {
                h1 { "Verify requests" }
                p.muted { "What your server checks before it trusts a webhook sent to " span.url { (e.display_url()) } "." }
            }
        }
        @match &guide {
            None => section.card {
                p { "This endpoint is signed with custom settings (" code { (e.scheme) } "). Ask the provider for how to verify them." }
            },
            Some(g) => {
                section.card aria-labelledby="rules" {
                    h2 #rules { "Scheme " code { (e.scheme) } }
                    dl.props {
                        dt { "Headers" } dd { @for h in g.headers { code { (h) } " " } }
                        dt { "What is signed" } dd { (prose(g.signed)) }
                        dt { "Signature" } dd { (prose(g.encoding)) }
                        dt { "Secret or key" } dd {
                            (prose(g.secret)) " "
                            @if let Some(k) = e.signing_key_id {
                                "The key: " code { "/v1/public-keys/" (k) } "."
                            } @else {
                                a href={(endpoint_href) "?reveal=1#secret"} { "Reveal it on the endpoint's page." }
                            }
                        }
                        @if let Some(h) = id_header {
                            dt { "Message id" } dd {
                                code { (h) } " carries the message id, the same on every retry: use it to ignore a "
                                "message you have already handled."
                            }
                        }
                        dt { "Answer" } dd { "Any 2xx status within a few seconds; anything else is retried later." }
                    }
                }
                (snippet("node", "node", "Node.js", &g.node))
                (snippet("python", "python", "Python", &g.python))
            }
        }
    };
    Ok(page(&ctx, "Verify requests", Nav::Endpoints, None, body).into_response())
}
