//! What a receiver may demand beyond a signed POST, per endpoint: a client
//! certificate (mutual TLS), extra trusted CA certificates, a proxy (or
//! none), and credentials (Basic, a static bearer token, or OAuth2 client
//! credentials). Stored in `outhook.endpoint_connection`, its secrets
//! sealed in one value; read back only as what is public.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use outhook_signer::Secret;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use sha2::{Digest, Sha256};

use crate::secrets::{Keyring, Kind};

/// Why connection settings are refused, naming the setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct ConnectionError {
    /// The setting at fault (`proxy`, `client_certificate`, ...).
    pub setting: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

fn refuse(setting: &'static str, reason: impl Into<String>) -> ConnectionError {
    ConnectionError {
        setting,
        reason: reason.into(),
    }
}

/// A proxy's URL: `http://`, `https://` (HTTP CONNECT), `socks5://` (the
/// target resolved here) or `socks5h://` (resolved by the proxy). It may
/// carry the proxy's credentials as user-info: shown redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl(reqwest::Url);

impl ProxyUrl {
    /// Parses and checks a proxy URL.
    pub fn parse(text: &str) -> Result<Self, ConnectionError> {
        let url = reqwest::Url::parse(text.trim()).map_err(|e| refuse("proxy", format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https" | "socks5" | "socks5h") {
            return Err(refuse(
                "proxy",
                format!(
                    "scheme `{}` is not a proxy: use http://, https://, socks5:// or socks5h://",
                    url.scheme()
                ),
            ));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(refuse("proxy", "the URL has no host"));
        }
        if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
            return Err(refuse("proxy", "a proxy URL has no path or query"));
        }
        Ok(Self(url))
    }

    /// The URL itself, credentials included (for the client only).
    pub fn url(&self) -> &reqwest::Url {
        &self.0
    }

    /// The proxy's host, as written.
    pub fn host(&self) -> &str {
        self.0.host_str().unwrap_or_default()
    }

    /// The URL as stored: with its credentials.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The URL with any credentials shown as `***`.
    pub fn redacted(&self) -> String {
        crate::http::redact_url(self.0.as_str())
    }
}

impl std::fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ProxyUrl({})", self.redacted())
    }
}

impl std::fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Which proxy an endpoint's requests go through.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ProxyChoice {
    /// The worker's (`--proxy`), or none when it has none.
    #[default]
    Worker,
    /// None, even when the worker has one.
    Direct,
    /// This one.
    Via(ProxyUrl),
}

/// OAuth2 client credentials (RFC 6749 section 4.4).
#[derive(Debug, Clone)]
pub struct OAuth2 {
    /// The authorization server's token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret, sent with HTTP Basic to the token endpoint.
    pub client_secret: Secret,
    /// The scope asked for, if any.
    pub scope: Option<String>,
    /// The audience asked for (Auth0 and others), if any.
    pub audience: Option<String>,
}

