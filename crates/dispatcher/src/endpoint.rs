//! Endpoints as the dispatcher uses them: parsed URL, ready signer, static
//! headers. Cached briefly, so a burst to one endpoint reads it once, and a
//! change (disable, rotation) is seen within the cache's time to live.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use http::{HeaderName, HeaderValue};
use outhook_signer::{HmacSettings, KeyKind, Scheme, Secret, Signer};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::endpoint::{DispatchEndpoint, endpoint_dispatch_get_many};
use crate::error::Result;
use crate::http::HttpSettings;

/// An endpoint ready to receive: everything an attempt needs.
pub(crate) struct Target {
    pub id: Uuid,
    pub url: std::result::Result<reqwest::Url, String>,
    pub enabled: bool,
    pub disabled_reason: Option<String>,
    pub signer: std::result::Result<Signer, String>,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// Where the message id goes, unless the scheme's own headers carry it.
    pub message_id_header: Option<HeaderName>,
    /// Ordered: when a delivery ends, the next one waiting becomes due.
    pub fifo: bool,
    /// Has a rate or in-flight limit: claimed rows pass the admission first.
    pub limited: bool,
    /// Has an in-flight limit: an ended attempt frees a place.
    pub max_in_flight: bool,
    /// Its own client (a certificate, CAs, a proxy of its own or none);
    /// `None`: the worker's shared one.
    pub client: Option<reqwest::Client>,
    /// Requests go through a proxy: the target's addresses are checked
    /// here before the proxy is asked.
    pub proxied: bool,
    /// Credentials to send.
    pub auth: TargetAuth,
    /// Connection settings that cannot be used (a key that does not open).
    pub connection_error: Option<String>,
    updated_at: DateTime<Utc>,
    fingerprint: u64,
}

/// The credentials of a target.
pub(crate) enum TargetAuth {
    None,
    /// A ready `Authorization` value (Basic, static bearer).
    Header(HeaderValue),
    /// A token fetched by client credentials; the `u64` fingerprints the
    /// settings, so a change forgets the token this worker holds.
    OAuth2(crate::connection::OAuth2, u64),
}

fn fingerprint(row: &DispatchEndpoint) -> u64 {
    let mut h = DefaultHasher::new();
    row.connection
        .as_ref()
        .map(|c| {
            let c = &c.0;
            (
                &c.proxy,
                &c.client_certificate,
                &c.ca_certificates,
                &c.pinned_certificates,
                &c.auth,
                c.auth_settings.to_string(),
                &c.secrets,
            )
        })
        .hash(&mut h);
    row.secrets.hash(&mut h);
    row.private_key_pem.hash(&mut h);
    // Everything a delivery uses, so that a change the row's `updated_at`
    // does not show (a trigger dropped or disabled) is seen all the same.
    row.url.hash(&mut h);
    row.scheme.hash(&mut h);
    row.scheme_settings.as_ref().map(ToString::to_string).hash(&mut h);
    row.enabled.hash(&mut h);
    row.disabled_reason.hash(&mut h);
    row.headers.to_string().hash(&mut h);
    row.message_id_header.hash(&mut h);
    row.fifo.hash(&mut h);
    row.rate_limit.map(f64::to_bits).hash(&mut h);
    row.max_in_flight.hash(&mut h);
    h.finish()
}

