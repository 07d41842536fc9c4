//! Schemes by name, and signers and verifiers that hold their keys.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

use crate::ed25519::{self, Ed25519SigningKey, Ed25519VerifyingKey};
use crate::error::{KeyError, SignError, VerifyError};
use crate::hmac::{BodyForm, Content, Encoding, HmacKey, HmacScheme, KeyForm, Layout};
use crate::message::{HeaderSource, Message, SignedRequest};
use crate::rsa::{RsaKeyPair, RsaPublicKey, RsaScheme};
use crate::secret::Secret;

/// A signing scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scheme {
    /// An HMAC-SHA256 scheme (Standard Webhooks v1, TRR, Real ID, Rheo,
    /// GitHub, Stripe, or a custom one).
    Hmac(HmacScheme),
    /// Standard Webhooks `v1a` (Ed25519).
    Ed25519,
    /// An RSA-SHA256 scheme (Cometh).
    Rsa(RsaScheme),
}

/// The kind of key material a scheme takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// Shared secret text, several allowed for rotation.
    SharedSecret,
    /// `whsk_` signing keys; `whpk_` public keys verify.
    Ed25519,
    /// One RSA private key in PEM; the public key PEM verifies.
    Rsa,
}

/// A scheme name that is not one of [`Scheme::NAMES`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scheme `{0}`; known schemes: {names}", names = Scheme::NAMES.join(", "))]
pub struct UnknownScheme(pub String);

impl Scheme {
    /// The names [`Scheme::by_name`] knows.
    pub const NAMES: &'static [&'static str] = &[
        "standard-webhooks",
        "standard-webhooks-v1a",
        "trr",
        "real-id",
        "rheo",
        "cometh",
        "github",
        "stripe",
    ];

    /// A preset by name: `standard-webhooks` (seed 002), `trr` (seed 000),
    /// `real-id` (seed 001), `rheo` (seed 003), `cometh` (seed 004),
    /// `standard-webhooks-v1a`, `github` and `stripe`.
    pub fn by_name(name: &str) -> Result<Self, UnknownScheme> {
        Ok(match name {
            "standard-webhooks" => Self::Hmac(HmacScheme::standard_webhooks()),
            "standard-webhooks-v1a" => Self::Ed25519,
            "trr" => Self::Hmac(HmacScheme::trr()),
            "real-id" => Self::Hmac(HmacScheme::real_id()),
            "rheo" => Self::Hmac(HmacScheme::rheo()),
            "cometh" => Self::Rsa(RsaScheme::cometh()),
            "github" => Self::Hmac(HmacScheme::github()),
            "stripe" => Self::Hmac(HmacScheme::stripe()),
            other => return Err(UnknownScheme(other.to_owned())),
        })
    }

    /// The key material this scheme takes.
    pub fn key_kind(&self) -> KeyKind {
        match self {
            Self::Hmac(_) => KeyKind::SharedSecret,
            Self::Ed25519 => KeyKind::Ed25519,
            Self::Rsa(_) => KeyKind::Rsa,
        }
    }

    /// Which body the scheme sends: the payload as given, or its
    /// `JSON.stringify` fixed point.
    pub fn body_form(&self) -> BodyForm {
        match self {
            Self::Hmac(s) => s.body_form(),
            Self::Ed25519 => BodyForm::Raw,
            Self::Rsa(s) => s.body_form(),
        }
    }

    /// A fresh secret in the form this scheme's providers hand out:
    /// `whsec_` + base64 for Standard Webhooks, Rheo and Stripe; 64 hex
    /// characters for other shared-secret schemes; `whsk_` for `v1a`.
    /// RSA keys come from [`RsaKeyPair::generate`] instead.
    pub fn generate_secret(&self) -> Result<Secret, KeyError> {
        match self {
            Self::Hmac(s)
                if *s == HmacScheme::standard_webhooks() || *s == HmacScheme::rheo() || *s == HmacScheme::stripe() =>
            {
                Secret::generate_whsec()
            }
            Self::Hmac(_) => Secret::generate_hex(),
            Self::Ed25519 => Ok(Secret::new(Ed25519SigningKey::generate()?.to_whsk().as_str())),
            Self::Rsa(_) => Err(KeyError::WrongKind {
                scheme: "cometh".into(),
                expected: "an RSA key pair (outhook key new)",
            }),
        }
    }
}

