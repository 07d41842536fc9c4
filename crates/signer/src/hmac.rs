//! HMAC-SHA256 schemes: one configurable type, the providers as presets.

use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http::HeaderName;
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::error::{KeyError, SignError, VerifyError};
use crate::json::to_js_json;
use crate::message::{HeaderSource, Message, SignedRequest};
use crate::secret::{Secret, decode_prefixed};

type HmacSha256 = Hmac<Sha256>;

/// How signature bytes are written in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Encoding {
    /// Lowercase hexadecimal.
    Hex,
    /// Standard base64 with padding.
    Base64,
}

/// What the HMAC covers, joined with `.`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Content {
    /// The body alone.
    Body,
    /// `{id}.{timestamp}.{body}` (Standard Webhooks).
    IdTimestampBody,
    /// `{timestamp}.{body}` (Stripe).
    TimestampBody,
}

/// How the signature header's value is laid out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Layout {
    /// `{prefix}{signature}`, signed with the newest secret only (a single
    /// value cannot carry several).
    Prefixed(String),
    /// Space-separated `{version},{signature}`, one per active secret
    /// (Standard Webhooks: `v1,…`).
    Versioned(String),
    /// `t={timestamp},v1={signature}[,v1=…]`, one `v1` per active secret
    /// (Stripe).
    Stripe,
}

/// Which bytes are sent and signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyForm {
    /// The provider's JSON exactly as given.
    Raw,
    /// `JSON.stringify(JSON.parse(payload))`, for receivers that verify a
    /// re-serialisation of the parsed body.
    JsStringify,
}

impl BodyForm {
    /// The body to send for `payload`: the payload itself, or its
    /// `JSON.stringify` fixed point.
    pub(crate) fn to_send(self, payload: &Bytes) -> Result<Bytes, SignError> {
        Ok(match self {
            Self::Raw => payload.clone(),
            Self::JsStringify => Bytes::from(to_js_json(payload)?),
        })
    }

    /// The bytes a receiver's code signs over for a received `body`.
    pub(crate) fn to_verify(self, body: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, VerifyError> {
        Ok(match self {
            Self::Raw => std::borrow::Cow::Borrowed(body),
            Self::JsStringify => std::borrow::Cow::Owned(to_js_json(body).map_err(VerifyError::InvalidBody)?),
        })
    }
}

/// How secret text becomes HMAC key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyForm {
    /// The secret text's UTF-8 bytes, whatever it looks like.
    Utf8,
    /// Base64-decode the text after an optional `whsec_` prefix.
    WhsecBase64,
}

/// An HMAC-SHA256 webhook signing scheme.
///
/// Build one from a preset ([`HmacScheme::standard_webhooks`],
/// [`HmacScheme::trr`], [`HmacScheme::github`], ...) or configure it with
/// [`HmacScheme::custom`] and the `with_*` methods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacScheme {
    signature_header: HeaderName,
    layout: Layout,
    encoding: Encoding,
    content: Content,
    body: BodyForm,
    key: KeyForm,
    id_header: Option<HeaderName>,
    timestamp_header: Option<HeaderName>,
    tolerance: Duration,
}

/// The default timestamp tolerance: five minutes either way.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

const WEBHOOK_ID: HeaderName = HeaderName::from_static("webhook-id");
const WEBHOOK_TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");

impl HmacScheme {
    /// A scheme that puts the lowercase hex HMAC of the raw body in `header`.
    /// Adjust it with the `with_*` methods.
    pub fn custom(header: HeaderName) -> Self {
        Self {
            signature_header: header,
            layout: Layout::Prefixed(String::new()),
            encoding: Encoding::Hex,
            content: Content::Body,
            body: BodyForm::Raw,
            key: KeyForm::Utf8,
            id_header: None,
            timestamp_header: None,
            tolerance: DEFAULT_TOLERANCE,
        }
    }

    /// Standard Webhooks v1: `webhook-id`, `webhook-timestamp` and
    /// `webhook-signature: v1,<base64>` over `{id}.{timestamp}.{body}`, with a
    /// `whsec_` secret.
    pub fn standard_webhooks() -> Self {
        Self::custom(HeaderName::from_static("webhook-signature"))
            .with_layout(Layout::Versioned("v1".into()))
            .with_encoding(Encoding::Base64)
            .with_content(Content::IdTimestampBody)
            .with_key_form(KeyForm::WhsecBase64)
            .with_id_header(WEBHOOK_ID)
            .with_timestamp_header(WEBHOOK_TIMESTAMP)
    }

