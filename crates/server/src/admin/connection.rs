//! Endpoints' connection settings: a client certificate and extra trusted
//! CAs, a proxy, and credentials (Basic, a bearer token, OAuth2 client
//! credentials). Secrets go in and never come back out: a view shows a
//! certificate's subject, fingerprint and expiry, and which credentials
//! are set, never a key, password, token or client secret.

use chrono::{DateTime, Utc};
use outhook_dispatcher::connection::{
    Auth, CertificateInfo, Connection, OAuth2, ProxyChoice, ProxyUrl, parse_certificates,
};
use outhook_dispatcher::db::endpoint_connection::{
    TokenState, endpoint_connection_get, endpoint_connection_put, oauth_token_state,
};
use outhook_dispatcher::http::AddressPolicy;
use outhook_signer::Secret;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Error, Result, Scope};

/// PEM texts longer than this are refused (a chain of a few certificates
/// is a few KiB).
pub const MAX_PEM_BYTES: usize = 64 * 1024;

/// Which proxy, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyInput {
    /// The worker's (`--proxy`), if it has one.
    Worker,
    /// None, even when the worker has one.
    Direct,
    /// This proxy's URL (admins only).
    Url(String),
}

/// Credentials, as given. A secret left out keeps the one stored, when the
/// stored credentials are of the same kind (and, for OAuth2, the same
/// token URL and client id).
#[derive(Debug, Clone)]
pub enum AuthInput {
    /// HTTP Basic.
    Basic {
        /// The username.
        username: String,
        /// The password; `None` keeps the stored one.
        password: Option<Secret>,
    },
    /// A static bearer token.
    Bearer {
        /// The token; `None` keeps the stored one.
        token: Option<Secret>,
    },
    /// OAuth2 client credentials.
    OAuth2 {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The client secret; `None` keeps the stored one.
        client_secret: Option<Secret>,
        /// The scope asked for.
        scope: Option<String>,
        /// The audience asked for.
        audience: Option<String>,
    },
}

/// Changes to an endpoint's connection settings: `None` keeps a setting,
/// `Some(None)` removes it.
#[derive(Debug, Clone, Default)]
pub struct ConnectionPatch {
    /// The proxy.
    pub proxy: Option<ProxyInput>,
    /// The client certificate chain (PEM), leaf first.
    pub client_certificate: Option<Option<String>>,
    /// Its private key (PEM); left out with a new certificate, the stored
    /// key is kept (a renewal with the same key).
    pub client_key: Option<Secret>,
    /// Extra trusted CA certificates (PEM).
    pub ca_certificates: Option<Option<String>>,
    /// Pinned server certificates (PEM).
    pub pinned_certificates: Option<Option<String>>,
    /// Credentials.
    pub auth: Option<Option<AuthInput>>,
}

/// Which proxy an endpoint uses, as shown.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ProxyView {
    /// The worker's, if it has one.
    Worker,
    /// None.
    Direct,
    /// This URL, its credentials shown as `***`.
    Url(String),
}

/// Credentials, as shown: what they are, never their secret.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AuthView {
    /// HTTP Basic with this username.
    Basic {
        /// The username.
        username: String,
    },
    /// A static bearer token.
    Bearer,
    /// OAuth2 client credentials.
    #[serde(rename = "oauth2")]
    OAuth2 {
        /// The token endpoint.
        token_url: String,
        /// The client id.
        client_id: String,
        /// The scope asked for.
        scope: Option<String>,
        /// The audience asked for.
        audience: Option<String>,
        /// The shared token's expiry and how many were fetched.
        token: Option<TokenState>,
    },
}