/// Settings of a custom HMAC scheme, as stored beside an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacSettings {
    /// The signature header's name.
    pub header: String,
    /// `prefixed` (default), `versioned` or `stripe`.
    #[serde(default)]
    pub layout: LayoutSetting,
    /// The prefix before the signature (`prefixed`) or the version tag
    /// (`versioned`, default `v1`).
    #[serde(default)]
    pub prefix: String,
    /// `hex` (default) or `base64`.
    #[serde(default)]
    pub encoding: EncodingSetting,
    /// `body` (default), `id.timestamp.body` or `timestamp.body`.
    #[serde(default)]
    pub content: ContentSetting,
    /// `raw` (default) or `js` (`JSON.stringify` fixed point).
    #[serde(default)]
    pub body: BodySetting,
    /// `utf8` (default) or `whsec` (base64 after an optional `whsec_`).
    #[serde(default)]
    pub key: KeySetting,
    /// Header carrying the message id, needed for `id.timestamp.body`.
    #[serde(default)]
    pub id_header: Option<String>,
    /// Header carrying the timestamp, needed for timestamped content unless
    /// the layout is `stripe`.
    #[serde(default)]
    pub timestamp_header: Option<String>,
    /// Timestamp tolerance in seconds (default 300), at most a year.
    #[serde(default, deserialize_with = "whole_seconds")]
    pub tolerance_seconds: Option<u64>,
}

/// The most [`HmacSettings::tolerance_seconds`] may be: a year.
pub const MAX_TOLERANCE_SECONDS: u64 = 365 * 86_400;

/// An optional whole number of seconds, also when written as `300.0`
/// (JSON does not tell the two apart).
fn whole_seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    use serde::de::Error as _;
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Ok(Some(u)),
        (None, Some(f)) if f >= 0.0 && f.fract() == 0.0 && f <= MAX_TOLERANCE_SECONDS as f64 => Ok(Some(f as u64)),
        _ => Err(D::Error::custom(format!("{n} is not a whole number of seconds"))),
    }
}

/// [`HmacSettings::layout`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum LayoutSetting {
    #[default]
    Prefixed,
    Versioned,
    Stripe,
}

/// [`HmacSettings::encoding`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum EncodingSetting {
    #[default]
    Hex,
    Base64,
}

/// [`HmacSettings::content`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[allow(missing_docs)]
pub enum ContentSetting {
    #[default]
    #[serde(rename = "body")]
    Body,
    #[serde(rename = "id.timestamp.body")]
    IdTimestampBody,
    #[serde(rename = "timestamp.body")]
    TimestampBody,
}

/// [`HmacSettings::body`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum BodySetting {
    #[default]
    Raw,
    Js,
}

/// [`HmacSettings::key`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
#[allow(missing_docs)]
pub enum KeySetting {
    #[default]
    Utf8,
    Whsec,
}

