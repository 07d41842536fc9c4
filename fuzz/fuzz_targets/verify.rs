//! Every scheme's verifier on arbitrary headers and bodies: never panics, and
//! anything the matching signer produced verifies.
#![no_main]

use std::sync::OnceLock;
use std::time::{Duration, UNIX_EPOCH};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use outhook_signer::{Bytes, Message, RsaKeyPair, Scheme, Secret, Signer, Verifier};

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    scheme: u8,
    headers: Vec<(&'a str, &'a str)>,
    body: &'a [u8],
    /// Seconds since the epoch of the verifier's clock.
    now: u32,
    /// Sign `body` with this id and check that it verifies.
    sign_id: &'a str,
}

struct Pair {
    signer: Signer,
    verifier: Verifier,
}

fn pairs() -> &'static [Pair] {
    static PAIRS: OnceLock<Vec<Pair>> = OnceLock::new();
    PAIRS.get_or_init(|| {
        let rsa = RsaKeyPair::generate(2048).map(|k| k.to_pkcs8_pem().map(|p| p.to_string()));
        let rsa_pem = match rsa {
            Ok(Ok(pem)) => pem,
            _ => panic!("RSA key generation failed"),
        };
        let whsk = outhook_signer::Ed25519SigningKey::generate()
            .map(|k| k.to_whsk().to_string())
            .unwrap_or_else(|_| panic!("Ed25519 key generation failed"));
        let whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_owned();
        Scheme::NAMES
            .iter()
            .map(|name| {
                let scheme = Scheme::by_name(name).unwrap_or_else(|e| panic!("{e}"));
                let (sign_key, verify_key) = match *name {
                    "cometh" => (rsa_pem.clone(), rsa_pem.clone()),
                    "standard-webhooks-v1a" => (whsk.clone(), whsk.clone()),
                    _ => (whsec.clone(), whsec.clone()),
                };
                Pair {
                    signer: Signer::new(scheme.clone(), &[Secret::new(sign_key)]).unwrap_or_else(|e| panic!("{e}")),
                    verifier: Verifier::new(scheme, &[Secret::new(verify_key)]).unwrap_or_else(|e| panic!("{e}")),
                }
            })
            .collect()
    })
}

fuzz_target!(|input: Input<'_>| {
    let pairs = pairs();
    let pair = &pairs[usize::from(input.scheme) % pairs.len()];
    let now = UNIX_EPOCH + Duration::from_secs(u64::from(input.now));
    // Arbitrary headers: any answer but a panic is fine.
    let _ = pair.verifier.verify_at(&input.headers, input.body, now);

    // What the signer produces verifies, at the time it was signed.
    let payload = Bytes::copy_from_slice(input.body);
    if let Ok(signed) = pair.signer.sign(&Message::new(input.sign_id, i64::from(input.now), &payload)) {
        if let Err(e) = pair.verifier.verify_at(&signed, &signed.body, now) {
            panic!("a signed request did not verify: {e}");
        }
    }
});
