//! Secrets that never print and are wiped from memory when dropped.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::error::KeyError;

/// A shared secret as the provider and its customer both hold it: the text
/// shown in a dashboard, such as `whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw` or
/// `your_signing_secret`.
///
/// How the text becomes HMAC key bytes depends on the scheme
/// ([`crate::KeyForm`]). `Debug` and `Display` print `Secret(***)`; the text is
/// zeroed on drop.
#[derive(Clone)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wraps secret text.
    pub fn new(text: impl Into<String>) -> Self {
        Self(Zeroizing::new(text.into()))
    }

    /// The secret text, for storing it or handing it to its owner.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A new Standard Webhooks secret: `whsec_` and the base64 of 24 random
    /// bytes, as Svix generates them.
    pub fn generate_whsec() -> Result<Self, KeyError> {
        let bytes = random_bytes::<24>()?;
        Ok(Self::new(format!("whsec_{}", STANDARD.encode(*bytes))))
    }

    /// A new secret of 32 random bytes as 64 lowercase hex characters, for
    /// schemes that use the secret text as UTF-8 key bytes.
    pub fn generate_hex() -> Result<Self, KeyError> {
        let bytes = random_bytes::<32>()?;
        Ok(Self::new(hex::encode(*bytes)))
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<&str> for Secret {
    fn from(text: &str) -> Self {
        Self::new(text)
    }
}

/// Fills a zeroizing buffer from the operating system's random source.
pub(crate) fn random_bytes<const N: usize>() -> Result<Zeroizing<[u8; N]>, KeyError> {
    let mut bytes = Zeroizing::new([0u8; N]);
    aws_lc_rs::rand::fill(&mut bytes[..]).map_err(|_| KeyError::Generation)?;
    Ok(bytes)
}

/// Decodes `prefix` + base64 text (the prefix optional), as the Standard
/// Webhooks libraries do.
pub(crate) fn decode_prefixed(text: &str, prefix: &'static str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let body = text.strip_prefix(prefix).unwrap_or(text);
    if body.is_empty() {
        return Err(KeyError::Empty);
    }
    STANDARD
        .decode(body)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Base64 { prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_never_prints_its_text() {
        let s = Secret::new("whsec_c2VjcmV0");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        assert_eq!(format!("{s}"), "***");
        assert!(!format!("{s:#?}").contains("c2Vj"));
    }

    #[test]
    fn generated_whsec_secrets_decode_to_24_bytes() {
        let s = Secret::generate_whsec().unwrap();
        assert!(s.expose().starts_with("whsec_"));
        assert_eq!(decode_prefixed(s.expose(), "whsec_").unwrap().len(), 24);
        assert_ne!(s.expose(), Secret::generate_whsec().unwrap().expose());
    }
}