/// An endpoint's connection settings as they can be read back.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConnectionView {
    /// The endpoint.
    pub endpoint_id: Uuid,
    /// Which proxy.
    pub proxy: ProxyView,
    /// The client certificate (leaf), if one is set.
    pub client_certificate: Option<CertificateInfo>,
    /// The extra trusted CA certificates.
    pub ca_certificates: Vec<CertificateInfo>,
    /// The pinned server certificates.
    pub pinned_certificates: Vec<CertificateInfo>,
    /// The credentials, if any.
    pub auth: Option<AuthView>,
    /// When they last changed; `None`: never set.
    pub updated_at: Option<DateTime<Utc>>,
}

impl ConnectionView {
    /// Days until the client certificate expires (negative: expired).
    pub fn client_certificate_days_left(&self, now: DateTime<Utc>) -> Option<i64> {
        self.client_certificate.as_ref().map(|c| (c.not_after - now).num_days())
    }
}

fn keyring() -> Result<&'static outhook_dispatcher::secrets::Keyring> {
    outhook_dispatcher::secrets::keyring().map_err(|e| Error::Internal(e.to_string()))
}

async fn load(pool: &PgPool, endpoint: Uuid) -> Result<(Connection, Option<DateTime<Utc>>)> {
    match endpoint_connection_get(pool, endpoint).await? {
        None => Ok((Connection::default(), None)),
        Some((stored, at)) => Ok((
            Connection::from_stored(&stored, keyring()?).map_err(Error::Internal)?,
            Some(at),
        )),
    }
}

async fn view_of(
    pool: &PgPool,
    endpoint: Uuid,
    conn: &Connection,
    at: Option<DateTime<Utc>>,
) -> Result<ConnectionView> {
    let certs = |setting, pem: &Option<String>| -> Result<Vec<CertificateInfo>> {
        match pem {
            None => Ok(Vec::new()),
            Some(p) => Ok(parse_certificates(setting, p)
                .map_err(|e| Error::Internal(e.to_string()))?
                .into_iter()
                .map(|(_, info)| info)
                .collect()),
        }
    };
    let auth = match &conn.auth {
        None => None,
        Some(Auth::Basic { username, .. }) => Some(AuthView::Basic {
            username: username.clone(),
        }),
        Some(Auth::Bearer { .. }) => Some(AuthView::Bearer),
        Some(Auth::OAuth2(o)) => Some(AuthView::OAuth2 {
            token_url: outhook_dispatcher::http::redact_url(&o.token_url),
            client_id: o.client_id.clone(),
            scope: o.scope.clone(),
            audience: o.audience.clone(),
            token: oauth_token_state(pool, endpoint).await?,
        }),
    };
    Ok(ConnectionView {
        endpoint_id: endpoint,
        proxy: match &conn.proxy {
            ProxyChoice::Worker => ProxyView::Worker,
            ProxyChoice::Direct => ProxyView::Direct,
            ProxyChoice::Via(p) => ProxyView::Url(p.redacted()),
        },
        client_certificate: certs("client_certificate", &conn.client_certificate)?
            .into_iter()
            .next(),
        ca_certificates: certs("ca_certificates", &conn.ca_certificates)?,
        pinned_certificates: certs("pinned_certificates", &conn.pinned_certificates)?,
        auth,
        updated_at: at,
    })
}

/// An endpoint's connection settings, as they can be read back.
pub async fn get(pool: &PgPool, scope: &Scope, endpoint: Uuid) -> Result<ConnectionView> {
    super::endpoint::get(pool, scope, endpoint).await?;
    let (conn, at) = load(pool, endpoint).await?;
    view_of(pool, endpoint, &conn, at).await
}

fn pem(setting: &'static str, text: String) -> Result<String> {
    if text.len() > MAX_PEM_BYTES {
        return Err(Error::parameter(setting, format!("at most {MAX_PEM_BYTES} bytes")));
    }
    Ok(text)
}

fn bad(e: outhook_dispatcher::connection::ConnectionError) -> Error {
    Error::parameter(e.setting, e.reason)
}

fn required(name: &'static str) -> Error {
    Error::parameter(name, "required (none is stored to keep)")
}

