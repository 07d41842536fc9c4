//! The rules on a request's form, each written once: the check the
//! administration layer runs, and the pattern `openapi.json` states for it,
//! so that a request the document calls valid is never refused for its form.

use super::{Error, Result};

/// The most characters of an owner or an event id.
pub const NAME_MAX: usize = 256;

/// An owner or an event id: no NUL, and not only spaces, tabs and line
/// breaks (with [`NAME_MAX`] as the length).
pub const NAME_PATTERN: &str = r"^[^\u0000]*[^\u0000\t\n\r ][^\u0000]*$";

/// Free text (descriptions, reasons): no NUL, which PostgreSQL's text cannot hold.
pub const TEXT_PATTERN: &str = r"^[^\u0000]*$";

/// The most characters of an endpoint's description or a disabling reason.
pub const TEXT_MAX: usize = 2000;

/// A header name: an HTTP token.
pub const HEADER_NAME_PATTERN: &str = r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$";

/// A header value: no control character but tab.
pub const HEADER_VALUE_PATTERN: &str = r"^[^\u0000-\u0008\u000a-\u001f\u007f]*$";

/// A group in the event catalog: no control character.
pub const GROUP_PATTERN: &str = r"^[^\u0000-\u001f\u007f-\u009f]*$";

/// An event type name (see `EVENT_TYPE_NAME_RULE`).
pub const EVENT_TYPE_PATTERN: &str = r"^[A-Za-z0-9][A-Za-z0-9._:-]*$";

/// Standard base64 with padding, non-empty, as the secrets of
/// `standard-webhooks` (after an optional `whsec_`) are decoded: the unused
/// bits of the last character are zero.
const BASE64: &str =
    r"(([A-Za-z0-9+/]{4})+|([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=))";

/// A `whsec_` secret: base64 after an optional `whsec_`.
pub fn whsec_pattern() -> String {
    format!("^(whsec_)?{BASE64}$")
}

/// A `whsk_` Ed25519 secret: its 32-byte seed in base64 after an optional
/// `whsk_`. (The 64-byte form, seed and public key, is accepted too when
/// its halves match, which no pattern can say.)
pub const WHSK_PATTERN: &str = r"^(whsk_)?[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$";

/// An endpoint URL in the form the document promises to accept: `http` or
/// `https`, an IPv4 address or a host name whose last label starts with a
/// letter, an optional port, path and query. The server also takes other
/// forms the URL standard allows (IPv6 literals, international names).
pub fn url_pattern() -> String {
    let label = "[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    let top = "[A-Za-z]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let port = "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3}|0)";
    let userinfo = "([A-Za-z0-9._~!$&'()*+,;=:%-]+@)?";
    let path = "(/[A-Za-z0-9._~!$&'()*+,;=:@%/-]*)?";
    let query = r"(\?[A-Za-z0-9._~!$&'()*+,;=:@%/?-]*)?";
    format!(r"^https?://{userinfo}({octet}(\.{octet}){{3}}|({label}\.)*{top}\.?)(:{port})?{path}{query}$")
}

/// Content filters in their plain form: quoted keys, comparisons, `in`,
/// `exists`, joined by `and` and `or`, or blank for none. The server takes
/// the whole language of the README (bare keys, `not`, parentheses).
pub fn filter_pattern() -> String {
    let key = r#""[A-Za-z0-9_ -]{1,32}""#;
    let path = format!(r"{key}(\.{key}){{0,3}}");
    let string = r#""[A-Za-z0-9_ .:-]{0,32}""#;
    let number = r"-?(0|[1-9][0-9]{0,14})(\.[0-9]{1,6})?";
    let value = format!("({string}|{number}|true|false|null)");
    let term = format!(
        r"({path} ?(=|!=) ?{value}|{path} ?(<|<=|>|>=) ?{number}|{path} in \[{value}(, ?{value}){{0,7}}\]|exists {path})"
    );
    format!(r"^( *|{term}( (and|or) {term}){{0,7}})$")
}

/// Whether any string or key in `value` holds a NUL, which PostgreSQL's
/// jsonb cannot store.
pub fn json_has_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(json_has_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || json_has_nul(v)),
        _ => false,
    }
}

/// Checks an owner or an event id.
pub fn check_name(field: &'static str, text: &str) -> Result<()> {
    let len = text.chars().count();
    if len == 0 || len > NAME_MAX || text.contains('\0') || text.chars().all(|c| matches!(c, '\t' | '\n' | '\r' | ' '))
    {
        return Err(Error::parameter(
            field,
            format!("1 to {NAME_MAX} characters, not blank, no NUL"),
        ));
    }
    Ok(())
}

/// Checks free text of at most `max` characters.
pub fn check_text(field: &'static str, text: &str, max: usize) -> Result<()> {
    if text.contains('\0') || text.chars().count() > max {
        return Err(Error::parameter(field, format!("at most {max} characters, no NUL")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_refused_for_nul_blankness_and_length() {
        assert!(check_name("owner", "acme").is_ok());
        assert!(check_name("owner", " a ").is_ok());
        assert!(check_name("owner", &"é".repeat(NAME_MAX)).is_ok());
        for bad in ["", " \t\r\n", "a\0", &"a".repeat(NAME_MAX + 1)] {
            assert!(check_name("owner", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn nul_is_found_at_any_depth() {
        assert!(!json_has_nul(&serde_json::json!({"a": [1, "b", {"c": null}]})));
        assert!(json_has_nul(&serde_json::json!({"a": [1, "b", {"c": "\u{0}"}]})));
        assert!(json_has_nul(&serde_json::json!({"a": [{"\u{0}": 1}]})));
    }

    #[test]
    fn text_is_refused_for_nul_and_length() {
        assert!(check_text("description", "", 3).is_ok());
        assert!(check_text("description", "ééé", 3).is_ok());
        assert!(check_text("description", "abcd", 3).is_err());
        assert!(check_text("description", "a\0", 3).is_err());
    }
}