/// Custom HMAC settings that do not describe a usable scheme.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid HMAC settings: {0}")]
pub struct InvalidSettings(pub &'static str);

impl TryFrom<&HmacSettings> for Scheme {
    type Error = InvalidSettings;

    fn try_from(s: &HmacSettings) -> Result<Self, InvalidSettings> {
        let name = |text: &str| HeaderName::try_from(text).map_err(|_| InvalidSettings("not a valid header name"));
        // The prefix goes into the signature header's value: refused now
        // rather than at every delivery.
        if s.tolerance_seconds.is_some_and(|t| t > MAX_TOLERANCE_SECONDS) {
            return Err(InvalidSettings("tolerance_seconds is at most a year"));
        }
        if HeaderValue::from_str(&s.prefix).is_err() {
            return Err(InvalidSettings("the prefix cannot be part of a header value"));
        }
        let mut scheme = HmacScheme::custom(name(&s.header)?)
            .with_layout(match s.layout {
                LayoutSetting::Prefixed => Layout::Prefixed(s.prefix.clone()),
                LayoutSetting::Versioned if s.prefix.is_empty() => Layout::Versioned("v1".into()),
                LayoutSetting::Versioned => Layout::Versioned(s.prefix.clone()),
                LayoutSetting::Stripe => Layout::Stripe,
            })
            .with_encoding(match s.encoding {
                EncodingSetting::Hex => Encoding::Hex,
                EncodingSetting::Base64 => Encoding::Base64,
            })
            .with_content(match s.content {
                ContentSetting::Body => Content::Body,
                ContentSetting::IdTimestampBody => Content::IdTimestampBody,
                ContentSetting::TimestampBody => Content::TimestampBody,
            })
            .with_body(match s.body {
                BodySetting::Raw => BodyForm::Raw,
                BodySetting::Js => BodyForm::JsStringify,
            })
            .with_key_form(match s.key {
                KeySetting::Utf8 => KeyForm::Utf8,
                KeySetting::Whsec => KeyForm::WhsecBase64,
            })
            .with_tolerance(Duration::from_secs(s.tolerance_seconds.unwrap_or(300)));
        if let Some(h) = &s.id_header {
            scheme = scheme.with_id_header(name(h)?);
        }
        if let Some(h) = &s.timestamp_header {
            scheme = scheme.with_timestamp_header(name(h)?);
        }
        let stripe = s.layout == LayoutSetting::Stripe;
        match s.content {
            ContentSetting::IdTimestampBody if s.id_header.is_none() => {
                return Err(InvalidSettings("id.timestamp.body needs id_header"));
            }
            ContentSetting::IdTimestampBody | ContentSetting::TimestampBody
                if s.timestamp_header.is_none() && !stripe =>
            {
                return Err(InvalidSettings("timestamped content needs timestamp_header"));
            }
            ContentSetting::Body if stripe => {
                return Err(InvalidSettings("the stripe layout signs timestamp.body"));
            }
            _ => {}
        }
        Ok(Self::Hmac(scheme))
    }
}

enum SigningKeys {
    Hmac(Vec<HmacKey>),
    Ed25519(Vec<Ed25519SigningKey>),
    Rsa(Arc<RsaKeyPair>),
}

/// A scheme with its signing keys: turns messages into signed requests.
pub struct Signer {
    scheme: Scheme,
    keys: SigningKeys,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl Signer {
    /// A signer from key text, newest first: shared secrets for HMAC schemes
    /// (every one signs where the layout carries several), `whsk_` keys for
    /// `v1a`, one private key PEM for RSA.
    pub fn new(scheme: Scheme, keys: &[Secret]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Missing);
        }
        let keys = match &scheme {
            Scheme::Hmac(s) => SigningKeys::Hmac(keys.iter().map(|k| s.key(k)).collect::<Result<_, _>>()?),
            Scheme::Ed25519 => SigningKeys::Ed25519(
                keys.iter()
                    .map(|k| Ed25519SigningKey::from_whsk(k.expose()))
                    .collect::<Result<_, _>>()?,
            ),
            Scheme::Rsa(_) => SigningKeys::Rsa(Arc::new(RsaKeyPair::from_pem(keys[0].expose().as_bytes())?)),
        };
        Ok(Self { scheme, keys })
    }

    /// An RSA signer from a loaded key, shared without re-parsing.
    pub fn with_rsa(scheme: RsaScheme, key: Arc<RsaKeyPair>) -> Self {
        Self {
            scheme: Scheme::Rsa(scheme),
            keys: SigningKeys::Rsa(key),
        }
    }

    /// The scheme.
    pub fn scheme(&self) -> &Scheme {
        &self.scheme
    }

    /// Signs a message: returns the exact body to send and its headers.
    pub fn sign(&self, message: &Message<'_>) -> Result<SignedRequest, SignError> {
        match (&self.scheme, &self.keys) {
            (Scheme::Hmac(s), SigningKeys::Hmac(k)) => s.sign(k, message),
            (Scheme::Ed25519, SigningKeys::Ed25519(k)) => ed25519::sign(k, message),
            (Scheme::Rsa(s), SigningKeys::Rsa(k)) => s.sign(k, message),
            // The constructors pair every scheme with its own kind of key.
            _ => Err(SignError::Crypto),
        }
    }
}

enum VerifyingKeys {
    Hmac(Vec<HmacKey>),
    Ed25519(Vec<Ed25519VerifyingKey>),
    Rsa(RsaPublicKey),
}