fn build_signer(row: &DispatchEndpoint) -> std::result::Result<Signer, String> {
    let scheme = if row.scheme == "hmac" {
        let settings: HmacSettings = serde_json::from_value(row.scheme_settings.clone().unwrap_or_default())
            .map_err(|e| format!("scheme `hmac` settings: {e}"))?;
        Scheme::try_from(&settings).map_err(|e| e.to_string())?
    } else {
        Scheme::by_name(&row.scheme).map_err(|e| e.to_string())?
    };
    let keyring = crate::secrets::keyring().map_err(|e| e.to_string())?;
    let keys: Vec<Secret> = match scheme.key_kind() {
        KeyKind::Rsa => match &row.private_key_pem {
            Some(stored) => vec![Secret::new(
                keyring
                    .open(crate::secrets::Kind::PrivateKey, stored)
                    .map_err(|e| e.to_string())?,
            )],
            None => {
                return Err(format!(
                    "scheme `{}` needs a signing key and the endpoint has none",
                    row.scheme
                ));
            }
        },
        _ => row
            .secrets
            .iter()
            .map(|stored| {
                keyring
                    .open(crate::secrets::Kind::EndpointSecret, stored)
                    .map(Secret::new)
                    .map_err(|e| e.to_string())
            })
            .collect::<std::result::Result<_, _>>()?,
    };
    if keys.is_empty() {
        return Err("the endpoint has no active secret".into());
    }
    Signer::new(scheme, &keys).map_err(|e| e.to_string())
}

fn static_headers(value: &serde_json::Value) -> Vec<(HeaderName, HeaderValue)> {
    let Some(map) = value.as_object() else {
        return Vec::new();
    };
    map.iter()
        .filter_map(|(k, v)| {
            let name = HeaderName::try_from(k.as_str()).ok()?;
            if crate::http::RESERVED_HEADERS.contains(&name.as_str()) {
                return None;
            }
            let value = HeaderValue::try_from(v.as_str()?).ok()?;
            Some((name, value))
        })
        .collect()
}

/// Everything of `row`'s connection settings a delivery needs.
struct Connected {
    client: Option<reqwest::Client>,
    proxied: bool,
    auth: TargetAuth,
    error: Option<String>,
}

fn connect(row: &DispatchEndpoint, http: &HttpSettings, fp: u64) -> Connected {
    use crate::connection::{Auth, Connection, ProxyChoice};
    let worker_proxied = http.proxy.is_some();
    let Some(stored) = &row.connection else {
        return Connected {
            client: None,
            proxied: worker_proxied,
            auth: TargetAuth::None,
            error: None,
        };
    };
    let broken = |error: String| Connected {
        client: None,
        proxied: worker_proxied,
        auth: TargetAuth::None,
        error: Some(error),
    };
    let keyring = match crate::secrets::keyring() {
        Ok(k) => k,
        Err(e) => return broken(e.to_string()),
    };
    let conn = match Connection::from_stored(&stored.0, keyring) {
        Ok(c) => c,
        Err(e) => return broken(format!("connection settings: {e}")),
    };
    let proxied = match &conn.proxy {
        ProxyChoice::Worker => worker_proxied,
        ProxyChoice::Direct => false,
        ProxyChoice::Via(_) => true,
    };
    let client = if conn.needs_own_client() {
        match crate::http::build_client_for(http, &conn) {
            Ok(c) => Some(c),
            Err(e) => return broken(format!("connection settings: {e}")),
        }
    } else {
        None
    };
    let header = |text: String| {
        HeaderValue::try_from(text).map(|mut v| {
            v.set_sensitive(true);
            TargetAuth::Header(v)
        })
    };
    let auth = match conn.auth {
        None => Ok(TargetAuth::None),
        Some(Auth::Basic { username, password }) => {
            header(crate::connection::basic_header(&username, password.expose()))
        }
        Some(Auth::Bearer { token }) => header(format!("Bearer {}", token.expose())),
        Some(Auth::OAuth2(o)) => Ok(TargetAuth::OAuth2(o, fp)),
    };
    match auth {
        Ok(auth) => Connected {
            client,
            proxied,
            auth,
            error: None,
        },
        Err(_) => broken("connection settings: the credentials cannot go in a header".into()),
    }
}

