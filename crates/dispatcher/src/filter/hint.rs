//! Filter hints: the value a payload holds at an owner's key path, found
//! by the producer so that the fan-out need not parse the payload.
//!
//! When each of an owner's filters is only an equality on one path
//! (`collection = "0xabc"`, [`super::FilterKey::whole`]), matching an event
//! is finding the endpoints keyed on the value the payload holds there.
//! PostgreSQL would have to cast the whole payload to `jsonb` to find it
//! (about 6 µs a KiB); a producer that holds the payload as text can find
//! it here in a fraction of that and send it in the outbox row's
//! `filter_hint_path` and `filter_hint_value`. The trigger takes a hint
//! only for the path it would look at itself, so a stale one costs the
//! cast and nothing else.
//!
//! A hint must be exactly what `jsonb_path_query_array(payload::jsonb,
//! path)` would give, so [`find`] answers only where that is certain:
//! objects all the way down, and a string, number, `true`, `false` or
//! `null` at the end (sent as its JSON text, which PostgreSQL reads as it
//! would have read it in the payload), or nothing there at all. An array
//! on the way (which the path's lax mode unwraps), a payload `jsonb` cannot
//! hold (a `\u0000` or a UTF-16 surrogate escape, a number beyond
//! `numeric`'s range), or a path of another form get no hint, and the
//! fan-out reads the payload as before.

/// What a payload holds at a key path, as far as a hint can say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint<'a> {
    /// Nothing: a member on the way is missing, or is a scalar.
    Nothing,
    /// This scalar, as its JSON text in the payload.
    Scalar(&'a str),
}

/// The member names of a key path as [`super::Filter`] writes it
/// (`$."data"."shard"[*]`), or `None` for a path of any other form.
pub fn path_keys(path: &str) -> Option<Vec<String>> {
    let mut rest = path.strip_prefix('$')?.strip_suffix("[*]")?;
    let mut keys = Vec::new();
    while !rest.is_empty() {
        rest = rest.strip_prefix(".\"")?;
        let mut key = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()? {
                    (_, '"') => key.push('"'),
                    (_, '\\') => key.push('\\'),
                    (_, 'u') => {
                        let hex: String = (0..4).filter_map(|_| chars.next().map(|(_, c)| c)).collect();
                        let code = u32::from_str_radix(&hex, 16).ok().filter(|_| hex.len() == 4)?;
                        key.push(char::from_u32(code)?);
                    }
                    _ => return None,
                },
                (_, c) => key.push(c),
            }
        };
        keys.push(key);
        rest = &rest[end + 1..];
    }
    if keys.is_empty() { None } else { Some(keys) }
}

/// What `payload` (JSON, as checked before it is enqueued) holds at the
/// member path `keys`, or `None` where a hint cannot say for certain.
pub fn find<'a>(payload: &'a str, keys: &[String]) -> Option<Hint<'a>> {
    if !jsonb_readable(payload.as_bytes()) {
        return None;
    }
    let mut value = payload.trim_matches(is_ws);
    for key in keys {
        match value.as_bytes().first()? {
            b'{' => match member(value, key)? {
                Some(v) => value = v,
                None => return Some(Hint::Nothing),
            },
            b'[' => return None,
            _ => return Some(Hint::Nothing),
        }
    }
    match value.as_bytes().first()? {
        b'{' | b'[' => None,
        _ => Some(Hint::Scalar(value)),
    }
}

fn is_ws(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The value of the last member `key` of the object `object` (as `jsonb`
/// keeps the last of repeated keys), `Some(None)` when there is none, and
/// `None` if the text is not what it should be.
fn member<'a>(object: &'a str, key: &str) -> Option<Option<&'a str>> {
    let b = object.as_bytes();
    let mut i = skip_ws(b, 1);
    let mut found = None;
    if b.get(i) == Some(&b'}') {
        return Some(None);
    }
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = skip_value(b, i)?;
        let name = object.get(i + 1..key_end - 1)?;
        i = skip_ws(b, key_end);
        if b.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(b, i + 1);
        let end = skip_value(b, start)?;
        if name_is(name, key)? {
            found = Some(object.get(start..end)?);
        }
        i = skip_ws(b, end);
        match b.get(i)? {
            b',' => i = skip_ws(b, i + 1),
            b'}' => return Some(found),
            _ => return None,
        }
    }
}

/// Whether the raw member name `raw` (its text between the quotes) is `key`.
fn name_is(raw: &str, key: &str) -> Option<bool> {
    if !raw.contains('\\') {
        return Some(raw == key);
    }
    let decoded: String = serde_json::from_str(&format!("\"{raw}\"")).ok()?;
    Some(decoded == key)
}

fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// The end (exclusive) of the value starting at `i`.
fn skip_value(b: &[u8], i: usize) -> Option<usize> {
    match b.get(i)? {
        b'"' => skip_string(b, i),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match b.get(j)? {
                    b'"' => {
                        j = skip_string(b, j)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(j + 1);
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        }
        _ => {
            let mut j = i;
            while let Some(c) = b.get(j) {
                if matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r') {
                    break;
                }
                j += 1;
            }
            (j > i).then_some(j)
        }
    }
}

