//! JSON exactly as JavaScript re-serialises it.
//!
//! Two providers (Real ID and Cometh) verify a signature over
//! `JSON.stringify(JSON.parse(body))`, not over the bytes on the wire. A body
//! only verifies there if it is a *fixed point* of that round trip, which
//! [`to_js_json`] produces:
//!
//! - compact: no whitespace between tokens;
//! - object keys in JavaScript property order: array-index keys
//!   (`"0"` to `"4294967294"`, canonical decimal) first in ascending numeric
//!   order, then the other keys in the order they first appear; a duplicated
//!   key keeps its first position and its last value;
//! - numbers parsed to an IEEE-754 double and printed by the ECMAScript
//!   Number-to-String algorithm (`ryu-js`): `1.0` becomes `1`, `1e21` becomes
//!   `1e+21`, `-0` becomes `0`, integers beyond 2^53 are rounded, and numbers
//!   that overflow to infinity become `null`;
//! - strings escaped as `JSON.stringify` escapes them: `"`, `\`, the short
//!   escapes `\b \f \n \r \t`, other control characters as `\u00xx`, lone
//!   surrogates as `\udxxx`; everything else, `/`, `<` and U+2028 included,
//!   is written literally.
//!
//! The parser accepts exactly the grammar `JSON.parse` accepts (RFC 8259,
//! UTF-8 input) and nests at most [`MAX_DEPTH`] levels.

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

/// The deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 512;

/// Why a body is not JSON that `JSON.parse` accepts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid JSON at byte {offset}: {reason}")]
pub struct JsonError {
    /// Byte offset in the input where parsing failed.
    pub offset: usize,
    /// What was wrong there.
    pub reason: JsonErrorReason,
}

/// The kinds of [`JsonError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum JsonErrorReason {
    /// The input is not valid UTF-8.
    InvalidUtf8,
    /// The input ended inside a value.
    UnexpectedEnd,
    /// A byte that cannot start or continue a value here.
    UnexpectedByte,
    /// Text follows the top-level value.
    TrailingCharacters,
    /// A malformed number.
    InvalidNumber,
    /// A malformed escape sequence in a string.
    InvalidEscape,
    /// A raw control character (below U+0020) inside a string.
    ControlCharacter,
    /// Arrays and objects nest deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl fmt::Display for JsonErrorReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::InvalidUtf8 => "not valid UTF-8",
            Self::UnexpectedEnd => "unexpected end of input",
            Self::UnexpectedByte => "unexpected character",
            Self::TrailingCharacters => "trailing characters after the value",
            Self::InvalidNumber => "malformed number",
            Self::InvalidEscape => "malformed escape sequence",
            Self::ControlCharacter => "raw control character in a string",
            Self::TooDeep => "nested too deeply",
        })
    }
}

/// Returns `JSON.stringify(JSON.parse(input))` as UTF-8 bytes.
///
/// The result is a fixed point: applying this function to it returns it
/// unchanged.
pub fn to_js_json(input: &[u8]) -> Result<Vec<u8>, JsonError> {
    let mut out = Vec::with_capacity(input.len());
    write_js_json(input, &mut out)?;
    Ok(out)
}

/// Appends `JSON.stringify(JSON.parse(input))` to `out`.
///
/// On error, `out` is left with its original contents.
pub fn write_js_json(input: &[u8], out: &mut Vec<u8>) -> Result<(), JsonError> {
    let start = out.len();
    let result = std::str::from_utf8(input)
        .map_err(|e| JsonError {
            offset: e.valid_up_to(),
            reason: JsonErrorReason::InvalidUtf8,
        })
        .and_then(|_| {
            let mut parser = Parser {
                input,
                pos: 0,
                out,
                depth: 0,
                members: Vec::new(),
            };
            parser.skip_ws();
            parser.value()?;
            parser.skip_ws();
            if parser.pos != input.len() {
                return Err(parser.error(JsonErrorReason::TrailingCharacters));
            }
            Ok(())
        });
    if result.is_err() {
        out.truncate(start);
    }
    result
}

