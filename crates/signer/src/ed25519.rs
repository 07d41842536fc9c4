//! Standard Webhooks `v1a`: Ed25519 signatures with `whsk_`/`whpk_` keys.

use std::fmt;

use aws_lc_rs::signature::{ED25519, Ed25519KeyPair, KeyPair as _, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderName;

use crate::error::{KeyError, SignError, VerifyError};
use crate::hmac::{DEFAULT_TOLERANCE, check_tolerance};
use crate::message::{HeaderSource, Message, SignedRequest};
use crate::secret::{decode_prefixed, random_bytes};

const ID: HeaderName = HeaderName::from_static("webhook-id");
const TIMESTAMP: HeaderName = HeaderName::from_static("webhook-timestamp");
const SIGNATURE: HeaderName = HeaderName::from_static("webhook-signature");

/// An Ed25519 signing key. Written as `whsk_` and the base64 of the 32-byte
/// seed followed by the 32-byte public key (the libsodium layout); a bare
/// 32-byte seed is accepted too.
pub struct Ed25519SigningKey {
    inner: Ed25519KeyPair,
    seed: zeroize::Zeroizing<[u8; 32]>,
}

impl fmt::Debug for Ed25519SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Ed25519SigningKey(***)")
    }
}

impl Ed25519SigningKey {
    /// Generates a new key.
    pub fn generate() -> Result<Self, KeyError> {
        let seed = random_bytes::<32>()?;
        Self::from_seed(seed)
    }

    fn from_seed(seed: zeroize::Zeroizing<[u8; 32]>) -> Result<Self, KeyError> {
        let inner = Ed25519KeyPair::from_seed_unchecked(&seed[..]).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self { inner, seed })
    }

    /// Parses `whsk_<base64>`.
    pub fn from_whsk(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_prefixed(text, "whsk_")?;
        let mut seed = zeroize::Zeroizing::new([0u8; 32]);
        match bytes.len() {
            32 | 64 => seed.copy_from_slice(&bytes[..32]),
            len => {
                return Err(KeyError::Length {
                    len,
                    expected: "an Ed25519 key is 32 or 64 bytes",
                });
            }
        }
        let key = Self::from_seed(seed)?;
        if bytes.len() == 64 && bytes[32..] != *key.inner.public_key().as_ref() {
            return Err(KeyError::Rejected("public half does not match the seed".into()));
        }
        Ok(key)
    }

    /// The key as `whsk_<base64(seed ‖ public key)>`.
    pub fn to_whsk(&self) -> zeroize::Zeroizing<String> {
        let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(64));
        bytes.extend_from_slice(&self.seed[..]);
        bytes.extend_from_slice(self.inner.public_key().as_ref());
        zeroize::Zeroizing::new(format!("whsk_{}", STANDARD.encode(&bytes[..])))
    }

    /// The public half.
    pub fn public_key(&self) -> Ed25519VerifyingKey {
        let mut key = [0u8; 32];
        key.copy_from_slice(self.inner.public_key().as_ref());
        Ed25519VerifyingKey(key)
    }
}

/// An Ed25519 public key, written as `whpk_<base64>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ed25519VerifyingKey([u8; 32]);

impl Ed25519VerifyingKey {
    /// Parses `whpk_<base64 of 32 bytes>`.
    pub fn from_whpk(text: &str) -> Result<Self, KeyError> {
        let bytes = decode_prefixed(text, "whpk_")?;
        let key: [u8; 32] = bytes[..].try_into().map_err(|_| KeyError::Length {
            len: bytes.len(),
            expected: "an Ed25519 public key is 32 bytes",
        })?;
        Ok(Self(key))
    }

    /// The key as `whpk_<base64>`.
    pub fn to_whpk(&self) -> String {
        format!("whpk_{}", STANDARD.encode(self.0))
    }
}

fn signed_content(id: &str, timestamp: &str, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + timestamp.len() + body.len() + 2);
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// Signs with every key: `webhook-signature: v1a,<sig> v1a,<sig>…`.
pub fn sign(keys: &[Ed25519SigningKey], message: &Message<'_>) -> Result<SignedRequest, SignError> {
    message.check_id()?;
    let timestamp = message.timestamp.to_string();
    let content = signed_content(message.id, &timestamp, message.payload);
    let value = keys
        .iter()
        .map(|k| format!("v1a,{}", STANDARD.encode(k.inner.sign(&content).as_ref())))
        .collect::<Vec<_>>()
        .join(" ");
    Ok(SignedRequest {
        body: message.payload.clone(),
        headers: vec![(ID, message.id.to_owned()), (TIMESTAMP, timestamp), (SIGNATURE, value)],
    })
}

/// Verifies a `v1a` request against any of `keys`, `now` in unix seconds.
pub fn verify(
    keys: &[Ed25519VerifyingKey],
    headers: &(impl HeaderSource + ?Sized),
    body: &[u8],
    now: i64,
) -> Result<(), VerifyError> {
    let get = |name: &HeaderName| {
        headers
            .header(name.as_str())
            .ok_or_else(|| VerifyError::MissingHeader(name.as_str().to_owned()))
    };
    let (id, timestamp, value) = (get(&ID)?, get(&TIMESTAMP)?, get(&SIGNATURE)?);
    let sent: i64 = timestamp
        .parse()
        .map_err(|_| VerifyError::MalformedHeader(TIMESTAMP.as_str().to_owned()))?;
    check_tolerance(sent, now, DEFAULT_TOLERANCE)?;
    let mut sigs = Vec::new();
    for part in value.split(' ').filter(|p| !p.is_empty()) {
        let (version, sig) = part
            .split_once(',')
            .ok_or_else(|| VerifyError::MalformedHeader(SIGNATURE.as_str().to_owned()))?;
        if version == "v1a" {
            sigs.push(
                STANDARD
                    .decode(sig)
                    .map_err(|_| VerifyError::MalformedHeader(SIGNATURE.as_str().to_owned()))?,
            );
        }
    }
    if sigs.is_empty() {
        return Err(VerifyError::UnknownVersion);
    }
    let content = signed_content(id, timestamp, body);
    let ok = keys.iter().any(|k| {
        sigs.iter()
            .any(|s| UnparsedPublicKey::new(&ED25519, &k.0).verify(&content, s).is_ok())
    });
    if ok { Ok(()) } else { Err(VerifyError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn v1a_round_trips_and_rejects_another_key() {
        let key = Ed25519SigningKey::generate().unwrap();
        let again = Ed25519SigningKey::from_whsk(&key.to_whsk()).unwrap();
        let public = Ed25519VerifyingKey::from_whpk(&again.public_key().to_whpk()).unwrap();
        let payload = Bytes::from_static(b"{\"a\":1}");
        let req = sign(&[key], &Message::new("msg_1", 100, &payload)).unwrap();
        assert_eq!(verify(&[public], &req, &payload, 100), Ok(()));
        let other = Ed25519SigningKey::generate().unwrap().public_key();
        assert_eq!(verify(&[other], &req, &payload, 100), Err(VerifyError::Mismatch));
        assert!(format!("{:?}", Ed25519SigningKey::generate().unwrap()).contains("***"));
    }
}
