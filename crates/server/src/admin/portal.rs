//! Access to the portal: short-lived signed links that a provider's backend
//! makes for one owner, the signed session a link or an admin token opens,
//! and the CSRF token bound to that session.
//!
//! Everything is signed with HMAC-SHA256 under the `portal` server key,
//! which every server process on the database shares. A link and a session
//! are signed for different purposes, so neither can stand in for the
//! other. Checks compare tags in constant time.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use outhook_dispatcher::db::api_token::api_token_credential;
use outhook_dispatcher::db::server_key::server_key_get_or_insert;
use outhook_signer::Secret;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use sqlx::PgPool;
use uuid::Uuid;

use super::{Error, Result, Scope};

type HmacSha256 = Hmac<Sha256>;

/// The shortest and longest a link may live.
pub const LINK_TTL: std::ops::RangeInclusive<Duration> = Duration::from_secs(60)..=Duration::from_secs(7 * 86_400);

/// How long a link lives unless asked otherwise.
pub const DEFAULT_LINK_TTL: Duration = Duration::from_secs(15 * 60);

/// The key that signs links, sessions and CSRF tokens (kept keyed, never
/// as text).
#[derive(Clone)]
pub struct PortalKey(HmacSha256);

impl std::fmt::Debug for PortalKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PortalKey(***)")
    }
}

impl PortalKey {
    /// The database's portal key, made on first use.
    pub async fn load(pool: &PgPool) -> Result<Self> {
        let candidate = Secret::generate_hex().map_err(|e| Error::Internal(e.to_string()))?;
        Self::new(&server_key_get_or_insert(pool, "portal", &candidate).await?)
    }

    fn new(secret: &Secret) -> Result<Self> {
        HmacSha256::new_from_slice(secret.expose().as_bytes())
            .map(Self)
            .map_err(|e| Error::Internal(e.to_string()))
    }

    fn mac(&self, purpose: &str, payload: &str) -> HmacSha256 {
        let mut mac = self.0.clone();
        mac.update(purpose.as_bytes());
        mac.update(b"\0");
        mac.update(payload.as_bytes());
        mac
    }

    /// `payload` signed for `purpose`: `<base64url json>.<base64url tag>`.
    fn sign<T: Serialize>(&self, purpose: &str, payload: &T) -> Result<String> {
        let json = serde_json::to_vec(payload).map_err(|e| Error::Internal(e.to_string()))?;
        let body = URL_SAFE_NO_PAD.encode(json);
        let tag = URL_SAFE_NO_PAD.encode(self.mac(purpose, &body).finalize().into_bytes());
        Ok(format!("{body}.{tag}"))
    }

    /// The payload of a text signed for `purpose`, if the tag matches.
    fn open<T: for<'de> Deserialize<'de>>(&self, purpose: &str, text: &str) -> Option<T> {
        let (body, tag) = text.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        self.mac(purpose, body).verify_slice(&tag).ok()?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).ok()?).ok()
    }
}

#[derive(Serialize, Deserialize)]
struct LinkClaims {
    /// The owner the link opens.
    own: String,
    /// Expiry, Unix seconds.
    exp: i64,
    /// Makes every link different.
    jti: String,
}

/// A portal link.
#[derive(Debug, Clone)]
pub struct PortalLink {
    /// The address to open (or put in an iframe).
    pub url: String,
    /// The owner it opens.
    pub owner: String,
    /// When it stops working.
    pub expires_at: DateTime<Utc>,
}

/// Makes a link that opens the portal for one owner, valid for `ttl`
/// (default 15 minutes). An admin names the owner; an owner's scope makes
/// links for itself only. `base_url` is where the server is reached, such
/// as `https://hooks.example.com`.
pub async fn link(
    pool: &PgPool,
    scope: &Scope,
    owner: Option<&str>,
    ttl: Option<Duration>,
    base_url: &str,
) -> Result<PortalLink> {
    let owner = match (scope, owner) {
        (Scope::Admin, Some(o)) => {
            super::rules::check_name("owner", o)?;
            o.to_owned()
        }
        (Scope::Admin, None) => return Err(Error::parameter("owner", "required with an admin token")),
        (Scope::Owner(mine), None) => mine.clone(),
        (Scope::Owner(mine), Some(o)) if o == mine => mine.clone(),
        (Scope::Owner(_), Some(_)) => return Err(Error::NotFound("owner")),
    };
    let ttl = ttl.unwrap_or(DEFAULT_LINK_TTL);
    if !LINK_TTL.contains(&ttl) {
        return Err(Error::parameter("ttl", "1 minute to 7 days"));
    }
    let key = PortalKey::load(pool).await?;
    let expires_at = Utc::now() + chrono::Duration::from_std(ttl).map_err(|e| Error::Internal(e.to_string()))?;
    link_signed(&key, &owner, expires_at, base_url)
}

/// A link for `owner` that expires at `expires_at`, signed with `key`,
/// with no checks (tests use it to make expired links).
pub fn link_signed(key: &PortalKey, owner: &str, expires_at: DateTime<Utc>, base_url: &str) -> Result<PortalLink> {
    let token = key.sign(
        "link",
        &LinkClaims {
            own: owner.to_owned(),
            exp: expires_at.timestamp(),
            jti: nonce()?,
        },
    )?;
    Ok(PortalLink {
        url: format!("{}/portal/link?token={token}", base_url.trim_end_matches('/')),
        owner: owner.to_owned(),
        expires_at,
    })
}