/// The end (exclusive) of the string whose opening quote is at `i`.
fn skip_string(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    loop {
        match b.get(j)? {
            b'"' => return Some(j + 1),
            b'\\' => j += 2,
            _ => j += 1,
        }
    }
}

/// The longest number, in characters, that a hint vouches `numeric` can
/// hold; with an exponent of at most four digits, every such number is
/// far inside its range (131,072 digits before the point, 16,383 after).
const MAX_NUMBER_LEN: usize = 4000;

/// Whether PostgreSQL's cast to `jsonb` surely takes `b`: no `\u0000`
/// (text cannot hold a NUL), no surrogate escape (a lone one is refused;
/// a pair is declined too, to keep this simple), no number beyond range.
fn jsonb_readable(b: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'"' => {
                i += 1;
                loop {
                    match b.get(i) {
                        None => return false,
                        Some(b'"') => break,
                        Some(b'\\') => {
                            if b.get(i + 1) == Some(&b'u') {
                                match b.get(i + 2..i + 6) {
                                    Some(b"0000") => return false,
                                    Some([d, x, ..])
                                        if d.eq_ignore_ascii_case(&b'd')
                                            && matches!(x.to_ascii_lowercase(), b'8'..=b'9' | b'a'..=b'f') =>
                                    {
                                        return false;
                                    }
                                    Some(_) => i += 6,
                                    None => return false,
                                }
                            } else {
                                i += 2;
                            }
                        }
                        Some(_) => i += 1,
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                while matches!(b.get(i), Some(b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E')) {
                    i += 1;
                }
                let number = &b[start..i];
                if number.len() > MAX_NUMBER_LEN {
                    return false;
                }
                if let Some(e) = number.iter().position(|c| matches!(c, b'e' | b'E')) {
                    let digits = number[e + 1..].iter().filter(|c| c.is_ascii_digit()).count();
                    if digits > 4 {
                        return false;
                    }
                }
            }
            _ => i += 1,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_key_path_reads_back_as_its_member_names() {
        let filter = super::super::Filter::parse(r#""a.b".c\u0001 = 1"#);
        assert!(filter.is_err(), "a name cannot hold a control character: {filter:?}");
        for (source, want) in [
            ("data.shard = 1", vec!["data", "shard"]),
            (r#""a.b"."q\"uote\\" = 1"#, vec!["a.b", "q\"uote\\"]),
            (r#""ü ñ" = "x""#, vec!["ü ñ"]),
        ] {
            let filter = super::super::Filter::parse(source).map_err(|e| e.to_string());
            let path = filter.as_ref().ok().and_then(|f| f.key()).map(|k| k.path.clone());
            assert_eq!(
                path.as_deref().and_then(path_keys),
                Some(keys(&want)),
                "{source}: {path:?}"
            );
        }
        for other in [
            "$.a",
            "$.\"a\"",
            "$.\"a\".b[*]",
            "$[*]",
            "$.\"a\\q\"[*]",
            "$.\"a\\u12\"[*]",
        ] {
            assert_eq!(path_keys(other), None, "{other}");
        }
    }

    #[test]
    fn a_hint_is_given_only_where_it_is_certain() {
        let path = keys(&["data", "shard"]);
        for (payload, want) in [
            (r#"{"data":{"shard":7}}"#, Some(Hint::Scalar("7"))),
            (
                r#" { "data" : { "x":[1,{"shard":2}], "shard" : "a\"b" } } "#,
                Some(Hint::Scalar(r#""a\"b""#)),
            ),
            (r#"{"data":{"shard":1,"shard":2}}"#, Some(Hint::Scalar("2"))),
            (r#"{"data":{"shard":null}}"#, Some(Hint::Scalar("null"))),
            (r#"{"data":{"sh\u0061rd":1.50}}"#, Some(Hint::Scalar("1.50"))),
            (r#"{"data":{}}"#, Some(Hint::Nothing)),
            (r#"{"data":5}"#, Some(Hint::Nothing)),
            (r#"[{"data":{"shard":1}}]"#, None),
            (r#"{"data":[{"shard":1}]}"#, None),
            (r#"{"data":{"shard":[1]}}"#, None),
            (r#"{"data":{"shard":{"a":1}}}"#, None),
            (r#"{"data":{"shard":1},"n":"\u0000"}"#, None),
            (r#"{"data":{"shard":1},"n":"\ud83d\ude00"}"#, None),
            (r#"{"data":{"shard":1},"n":"\\u0000"}"#, Some(Hint::Scalar("1"))),
            (r#"{"data":{"shard":1},"n":1e10000}"#, None),
            (r#"{"data":{"shard":1},"n":1e9999}"#, Some(Hint::Scalar("1"))),
        ] {
            assert_eq!(find(payload, &path), want, "{payload}");
        }
    }
}
