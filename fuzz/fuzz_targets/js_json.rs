//! The `JSON.stringify(JSON.parse(x))` re-serialiser, differentially against
//! serde_json: what both accept means the same value, and the output is a
//! fixed point of itself.
#![no_main]

use std::collections::BTreeMap;

use libfuzzer_sys::fuzz_target;
use outhook_signer::json::to_js_json;
use serde_json::Value;

/// A value with the differences JavaScript makes away: numbers as doubles,
/// objects as maps (order aside; duplicates already resolved last-wins).
#[derive(Debug, PartialEq)]
enum Norm {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
    Array(Vec<Norm>),
    Object(BTreeMap<String, Norm>),
}

fn norm(v: &Value) -> Norm {
    match v {
        Value::Null => Norm::Null,
        Value::Bool(b) => Norm::Bool(*b),
        // -0 and 0 compare equal as f64, as JSON.stringify prints both as 0.
        Value::Number(n) => Norm::Number(n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Norm::String(s.clone()),
        Value::Array(a) => Norm::Array(a.iter().map(norm).collect()),
        Value::Object(o) => Norm::Object(o.iter().map(|(k, v)| (k.clone(), norm(v))).collect()),
    }
}

fuzz_target!(|input: &[u8]| {
    let ours = to_js_json(input);
    // serde_json refuses lone surrogates, numbers that overflow and nesting
    // past 128, which JSON.parse accepts: compare only what both accept.
    let Ok(theirs) = serde_json::from_slice::<Value>(input) else {
        if let Ok(out) = &ours {
            assert_eq!(to_js_json(out).as_deref(), Ok(out.as_slice()), "not a fixed point");
        }
        return;
    };
    let out = match ours {
        Ok(out) => out,
        Err(e) => panic!("serde_json accepts what we refuse: {e}"),
    };
    let reparsed: Value = match serde_json::from_slice(&out) {
        Ok(v) => v,
        Err(e) => panic!("our output is not JSON to serde_json: {e}"),
    };
    assert_eq!(norm(&theirs), norm(&reparsed), "value changed");
    assert_eq!(to_js_json(&out).as_deref(), Ok(out.as_slice()), "not a fixed point");
});