/// The owner a link opens, if it is genuine and unexpired.
pub fn link_open(key: &PortalKey, token: &str, now: DateTime<Utc>) -> Option<String> {
    let claims: LinkClaims = key.open("link", token)?;
    (claims.exp > now.timestamp()).then_some(claims.own)
}

/// A signed-in portal user.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    /// The owner it sees; `None` for an operator who sees every owner.
    #[serde(rename = "own")]
    owner: Option<String>,
    /// The API token it signed in with, checked again on every request so a
    /// revoked token ends its sessions.
    #[serde(rename = "tok")]
    token: Option<Uuid>,
    /// Expiry, Unix seconds.
    exp: i64,
    /// Random, and what the CSRF token is derived from.
    #[serde(rename = "nce")]
    nonce: String,
}

impl Session {
    /// What the session may see and do.
    pub fn scope(&self) -> Scope {
        match &self.owner {
            None => Scope::Admin,
            Some(o) => Scope::Owner(o.clone()),
        }
    }

    /// When it ends.
    pub fn expires_at(&self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.exp, 0).unwrap_or_default()
    }
}

/// A new session for `scope`, signed in with `token` (none for a link),
/// lasting `ttl`. Returns it and its cookie value.
pub fn session_issue(key: &PortalKey, scope: &Scope, token: Option<Uuid>, ttl: Duration) -> Result<(Session, String)> {
    let session = Session {
        owner: scope.owner().map(str::to_owned),
        token,
        exp: Utc::now().timestamp() + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        nonce: nonce()?,
    };
    let cookie = key.sign("session", &session)?;
    Ok((session, cookie))
}

/// The session a cookie carries, if it is genuine, unexpired and (when it
/// signed in with a token) that token is still active with the same scope.
pub async fn session_open(pool: &PgPool, key: &PortalKey, cookie: &str) -> Result<Option<Session>> {
    let Some(session) = key.open::<Session>("session", cookie) else {
        return Ok(None);
    };
    if session.exp <= Utc::now().timestamp() {
        return Ok(None);
    }
    if let Some(id) = session.token {
        match api_token_credential(pool, id).await? {
            Some(c) if c.active && c.owner == session.owner => {}
            _ => return Ok(None),
        }
    }
    Ok(Some(session))
}

/// The CSRF token of a session: forms carry it, and a POST without the
/// right one is refused.
pub fn csrf_token(key: &PortalKey, session: &Session) -> String {
    URL_SAFE_NO_PAD.encode(key.mac("csrf", &session.nonce).finalize().into_bytes())
}

/// Whether `presented` is the session's CSRF token (constant time).
pub fn csrf_check(key: &PortalKey, session: &Session, presented: &str) -> bool {
    URL_SAFE_NO_PAD
        .decode(presented)
        .is_ok_and(|tag| key.mac("csrf", &session.nonce).verify_slice(&tag).is_ok())
}

fn nonce() -> Result<String> {
    let s = Secret::generate_hex().map_err(|e| Error::Internal(e.to_string()))?;
    Ok(s.expose()[..32].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(k: &str) -> PortalKey {
        PortalKey::new(&Secret::new(k.to_owned())).unwrap()
    }

    #[test]
    fn a_link_opens_for_its_owner_until_it_expires() {
        let k = key("k1");
        let exp = Utc::now().timestamp() + 60;
        let t = k
            .sign(
                "link",
                &LinkClaims {
                    own: "acme".into(),
                    exp,
                    jti: "x".into(),
                },
            )
            .unwrap();
        assert_eq!(link_open(&k, &t, Utc::now()).as_deref(), Some("acme"));
        let later = Utc::now() + chrono::Duration::seconds(61);
        assert_eq!(link_open(&k, &t, later), None);
        assert_eq!(link_open(&key("k2"), &t, Utc::now()), None, "another key");
    }

    #[test]
    fn a_tampered_link_or_a_session_cookie_is_not_a_link() {
        let k = key("k1");
        let exp = Utc::now().timestamp() + 60;
        let t = k
            .sign(
                "link",
                &LinkClaims {
                    own: "acme".into(),
                    exp,
                    jti: "x".into(),
                },
            )
            .unwrap();
        let (body, tag) = t.split_once('.').unwrap();
        let forged = URL_SAFE_NO_PAD.encode(format!(r#"{{"own":"other","exp":{exp},"jti":"x"}}"#));
        assert_eq!(link_open(&k, &format!("{forged}.{tag}"), Utc::now()), None);
        assert_eq!(link_open(&k, &format!("{body}.{}", &tag[1..]), Utc::now()), None);
        let (_, cookie) = session_issue(&k, &Scope::Owner("acme".into()), None, Duration::from_secs(60)).unwrap();
        assert_eq!(link_open(&k, &cookie, Utc::now()), None);
    }

    #[test]
    fn csrf_tokens_belong_to_one_session() {
        let k = key("k1");
        let (a, _) = session_issue(&k, &Scope::Admin, None, Duration::from_secs(60)).unwrap();
        let (b, _) = session_issue(&k, &Scope::Admin, None, Duration::from_secs(60)).unwrap();
        let ta = csrf_token(&k, &a);
        assert!(csrf_check(&k, &a, &ta));
        assert!(!csrf_check(&k, &b, &ta));
        assert!(!csrf_check(&k, &a, ""));
        assert!(!csrf_check(&k, &a, "not base64!"));
    }
}
