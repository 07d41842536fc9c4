//! `/v1/endpoints/{id}/connection`: what a receiver demands beyond a signed
//! POST (a client certificate, extra trusted CAs, a proxy, credentials).
//! Secrets go in and never come back out.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use outhook_signer::Secret;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiJson, ApiPath};
use crate::admin::connection::{
    self as admin, AuthInput, AuthView, ConnectionPatch, ConnectionView, ProxyInput, ProxyView,
};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// `Some(value)` for a field that is present, `null` included.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// Credentials sent with every request. A secret left out keeps the stored
/// one of the same kind (for `oauth2`: the same token URL and client id).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthIn {
    /// `Authorization: Basic`.
    Basic {
        /// The username (no `:`).
        #[schema(min_length = 1, max_length = 256)]
        username: String,
        /// The password.
        #[schema(max_length = 4096)]
        password: Option<String>,
    },
    /// `Authorization: Bearer` with this static token.
    Bearer {
        /// The token.
        #[schema(min_length = 1, max_length = 8192)]
        token: Option<String>,
    },
    /// `Authorization: Bearer` with a token fetched by OAuth2 client
    /// credentials, shared by every delivery until shortly before it expires.
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// The authorization server's token endpoint.
        #[schema(min_length = 1, max_length = 2048)]
        token_url: String,
        /// The client id.
        #[schema(min_length = 1, max_length = 512)]
        client_id: String,
        /// The client secret, sent with HTTP Basic.
        #[schema(min_length = 1, max_length = 4096)]
        client_secret: Option<String>,
        /// The scope asked for.
        #[schema(max_length = 1024)]
        scope: Option<String>,
        /// The audience asked for.
        #[schema(max_length = 1024)]
        audience: Option<String>,
    },
}

/// Changes to an endpoint's connection settings: absent fields stay as
/// they are, `null` removes one (`{"proxy": "worker", "client_certificate":
/// null, "ca_certificates": null, "pinned_certificates": null, "auth": null}`
/// removes them all).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionPatchIn {
    /// `worker` (the worker's `--proxy`, if any), `none`, or a proxy URL
    /// (`http://`, `https://`, `socks5://`, `socks5h://`). Only admin tokens
    /// may change it.
    #[schema(min_length = 1, max_length = 2048)]
    pub proxy: Option<String>,
    /// The client certificate chain (PEM), leaf first; `null` removes it
    /// and its key.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 65536)]
    pub client_certificate: Option<Option<String>>,
    /// The client certificate's private key (PEM). Left out with a new
    /// certificate, the stored key is kept (a renewal with the same key).
    #[schema(max_length = 65536)]
    pub client_key: Option<String>,
    /// Extra CA certificates (PEM) trusted for the receiver's server, on
    /// top of the public roots; `null` removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 65536)]
    pub ca_certificates: Option<Option<String>>,
    /// Pinned server certificates (PEM): the receiver must present one of
    /// these exact certificates (compared by SHA-256), whatever its chain
    /// and names; instead of `ca_certificates`. `null` removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>, max_length = 65536)]
    pub pinned_certificates: Option<Option<String>>,
    /// Credentials; `null` removes them.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AuthIn>)]
    pub auth: Option<Option<AuthIn>>,
}

/// A certificate, as it can be read back.
#[derive(Debug, Serialize, ToSchema)]
pub struct CertificateOut {
    /// Its subject.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// SHA-256 of its DER bytes, hex.
    pub fingerprint_sha256: String,
    /// When it expires.
    pub not_after: DateTime<Utc>,
}

/// The shared OAuth2 token: never the token itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenOut {
    /// When the current token expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// When one was last fetched.
    pub fetched_at: DateTime<Utc>,
    /// Tokens fetched by every worker since the settings last changed.
    pub fetches: i64,
}

/// Credentials, as they can be read back: never their secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuthOut {
    /// `basic`, `bearer` or `oauth2`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The Basic username.
    pub username: Option<String>,
    /// The OAuth2 token endpoint.
    pub token_url: Option<String>,
    /// The OAuth2 client id.
    pub client_id: Option<String>,
    /// The OAuth2 scope.
    pub scope: Option<String>,
    /// The OAuth2 audience.
    pub audience: Option<String>,
    /// The shared OAuth2 token's state.
    pub token: Option<TokenOut>,
}