    /// The RealReal: `X-TRR-Signature`, hex HMAC of the raw body.
    pub fn trr() -> Self {
        Self::custom(HeaderName::from_static("x-trr-signature"))
    }

    /// Real ID: `X-Real-ID-Signature`, hex HMAC of `JSON.stringify(payload)`.
    pub fn real_id() -> Self {
        Self::custom(HeaderName::from_static("x-real-id-signature")).with_body(BodyForm::JsStringify)
    }

    /// Rheo: `X-Rheo-Signature: sha256=<hex>` of the raw body, the `whsec_`
    /// secret used as UTF-8 bytes.
    pub fn rheo() -> Self {
        Self::custom(HeaderName::from_static("x-rheo-signature")).with_layout(Layout::Prefixed("sha256=".into()))
    }

    /// GitHub: `X-Hub-Signature-256: sha256=<hex>` of the raw body.
    pub fn github() -> Self {
        Self::custom(HeaderName::from_static("x-hub-signature-256")).with_layout(Layout::Prefixed("sha256=".into()))
    }

    /// Stripe: `Stripe-Signature: t=<unix>,v1=<hex>` over `{t}.{body}`.
    pub fn stripe() -> Self {
        Self::custom(HeaderName::from_static("stripe-signature"))
            .with_layout(Layout::Stripe)
            .with_content(Content::TimestampBody)
    }

    /// Sets the layout of the signature header's value.
    pub fn with_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    /// Sets how signature bytes are encoded.
    pub fn with_encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// Sets what the HMAC covers.
    pub fn with_content(mut self, content: Content) -> Self {
        self.content = content;
        self
    }

    /// Sets which body is sent and signed.
    pub fn with_body(mut self, body: BodyForm) -> Self {
        self.body = body;
        self
    }

    /// Sets how secret text becomes key bytes.
    pub fn with_key_form(mut self, key: KeyForm) -> Self {
        self.key = key;
        self
    }

    /// Sets the header that carries the message id.
    pub fn with_id_header(mut self, name: HeaderName) -> Self {
        self.id_header = Some(name);
        self
    }

    /// Sets the header that carries the timestamp (not needed with
    /// [`Layout::Stripe`], which carries it in the signature header).
    pub fn with_timestamp_header(mut self, name: HeaderName) -> Self {
        self.timestamp_header = Some(name);
        self
    }

    /// Sets how far a timestamp may be from the verifier's clock.
    pub fn with_tolerance(mut self, tolerance: Duration) -> Self {
        self.tolerance = tolerance;
        self
    }

    /// The header that carries the signature.
    pub fn signature_header(&self) -> &HeaderName {
        &self.signature_header
    }

    /// Which body this scheme sends.
    pub fn body_form(&self) -> BodyForm {
        self.body
    }

    /// How this scheme reads its secrets.
    pub fn key_form(&self) -> KeyForm {
        self.key
    }

    /// Turns secret text into this scheme's key bytes.
    pub fn key(&self, secret: &Secret) -> Result<HmacKey, KeyError> {
        let text = secret.expose();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let bytes = match self.key {
            KeyForm::Utf8 => Zeroizing::new(text.as_bytes().to_vec()),
            KeyForm::WhsecBase64 => decode_prefixed(text, "whsec_")?,
        };
        // HMAC takes keys of every length; the error arm cannot happen.
        let keyed = HmacSha256::new_from_slice(&bytes).map_err(|_| KeyError::Empty)?;
        Ok(HmacKey(keyed))
    }

    fn mac(&self, key: &HmacKey, id: &str, timestamp: &str, body: &[u8]) -> HmacSha256 {
        // Start from the pre-keyed state: no key schedule per message.
        let mut mac = key.0.clone();
        match self.content {
            Content::Body => {}
            Content::IdTimestampBody => {
                mac.update(id.as_bytes());
                mac.update(b".");
                mac.update(timestamp.as_bytes());
                mac.update(b".");
            }
            Content::TimestampBody => {
                mac.update(timestamp.as_bytes());
                mac.update(b".");
            }
        }
        mac.update(body);
        mac
    }