/// Checks that `input` is JSON that `JSON.parse` accepts, without keeping
/// the re-serialised form.
pub fn validate(input: &[u8]) -> Result<(), JsonError> {
    let mut scratch = Vec::new();
    write_js_json(input, &mut scratch)
}

/// One member of an object being written: its decoded key and where its
/// `"key":value` bytes sit in the output.
struct Member<'a> {
    key: Cow<'a, [u8]>,
    start: usize,
    end: usize,
}

struct Parser<'i, 'o> {
    input: &'i [u8],
    pos: usize,
    out: &'o mut Vec<u8>,
    depth: usize,
    /// Members of the objects being written, innermost last; one stack for
    /// the whole document so objects allocate nothing of their own.
    members: Vec<Member<'i>>,
}

impl<'i> Parser<'i, '_> {
    fn error(&self, reason: JsonErrorReason) -> JsonError {
        JsonError {
            offset: self.pos,
            reason,
        }
    }

    fn peek(&self) -> Option<u8> {
        self.input.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect_literal(&mut self, literal: &'static [u8]) -> Result<(), JsonError> {
        let end = self.pos + literal.len();
        match self.input.get(self.pos..end) {
            Some(found) if found == literal => {
                self.pos = end;
                self.out.extend_from_slice(literal);
                Ok(())
            }
            Some(_) => Err(self.error(JsonErrorReason::UnexpectedByte)),
            None => Err(self.error(JsonErrorReason::UnexpectedEnd)),
        }
    }

    fn value(&mut self) -> Result<(), JsonError> {
        match self.peek() {
            None => Err(self.error(JsonErrorReason::UnexpectedEnd)),
            Some(b'{') => self.object(),
            Some(b'[') => self.array(),
            Some(b'"') => self.string().map(|_| ()),
            Some(b't') => self.expect_literal(b"true"),
            Some(b'f') => self.expect_literal(b"false"),
            Some(b'n') => self.expect_literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.error(JsonErrorReason::UnexpectedByte)),
        }
    }

    fn enter(&mut self) -> Result<(), JsonError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.error(JsonErrorReason::TooDeep));
        }
        Ok(())
    }

    fn array(&mut self) -> Result<(), JsonError> {
        self.enter()?;
        self.pos += 1;
        self.out.push(b'[');
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                self.value()?;
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.out.push(b',');
                    }
                    Some(b']') => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => return Err(self.error(JsonErrorReason::UnexpectedByte)),
                    None => return Err(self.error(JsonErrorReason::UnexpectedEnd)),
                }
            }
        }
        self.out.push(b']');
        self.depth -= 1;
        Ok(())
    }

    fn object(&mut self) -> Result<(), JsonError> {
        self.enter()?;
        self.pos += 1;
        let object_start = self.out.len();
        self.out.push(b'{');
        self.skip_ws();
        let base = self.members.len();
        if self.peek() == Some(b'}') {
            self.pos += 1;
        } else {
            loop {
                self.skip_ws();
                if self.peek() != Some(b'"') {
                    return Err(match self.peek() {
                        None => self.error(JsonErrorReason::UnexpectedEnd),
                        Some(_) => self.error(JsonErrorReason::UnexpectedByte),
                    });
                }
                let start = self.out.len();
                let key = self.string()?;
                self.skip_ws();
                match self.peek() {
                    Some(b':') => self.pos += 1,
                    Some(_) => return Err(self.error(JsonErrorReason::UnexpectedByte)),
                    None => return Err(self.error(JsonErrorReason::UnexpectedEnd)),
                }
                self.out.push(b':');
                self.skip_ws();
                self.value()?;
                self.members.push(Member {
                    key,
                    start,
                    end: self.out.len(),
                });
                self.skip_ws();
                match self.peek() {
                    Some(b',') => {
                        self.pos += 1;
                        self.out.push(b',');
                    }
                    Some(b'}') => {
                        self.pos += 1;
                        break;
                    }
                    Some(_) => return Err(self.error(JsonErrorReason::UnexpectedByte)),
                    None => return Err(self.error(JsonErrorReason::UnexpectedEnd)),
                }
            }
        }
        self.out.push(b'}');
        let members = &self.members[base..];
        if needs_reordering(members) {
            reorder(self.out, object_start, members);
        }
        self.members.truncate(base);
        self.depth -= 1;
        Ok(())
    }

    /// Parses a string at `self.pos`, writes its JavaScript form, and returns
    /// its decoded content (UTF-8, lone surrogates as their 3-byte
    /// generalised UTF-8 form) for key comparison.
    fn string(&mut self) -> Result<Cow<'i, [u8]>, JsonError> {
        let input = self.input;
        self.pos += 1;
        let begin = self.pos;
        // Fast path: no escapes, so the raw bytes are already what JavaScript writes.
        // Skip eight plain bytes at a time first.
        while let Some(chunk) = input.get(self.pos..self.pos + 8) {
            let word = u64::from_le_bytes(<[u8; 8]>::try_from(chunk).unwrap_or_default());
            if has_string_special(word) {
                break;
            }
            self.pos += 8;
        }
        loop {
            match input.get(self.pos) {
                None => return Err(self.error(JsonErrorReason::UnexpectedEnd)),
                Some(b'"') => {
                    let content = &input[begin..self.pos];
                    self.out.push(b'"');
                    self.out.extend_from_slice(content);
                    self.out.push(b'"');
                    self.pos += 1;
                    return Ok(Cow::Borrowed(content));
                }
                Some(b'\\') => break,
                Some(&b) if b < 0x20 => return Err(self.error(JsonErrorReason::ControlCharacter)),
                Some(_) => self.pos += 1,
            }
        }
        // Slow path: decode escapes, then re-escape the JavaScript way.
        let mut decoded: Vec<u8> = input[begin..self.pos].to_vec();
        self.out.push(b'"');
        self.out.extend_from_slice(&decoded);
        loop {
            match input.get(self.pos) {
                None => return Err(self.error(JsonErrorReason::UnexpectedEnd)),
                Some(b'"') => {
                    self.pos += 1;
                    self.out.push(b'"');
                    return Ok(Cow::Owned(decoded));
                }
                Some(b'\\') => self.escape(&mut decoded)?,
                Some(&b) if b < 0x20 => return Err(self.error(JsonErrorReason::ControlCharacter)),
                Some(&b) => {
                    decoded.push(b);
                    self.out.push(b);
                    self.pos += 1;
                }
            }
        }
    }

    fn hex4(&self, at: usize) -> Result<u16, JsonError> {
        let digits = self.input.get(at..at + 4).ok_or(JsonError {
            offset: at,
            reason: JsonErrorReason::UnexpectedEnd,
        })?;
        let mut value = 0u16;
        for &d in digits {
            let nibble = match d {
                b'0'..=b'9' => d - b'0',
                b'a'..=b'f' => d - b'a' + 10,
                b'A'..=b'F' => d - b'A' + 10,
                _ => {
                    return Err(JsonError {
                        offset: at,
                        reason: JsonErrorReason::InvalidEscape,
                    });
                }
            };
            value = (value << 4) | u16::from(nibble);
        }
        Ok(value)
    }

    /// Handles one escape sequence starting at the backslash.
    fn escape(&mut self, decoded: &mut Vec<u8>) -> Result<(), JsonError> {
        let kind = self
            .input
            .get(self.pos + 1)
            .copied()
            .ok_or(self.error(JsonErrorReason::UnexpectedEnd))?;
        let simple = match kind {
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'u' => None,
            _ => return Err(self.error(JsonErrorReason::InvalidEscape)),
        };
        if let Some(byte) = simple {
            self.pos += 2;
            decoded.push(byte);
            write_escaped_char(self.out, char::from(byte));
            return Ok(());
        }
        let unit = self.hex4(self.pos + 2)?;
        self.pos += 6;
        if (0xD800..0xDC00).contains(&unit) {
            // A high surrogate pairs with an immediately following escaped low surrogate.
            if self.input.get(self.pos) == Some(&b'\\') && self.input.get(self.pos + 1) == Some(&b'u') {
                let low = self.hex4(self.pos + 2)?;
                if (0xDC00..0xE000).contains(&low) {
                    self.pos += 6;
                    let code = 0x10000 + ((u32::from(unit) - 0xD800) << 10) + (u32::from(low) - 0xDC00);
                    let c = char::from_u32(code).ok_or(self.error(JsonErrorReason::InvalidEscape))?;
                    push_char(decoded, c);
                    push_char(self.out, c);
                    return Ok(());
                }
            }
            push_lone_surrogate(decoded, self.out, unit);
            return Ok(());
        }
        if (0xDC00..0xE000).contains(&unit) {
            push_lone_surrogate(decoded, self.out, unit);
            return Ok(());
        }
        let c = char::from_u32(u32::from(unit)).ok_or(self.error(JsonErrorReason::InvalidEscape))?;
        push_char(decoded, c);
        write_escaped_char(self.out, c);
        Ok(())
    }

    fn number(&mut self) -> Result<(), JsonError> {
        let input = self.input;
        let start = self.pos;
        let mut simple = true;
        if input.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        let int_start = self.pos;
        match input.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                while let Some(b'0'..=b'9') = input.get(self.pos) {
                    self.pos += 1;
                }
            }
            _ => return Err(self.error(JsonErrorReason::InvalidNumber)),
        }
        let int_digits = self.pos - int_start;
        let mut fraction: Option<&[u8]> = None;
        if input.get(self.pos) == Some(&b'.') {
            simple = false;
            self.pos += 1;
            let frac_start = self.pos;
            while let Some(b'0'..=b'9') = input.get(self.pos) {
                self.pos += 1;
            }
            if self.pos == frac_start {
                return Err(self.error(JsonErrorReason::InvalidNumber));
            }
            fraction = Some(&input[frac_start..self.pos]);
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = input.get(self.pos) {
            simple = false;
            exponent = true;
            self.pos += 1;
            if let Some(b'+' | b'-') = input.get(self.pos) {
                self.pos += 1;
            }
            let exp_start = self.pos;
            while let Some(b'0'..=b'9') = input.get(self.pos) {
                self.pos += 1;
            }
            if self.pos == exp_start {
                return Err(self.error(JsonErrorReason::InvalidNumber));
            }
        }
        let text = &input[start..self.pos];
        // Integers of at most 15 digits are exact doubles and print as written,
        // except `-0`, which JavaScript prints as `0`.
        if simple && int_digits <= 15 && text != b"-0" {
            self.out.extend_from_slice(text);
            return Ok(());
        }
        // Decimals JavaScript prints as written: at most 15 significant
        // digits (so no shorter decimal names the same double), no trailing
        // fraction zero, and not small enough for exponent notation.
        if let (false, Some(frac)) = (exponent, fraction) {
            let int_is_zero = input[int_start] == b'0';
            let leading_zeros = if int_is_zero {
                frac.iter().take_while(|&&d| d == b'0').count()
            } else {
                0
            };
            let significant = if int_is_zero {
                frac.len() - leading_zeros
            } else {
                int_digits + frac.len()
            };
            if frac.last() != Some(&b'0') && leading_zeros < 6 && significant <= 15 {
                self.out.extend_from_slice(text);
                return Ok(());
            }
        }
        let parsed: f64 = std::str::from_utf8(text)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(JsonError {
                offset: start,
                reason: JsonErrorReason::InvalidNumber,
            })?;
        if parsed.is_finite() {
            let mut buffer = ryu_js::Buffer::new();
            self.out.extend_from_slice(buffer.format_finite(parsed).as_bytes());
        } else {
            self.out.extend_from_slice(b"null");
        }
        Ok(())
    }
}

