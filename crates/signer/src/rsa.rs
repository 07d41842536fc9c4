//! RSA-SHA256 (PKCS#1 v1.5) signatures, as Cometh's indexer sends them.
//!
//! Signing uses aws-lc-rs, whose RSA is constant time. The `rsa` crate is not
//! used: RUSTSEC-2023-0071 (the Marvin timing attack) can leak its private
//! key to anyone who can time signatures, and no fixed version exists.

use std::fmt;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize, PublicKey};
use aws_lc_rs::signature::{self, KeyPair as _, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::HeaderName;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{PrivateKeyDer, SubjectPublicKeyInfoDer};
use zeroize::Zeroizing;

use crate::error::{KeyError, SignError, VerifyError};
use crate::hmac::BodyForm;
use crate::message::{HeaderSource, Message, SignedRequest};
use crate::pem;

/// An RSA private key. `Debug` prints only the modulus size.
pub struct RsaKeyPair {
    inner: KeyPair,
}

impl fmt::Debug for RsaKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaKeyPair({} bits, ***)", self.inner.public_modulus_len() * 8)
    }
}

impl RsaKeyPair {
    /// Generates a new key of 2048, 3072 or 4096 bits.
    pub fn generate(bits: u32) -> Result<Self, KeyError> {
        let size = match bits {
            2048 => KeySize::Rsa2048,
            3072 => KeySize::Rsa3072,
            4096 => KeySize::Rsa4096,
            other => return Err(KeyError::UnsupportedSize(other)),
        };
        let inner = KeyPair::generate(size).map_err(|_| KeyError::Generation)?;
        Ok(Self { inner })
    }

    /// Loads a private key from PEM: PKCS#8 (`BEGIN PRIVATE KEY`) or PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`).
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        let der = PrivateKeyDer::from_pem_slice(pem).map_err(|_| KeyError::Pem {
            expected: "RSA private key (PKCS#8 or PKCS#1)",
        })?;
        let inner = match &der {
            PrivateKeyDer::Pkcs8(der) => KeyPair::from_pkcs8(der.secret_pkcs8_der()),
            PrivateKeyDer::Pkcs1(der) => KeyPair::from_der(der.secret_pkcs1_der()),
            _ => {
                return Err(KeyError::Pem {
                    expected: "RSA private key (PKCS#8 or PKCS#1)",
                });
            }
        }
        .map_err(|e| KeyError::Rejected(e.to_string()))?;
        Ok(Self { inner })
    }

    /// The key as PKCS#8 PEM (`BEGIN PRIVATE KEY`), zeroed on drop.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let der = self.inner.as_der().map_err(|_| KeyError::Generation)?;
        Ok(pem::encode("PRIVATE KEY", der.as_ref()))
    }

    /// The public half, for publication.
    pub fn public_key(&self) -> Result<RsaPublicKey, KeyError> {
        RsaPublicKey::from_aws(self.inner.public_key())
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.inner.public_modulus_len() * 8
    }

    /// Signs `data` with RSASSA-PKCS1-v1_5 over SHA-256.
    pub fn sign(&self, data: &[u8]) -> Result<Vec<u8>, SignError> {
        let mut sig = vec![0u8; self.inner.public_modulus_len()];
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.inner
            .sign(&RSA_PKCS1_SHA256, &rng, data, &mut sig)
            .map_err(|_| SignError::Crypto)?;
        Ok(sig)
    }
}

/// An RSA public key, exportable as PEM (SubjectPublicKeyInfo) and JWK.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaPublicKey {
    /// PKCS#1 `RSAPublicKey` DER, what the verifier takes.
    pkcs1: Vec<u8>,
    /// SubjectPublicKeyInfo DER, what PEM and Node's `createVerify` take.
    spki: Vec<u8>,
    /// Big-endian modulus without leading zeros.
    n: Vec<u8>,
    /// Big-endian public exponent without leading zeros.
    e: Vec<u8>,
}

