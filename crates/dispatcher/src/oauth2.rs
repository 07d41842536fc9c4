//! OAuth2 client credentials: one access token per endpoint, fetched by one
//! worker at a time and shared by every delivery and every worker (through
//! `outhook.oauth_token`, sealed) until shortly before it expires.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use http::header;
use outhook_signer::Secret;
use sqlx::PgPool;
use uuid::Uuid;

use crate::connection::OAuth2;
use crate::secrets::Kind;

/// Bytes of a token server's answer read at most.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Why no token could be had: what went wrong (never a secret), with the
/// token server's status when it answered.
#[derive(Debug, Clone)]
pub(crate) struct TokenFailure {
    pub error: String,
}

fn failure(_status: Option<u16>, error: impl Into<String>) -> TokenFailure {
    TokenFailure { error: error.into() }
}

struct Cached {
    token: Arc<Secret>,
    usable_until: DateTime<Utc>,
    settings: u64,
}

/// The tokens this worker holds, and the database they are shared through.
pub(crate) struct TokenStore {
    pool: PgPool,
    memory: Mutex<HashMap<Uuid, Cached>>,
    fetching: Mutex<HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
}

/// Until when a token that expires at `expires` is used: a tenth of its
/// lifetime before, between 5 and 60 seconds.
fn usable_until(fetched: DateTime<Utc>, expires: DateTime<Utc>) -> DateTime<Utc> {
    let life = (expires - fetched).num_milliseconds().max(0);
    let margin = (life / 10).clamp(5_000, 60_000);
    expires - chrono::Duration::milliseconds(margin)
}

impl TokenStore {
    pub fn new(pool: PgPool) -> Self {
        Self {
            pool,
            memory: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
        }
    }

    fn remembered(&self, endpoint: Uuid, settings: u64, stale: Option<&str>) -> Option<Arc<Secret>> {
        let memory = self.memory.lock().ok()?;
        let c = memory.get(&endpoint)?;
        (c.settings == settings && c.usable_until > Utc::now() && stale != Some(c.token.expose()))
            .then(|| c.token.clone())
    }

    fn remember(&self, endpoint: Uuid, settings: u64, token: Arc<Secret>, usable_until: DateTime<Utc>) {
        if let Ok(mut memory) = self.memory.lock() {
            memory.insert(
                endpoint,
                Cached {
                    token,
                    usable_until,
                    settings,
                },
            );
        }
    }

    /// A token for `endpoint` (whose OAuth2 settings are `o`, fingerprinted
    /// `settings`): this worker's, else the one other workers stored, else
    /// a new one from the token server. `stale` is a token the receiver
    /// refused (401): it is not given again.
    pub async fn token(
        &self,
        client: &reqwest::Client,
        endpoint: Uuid,
        settings: u64,
        o: &OAuth2,
        timeout: Duration,
        stale: Option<&str>,
    ) -> Result<Arc<Secret>, TokenFailure> {
        if let Some(t) = self.remembered(endpoint, settings, stale) {
            return Ok(t);
        }
        let gate = {
            let mut fetching = self
                .fetching
                .lock()
                .map_err(|_| failure(None, "the token cache is poisoned"))?;
            fetching.entry(endpoint).or_default().clone()
        };
        let _one_at_a_time = gate.lock().await;
        if let Some(t) = self.remembered(endpoint, settings, stale) {
            return Ok(t);
        }
        let db = |e: sqlx::Error| failure(None, format!("reading the shared token: {e}"));
        let keyring = crate::secrets::keyring().map_err(|e| failure(None, e.to_string()))?;
        let mut tx = self.pool.begin().await.map_err(db)?;
        sqlx::query("INSERT INTO outhook.oauth_token (endpoint_id) VALUES ($1) ON CONFLICT DO NOTHING")
            .bind(endpoint)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        // Locked: another worker asking now waits for this one's token.
        let (stored, expires, fetched): (Option<String>, Option<DateTime<Utc>>, DateTime<Utc>) = sqlx::query_as(
            "SELECT token, expires_at, fetched_at FROM outhook.oauth_token WHERE endpoint_id = $1 FOR UPDATE",
        )
        .bind(endpoint)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        if let (Some(stored), Some(expires)) = (stored, expires) {
            let until = usable_until(fetched, expires);
            if until > Utc::now()
                && let Ok(plain) = keyring.open(Kind::OAuthToken, &stored)
                && stale != Some(plain.as_str())
            {
                tx.commit().await.map_err(db)?;
                let token = Arc::new(Secret::new(plain));
                self.remember(endpoint, settings, token.clone(), until);
                return Ok(token);
            }
        }
        let (token, lifetime) = fetch(client, o, timeout).await?;
        let now = Utc::now();
        let expires = now + chrono::Duration::from_std(lifetime).unwrap_or(chrono::Duration::seconds(300));
        let sealed = keyring
            .seal(Kind::OAuthToken, token.expose())
            .map_err(|e| failure(None, e.to_string()))?;
        sqlx::query(
            "UPDATE outhook.oauth_token SET token = $2, expires_at = $3, fetched_at = $4, fetches = fetches + 1
             WHERE endpoint_id = $1",
        )
        .bind(endpoint)
        .bind(sealed)
        .bind(expires)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let token = Arc::new(token);
        self.remember(endpoint, settings, token.clone(), usable_until(now, expires));
        Ok(token)
    }
}