/// Whether any of the eight bytes in `word` is `"`, `\\` or below 0x20.
fn has_string_special(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGHS;
    let quote = has_zero(word ^ (ONES * u64::from(b'"')));
    let backslash = has_zero(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGHS;
    (quote | backslash | control) != 0
}

fn push_char(out: &mut Vec<u8>, c: char) {
    let mut buf = [0u8; 4];
    out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
}

/// Records a lone surrogate: in `decoded` as its generalised UTF-8 bytes (so
/// distinct surrogates compare distinct), in `out` as JavaScript's `\udxxx`.
fn push_lone_surrogate(decoded: &mut Vec<u8>, out: &mut Vec<u8>, unit: u16) {
    decoded.extend_from_slice(&[
        0xE0 | (unit >> 12) as u8,
        0x80 | ((unit >> 6) & 0x3F) as u8,
        0x80 | (unit & 0x3F) as u8,
    ]);
    write_u_escape(out, unit);
}

fn write_u_escape(out: &mut Vec<u8>, unit: u16) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(&[
        b'\\',
        b'u',
        HEX[usize::from(unit >> 12)],
        HEX[usize::from((unit >> 8) & 0xF)],
        HEX[usize::from((unit >> 4) & 0xF)],
        HEX[usize::from(unit & 0xF)],
    ]);
}