/// A scheme with its verification keys: checks received requests.
pub struct Verifier {
    scheme: Scheme,
    keys: VerifyingKeys,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// A verifier from key text: shared secrets for HMAC schemes (any one
    /// may match), `whpk_` keys for `v1a`, a public (or private) key PEM for
    /// RSA.
    pub fn new(scheme: Scheme, keys: &[Secret]) -> Result<Self, KeyError> {
        if keys.is_empty() {
            return Err(KeyError::Missing);
        }
        let keys = match &scheme {
            Scheme::Hmac(s) => VerifyingKeys::Hmac(keys.iter().map(|k| s.key(k)).collect::<Result<_, _>>()?),
            Scheme::Ed25519 => VerifyingKeys::Ed25519(
                keys.iter()
                    .map(|k| match k.expose() {
                        t if t.starts_with("whsk_") => Ok(Ed25519SigningKey::from_whsk(t)?.public_key()),
                        t => Ed25519VerifyingKey::from_whpk(t),
                    })
                    .collect::<Result<_, _>>()?,
            ),
            Scheme::Rsa(_) => VerifyingKeys::Rsa(RsaPublicKey::from_pem(keys[0].expose().as_bytes())?),
        };
        Ok(Self { scheme, keys })
    }

    /// Verifies a request against the system clock.
    pub fn verify(&self, headers: &(impl HeaderSource + ?Sized), body: &[u8]) -> Result<(), VerifyError> {
        self.verify_at(headers, body, SystemTime::now())
    }

    /// Verifies a request as of `now` (for timestamp tolerance).
    pub fn verify_at(
        &self,
        headers: &(impl HeaderSource + ?Sized),
        body: &[u8],
        now: SystemTime,
    ) -> Result<(), VerifyError> {
        let now = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        };
        match (&self.scheme, &self.keys) {
            (Scheme::Hmac(s), VerifyingKeys::Hmac(k)) => s.verify(k, headers, body, now),
            (Scheme::Ed25519, VerifyingKeys::Ed25519(k)) => ed25519::verify(k, headers, body, now),
            (Scheme::Rsa(s), VerifyingKeys::Rsa(k)) => s.verify(k, headers, body),
            _ => Err(VerifyError::Mismatch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn sign(scheme: Scheme, secret: &str, payload: &'static [u8]) -> SignedRequest {
        let payload = Bytes::from_static(payload);
        Signer::new(scheme, &[Secret::new(secret)])
            .unwrap()
            .sign(&Message::new("msg_1", 1_700_000_000, &payload))
            .unwrap()
    }

    #[test]
    fn custom_settings_spelling_out_a_preset_sign_exactly_like_it() {
        let github: HmacSettings =
            serde_json::from_str(r#"{"header":"X-Hub-Signature-256","prefix":"sha256=","encoding":"hex"}"#).unwrap();
        let stripe: HmacSettings =
            serde_json::from_str(r#"{"header":"Stripe-Signature","layout":"stripe","content":"timestamp.body"}"#)
                .unwrap();
        let standard: HmacSettings = serde_json::from_str(
            r#"{"header":"webhook-signature","layout":"versioned","prefix":"v1","encoding":"base64","content":"id.timestamp.body",
                "key":"whsec","id_header":"webhook-id","timestamp_header":"webhook-timestamp"}"#,
        )
        .unwrap();
        for (settings, preset, secret) in [
            (github, "github", "It's a Secret to Everybody"),
            (stripe, "stripe", "whsec_test"),
            (standard, "standard-webhooks", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        ] {
            let custom = sign(Scheme::try_from(&settings).unwrap(), secret, b"Hello, World!");
            assert_eq!(
                custom,
                sign(Scheme::by_name(preset).unwrap(), secret, b"Hello, World!"),
                "{preset}"
            );
        }
    }

    #[test]
    fn the_github_preset_matches_githubs_documented_example() {
        // From GitHub's "Validating webhook deliveries" page: secret
        // "It's a Secret to Everybody", payload "Hello, World!".
        let req = sign(
            Scheme::by_name("github").unwrap(),
            "It's a Secret to Everybody",
            b"Hello, World!",
        );
        assert_eq!(
            req.header("x-hub-signature-256"),
            Some("sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17")
        );
    }

    #[test]
    fn settings_that_cannot_work_are_refused() {
        let bad = |json: &str| Scheme::try_from(&serde_json::from_str::<HmacSettings>(json).unwrap()).is_err();
        assert!(bad(r#"{"header":"bad header"}"#));
        assert!(bad(
            r#"{"header":"x-sig","content":"id.timestamp.body","timestamp_header":"x-ts"}"#
        ));
        assert!(bad(r#"{"header":"x-sig","content":"timestamp.body"}"#));
        assert!(bad(r#"{"header":"x-sig","layout":"stripe"}"#));
        assert!(serde_json::from_str::<HmacSettings>(r#"{"header":"x","colour":"red"}"#).is_err());
    }
}
