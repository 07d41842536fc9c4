//! Payloads that stress byte-exact signing, each named for what it tests.

/// One corpus payload.
#[derive(Debug, Clone)]
pub struct Payload {
    /// What the payload exercises.
    pub name: &'static str,
    /// The JSON text as a provider would hand it over.
    pub json: String,
    /// Whether Real ID's Python snippet (`json.dumps(body, separators=(',', ':'))`)
    /// rebuilds the same bytes as Node's `JSON.stringify` for this payload.
    /// Decided by hand from the two languages' documented behaviour: Python
    /// escapes non-ASCII and DEL (`ensure_ascii=True`), prints small numbers
    /// as `1e-07`, and cannot encode lone surrogates as UTF-8.
    pub python_agrees: bool,
}

fn p(name: &'static str, json: &str, python_agrees: bool) -> Payload {
    Payload {
        name,
        json: json.to_owned(),
        python_agrees,
    }
}

/// The corpus: the seeds' example events, then the hard cases.
pub fn payloads() -> Vec<Payload> {
    let mut out = vec![
        p(
            "real-id check.created example",
            "{\n\"event\": \"check.created\",\n\"created_at\": \"2022-12-09T15:20:35.136Z\",\n\"check\": {\n\"id\": \"abcdef\",\n\"step\": \"delivered\",\n\"testing\": true\n}\n}",
            true,
        ),
        p(
            "cometh order filled",
            r#"{"type":"ORDER_FILLED","order":{"id":"0xabc","price":"1500000000000000000","tokenId":42,"maker":"0x00000000000000000000000000000000000000aa"}}"#,
            true,
        ),
        p(
            "nested objects and arrays",
            r#"{"a":{"b":{"c":[1,[2,[3,{"d":null}]],{}]}},"e":[]}"#,
            true,
        ),
        p(
            "integer-like keys",
            r#"{"b":1,"10":2,"a":3,"2":4,"01":5,"-1":6,"4294967295":7,"4294967294":8}"#,
            true,
        ),
        p("duplicate keys", r#"{"a":1,"b":2,"a":3,"c":{"x":1,"x":{"y":2}}}"#, true),
        p("floats", r#"{"f":[0.1,1.5,-2.25,3.0,100.0,123.456e2]}"#, true),
        // Python prints 1e-7 as 1e-07 and 0.000001 as 1e-06.
        p(
            "exponents",
            r#"{"e":[1e21,1E+21,1e-7,2.5e-8,0.000001,1.7976931348623157e308,5e-324]}"#,
            false,
        ),
        p(
            "big integers",
            r#"{"n":[9007199254740993,18446744073709551617,-9007199254740993,123456789012345678901234567890]}"#,
            true,
        ),
        p("negative zero", r#"{"z":-0,"w":-0.0,"v":[-0e5]}"#, true),
        p(
            "non-ASCII",
            r#"{"name":"Zoë Åström","city":"München","jp":"東京"}"#,
            false,
        ),
        p("emoji", r#"{"msg":"sold 🎉","pair":"\ud83d\ude00"}"#, false),
        p(
            "escaped lone surrogates",
            r#"{"hi":"\ud800","lo":"x\udfffy","pair":"\ud83d\ude00"}"#,
            false,
        ),
        p("control characters", r#"{"c":"\u0000\u0001\b\f\n\r\t\u001f"}"#, true),
        // Python's ensure_ascii escapes DEL as \u007f; JSON.stringify writes it raw.
        p("delete character", r#"{"c":"a\u007fb"}"#, false),
        p(
            "slash, angle brackets and escapes",
            r#"{"u":"http:\/\/x.test\/a<b>&'\"\\"}"#,
            true,
        ),
        p("line and paragraph separators", "{\"s\":\"a\\u2028b\u{2029}c\"}", false),
        p("empty object", "{}", true),
        p("empty containers", r#"{"o":{},"a":[],"s":""}"#, true),
        p("top-level array", r#"[1,"two",{"3":4}]"#, true),
        p(
            "whitespace everywhere",
            " \t\n{ \"a\" : [ 1 , 2 ] ,\r\n \"b\" : { } } \n",
            true,
        ),
        p(
            "rheo item.sold",
            r#"{"event":"item.sold","data":{"item_id":"PART_001","price":{"amount":12900,"currency":"SEK"}}}"#,
            true,
        ),
        p(
            "trr vendor notification",
            r#"{"type":"vendor.notification","vendor_id":"v_123","message":"Your item was authenticated"}"#,
            true,
        ),
    ];
    out.push(Payload {
        name: "1 MB body",
        json: big_body(1 << 20),
        python_agrees: true,
    });
    out
}

/// A JSON array of objects, at least `size` bytes long.
pub fn big_body(size: usize) -> String {
    let mut s = String::with_capacity(size + 128);
    s.push('[');
    let mut i = 0u64;
    while s.len() < size {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            r#"{{"id":{i},"sku":"SKU-{i:08}","price":{}.{:02},"tags":["a","b"],"ok":true}}"#,
            i * 7 % 1000,
            i % 100
        ));
        i += 1;
    }
    s.push(']');
    s
}
