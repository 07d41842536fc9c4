//! One changed byte, a wrong or rotated-out secret, or a stale timestamp:
//! rejected by our verifier with the right error, and by the providers' code.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use outhook_signer::{Bytes, Message, RsaKeyPair, Scheme, Secret, SignedRequest, Signer, Verifier, VerifyError};
use outhook_testkit::verifiers::{self, Case, Lang};

use crate::signing_interop::{public_pem, rsa_pem};

const PAYLOAD: &str = r#"{"event":"check.completed","check":{"id":"abcdef","testing":true}}"#;

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

struct Fixture {
    scheme: &'static str,
    langs: &'static [Lang],
    sign_key: Secret,
    verify_key: String,
    other_sign_key: Secret,
    other_verify_key: String,
}

/// (what was changed, body, headers, key we verify with, key the provider
/// verifies with, the error our verifier must give).
type Variant = (
    &'static str,
    Vec<u8>,
    Vec<(String, String)>,
    Secret,
    String,
    VerifyError,
);

fn fixtures() -> Vec<Fixture> {
    let whsec = || Secret::generate_whsec().unwrap();
    let (a, b) = (whsec(), whsec());
    let other_rsa = RsaKeyPair::generate(2048).unwrap();
    vec![
        Fixture {
            scheme: "trr",
            langs: &[Lang::Python],
            sign_key: "s3cret-a".into(),
            verify_key: "s3cret-a".into(),
            other_sign_key: "s3cret-b".into(),
            other_verify_key: "s3cret-b".into(),
        },
        Fixture {
            scheme: "real-id",
            langs: &[Lang::Node, Lang::Python],
            sign_key: "rk_a".into(),
            verify_key: "rk_a".into(),
            other_sign_key: "rk_b".into(),
            other_verify_key: "rk_b".into(),
        },
        Fixture {
            scheme: "rheo",
            langs: &[Lang::Python, Lang::Node],
            sign_key: "whsec_a".into(),
            verify_key: "whsec_a".into(),
            other_sign_key: "whsec_b".into(),
            other_verify_key: "whsec_b".into(),
        },
        Fixture {
            scheme: "cometh",
            langs: &[Lang::Node],
            sign_key: Secret::new(rsa_pem()),
            verify_key: public_pem(),
            other_sign_key: Secret::new(other_rsa.to_pkcs8_pem().unwrap().to_string()),
            other_verify_key: other_rsa.public_key().unwrap().to_pem(),
        },
        Fixture {
            scheme: "standard-webhooks",
            langs: &[Lang::Python, Lang::Node],
            verify_key: a.expose().into(),
            other_verify_key: b.expose().into(),
            sign_key: a,
            other_sign_key: b,
        },
    ]
}

fn sign(scheme: &str, keys: &[Secret], id: &str, at: i64) -> SignedRequest {
    let payload = Bytes::from_static(PAYLOAD.as_bytes());
    Signer::new(Scheme::by_name(scheme).unwrap(), keys)
        .unwrap()
        .sign(&Message::new(id, at, &payload))
        .unwrap()
}

fn headers(req: &SignedRequest) -> Vec<(String, String)> {
    req.headers
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect()
}

/// Replaces one character of the signature with another of its alphabet.
fn flip_signature(scheme: &str, headers: &mut [(String, String)]) {
    let sig_header = match scheme {
        "trr" => "x-trr-signature",
        "real-id" => "x-real-id-signature",
        "rheo" => "x-rheo-signature",
        "cometh" => "x-cometh-indexer-signature",
        _ => "webhook-signature",
    };
    let value = &mut headers.iter_mut().find(|(k, _)| k == sig_header).unwrap().1;
    let at = match scheme {
        "rheo" => "sha256=".len(),
        "standard-webhooks" => "v1,".len(),
        _ => 0,
    };
    let old = value.as_bytes()[at];
    let new = if old == b'a' { 'b' } else { 'a' };
    value.replace_range(at..at + 1, &new.to_string());
}

fn set(headers: &mut [(String, String)], name: &str, value: String) {
    headers.iter_mut().find(|(k, _)| k == name).unwrap().1 = value;
}

