//! Key and secret parsing: PEM (private and public), JWK, `whsec_` secrets,
//! `whsk_`/`whpk_` keys. Never panics; what parses prints back to the same
//! key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use outhook_signer::{Ed25519SigningKey, Ed25519VerifyingKey, RsaKeyPair, RsaPublicKey, Scheme, Secret, Verifier};

fuzz_target!(|input: &[u8]| {
    let _ = RsaKeyPair::from_pem(input);
    if let Ok(public) = RsaPublicKey::from_pem(input) {
        assert_eq!(RsaPublicKey::from_pem(public.to_pem().as_bytes()).ok(), Some(public));
    }
    let Ok(text) = std::str::from_utf8(input) else {
        return;
    };
    if let Ok(public) = RsaPublicKey::from_jwk(text) {
        assert_eq!(RsaPublicKey::from_jwk(&public.to_jwk()).ok(), Some(public));
    }
    if let Ok(key) = Ed25519SigningKey::from_whsk(text) {
        let again = Ed25519SigningKey::from_whsk(&key.to_whsk()).map(|k| k.public_key());
        assert_eq!(again.ok(), Some(key.public_key()));
    }
    if let Ok(key) = Ed25519VerifyingKey::from_whpk(text) {
        assert_eq!(Ed25519VerifyingKey::from_whpk(&key.to_whpk()).ok(), Some(key));
    }
    // Every HMAC scheme's key reading (whsec_ base64, UTF-8 text).
    for name in ["standard-webhooks", "trr", "rheo", "stripe"] {
        if let Ok(scheme) = Scheme::by_name(name) {
            let _ = Verifier::new(scheme, &[Secret::new(text)]);
        }
    }
});