impl fmt::Debug for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RsaPublicKey({} bits)", self.n.len() * 8)
    }
}

impl RsaPublicKey {
    fn from_aws(key: &PublicKey) -> Result<Self, KeyError> {
        let spki = key
            .as_der()
            .map_err(|e| KeyError::Rejected(e.to_string()))?
            .as_ref()
            .to_vec();
        Ok(Self {
            pkcs1: key.as_ref().to_vec(),
            spki,
            n: key.modulus().big_endian_without_leading_zero().to_vec(),
            e: key.exponent().big_endian_without_leading_zero().to_vec(),
        })
    }

    /// Loads a public key from PEM (`BEGIN PUBLIC KEY`), or derives it from a
    /// private key PEM.
    pub fn from_pem(pem: &[u8]) -> Result<Self, KeyError> {
        if let Ok(spki) = SubjectPublicKeyInfoDer::from_pem_slice(pem) {
            let key = PublicKey::from_der(spki.as_ref()).map_err(|e| KeyError::Rejected(e.to_string()))?;
            return Self::from_aws(&key);
        }
        RsaKeyPair::from_pem(pem)?.public_key()
    }

    /// Loads a public key from a JSON Web Key (RFC 7517): `kty` `RSA` with
    /// base64url `n` and `e`. `alg`, when present, must be `RS256`, and
    /// `use`, when present, `sig`; other members (`kid`, ...) are ignored.
    pub fn from_jwk(jwk: &str) -> Result<Self, KeyError> {
        #[derive(serde::Deserialize)]
        struct Jwk {
            kty: String,
            n: String,
            e: String,
            alg: Option<String>,
            #[serde(rename = "use")]
            use_: Option<String>,
        }
        let jwk: Jwk = serde_json::from_str(jwk).map_err(|_| KeyError::Jwk("not a JSON object with kty, n and e"))?;
        if jwk.kty != "RSA" {
            return Err(KeyError::Jwk("kty is not RSA"));
        }
        if jwk.alg.is_some_and(|a| a != "RS256") {
            return Err(KeyError::Jwk("alg is not RS256"));
        }
        if jwk.use_.is_some_and(|u| u != "sig") {
            return Err(KeyError::Jwk("use is not sig"));
        }
        let decode = |field: &str, what| {
            URL_SAFE_NO_PAD
                .decode(field.trim_end_matches('='))
                .map_err(|_| KeyError::Jwk(what))
        };
        let n = decode(&jwk.n, "n is not base64url")?;
        let e = decode(&jwk.e, "e is not base64url")?;
        let strip = |b: &[u8]| {
            b.iter()
                .position(|&x| x != 0)
                .map_or_else(Vec::new, |i| b[i..].to_vec())
        };
        let components = signature::RsaPublicKeyComponents {
            n: strip(&n),
            e: strip(&e),
        };
        let spki = components
            .as_der()
            .map_err(|_| KeyError::Jwk("n and e do not form an RSA public key"))?;
        let key = PublicKey::from_der(spki.as_ref()).map_err(|e| KeyError::Rejected(e.to_string()))?;
        Self::from_aws(&key)
    }

    /// The key as SubjectPublicKeyInfo PEM (`BEGIN PUBLIC KEY`), the form
    /// Node's `crypto.createVerify().verify()` takes.
    pub fn to_pem(&self) -> String {
        pem::encode("PUBLIC KEY", &self.spki).to_string()
    }

    /// The key as a JSON Web Key (RFC 7517) with `alg` `RS256` and `use` `sig`.
    pub fn to_jwk(&self) -> String {
        format!(
            r#"{{"kty":"RSA","alg":"RS256","use":"sig","n":"{}","e":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(&self.n),
            URL_SAFE_NO_PAD.encode(&self.e)
        )
    }

    /// Checks an RSASSA-PKCS1-v1_5 SHA-256 signature over `data`.
    pub fn verify(&self, data: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.pkcs1)
            .verify(data, sig)
            .is_ok()
    }
}