/// An endpoint's connection settings. Keys, passwords, tokens and client
/// secrets are never part of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionOut {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// `worker`, `none`, or the proxy's URL with its credentials as `***`.
    pub proxy: String,
    /// The client certificate (leaf), if one is set.
    pub client_certificate: Option<CertificateOut>,
    /// The extra trusted CA certificates.
    pub ca_certificates: Vec<CertificateOut>,
    /// The pinned server certificates.
    pub pinned_certificates: Vec<CertificateOut>,
    /// The credentials, if any.
    pub auth: Option<AuthOut>,
    /// When they last changed; `null`: never set.
    pub updated_at: Option<DateTime<Utc>>,
}

fn cert(c: outhook_dispatcher::connection::CertificateInfo) -> CertificateOut {
    CertificateOut {
        subject: c.subject,
        issuer: c.issuer,
        fingerprint_sha256: c.fingerprint_sha256,
        not_after: c.not_after,
    }
}

impl From<ConnectionView> for ConnectionOut {
    fn from(v: ConnectionView) -> Self {
        let none = AuthOut {
            kind: String::new(),
            username: None,
            token_url: None,
            client_id: None,
            scope: None,
            audience: None,
            token: None,
        };
        Self {
            endpoint_id: v.endpoint_id,
            proxy: match v.proxy {
                ProxyView::Worker => "worker".into(),
                ProxyView::Direct => "none".into(),
                ProxyView::Url(u) => u,
            },
            client_certificate: v.client_certificate.map(cert),
            ca_certificates: v.ca_certificates.into_iter().map(cert).collect(),
            pinned_certificates: v.pinned_certificates.into_iter().map(cert).collect(),
            auth: v.auth.map(|a| match a {
                AuthView::Basic { username } => AuthOut {
                    kind: "basic".into(),
                    username: Some(username),
                    ..none
                },
                AuthView::Bearer => AuthOut {
                    kind: "bearer".into(),
                    ..none
                },
                AuthView::OAuth2 {
                    token_url,
                    client_id,
                    scope,
                    audience,
                    token,
                } => AuthOut {
                    kind: "oauth2".into(),
                    token_url: Some(token_url),
                    client_id: Some(client_id),
                    scope,
                    audience,
                    token: token.map(|t| TokenOut {
                        expires_at: t.expires_at,
                        fetched_at: t.fetched_at,
                        fetches: t.fetches,
                    }),
                    ..none
                },
            }),
            updated_at: v.updated_at,
        }
    }
}

/// The admin layer's patch from the API's.
pub fn patch_of(input: ConnectionPatchIn) -> ConnectionPatch {
    ConnectionPatch {
        proxy: input.proxy.map(|p| match p.as_str() {
            "worker" => ProxyInput::Worker,
            "none" => ProxyInput::Direct,
            _ => ProxyInput::Url(p),
        }),
        client_certificate: input.client_certificate,
        client_key: input.client_key.map(Secret::new),
        ca_certificates: input.ca_certificates,
        pinned_certificates: input.pinned_certificates,
        auth: input.auth.map(|a| {
            a.map(|a| match a {
                AuthIn::Basic { username, password } => AuthInput::Basic {
                    username,
                    password: password.map(Secret::new),
                },
                AuthIn::Bearer { token } => AuthInput::Bearer {
                    token: token.map(Secret::new),
                },
                AuthIn::OAuth2 {
                    token_url,
                    client_id,
                    client_secret,
                    scope,
                    audience,
                } => AuthInput::OAuth2 {
                    token_url,
                    client_id,
                    client_secret: client_secret.map(Secret::new),
                    scope,
                    audience,
                },
            })
        }),
    }
}

/// Read an endpoint's connection settings.
#[utoipa::path(operation_id = "endpoint_connection_get", get, path = "/v1/endpoints/{id}/connection", tag = "endpoints",
    params(("id" = Uuid, Path)),
    responses((status = 200, body = ConnectionOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn read(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
) -> Result<Json<ConnectionOut>, Problem> {
    Ok(Json(admin::get(state.pool(), &scope, id).await?.into()))
}

/// Change an endpoint's connection settings: a client certificate (mutual
/// TLS), extra trusted CAs, a proxy, credentials. Every setting is checked
/// before anything is stored.
#[utoipa::path(operation_id = "endpoint_connection_update", patch, path = "/v1/endpoints/{id}/connection", tag = "endpoints",
    params(("id" = Uuid, Path)), request_body = ConnectionPatchIn,
    responses((status = 200, body = ConnectionOut), (status = "4XX", body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn update(
    State(state): State<AppState>,
    Caller(scope): Caller,
    ApiPath(id): ApiPath<Uuid>,
    ApiJson(input): ApiJson<ConnectionPatchIn>,
) -> Result<Json<ConnectionOut>, Problem> {
    let view = admin::update(state.pool(), &scope, &state.config().addresses, id, patch_of(input)).await?;
    Ok(Json(view.into()))
}