    /// Appends the encoded tag to `out`.
    fn encode_into(&self, tag: &[u8], out: &mut String) {
        match self.encoding {
            Encoding::Hex => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                for &b in tag {
                    out.push(char::from(HEX[usize::from(b >> 4)]));
                    out.push(char::from(HEX[usize::from(b & 0xF)]));
                }
            }
            Encoding::Base64 => STANDARD.encode_string(tag, out),
        }
    }

    fn decode(&self, text: &str) -> Option<Vec<u8>> {
        match self.encoding {
            Encoding::Hex => hex::decode(text).ok(),
            Encoding::Base64 => STANDARD.decode(text).ok(),
        }
    }

    /// Signs `message` with `keys` (newest first; layouts that carry one
    /// signature use the first).
    pub fn sign(&self, keys: &[HmacKey], message: &Message<'_>) -> Result<SignedRequest, SignError> {
        let body = self.body.to_send(message.payload)?;
        if self.id_header.is_some() {
            message.check_id()?;
        }
        let timestamp = message.timestamp.to_string();
        let mut value = String::with_capacity(96 * keys.len().max(1));
        let signed_keys = match self.layout {
            Layout::Prefixed(_) => &keys[..keys.len().min(1)],
            _ => keys,
        };
        if let Layout::Stripe = self.layout {
            value.push_str("t=");
            value.push_str(&timestamp);
        }
        if let Layout::Prefixed(prefix) = &self.layout {
            value.push_str(prefix);
        }
        for (i, key) in signed_keys.iter().enumerate() {
            match &self.layout {
                Layout::Prefixed(_) => {}
                Layout::Versioned(version) => {
                    if i > 0 {
                        value.push(' ');
                    }
                    value.push_str(version);
                    value.push(',');
                }
                Layout::Stripe => value.push_str(",v1="),
            }
            let tag = self.mac(key, message.id, &timestamp, &body).finalize().into_bytes();
            self.encode_into(&tag, &mut value);
        }
        let mut headers = Vec::with_capacity(3);
        if let Some(name) = &self.id_header {
            headers.push((name.clone(), message.id.to_owned()));
        }
        if let Some(name) = &self.timestamp_header {
            headers.push((name.clone(), timestamp));
        }
        headers.push((self.signature_header.clone(), value));
        Ok(SignedRequest { body, headers })
    }

    /// Verifies a received request against any of `keys`, with `now` in unix
    /// seconds for the timestamp check.
    pub fn verify(
        &self,
        keys: &[HmacKey],
        headers: &(impl HeaderSource + ?Sized),
        body: &[u8],
        now: i64,
    ) -> Result<(), VerifyError> {
        let sig_name = self.signature_header.as_str();
        let value = headers
            .header(sig_name)
            .ok_or_else(|| VerifyError::MissingHeader(sig_name.to_owned()))?;
        let id = match &self.id_header {
            Some(name) => headers
                .header(name.as_str())
                .ok_or_else(|| VerifyError::MissingHeader(name.as_str().to_owned()))?,
            None => "",
        };
        // Collect candidate signatures and the signed timestamp, per layout.
        let malformed = || VerifyError::MalformedHeader(sig_name.to_owned());
        let (timestamp, candidates): (Option<&str>, Vec<&str>) = match &self.layout {
            Layout::Prefixed(prefix) => {
                let sig = value.strip_prefix(prefix.as_str()).ok_or_else(malformed)?;
                (None, vec![sig])
            }
            Layout::Versioned(version) => {
                let mut found = Vec::new();
                for part in value.split(' ').filter(|p| !p.is_empty()) {
                    let (v, sig) = part.split_once(',').ok_or_else(malformed)?;
                    if v == version {
                        found.push(sig);
                    }
                }
                if found.is_empty() {
                    return Err(VerifyError::UnknownVersion);
                }
                (None, found)
            }
            Layout::Stripe => {
                let mut t = None;
                let mut found = Vec::new();
                for part in value.split(',') {
                    let (k, v) = part.trim().split_once('=').ok_or_else(malformed)?;
                    match k {
                        "t" => t = Some(v),
                        "v1" => found.push(v),
                        _ => {}
                    }
                }
                let t = t.ok_or_else(malformed)?;
                if found.is_empty() {
                    return Err(VerifyError::UnknownVersion);
                }
                (Some(t), found)
            }
        };
        let timestamp = match (&self.timestamp_header, timestamp) {
            (_, Some(t)) => Some((t, sig_name)),
            (Some(name), None) => Some((
                headers
                    .header(name.as_str())
                    .ok_or_else(|| VerifyError::MissingHeader(name.as_str().to_owned()))?,
                name.as_str(),
            )),
            (None, None) => None,
        };
        if let Some((t, header)) = timestamp {
            let sent: i64 = t.parse().map_err(|_| VerifyError::MalformedHeader(header.to_owned()))?;
            check_tolerance(sent, now, self.tolerance)?;
        }
        let timestamp = timestamp.map(|(t, _)| t).unwrap_or("");
        let body = self.body.to_verify(body)?;
        let body = &body[..];
        let decoded: Vec<Vec<u8>> = candidates.iter().filter_map(|c| self.decode(c)).collect();
        if decoded.is_empty() {
            return Err(malformed());
        }
        for key in keys {
            let mac = self.mac(key, id, timestamp, body);
            // verify_slice compares in constant time.
            if decoded.iter().any(|sig| mac.clone().verify_slice(sig).is_ok()) {
                return Ok(());
            }
        }
        Err(VerifyError::Mismatch)
    }
}