impl Target {
    fn build(row: DispatchEndpoint, previous: Option<&Arc<Target>>, http: &HttpSettings) -> Arc<Target> {
        let fp = fingerprint(&row);
        // Same row, same secrets: keep the signer (RSA keys are slow to parse).
        if let Some(prev) = previous
            && prev.updated_at == row.updated_at
            && prev.fingerprint == fp
        {
            return prev.clone();
        }
        let signer = build_signer(&row);
        let connected = connect(&row, http, fp);
        let mut headers = static_headers(&row.headers);
        if let Ok(s) = &signer {
            let reserved_by_scheme = match s.scheme() {
                Scheme::Hmac(h) => Some(h.signature_header().clone()),
                Scheme::Rsa(r) => Some(r.signature_header().clone()),
                _ => None,
            };
            headers.retain(|(n, _)| Some(n) != reserved_by_scheme.as_ref());
        }
        Arc::new(Target {
            id: row.id,
            url: crate::http::parse_url(&row.url).map_err(|e| e.to_string()),
            enabled: row.enabled,
            disabled_reason: row.disabled_reason,
            signer,
            headers,
            message_id_header: match row.message_id_header.as_deref() {
                None => Some(HeaderName::from_static(crate::http::DEFAULT_MESSAGE_ID_HEADER)),
                Some("") => None,
                Some(name) => HeaderName::try_from(name).ok(),
            },
            fifo: row.fifo,
            limited: row.rate_limit.is_some() || row.max_in_flight.is_some(),
            max_in_flight: row.max_in_flight.is_some(),
            client: connected.client,
            proxied: connected.proxied,
            auth: connected.auth,
            connection_error: connected.error,
            updated_at: row.updated_at,
            fingerprint: fp,
        })
    }
}

struct Entry {
    fetched: Instant,
    target: Option<Arc<Target>>,
}

/// A short-lived cache of targets by endpoint id.
pub(crate) struct EndpointCache {
    ttl: Duration,
    http: HttpSettings,
    entries: Mutex<HashMap<Uuid, Entry>>,
}

impl EndpointCache {
    pub fn new(ttl: Duration, http: HttpSettings) -> Self {
        Self {
            ttl,
            http,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets `ids`, so the next claim re-reads them (after a 410 disabled them).
    pub fn invalidate(&self, ids: &[Uuid]) {
        if let Ok(mut entries) = self.entries.lock() {
            for id in ids {
                entries.remove(id);
            }
        }
    }

    /// Targets for `ids` (`None` for an unknown endpoint), reading from the
    /// database only those not fresh in the cache, in one query.
    pub async fn get_many(&self, pool: &PgPool, ids: &[Uuid]) -> Result<HashMap<Uuid, Option<Arc<Target>>>> {
        let now = Instant::now();
        let mut found = HashMap::with_capacity(ids.len());
        let mut stale = Vec::new();
        {
            let entries = self
                .entries
                .lock()
                .map_err(|_| crate::Error::Config("endpoint cache poisoned".into()))?;
            for id in ids {
                if found.contains_key(id) {
                    continue;
                }
                match entries.get(id) {
                    Some(e) if now.duration_since(e.fetched) < self.ttl => {
                        found.insert(*id, e.target.clone());
                    }
                    _ => stale.push(*id),
                }
            }
        }
        stale.sort();
        stale.dedup();
        if stale.is_empty() {
            return Ok(found);
        }
        let rows = endpoint_dispatch_get_many(pool, &stale).await?;
        let mut entries = self
            .entries
            .lock()
            .map_err(|_| crate::Error::Config("endpoint cache poisoned".into()))?;
        let mut fetched: HashMap<Uuid, Arc<Target>> = HashMap::with_capacity(rows.len());
        for row in rows {
            let previous = entries.get(&row.id).and_then(|e| e.target.as_ref());
            let target = Target::build(row, previous, &self.http);
            fetched.insert(target.id, target);
        }
        for id in stale {
            let target = fetched.remove(&id);
            entries.insert(
                id,
                Entry {
                    fetched: now,
                    target: target.clone(),
                },
            );
            found.insert(id, target);
        }
        Ok(found)
    }
}