/// Credentials sent with every request.
#[derive(Debug, Clone)]
pub enum Auth {
    /// `Authorization: Basic`.
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer` with a static token.
    Bearer {
        /// The token.
        token: Secret,
    },
    /// `Authorization: Bearer` with a token fetched by client credentials.
    OAuth2(OAuth2),
}

impl Auth {
    /// `basic`, `bearer` or `oauth2`, as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Basic { .. } => "basic",
            Self::Bearer { .. } => "bearer",
            Self::OAuth2(_) => "oauth2",
        }
    }
}

/// An endpoint's connection settings.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    /// Which proxy.
    pub proxy: ProxyChoice,
    /// The client certificate chain (PEM), leaf first.
    pub client_certificate: Option<String>,
    /// The client certificate's private key (PEM).
    pub client_key: Option<Secret>,
    /// Extra CA certificates (PEM) trusted for the receiver's server.
    pub ca_certificates: Option<String>,
    /// Pinned server certificates (PEM): the receiver must present one of
    /// these exact certificates, whatever its chain and names.
    pub pinned_certificates: Option<String>,
    /// Credentials.
    pub auth: Option<Auth>,
}

/// What can be read back of a certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertificateInfo {
    /// Its subject, as an RFC 4514 string.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// SHA-256 of its DER bytes, in hex.
    pub fingerprint_sha256: String,
    /// When it stops being valid.
    pub not_after: DateTime<Utc>,
}

/// The certificates of a PEM text, at least one, each parsed.
pub fn parse_certificates(
    setting: &'static str,
    pem: &str,
) -> Result<Vec<(CertificateDer<'static>, CertificateInfo)>, ConnectionError> {
    let mut out = Vec::new();
    for item in CertificateDer::pem_slice_iter(pem.as_bytes()) {
        let der = item.map_err(|e| refuse(setting, format!("not PEM certificates: {e}")))?;
        let info = certificate_info(&der).map_err(|e| refuse(setting, e))?;
        out.push((der, info));
    }
    if out.is_empty() {
        return Err(refuse(setting, "no `BEGIN CERTIFICATE` block found"));
    }
    Ok(out)
}

/// Subject, issuer, fingerprint and expiry of one DER certificate.
pub fn certificate_info(der: &[u8]) -> Result<CertificateInfo, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let not_after = DateTime::from_timestamp(cert.validity().not_after.timestamp(), 0)
        .ok_or_else(|| "its expiry is out of range".to_owned())?;
    Ok(CertificateInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        fingerprint_sha256: hex_lower(&Sha256::digest(der)),
        not_after,
    })
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

impl Connection {
    /// Checks every setting: a proxy URL, certificates that parse, a key
    /// with its certificate (and one that belongs to it), credentials that
    /// are complete. The HTTP client is built once to be sure.
    pub fn validate(&self) -> Result<(), ConnectionError> {
        match (&self.client_certificate, &self.client_key) {
            (Some(_), None) => return Err(refuse("client_key", "a client certificate needs its private key")),
            (None, Some(_)) => return Err(refuse("client_certificate", "a private key needs its certificate")),
            (Some(cert), Some(key)) => {
                parse_certificates("client_certificate", cert)?;
                PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
                    .map_err(|e| refuse("client_key", format!("not a PEM private key: {e}")))?;
            }
            (None, None) => {}
        }
        if let Some(ca) = &self.ca_certificates {
            parse_certificates("ca_certificates", ca)?;
        }
        if let Some(pinned) = &self.pinned_certificates {
            parse_certificates("pinned_certificates", pinned)?;
            if self.ca_certificates.is_some() {
                return Err(refuse(
                    "pinned_certificates",
                    "a pinned certificate replaces the CAs: set one or the other",
                ));
            }
        }
        match &self.auth {
            Some(Auth::Basic { username, password }) => {
                // Both go base64-encoded: any character but `:` in the
                // username will do.
                if username.is_empty() || username.contains(':') {
                    return Err(refuse("username", "a Basic username is not empty and has no `:`"));
                }
                let _ = password;
            }
            Some(Auth::Bearer { token }) => {
                if token.expose().is_empty() {
                    return Err(refuse("token", "the bearer token is empty"));
                }
                header_safe("token", token.expose())?;
            }
            Some(Auth::OAuth2(o)) => {
                let url = crate::http::parse_url(&o.token_url).map_err(|e| refuse("token_url", e.to_string()))?;
                if !matches!(url.scheme(), "https" | "http") {
                    return Err(refuse("token_url", "use https:// (or http://)"));
                }
                if o.client_id.is_empty() {
                    return Err(refuse("client_id", "the client id is empty"));
                }
                if o.client_secret.expose().is_empty() {
                    return Err(refuse("client_secret", "the client secret is empty"));
                }
            }
            None => {}
        }
        Ok(())
    }

    /// Whether requests need a client of their own (a certificate, CAs, a
    /// pin, a proxy other than the worker's).
    pub fn needs_own_client(&self) -> bool {
        self.client_certificate.is_some()
            || self.ca_certificates.is_some()
            || self.pinned_certificates.is_some()
            || self.proxy != ProxyChoice::Worker
    }

    /// The SHA-256 fingerprints of the pinned certificates (none when
    /// nothing is pinned, or the PEM does not parse).
    pub(crate) fn pins(&self) -> Vec<[u8; 32]> {
        self.pinned_certificates
            .as_deref()
            .and_then(|pem| parse_certificates("pinned_certificates", pem).ok())
            .unwrap_or_default()
            .iter()
            .map(|(der, _)| Sha256::digest(der.as_ref()).into())
            .collect()
    }

    /// The client certificate chain and its key, parsed.
    pub(crate) fn identity(
        &self,
    ) -> Result<Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>, ConnectionError> {
        let (Some(cert), Some(key)) = (&self.client_certificate, &self.client_key) else {
            return Ok(None);
        };
        let chain = parse_certificates("client_certificate", cert)?
            .into_iter()
            .map(|(der, _)| der)
            .collect();
        let key = PrivateKeyDer::from_pem_slice(key.expose().as_bytes())
            .map_err(|e| refuse("client_key", format!("not a PEM private key: {e}")))?;
        Ok(Some((chain, key)))
    }

    /// The identity (certificate chain and key) as one PEM text.
    pub(crate) fn identity_pem(&self) -> Option<zeroize::Zeroizing<String>> {
        let cert = self.client_certificate.as_ref()?;
        let key = self.client_key.as_ref()?;
        Some(zeroize::Zeroizing::new(format!(
            "{}\n{}\n",
            key.expose().trim(),
            cert.trim()
        )))
    }

    /// The stored form: columns, and the secrets sealed under `keyring`.
    pub fn to_stored(&self, keyring: &Keyring) -> crate::Result<StoredConnection> {
        let mut secrets = BTreeMap::new();
        if let Some(k) = &self.client_key {
            secrets.insert("client_key", k.expose().to_owned());
        }
        let mut settings = serde_json::Map::new();
        match &self.auth {
            Some(Auth::Basic { username, password }) => {
                settings.insert("username".into(), username.clone().into());
                secrets.insert("password", password.expose().to_owned());
            }
            Some(Auth::Bearer { token }) => {
                secrets.insert("token", token.expose().to_owned());
            }
            Some(Auth::OAuth2(o)) => {
                settings.insert("token_url".into(), o.token_url.clone().into());
                settings.insert("client_id".into(), o.client_id.clone().into());
                if let Some(s) = &o.scope {
                    settings.insert("scope".into(), s.clone().into());
                }
                if let Some(a) = &o.audience {
                    settings.insert("audience".into(), a.clone().into());
                }
                secrets.insert("client_secret", o.client_secret.expose().to_owned());
            }
            None => {}
        }
        let sealed = if secrets.is_empty() {
            None
        } else {
            let plain = zeroize::Zeroizing::new(
                serde_json::to_string(&secrets).map_err(|e| crate::Error::Config(e.to_string()))?,
            );
            for (_, v) in secrets.iter_mut() {
                zeroize::Zeroize::zeroize(v);
            }
            Some(keyring.seal(Kind::ConnectionSecrets, &plain)?)
        };
        Ok(StoredConnection {
            proxy: match &self.proxy {
                ProxyChoice::Worker => None,
                ProxyChoice::Direct => Some(String::new()),
                ProxyChoice::Via(p) => Some(p.as_str().to_owned()),
            },
            client_certificate: self.client_certificate.clone(),
            ca_certificates: self.ca_certificates.clone(),
            pinned_certificates: self.pinned_certificates.clone(),
            auth: self.auth.as_ref().map(|a| a.kind().to_owned()),
            auth_settings: serde_json::Value::Object(settings),
            secrets: sealed,
        })
    }

    /// Reads the stored form, opening its secrets with `keyring`.
    pub fn from_stored(stored: &StoredConnection, keyring: &Keyring) -> Result<Self, String> {
        let mut secrets: BTreeMap<String, String> = match &stored.secrets {
            None => BTreeMap::new(),
            Some(s) => {
                let plain =
                    zeroize::Zeroizing::new(keyring.open(Kind::ConnectionSecrets, s).map_err(|e| e.to_string())?);
                serde_json::from_str(&plain).map_err(|_| "the connection's sealed secrets are malformed".to_owned())?
            }
        };
        let mut take = |name: &str| secrets.remove(name).map(Secret::new);
        let setting = |name: &str| {
            stored
                .auth_settings
                .get(name)
                .and_then(serde_json::Value::as_str)
                .map(str::to_owned)
        };
        let missing = |what: &str| format!("the connection's {what} is missing");
        let auth = match stored.auth.as_deref() {
            None => None,
            Some("basic") => Some(Auth::Basic {
                username: setting("username").ok_or_else(|| missing("username"))?,
                password: take("password").ok_or_else(|| missing("password"))?,
            }),
            Some("bearer") => Some(Auth::Bearer {
                token: take("token").ok_or_else(|| missing("token"))?,
            }),
            Some("oauth2") => Some(Auth::OAuth2(OAuth2 {
                token_url: setting("token_url").ok_or_else(|| missing("token_url"))?,
                client_id: setting("client_id").ok_or_else(|| missing("client_id"))?,
                client_secret: take("client_secret").ok_or_else(|| missing("client secret"))?,
                scope: setting("scope"),
                audience: setting("audience"),
            })),
            Some(other) => return Err(format!("unknown auth `{other}`")),
        };
        Ok(Self {
            proxy: match stored.proxy.as_deref() {
                None => ProxyChoice::Worker,
                Some("") => ProxyChoice::Direct,
                Some(url) => ProxyChoice::Via(ProxyUrl::parse(url).map_err(|e| e.to_string())?),
            },
            client_certificate: stored.client_certificate.clone(),
            client_key: take("client_key"),
            ca_certificates: stored.ca_certificates.clone(),
            pinned_certificates: stored.pinned_certificates.clone(),
            auth,
        })
    }
}

/// A header value: no control character but tab.
fn header_safe(setting: &'static str, value: &str) -> Result<(), ConnectionError> {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(refuse(setting, "control characters cannot go in a header"));
    }
    Ok(())
}

/// `outhook.endpoint_connection` as stored (its secrets sealed).
#[derive(Clone, Default, PartialEq, sqlx::FromRow, serde::Deserialize)]
pub struct StoredConnection {
    /// NULL: the worker's; empty: none; else a URL.
    pub proxy: Option<String>,
    /// PEM.
    pub client_certificate: Option<String>,
    /// PEM.
    pub ca_certificates: Option<String>,
    /// PEM.
    #[serde(default)]
    pub pinned_certificates: Option<String>,
    /// `basic`, `bearer` or `oauth2`.
    pub auth: Option<String>,
    /// The public part of `auth`.
    #[serde(default)]
    pub auth_settings: serde_json::Value,
    /// The sealed secrets.
    pub secrets: Option<String>,
}

impl std::fmt::Debug for StoredConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredConnection")
            .field("proxy", &self.proxy.as_deref().map(crate::http::redact_url))
            .field("client_certificate", &self.client_certificate.is_some())
            .field("ca_certificates", &self.ca_certificates.is_some())
            .field("pinned_certificates", &self.pinned_certificates.is_some())
            .field("auth", &self.auth)
            .field("auth_settings", &self.auth_settings)
            .field("secrets", &self.secrets.as_ref().map(|_| "***"))
            .finish()
    }
}

/// How long before a certificate expires it shows on the endpoint's health
/// and raises `endpoint.certificate_expiring`.
pub const CERTIFICATE_WARNING: std::time::Duration = std::time::Duration::from_secs(30 * 24 * 3600);

/// A certificate of an endpoint's settings that expires, as its health
/// and the `endpoint.certificate_expiring` event describe it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExpiringCertificate {
    /// `client_certificate` or `pinned_certificates`.
    pub setting: String,
    /// Its subject.
    pub subject: String,
    /// Its issuer.
    pub issuer: String,
    /// SHA-256 of its DER bytes, in hex.
    pub fingerprint_sha256: String,
    /// When it stops being valid.
    pub not_after: DateTime<Utc>,
}

impl StoredConnection {
    /// The certificate that expires first: the client certificate (its
    /// leaf; the chain's CAs are the receiver's concern) or a pinned one.
    pub fn soonest_expiry(&self) -> Option<ExpiringCertificate> {
        let client = self
            .client_certificate
            .as_deref()
            .and_then(|pem| parse_certificates("client_certificate", pem).ok())
            .and_then(|certs| certs.into_iter().next())
            .map(|(_, info)| ("client_certificate", info));
        let pinned = self
            .pinned_certificates
            .as_deref()
            .and_then(|pem| parse_certificates("pinned_certificates", pem).ok())
            .unwrap_or_default()
            .into_iter()
            .map(|(_, info)| ("pinned_certificates", info));
        client
            .into_iter()
            .chain(pinned)
            .min_by_key(|(_, info)| info.not_after)
            .map(|(setting, info)| ExpiringCertificate {
                setting: setting.to_owned(),
                subject: info.subject,
                issuer: info.issuer,
                fingerprint_sha256: info.fingerprint_sha256,
                not_after: info.not_after,
            })
    }
}

/// The `Authorization` value of Basic credentials.
pub(crate) fn basic_header(username: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls_are_checked_and_shown_without_credentials() {
        for good in [
            "http://proxy:3128",
            "socks5://127.0.0.1:1080",
            "socks5h://u:p@proxy:1080/",
        ] {
            assert!(ProxyUrl::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ftp://proxy",
            "not a url",
            "http://proxy:3128/path",
            "socks4://proxy:1080",
        ] {
            assert_eq!(ProxyUrl::parse(bad).err().map(|e| e.setting), Some("proxy"), "{bad}");
        }
        let p = ProxyUrl::parse("http://user:hunter2@proxy:3128").unwrap();
        assert!(!format!("{p} {p:?}").contains("hunter2"));
    }

    #[test]
    fn secrets_are_sealed_together_and_come_back() {
        use crate::secrets::MainKey;
        let ring = Keyring::new(
            Some(MainKey::from_base64(&MainKey::generate().unwrap()).unwrap()),
            Vec::new(),
        );
        let conn = Connection {
            proxy: ProxyChoice::Direct,
            auth: Some(Auth::OAuth2(OAuth2 {
                token_url: "https://auth.example/token".into(),
                client_id: "abc".into(),
                client_secret: Secret::new("s3cret-value"),
                scope: Some("webhooks".into()),
                audience: None,
            })),
            ..Connection::default()
        };
        let stored = conn.to_stored(&ring).unwrap();
        assert_eq!(stored.proxy.as_deref(), Some(""));
        let sealed = stored.secrets.clone().unwrap();
        assert!(!sealed.contains("s3cret"), "{sealed}");
        assert!(!stored.auth_settings.to_string().contains("s3cret"));
        let back = Connection::from_stored(&stored, &ring).unwrap();
        let Some(Auth::OAuth2(o)) = back.auth else {
            panic!("oauth2")
        };
        assert_eq!(o.client_secret.expose(), "s3cret-value");
        assert_eq!(o.scope.as_deref(), Some("webhooks"));
        assert_eq!(back.proxy, ProxyChoice::Direct);
    }

    #[test]
    fn a_certificate_without_its_key_and_incomplete_credentials_are_refused() {
        let half = Connection {
            client_certificate: Some("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n".into()),
            ..Connection::default()
        };
        assert_eq!(half.validate().unwrap_err().setting, "client_key");
        let basic = Connection {
            auth: Some(Auth::Basic {
                username: "a:b".into(),
                password: Secret::new("x"),
            }),
            ..Connection::default()
        };
        assert_eq!(basic.validate().unwrap_err().setting, "username");
        let garbage = Connection {
            ca_certificates: Some("hello".into()),
            ..Connection::default()
        };
        assert_eq!(garbage.validate().unwrap_err().setting, "ca_certificates");
    }
}
