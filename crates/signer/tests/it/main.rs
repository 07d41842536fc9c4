//! Property tests of the signer: round trips, fixed points, and a verifier
#![allow(clippy::unwrap_used, clippy::expect_used)]
//! that never panics.

use outhook_signer::json::to_js_json;
use outhook_signer::{Bytes, Message, Scheme, Secret, Signer, Verifier};
use proptest::prelude::*;

/// JSON text with the lexical variety providers send: whitespace, escapes,
/// integer-like and duplicate keys, numbers in every notation.
fn json_text() -> impl Strategy<Value = String> {
    let ws = prop::sample::select(vec!["", " ", "\n", "\t ", "\r\n  "]);
    let number = prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| format!("{f:e}")),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| f.to_string()),
        Just("-0".to_owned()),
        Just("1e400".to_owned()),
        "[1-9][0-9]{15,25}".prop_map(|s| s),
        "-?(0|[1-9][0-9]{0,5})\\.[0-9]{1,8}([eE][+-]?[0-9]{1,3})?".prop_map(|s| s),
    ];
    let string = prop_oneof![
        "[a-zA-Z0-9 _./<>&'-]{0,12}".prop_map(|s| format!("\"{s}\"")),
        any::<String>().prop_map(|s| serde_json::to_string(&s).unwrap_or_default()),
        prop::collection::vec(
            prop_oneof![
                Just("\\u2028".to_owned()),
                Just("\\ud800".to_owned()),
                Just("\\udc00".to_owned()),
                Just("\\ud83d\\ude00".to_owned()),
                Just("\\/".to_owned()),
                Just("\\u0000".to_owned()),
                Just("\\\"".to_owned()),
                Just("é".to_owned()),
                "[a-z]{1,3}".prop_map(|s| s),
            ],
            0..6
        )
        .prop_map(|parts| format!("\"{}\"", parts.concat())),
    ];
    let key = prop_oneof![
        "[a-d]".prop_map(|s| format!("\"{s}\"")),
        (0u32..20).prop_map(|n| format!("\"{n}\"")),
        Just("\"01\"".to_owned()),
        Just("\"4294967295\"".to_owned()),
        Just("\"\\u0061\"".to_owned()),
    ];
    let leaf = prop_oneof![
        Just("true".to_owned()),
        Just("false".to_owned()),
        Just("null".to_owned()),
        number,
        string,
    ];
    leaf.prop_recursive(4, 64, 6, move |inner| {
        let ws = ws.clone();
        prop_oneof![
            (prop::collection::vec((inner.clone(), ws.clone()), 0..6)).prop_map(|items| {
                let parts: Vec<String> = items.into_iter().map(|(v, w)| format!("{w}{v}{w}")).collect();
                format!("[{}]", parts.join(","))
            }),
            (prop::collection::vec((key.clone(), inner, ws), 0..6)).prop_map(|members| {
                let parts: Vec<String> = members
                    .into_iter()
                    .map(|(k, v, w)| format!("{w}{k}{w}:{w}{v}"))
                    .collect();
                format!("{{{}}}", parts.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn our_js_output_is_a_fixed_point_of_our_parse_and_serialise(text in json_text()) {
        let once = to_js_json(text.as_bytes()).unwrap();
        let twice = to_js_json(&once).unwrap();
        prop_assert_eq!(once, twice);
    }

    #[test]
    fn sign_then_verify_round_trips_for_every_hmac_scheme(text in json_text(), id in "msg_[a-zA-Z0-9]{1,20}", ts in 1_000_000_000i64..4_000_000_000) {
        let payload = Bytes::from(text);
        for name in ["standard-webhooks", "trr", "real-id", "rheo", "github", "stripe"] {
            let scheme = Scheme::by_name(name).unwrap();
            let secrets = [Secret::new("whsec_c2VjcmV0LWtleS1ieXRlcy0wMTIzNDU2Nzg5")];
            let req = Signer::new(scheme.clone(), &secrets).unwrap().sign(&Message::new(&id, ts, &payload)).unwrap();
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(ts as u64);
            prop_assert_eq!(Verifier::new(scheme, &secrets).unwrap().verify_at(&req, &req.body, at), Ok(()));
        }
    }

    #[test]
    fn the_verifier_never_panics_on_arbitrary_headers(sig in any::<String>(), id in any::<String>(), ts in any::<String>(), body in any::<Vec<u8>>()) {
        for name in ["standard-webhooks", "standard-webhooks-v1a", "trr", "real-id", "rheo", "github", "stripe"] {
            let scheme = Scheme::by_name(name).unwrap();
            let key = if name == "standard-webhooks-v1a" {
                scheme.generate_secret().unwrap()
            } else {
                Secret::new("whsec_c2VjcmV0")
            };
            let verifier = Verifier::new(scheme, &[key]).unwrap();
            let headers = vec![
                ("webhook-id", id.as_str()), ("webhook-timestamp", ts.as_str()), ("webhook-signature", sig.as_str()),
                ("x-trr-signature", sig.as_str()), ("x-real-id-signature", sig.as_str()), ("x-rheo-signature", sig.as_str()),
                ("x-hub-signature-256", sig.as_str()), ("stripe-signature", sig.as_str()),
            ];
            prop_assert!(verifier.verify(&headers, &body).is_err());
        }
    }

    #[test]
    fn the_js_serialiser_never_panics_on_arbitrary_bytes(bytes in any::<Vec<u8>>()) {
        let _ = to_js_json(&bytes);
    }
}