/// Applies `patch` to an endpoint's connection settings, checks them all
/// (certificates parse, a key with its certificate, the token URL within
/// the address policy, the client builds), and stores them; a change
/// forgets the OAuth2 token the old settings fetched. Only an admin may
/// name a proxy: its host is exempt from the address policy.
pub async fn update(
    pool: &PgPool,
    scope: &Scope,
    policy: &AddressPolicy,
    endpoint: Uuid,
    patch: ConnectionPatch,
) -> Result<ConnectionView> {
    super::endpoint::get(pool, scope, endpoint).await?;
    check_texts(&patch)?;
    let (mut conn, _) = load(pool, endpoint).await?;
    if let Some(proxy) = patch.proxy {
        let chosen = match proxy {
            ProxyInput::Worker => ProxyChoice::Worker,
            ProxyInput::Direct => ProxyChoice::Direct,
            ProxyInput::Url(url) => ProxyChoice::Via(
                ProxyUrl::parse(&outhook_dispatcher::http::restore_redacted_url(
                    &url,
                    &proxy_text(&conn.proxy),
                ))
                .map_err(bad)?,
            ),
        };
        if chosen != conn.proxy && !matches!(scope, Scope::Admin) {
            return Err(Error::Forbidden(
                "only the operator chooses the proxy an endpoint goes through",
            ));
        }
        conn.proxy = chosen;
    }
    match (patch.client_certificate, patch.client_key) {
        (None, None) => {}
        (Some(None), _) => {
            conn.client_certificate = None;
            conn.client_key = None;
        }
        (Some(Some(cert)), key) => {
            conn.client_certificate = Some(pem("client_certificate", cert)?);
            if let Some(key) = key {
                conn.client_key = Some(Secret::new(pem("client_key", key.expose().to_owned())?));
            } else if conn.client_key.is_none() {
                return Err(required("client_key"));
            }
        }
        (None, Some(key)) => {
            if conn.client_certificate.is_none() {
                return Err(Error::parameter(
                    "client_certificate",
                    "a private key needs its certificate",
                ));
            }
            conn.client_key = Some(Secret::new(pem("client_key", key.expose().to_owned())?));
        }
    }
    if let Some(ca) = patch.ca_certificates {
        conn.ca_certificates = ca.map(|c| pem("ca_certificates", c)).transpose()?;
    }
    if let Some(pinned) = patch.pinned_certificates {
        conn.pinned_certificates = pinned.map(|c| pem("pinned_certificates", c)).transpose()?;
    }
    if let Some(auth) = patch.auth {
        conn.auth = match auth {
            None => None,
            Some(input) => Some(merge_auth(input, conn.auth.take())?),
        };
    }
    conn.validate().map_err(bad)?;
    if let Some(Auth::OAuth2(o)) = &conn.auth {
        super::endpoint::check_url(policy, &o.token_url)
            .await
            .map_err(|e| match e {
                // Refused like an endpoint's URL would be (403).
                Error::AddressRefused(_) | Error::Url(outhook_dispatcher::http::UrlError::Refused(_)) => e,
                other => Error::parameter("token_url", other.to_string()),
            })?;
    }
    // Built once, as a worker will: a key that does not fit, a CA that
    // rustls refuses, are said now.
    if conn.needs_own_client() {
        outhook_dispatcher::http::build_client_for(&outhook_dispatcher::http::HttpSettings::default(), &conn)
            .map_err(|e| Error::Settings(format!("connection settings: {e}")))?;
    }
    let empty = conn.proxy == ProxyChoice::Worker
        && conn.client_certificate.is_none()
        && conn.ca_certificates.is_none()
        && conn.pinned_certificates.is_none()
        && conn.auth.is_none();
    if empty {
        endpoint_connection_put(pool, endpoint, None).await?;
    } else {
        let stored = conn.to_stored(keyring()?)?;
        endpoint_connection_put(pool, endpoint, Some(&stored)).await?;
    }
    get(pool, scope, endpoint).await
}