/// Writes one decoded character as `JSON.stringify` writes it inside a string.
fn write_escaped_char(out: &mut Vec<u8>, c: char) {
    match c {
        '"' => out.extend_from_slice(b"\\\""),
        '\\' => out.extend_from_slice(b"\\\\"),
        '\u{8}' => out.extend_from_slice(b"\\b"),
        '\u{c}' => out.extend_from_slice(b"\\f"),
        '\n' => out.extend_from_slice(b"\\n"),
        '\r' => out.extend_from_slice(b"\\r"),
        '\t' => out.extend_from_slice(b"\\t"),
        c if (c as u32) < 0x20 => write_u_escape(out, c as u16),
        c => push_char(out, c),
    }
}

/// The numeric value of an array-index key (`"0"`..`"4294967294"` in
/// canonical form), or `None` for any other key.
fn array_index(key: &[u8]) -> Option<u32> {
    match key {
        [b'0'] => Some(0),
        [b'1'..=b'9', rest @ ..] if rest.len() <= 9 && rest.iter().all(u8::is_ascii_digit) => {
            let value = key.iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
            u32::try_from(value).ok().filter(|&v| v != u32::MAX)
        }
        _ => None,
    }
}

fn needs_reordering(members: &[Member<'_>]) -> bool {
    if members.len() < 2 {
        return false;
    }
    if members.iter().any(|m| array_index(&m.key).is_some()) {
        return true;
    }
    if members.len() <= 16 {
        members
            .iter()
            .enumerate()
            .any(|(i, m)| members[..i].iter().any(|n| n.key == m.key))
    } else {
        let mut seen = HashSet::with_capacity(members.len());
        !members.iter().all(|m| seen.insert(&m.key[..]))
    }
}

/// Rewrites the object written at `out[object_start..]` in JavaScript
/// property order, keeping each duplicated key's last value at its first
/// position.
fn reorder(out: &mut Vec<u8>, object_start: usize, members: &[Member<'_>]) {
    // For each distinct key: (index sort key, first position, last member).
    let mut slots: Vec<(Option<u32>, usize, usize)> = Vec::with_capacity(members.len());
    let mut by_key: std::collections::HashMap<&[u8], usize> = std::collections::HashMap::with_capacity(members.len());
    for (i, m) in members.iter().enumerate() {
        match by_key.get(&m.key[..]) {
            Some(&slot) => slots[slot].2 = i,
            None => {
                by_key.insert(&m.key[..], slots.len());
                slots.push((array_index(&m.key), slots.len(), i));
            }
        }
    }
    // Array indices ascending, then the rest by first appearance.
    slots.sort_by_key(|&(index, first, _)| match index {
        Some(n) => (0u8, u64::from(n), 0usize),
        None => (1u8, 0, first),
    });
    let mut rebuilt = Vec::with_capacity(out.len() - object_start);
    rebuilt.push(b'{');
    for (n, &(_, _, member)) in slots.iter().enumerate() {
        if n > 0 {
            rebuilt.push(b',');
        }
        let m = &members[member];
        rebuilt.extend_from_slice(&out[m.start..m.end]);
    }
    rebuilt.push(b'}');
    out.truncate(object_start);
    out.extend_from_slice(&rebuilt);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn js(input: &str) -> String {
        String::from_utf8(to_js_json(input.as_bytes()).unwrap()).unwrap()
    }

    #[test]
    fn whitespace_is_removed_and_order_kept() {
        assert_eq!(
            js(" { \"b\" : 1 ,\n\"a\":[ true , null ] } "),
            r#"{"b":1,"a":[true,null]}"#
        );
    }

    #[test]
    fn array_index_keys_come_first_in_numeric_order() {
        assert_eq!(
            js(r#"{"b":1,"10":2,"a":3,"2":4,"01":5,"4294967295":6,"4294967294":7}"#),
            r#"{"2":4,"10":2,"4294967294":7,"b":1,"a":3,"01":5,"4294967295":6}"#
        );
    }

    #[test]
    fn a_duplicated_key_keeps_its_first_place_and_last_value() {
        assert_eq!(js(r#"{"a":1,"b":2,"a":3}"#), r#"{"a":3,"b":2}"#);
        assert_eq!(js(r#"{"a":1,"\u0061":{"x":1}}"#), r#"{"a":{"x":1}}"#);
    }

    #[test]
    fn numbers_print_as_javascript_prints_them() {
        assert_eq!(
            js("[1.0,-0,-0.0,1e21,1e-7,123456789012345678,0.1,1E2,1e400,-1e400,5e-324]"),
            "[1,0,0,1e+21,1e-7,123456789012345680,0.1,100,null,null,5e-324]"
        );
        // The decimal fast path's edges.
        assert_eq!(
            js("[0.000001,0.0000001,1.10,-0.5,123456789012.345,0.1234567890123456,-0.0]"),
            "[0.000001,1e-7,1.1,-0.5,123456789012.345,0.1234567890123456,0]"
        );
    }

    #[test]
    fn the_word_scan_finds_quotes_backslashes_and_control_bytes() {
        let word = |b: &[u8; 8]| has_string_special(u64::from_le_bytes(*b));
        assert!(!word(b"abcdefgh"));
        assert!(!word("é€xyz".as_bytes()[..8].try_into().unwrap()));
        assert!(word(b"abc\"defg"));
        assert!(word(b"abcdefg\\"));
        assert!(word(b"\x1fbcdefgh"[..8].try_into().unwrap()));
        assert!(!word(b"        "));
    }

    #[test]
    fn strings_are_escaped_as_json_stringify_does() {
        assert_eq!(
            js(r#""\/\u003c\u2028\b\u0001\u00e9\ud83d\ude00\ud800\udc00x\udfff""#),
            "\"/<\u{2028}\\b\\u0001é😀𐀀x\\udfff\""
        );
        assert_eq!(js(r#""\ud800""#), r#""\ud800""#);
    }

    #[test]
    fn invalid_input_is_rejected_with_its_offset() {
        let err = to_js_json(b"{\"a\":01}").unwrap_err();
        assert_eq!(err.reason, JsonErrorReason::UnexpectedByte);
        assert_eq!(to_js_json(b"[1,]").unwrap_err().reason, JsonErrorReason::UnexpectedByte);
        assert_eq!(
            to_js_json(b"\"\x01\"").unwrap_err().reason,
            JsonErrorReason::ControlCharacter
        );
        assert_eq!(
            to_js_json(b"[1] x").unwrap_err().reason,
            JsonErrorReason::TrailingCharacters
        );
        assert_eq!(to_js_json(b"\xff").unwrap_err().reason, JsonErrorReason::InvalidUtf8);
        assert_eq!(to_js_json(b"1.").unwrap_err().reason, JsonErrorReason::InvalidNumber);
        assert_eq!(
            to_js_json(b"\"\\x\"").unwrap_err().reason,
            JsonErrorReason::InvalidEscape
        );
        assert_eq!(to_js_json(&[b'['; 600]).unwrap_err().reason, JsonErrorReason::TooDeep);
    }
}