/// Rejects a timestamp further than `tolerance` from `now`, either way.
pub(crate) fn check_tolerance(sent: i64, now: i64, tolerance: Duration) -> Result<(), VerifyError> {
    let tolerance = i64::try_from(tolerance.as_secs()).unwrap_or(i64::MAX);
    if now.abs_diff(sent) > tolerance.unsigned_abs() {
        return Err(VerifyError::StaleTimestamp);
    }
    Ok(())
}

/// An HMAC-SHA256 key derived from a [`Secret`], kept pre-keyed so signing
/// skips the key schedule; redacted, and zeroed on drop.
#[derive(Clone)]
pub struct HmacKey(HmacSha256);

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(***)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign_one(scheme: &HmacScheme, secret: &str, payload: &str) -> SignedRequest {
        let key = scheme.key(&Secret::new(secret)).unwrap();
        let payload = Bytes::from(payload.to_owned());
        scheme
            .sign(&[key], &Message::new("msg_1", 1_700_000_000, &payload))
            .unwrap()
    }

    #[test]
    fn standard_webhooks_matches_the_spec_example() {
        // Vector from the Standard Webhooks reference libraries' test suites.
        let scheme = HmacScheme::standard_webhooks();
        let key = scheme
            .key(&Secret::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"))
            .unwrap();
        let payload = Bytes::from_static(br#"{"test": 2432232314}"#);
        let req = scheme
            .sign(
                &[key],
                &Message::new("msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, &payload),
            )
            .unwrap();
        assert_eq!(
            req.header("webhook-signature"),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert_eq!(req.body, payload);
    }

    #[test]
    fn a_wrong_prefix_is_malformed_and_a_wrong_signature_a_mismatch() {
        let scheme = HmacScheme::rheo();
        let key = scheme.key(&Secret::new("whsec_abc")).unwrap();
        let req = sign_one(&scheme, "whsec_abc", "{}");
        let sig = req.header("x-rheo-signature").unwrap().to_owned();
        assert!(sig.starts_with("sha256="));
        assert_eq!(scheme.verify(std::slice::from_ref(&key), &req, b"{}", 0), Ok(()));
        let bad = vec![("X-Rheo-Signature", sig.replace("sha256=", "sha1="))];
        assert!(matches!(
            scheme.verify(std::slice::from_ref(&key), &bad, b"{}", 0),
            Err(VerifyError::MalformedHeader(_))
        ));
        assert_eq!(scheme.verify(&[key], &req, b"{ }", 0), Err(VerifyError::Mismatch));
    }

    #[test]
    fn stripe_signs_every_active_secret() {
        let scheme = HmacScheme::stripe();
        let keys = [
            scheme.key(&Secret::new("new")).unwrap(),
            scheme.key(&Secret::new("old")).unwrap(),
        ];
        let payload = Bytes::from_static(b"{}");
        let req = scheme.sign(&keys, &Message::new("e", 1_700_000_000, &payload)).unwrap();
        let value = req.header("stripe-signature").unwrap();
        assert!(value.starts_with("t=1700000000,v1="));
        assert_eq!(value.matches(",v1=").count(), 2);
        let old_only = [scheme.key(&Secret::new("old")).unwrap()];
        assert_eq!(scheme.verify(&old_only, &req, b"{}", 1_700_000_000), Ok(()));
        assert_eq!(
            scheme.verify(&old_only, &req, b"{}", 1_700_000_301),
            Err(VerifyError::StaleTimestamp)
        );
    }
}