#[test]
fn every_tampering_is_rejected_by_us_and_by_the_providers() {
    for f in fixtures() {
        let t = now();
        let good = sign(f.scheme, std::slice::from_ref(&f.sign_key), "msg_tamper", t);
        let good_headers = headers(&good);
        // (what, body, headers, key we verify with, key the provider verifies with, our expected error)
        let mut variants: Vec<Variant> = Vec::new();
        let body = good.body.to_vec();
        let tampered_body = String::from_utf8(body.clone())
            .unwrap()
            .replace("abcdef", "abcdeg")
            .into_bytes();
        assert_ne!(tampered_body, body);
        let our_key = Secret::new(f.verify_key.clone());
        variants.push((
            "one body byte",
            tampered_body,
            good_headers.clone(),
            our_key.clone(),
            f.verify_key.clone(),
            VerifyError::Mismatch,
        ));
        let mut flipped = good_headers.clone();
        flip_signature(f.scheme, &mut flipped);
        variants.push((
            "one signature byte",
            body.clone(),
            flipped,
            our_key.clone(),
            f.verify_key.clone(),
            VerifyError::Mismatch,
        ));
        variants.push((
            "a wrong secret",
            body.clone(),
            good_headers.clone(),
            Secret::new(f.other_verify_key.clone()),
            f.other_verify_key.clone(),
            VerifyError::Mismatch,
        ));
        if f.scheme == "standard-webhooks" {
            let mut id = good_headers.clone();
            set(&mut id, "webhook-id", "msg_tampes".into());
            variants.push((
                "the id",
                body.clone(),
                id,
                our_key.clone(),
                f.verify_key.clone(),
                VerifyError::Mismatch,
            ));
            let mut ts = good_headers.clone();
            set(&mut ts, "webhook-timestamp", (t + 1).to_string());
            variants.push((
                "the timestamp",
                body.clone(),
                ts,
                our_key.clone(),
                f.verify_key.clone(),
                VerifyError::Mismatch,
            ));
            let stale = sign(f.scheme, std::slice::from_ref(&f.sign_key), "msg_tamper", t - 600);
            variants.push((
                "a stale timestamp",
                stale.body.to_vec(),
                headers(&stale),
                our_key.clone(),
                f.verify_key.clone(),
                VerifyError::StaleTimestamp,
            ));
            let future = sign(f.scheme, std::slice::from_ref(&f.sign_key), "msg_tamper", t + 600);
            variants.push((
                "a future timestamp",
                future.body.to_vec(),
                headers(&future),
                our_key.clone(),
                f.verify_key.clone(),
                VerifyError::StaleTimestamp,
            ));
        }
        // Rotation: signed with the new secret only; the rotated-out one must fail.
        let rotated = sign(f.scheme, std::slice::from_ref(&f.other_sign_key), "msg_tamper", t);
        variants.push((
            "a rotated-out secret",
            rotated.body.to_vec(),
            headers(&rotated),
            our_key.clone(),
            f.verify_key.clone(),
            VerifyError::Mismatch,
        ));

        for (what, body, hdrs, key, _, expected) in &variants {
            let verifier = Verifier::new(Scheme::by_name(f.scheme).unwrap(), std::slice::from_ref(key)).unwrap();
            assert_eq!(
                verifier.verify(hdrs, body).as_ref(),
                Err(expected),
                "{} with {what}",
                f.scheme
            );
        }
        let cases: Vec<Case> = variants
            .iter()
            .map(|(_, body, hdrs, _, key, _)| Case {
                body: body.clone(),
                headers: hdrs.clone(),
                key: key.clone(),
            })
            .collect();
        for &lang in f.langs {
            let verdicts = verifiers::run(lang, f.scheme, &cases).unwrap();
            for ((what, ..), v) in variants.iter().zip(&verdicts) {
                assert!(!v.ok, "{lang:?} {} accepted {what}", f.scheme);
            }
            // And the untampered request passes the same code, so rejections mean something.
            let ok = verifiers::run(
                lang,
                f.scheme,
                &[Case {
                    body: good.body.to_vec(),
                    headers: good_headers.clone(),
                    key: f.verify_key.clone(),
                }],
            )
            .unwrap();
            assert!(
                ok[0].ok,
                "{lang:?} {} rejected the good request: {:?}",
                f.scheme, ok[0].error
            );
        }
    }
}

#[test]
fn missing_and_malformed_headers_are_typed_errors() {
    let key = Secret::generate_whsec().unwrap();
    let verifier = Verifier::new(
        Scheme::by_name("standard-webhooks").unwrap(),
        std::slice::from_ref(&key),
    )
    .unwrap();
    let req = sign("standard-webhooks", std::slice::from_ref(&key), "msg_1", now());
    let mut h = headers(&req);
    h.retain(|(k, _)| k != "webhook-id");
    assert_eq!(
        verifier.verify(&h, &req.body),
        Err(VerifyError::MissingHeader("webhook-id".into()))
    );
    let mut h = headers(&req);
    set(&mut h, "webhook-timestamp", "soon".into());
    assert_eq!(
        verifier.verify(&h, &req.body),
        Err(VerifyError::MalformedHeader("webhook-timestamp".into()))
    );
    let mut h = headers(&req);
    set(&mut h, "webhook-signature", "v2,abc".into());
    assert_eq!(verifier.verify(&h, &req.body), Err(VerifyError::UnknownVersion));
    let mut h = headers(&req);
    set(&mut h, "webhook-signature", "v1,@@@".into());
    assert_eq!(
        verifier.verify(&h, &req.body),
        Err(VerifyError::MalformedHeader("webhook-signature".into()))
    );
    let at = UNIX_EPOCH + Duration::from_secs(now() as u64 + 301);
    assert_eq!(
        verifier.verify_at(&headers(&req), &req.body, at),
        Err(VerifyError::StaleTimestamp)
    );
    // A re-serialising scheme given a body that is not JSON says so.
    let real_id = Verifier::new(Scheme::by_name("real-id").unwrap(), &[Secret::new("k")]).unwrap();
    let bad = vec![("x-real-id-signature", "00")];
    assert!(matches!(
        real_id.verify(&bad, b"{not json"),
        Err(VerifyError::InvalidBody(_))
    ));
}