/// A scheme that puts a base64 RSA-SHA256 signature of the body in one header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaScheme {
    header: HeaderName,
    body: BodyForm,
}

impl RsaScheme {
    /// Cometh: `x-cometh-indexer-signature`, base64 RSA-SHA256 of
    /// `JSON.stringify(event)`.
    pub fn cometh() -> Self {
        Self::custom(
            HeaderName::from_static("x-cometh-indexer-signature"),
            BodyForm::JsStringify,
        )
    }

    /// A scheme with another header or body form.
    pub fn custom(header: HeaderName, body: BodyForm) -> Self {
        Self { header, body }
    }

    /// The header that carries the signature.
    pub fn signature_header(&self) -> &HeaderName {
        &self.header
    }

    /// Which body this scheme sends.
    pub fn body_form(&self) -> BodyForm {
        self.body
    }

    /// Signs `message`.
    pub fn sign(&self, key: &RsaKeyPair, message: &Message<'_>) -> Result<SignedRequest, SignError> {
        let body = self.body.to_send(message.payload)?;
        let sig = key.sign(&body)?;
        Ok(SignedRequest {
            body,
            headers: vec![(self.header.clone(), STANDARD.encode(sig))],
        })
    }

    /// Verifies a received request.
    pub fn verify(
        &self,
        key: &RsaPublicKey,
        headers: &(impl HeaderSource + ?Sized),
        body: &[u8],
    ) -> Result<(), VerifyError> {
        let name = self.header.as_str();
        let value = headers
            .header(name)
            .ok_or_else(|| VerifyError::MissingHeader(name.to_owned()))?;
        let sig = STANDARD
            .decode(value.trim())
            .map_err(|_| VerifyError::MalformedHeader(name.to_owned()))?;
        if key.verify(&self.body.to_verify(body)?, &sig) {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_survives_a_pem_round_trip_and_its_signatures_verify() {
        let key = RsaKeyPair::generate(2048).unwrap();
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = RsaKeyPair::from_pem(pem.as_bytes()).unwrap();
        let public = again.public_key().unwrap();
        assert_eq!(public, RsaPublicKey::from_pem(public.to_pem().as_bytes()).unwrap());
        let sig = key.sign(b"data").unwrap();
        assert!(public.verify(b"data", &sig));
        assert!(!public.verify(b"datA", &sig));
        assert!(format!("{key:?}").contains("2048 bits"));
        assert!(public.to_jwk().contains(r#""e":"AQAB""#));
    }

    #[test]
    fn unsupported_sizes_and_garbage_pem_are_typed_errors() {
        assert!(matches!(
            RsaKeyPair::generate(1024),
            Err(KeyError::UnsupportedSize(1024))
        ));
        assert!(matches!(RsaKeyPair::from_pem(b"nope"), Err(KeyError::Pem { .. })));
    }

    #[test]
    fn a_published_jwk_loads_back_to_the_same_key() {
        let key = RsaKeyPair::generate(2048).unwrap();
        let public = key.public_key().unwrap();
        let again = RsaPublicKey::from_jwk(&public.to_jwk()).unwrap();
        assert_eq!(public, again);
        let sig = key.sign(b"data").unwrap();
        assert!(again.verify(b"data", &sig));
    }

    #[test]
    fn jwks_that_are_not_rsa_signature_keys_are_refused() {
        for bad in [
            "",
            "[]",
            r#"{"kty":"EC","n":"AQAB","e":"AQAB"}"#,
            r#"{"kty":"RSA","n":"AQAB"}"#,
            r#"{"kty":"RSA","n":"!!","e":"AQAB"}"#,
            r#"{"kty":"RSA","n":"AQAB","e":"AQAB","alg":"RS512"}"#,
            r#"{"kty":"RSA","n":"AQAB","e":"AQAB","use":"enc"}"#,
            r#"{"kty":"RSA","n":"AA","e":"AQAB"}"#,
        ] {
            assert!(RsaPublicKey::from_jwk(bad).is_err(), "{bad}");
        }
    }
}
