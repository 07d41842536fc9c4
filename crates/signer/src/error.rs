//! Errors of the signer.

use crate::json::JsonError;

/// A secret or key that cannot be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// A `whsec_`/`whsk_`/`whpk_` secret whose base64 part does not decode.
    #[error("secret is not valid base64 after its `{prefix}` prefix")]
    Base64 {
        /// The prefix the secret carried (possibly empty).
        prefix: &'static str,
    },
    /// A secret that decodes to a key of an unusable length.
    #[error("secret decodes to {len} bytes; {expected}")]
    Length {
        /// The decoded length.
        len: usize,
        /// What was expected instead.
        expected: &'static str,
    },
    /// The secret is empty.
    #[error("secret is empty")]
    Empty,
    /// A PEM file that holds no usable key.
    #[error("no {expected} found in the PEM input")]
    Pem {
        /// What was looked for.
        expected: &'static str,
    },
    /// The key material was rejected by the crypto library.
    #[error("key rejected: {0}")]
    Rejected(String),
    /// Generating a key failed.
    #[error("key generation failed")]
    Generation,
    /// An RSA key size outside 2048, 3072 and 4096 bits.
    #[error("unsupported RSA key size {0}; use 2048, 3072 or 4096")]
    UnsupportedSize(u32),
    /// The scheme needs another kind of key than the one given.
    #[error("the `{scheme}` scheme needs {expected}")]
    WrongKind {
        /// The scheme's name.
        scheme: String,
        /// The kind of key it needs.
        expected: &'static str,
    },
    /// No key at all was given.
    #[error("no signing key or secret given")]
    Missing,
    /// A JSON Web Key that is not an RSA signature key in RFC 7517/7518 form.
    #[error("invalid JWK: {0}")]
    Jwk(&'static str),
}

/// Why a request could not be signed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SignError {
    /// The scheme signs a re-serialisation and the payload is not JSON.
    #[error("payload is not JSON: {0}")]
    Json(#[from] JsonError),
    /// An id or timestamp that would make the signed content ambiguous.
    #[error("message id must be non-empty, printable ASCII without `.`, `,` or spaces")]
    InvalidId,
    /// The crypto library failed to sign.
    #[error("signing failed in the crypto library")]
    Crypto,
}

/// Why a request did not verify.
///
/// The variants say what was malformed, never which key or byte mismatched.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// A required header is absent.
    #[error("missing header `{0}`")]
    MissingHeader(String),
    /// A header is present but not in the scheme's format.
    #[error("malformed header `{0}`")]
    MalformedHeader(String),
    /// The signature header holds no signature of a version this verifier knows.
    #[error("no signature of a supported version")]
    UnknownVersion,
    /// The timestamp is further from now than the tolerance allows.
    #[error("timestamp outside the tolerance")]
    StaleTimestamp,
    /// The body is not JSON, for a scheme that signs its re-serialisation.
    #[error("body is not JSON: {0}")]
    InvalidBody(JsonError),
    /// No signature matched any key.
    #[error("signature mismatch")]
    Mismatch,
}