#[derive(serde::Deserialize)]
struct Answer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Asks the token server for a token: `client_credentials`, the client
/// authenticated with HTTP Basic (RFC 6749 section 2.3.1).
async fn fetch(client: &reqwest::Client, o: &OAuth2, timeout: Duration) -> Result<(Secret, Duration), TokenFailure> {
    let form = {
        let mut form = url::form_urlencoded::Serializer::new(String::new());
        form.append_pair("grant_type", "client_credentials");
        if let Some(scope) = &o.scope {
            form.append_pair("scope", scope);
        }
        if let Some(audience) = &o.audience {
            form.append_pair("audience", audience);
        }
        form.finish()
    };
    let encode = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let basic = zeroize::Zeroizing::new(crate::connection::basic_header(
        &encode(&o.client_id),
        &encode(o.client_secret.expose()),
    ));
    let mut auth =
        header::HeaderValue::from_str(&basic).map_err(|_| failure(None, "the client id cannot go in a header"))?;
    auth.set_sensitive(true);
    let request = client
        .post(o.token_url.as_str())
        .header(header::AUTHORIZATION, auth)
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .header(header::ACCEPT, "application/json")
        .body(form);
    let place = crate::http::redact_url(&o.token_url);
    let exchange = async {
        let mut response = request.send().await?;
        let status = response.status();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            let take = chunk.len().min(MAX_ANSWER_BYTES - body.len());
            body.extend_from_slice(&chunk[..take]);
            if body.len() >= MAX_ANSWER_BYTES {
                break;
            }
        }
        Ok::<_, reqwest::Error>((status, body))
    };
    let (status, body) = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => {
            return Err(failure(
                None,
                format!("the token server {place} did not answer within {timeout:?}"),
            ));
        }
        Ok(Err(e)) => {
            let e = e.without_url();
            let mut text = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                text.push_str(": ");
                text.push_str(&s.to_string());
                source = s.source();
            }
            return Err(failure(
                None,
                format!("the token server {place} could not be reached: {text}"),
            ));
        }
        Ok(Ok(answer)) => answer,
    };
    if !status.is_success() {
        // An error answer (RFC 6749 section 5.2) names what is wrong;
        // it holds no token.
        let said: String = String::from_utf8_lossy(&body).chars().take(300).collect();
        return Err(failure(
            Some(status.as_u16()),
            format!("the token server {place} answered {status}: {}", said.trim()),
        ));
    }
    let answer: Answer = serde_json::from_slice(&body).map_err(|e| {
        failure(
            Some(status.as_u16()),
            format!("the token server {place} answered {status} without a token: {e}"),
        )
    })?;
    if let Some(kind) = &answer.token_type
        && !kind.eq_ignore_ascii_case("bearer")
    {
        return Err(failure(
            Some(status.as_u16()),
            format!("the token server {place} gave a `{kind}` token; only bearer tokens are sent"),
        ));
    }
    if answer.access_token.is_empty() || answer.access_token.bytes().any(|b| b < 0x21 || b == 0x7f) {
        return Err(failure(
            Some(status.as_u16()),
            format!("the token server {place} gave a token that cannot go in a header"),
        ));
    }
    let seconds = match &answer.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.parse::<f64>().ok(),
        _ => None,
    }
    .filter(|s| s.is_finite() && *s > 0.0)
    // Without an expiry: five minutes, then a new one.
    .unwrap_or(300.0)
    .min(365.0 * 86_400.0);
    Ok((Secret::new(answer.access_token), Duration::from_secs_f64(seconds)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_used_until_a_tenth_of_its_life_before_it_expires() {
        let t0 = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let hour = usable_until(t0, t0 + chrono::Duration::seconds(3600));
        assert_eq!(hour, t0 + chrono::Duration::seconds(3540), "at most a minute before");
        let short = usable_until(t0, t0 + chrono::Duration::seconds(20));
        assert_eq!(
            short,
            t0 + chrono::Duration::seconds(15),
            "at least five seconds before"
        );
    }
}