/// No NUL anywhere (PostgreSQL's text cannot hold it) and bounded
/// lengths, before anything else is looked at.
fn check_texts(patch: &ConnectionPatch) -> Result<()> {
    use super::rules::check_text;
    if let Some(ProxyInput::Url(u)) = &patch.proxy {
        check_text("proxy", u, 2048)?;
    }
    if let Some(Some(c)) = &patch.client_certificate {
        check_text("client_certificate", c, MAX_PEM_BYTES)?;
    }
    if let Some(k) = &patch.client_key {
        check_text("client_key", k.expose(), MAX_PEM_BYTES)?;
    }
    if let Some(Some(c)) = &patch.ca_certificates {
        check_text("ca_certificates", c, MAX_PEM_BYTES)?;
    }
    if let Some(Some(c)) = &patch.pinned_certificates {
        check_text("pinned_certificates", c, MAX_PEM_BYTES)?;
    }
    match &patch.auth {
        Some(Some(AuthInput::Basic { username, password })) => {
            check_text("username", username, 256)?;
            if let Some(p) = password {
                check_text("password", p.expose(), 4096)?;
            }
        }
        Some(Some(AuthInput::Bearer { token: Some(t) })) => check_text("token", t.expose(), 8192)?,
        Some(Some(AuthInput::OAuth2 {
            token_url,
            client_id,
            client_secret,
            scope,
            audience,
        })) => {
            check_text("token_url", token_url, 2048)?;
            check_text("client_id", client_id, 512)?;
            if let Some(s) = client_secret {
                check_text("client_secret", s.expose(), 4096)?;
            }
            check_text("scope", scope.as_deref().unwrap_or(""), 1024)?;
            check_text("audience", audience.as_deref().unwrap_or(""), 1024)?;
        }
        _ => {}
    }
    Ok(())
}

fn proxy_text(p: &ProxyChoice) -> String {
    match p {
        ProxyChoice::Via(url) => url.as_str().to_owned(),
        _ => String::new(),
    }
}

fn merge_auth(input: AuthInput, stored: Option<Auth>) -> Result<Auth> {
    Ok(match (input, stored) {
        (AuthInput::Basic { username, password }, stored) => Auth::Basic {
            password: match (password, stored) {
                (Some(p), _) => p,
                (None, Some(Auth::Basic { username: u, password })) if u == username => password,
                _ => return Err(required("password")),
            },
            username,
        },
        (AuthInput::Bearer { token }, stored) => Auth::Bearer {
            token: match (token, stored) {
                (Some(t), _) => t,
                (None, Some(Auth::Bearer { token })) => token,
                _ => return Err(required("token")),
            },
        },
        (
            AuthInput::OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope,
                audience,
            },
            stored,
        ) => {
            let stored_url = match &stored {
                Some(Auth::OAuth2(o)) => o.token_url.clone(),
                _ => String::new(),
            };
            let token_url = outhook_dispatcher::http::restore_redacted_url(&token_url, &stored_url);
            let client_secret = match (client_secret, stored) {
                (Some(s), _) => s,
                (None, Some(Auth::OAuth2(o))) if o.client_id == client_id && o.token_url == token_url => {
                    o.client_secret
                }
                _ => return Err(required("client_secret")),
            };
            Auth::OAuth2(OAuth2 {
                token_url,
                client_id,
                client_secret,
                scope: scope.filter(|s| !s.is_empty()),
                audience: audience.filter(|a| !a.is_empty()),
            })
        }
    })
}

/// Removes an endpoint's connection settings: its requests go as before,
/// on the worker's client.
pub async fn clear(pool: &PgPool, scope: &Scope, endpoint: Uuid) -> Result<ConnectionView> {
    super::endpoint::get(pool, scope, endpoint).await?;
    endpoint_connection_put(pool, endpoint, None).await?;
    get(pool, scope, endpoint).await
}
