//! Content filters: which of an event type's payloads an endpoint wants.
//!
//! A filter is a small expression over the payload's fields, such as
//! `collection = "0xabc" and amount >= 100`. It is parsed here, where an
//! error can name its column, and compiled to a PostgreSQL `jsonpath`
//! predicate stored beside it on the endpoint. The outbox trigger evaluates
//! that predicate, so an event is filtered the same way whether it came
//! through the API, the CLI, the library or a plain `INSERT`; an event that
//! does not match creates no delivery.
//!
//! The language:
//!
//! ```text
//! filter     := or
//! or         := and ("or" and)*
//! and        := unary ("and" unary)*
//! unary      := "not" unary | "(" filter ")" | "exists" path
//!             | path op value | path "in" "[" value ("," value)* "]"
//! op         := "=" | "!=" | "<" | "<=" | ">" | ">="
//! path       := key ("." key)*          key: a name (letters, digits, _ and -) or a "quoted" key
//! value      := "string" | number | true | false | null
//! ```
//!
//! Rules a reader of the payload should know:
//! - `<`, `<=`, `>` and `>=` compare numbers only.
//! - Every comparison is true or false. One on a field that is missing, or
//!   that holds another type (`price >= 10` on `"price": "10"`), is false,
//!   so its `not` is true: `not (a = 1)` matches a payload without `a`. Ask
//!   for presence with `exists a`.
//! - A field that holds an array compares each element: `tags = "x"`
//!   matches when any element is `"x"`.

use std::fmt;

pub mod hint;

/// The longest filter accepted, in bytes.
pub const MAX_LEN: usize = 4096;
/// How deeply parentheses and `not` may nest.
const MAX_DEPTH: usize = 32;

/// A parsed filter: its text as given and the `jsonpath` it compiles to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    source: String,
    jsonpath: String,
    key: Option<FilterKey>,
}

/// An equality every payload the filter matches must satisfy: the filter
/// is `path = value`, or an `and` with such a term. The fan-out looks
/// endpoints up by it, so that an owner's hundred endpoints, each keyed on
/// another value, cost one index probe per event instead of a hundred
/// evaluations; the whole filter is still evaluated on what the probe finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilterKey {
    /// The `jsonpath` of the field with every array unwrapped, as a
    /// comparison unwraps it (`$."data"."shard"[*]`).
    pub path: String,
    /// The value as JSON text, for a `jsonb` equality.
    pub value: String,
    /// Whether the filter is only this equality, so that finding the key
    /// is matching the filter: the fan-out can then match by a value the
    /// producer found at the path ([`hint::find`]) without reading the payload.
    pub whole: bool,
}

impl Filter {
    /// Parses `source`; the error names the column (counted in characters,
    /// from 1) where it went wrong.
    pub fn parse(source: &str) -> Result<Self, FilterError> {
        if source.len() > MAX_LEN {
            return Err(FilterError {
                column: 1,
                message: format!("a filter is at most {MAX_LEN} bytes"),
            });
        }
        let tokens = lex(source)?;
        let mut parser = Parser {
            tokens,
            pos: 0,
            depth: 0,
            end_column: source.chars().count() + 1,
        };
        let expr = parser.or()?;
        if let Some(t) = parser.peek() {
            return Err(parser.error_at(
                t.column,
                format!("unexpected {}; expected `and`, `or` or the end", t.kind),
            ));
        }
        let mut jsonpath = String::new();
        expr.compile(&mut jsonpath, false);
        Ok(Self {
            source: source.trim().to_owned(),
            jsonpath,
            key: expr.key(),
        })
    }

    /// The filter as written (trimmed).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The PostgreSQL `jsonpath` predicate it compiles to (for `@@`).
    pub fn jsonpath(&self) -> &str {
        &self.jsonpath
    }

    /// The equality the fan-out can look this filter up by, if it has one.
    pub fn key(&self) -> Option<&FilterKey> {
        self.key.as_ref()
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

/// Why a filter did not parse, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct FilterError {
    /// The column, in characters from 1, where the error is.
    pub column: usize,
    /// What is wrong there.
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Kind {
    Name(String),
    Str(String),
    Num(String),
    Op(&'static str),
    LParen,
    RParen,
    LBracket,
    RBracket,
    Comma,
    Dot,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => write!(f, "`{n}`"),
            Self::Str(_) => f.write_str("a string"),
            Self::Num(n) => write!(f, "the number {n}"),
            Self::Op(o) => write!(f, "`{o}`"),
            Self::LParen => f.write_str("`(`"),
            Self::RParen => f.write_str("`)`"),
            Self::LBracket => f.write_str("`[`"),
            Self::RBracket => f.write_str("`]`"),
            Self::Comma => f.write_str("`,`"),
            Self::Dot => f.write_str("`.`"),
        }
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    column: usize,
}

fn lex(source: &str) -> Result<Vec<Token>, FilterError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        let single = |kind| Token { kind, column };
        match c {
            c if c.is_whitespace() => {
                i += 1;
                continue;
            }
            '(' => tokens.push(single(Kind::LParen)),
            ')' => tokens.push(single(Kind::RParen)),
            '[' => tokens.push(single(Kind::LBracket)),
            ']' => tokens.push(single(Kind::RBracket)),
            ',' => tokens.push(single(Kind::Comma)),
            '.' => tokens.push(single(Kind::Dot)),
            '=' => tokens.push(single(Kind::Op("="))),
            '!' | '<' | '>' => {
                let two = chars.get(i + 1) == Some(&'=');
                let op = match (c, two) {
                    ('!', true) => "!=",
                    ('<', true) => "<=",
                    ('>', true) => ">=",
                    ('<', false) => "<",
                    ('>', false) => ">",
                    _ => {
                        return Err(FilterError {
                            column,
                            message: "`!` must be followed by `=`; negate with `not`".into(),
                        });
                    }
                };
                tokens.push(single(Kind::Op(op)));
                i += if two { 2 } else { 1 };
                continue;
            }
            '"' => {
                let (text, next) = lex_string(&chars, i)?;
                tokens.push(single(Kind::Str(text)));
                i = next;
                continue;
            }
            c if c.is_ascii_digit() || c == '-' => {
                let start = i;
                i += 1;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || matches!(chars[i], '.' | '+' | '-')) {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if !is_json_number(&text) {
                    return Err(FilterError {
                        column,
                        message: format!("`{text}` is not a number"),
                    });
                }
                tokens.push(single(Kind::Num(text)));
                continue;
            }
            c if c.is_alphabetic() || c == '_' => {
                let start = i;
                while i < chars.len() && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '-')) {
                    i += 1;
                }
                tokens.push(single(Kind::Name(chars[start..i].iter().collect())));
                continue;
            }
            other => {
                return Err(FilterError {
                    column,
                    message: format!("unexpected character `{other}`"),
                });
            }
        }
        i += 1;
    }
    Ok(tokens)
}

/// A double-quoted string starting at `start`, with JSON's escapes; returns
/// its text and the index after the closing quote.
fn lex_string(chars: &[char], start: usize) -> Result<(String, usize), FilterError> {
    let mut text = String::new();
    let mut i = start + 1;
    loop {
        let Some(&c) = chars.get(i) else {
            return Err(FilterError {
                column: start + 1,
                message: "this string is not closed with `\"`".into(),
            });
        };
        match c {
            '"' => return Ok((text, i + 1)),
            '\\' => {
                let bad = |message: &str| FilterError {
                    column: i + 1,
                    message: message.to_owned(),
                };
                let e = chars
                    .get(i + 1)
                    .ok_or_else(|| bad("an escape needs a character after `\\`"))?;
                match e {
                    '"' => text.push('"'),
                    '\\' => text.push('\\'),
                    '/' => text.push('/'),
                    'n' => text.push('\n'),
                    't' => text.push('\t'),
                    'r' => text.push('\r'),
                    'b' => text.push('\u{8}'),
                    'f' => text.push('\u{c}'),
                    'u' => {
                        let hex: String = chars.get(i + 2..i + 6).map(|h| h.iter().collect()).unwrap_or_default();
                        let code = u32::from_str_radix(&hex, 16)
                            .ok()
                            .filter(|_| hex.len() == 4)
                            .ok_or_else(|| bad("`\\u` takes four hexadecimal digits"))?;
                        let ch = char::from_u32(code).ok_or_else(|| bad("`\\u` names no character here"))?;
                        text.push(ch);
                        i += 4;
                    }
                    _ => return Err(bad("unknown escape; use \\\" \\\\ \\/ \\n \\t \\r \\b \\f or \\uXXXX")),
                }
                i += 2;
            }
            c => {
                text.push(c);
                i += 1;
            }
        }
    }
}

/// Whether `text` is a JSON number (what the payload's numbers look like).
fn is_json_number(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if b.get(i) == Some(&b'-') {
        i += 1;
    }
    match b.get(i) {
        Some(b'0') => i += 1,
        Some(b'1'..=b'9') => {
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
        }
        _ => return false,
    }
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == digits {
            return false;
        }
    }
    if matches!(b.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(b.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let digits = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == digits {
            return false;
        }
    }
    i == b.len()
}

#[derive(Debug, Clone)]
enum Value {
    Str(String),
    Num(String),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone)]
enum Expr {
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Exists(Vec<String>),
    Compare(Vec<String>, &'static str, Value),
    In(Vec<String>, Vec<Value>),
}

/// Appends `s` as a `jsonpath` string literal.
fn quote(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

fn path(keys: &[String], out: &mut String) {
    out.push('$');
    for k in keys {
        out.push('.');
        quote(k, out);
    }
}

/// A comparison: as it is, or under a `not` made false where jsonpath
/// would say unknown (a comparison between different types), so that the
/// `not` of it is true.
fn comparison(predicate: &str, negated: bool, out: &mut String) {
    if !negated {
        out.push('(');
        out.push_str(predicate);
        out.push(')');
        return;
    }
    out.push_str("(!((");
    out.push_str(predicate);
    out.push_str(") is unknown) && (");
    out.push_str(predicate);
    out.push_str("))");
}

impl Value {
    /// The value as JSON text.
    fn json(&self) -> Option<String> {
        match self {
            Self::Str(s) => serde_json::to_string(s).ok(),
            // The lexer takes JSON's number grammar; checked all the same.
            Self::Num(n) => serde_json::from_str::<serde_json::Value>(n).ok().map(|_| n.clone()),
            Self::Bool(b) => Some(b.to_string()),
            Self::Null => Some("null".to_owned()),
        }
    }

    fn compile(&self, out: &mut String) {
        match self {
            Self::Str(s) => quote(s, out),
            Self::Num(n) => out.push_str(n),
            Self::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Self::Null => out.push_str("null"),
        }
    }
}

impl Expr {
    /// The equality term every match satisfies: the expression itself, or
    /// the first such term of a top-level `and`.
    fn key(&self) -> Option<FilterKey> {
        fn term(e: &Expr) -> Option<(&Vec<String>, &Value)> {
            match e {
                Expr::Compare(keys, "=", v) => Some((keys, v)),
                Expr::In(keys, values) if values.len() == 1 => Some((keys, &values[0])),
                _ => None,
            }
        }
        let (keys, value, whole) = match self {
            Self::And(items) => {
                let (keys, value) = items.iter().find_map(term)?;
                (keys, value, false)
            }
            e => {
                let (keys, value) = term(e)?;
                (keys, value, true)
            }
        };
        let mut p = String::new();
        path(keys, &mut p);
        p.push_str("[*]");
        Some(FilterKey {
            path: p,
            value: value.json()?,
            whole,
        })
    }

    /// Appends the jsonpath. Outside any `not`, a comparison jsonpath calls
    /// unknown matches nothing, as a false one would, so it is written
    /// plainly; under a `not` it is made two-valued (and costs twice).
    fn compile(&self, out: &mut String, negated: bool) {
        let joined = |items: &[Expr], sep: &str, out: &mut String| {
            out.push('(');
            for (i, e) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(sep);
                }
                e.compile(out, negated);
            }
            out.push(')');
        };
        match self {
            Self::Or(items) => joined(items, " || ", out),
            Self::And(items) => joined(items, " && ", out),
            Self::Not(e) => {
                out.push_str("!(");
                e.compile(out, true);
                out.push(')');
            }
            Self::Exists(keys) => {
                out.push_str("exists(");
                path(keys, out);
                out.push(')');
            }
            Self::Compare(keys, op, value) => {
                let mut p = String::new();
                path(keys, &mut p);
                p.push(' ');
                p.push_str(if *op == "=" { "==" } else { op });
                p.push(' ');
                value.compile(&mut p);
                comparison(&p, negated, out);
            }
            Self::In(keys, values) => {
                let mut p = String::new();
                for (i, v) in values.iter().enumerate() {
                    if i > 0 {
                        p.push_str(" || ");
                    }
                    path(keys, &mut p);
                    p.push_str(" == ");
                    v.compile(&mut p);
                }
                comparison(&p, negated, out);
            }
        }
    }
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
    depth: usize,
    end_column: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn error_at(&self, column: usize, message: String) -> FilterError {
        FilterError { column, message }
    }

    /// An error at the next token (or the end), saying what was expected.
    fn expected(&self, what: &str) -> FilterError {
        match self.peek() {
            Some(t) => self.error_at(t.column, format!("expected {what}, found {}", t.kind)),
            None => self.error_at(self.end_column, format!("expected {what}, found the end")),
        }
    }

    fn keyword(&self, word: &str) -> bool {
        matches!(self.peek(), Some(Token { kind: Kind::Name(n), .. }) if n.eq_ignore_ascii_case(word))
    }

    fn or(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.and()?];
        while self.keyword("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, FilterError> {
        let mut items = vec![self.unary()?];
        while self.keyword("and") {
            self.pos += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr, FilterError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.expected(&format!("at most {MAX_DEPTH} levels of `not` and parentheses")));
        }
        let result = self.unary_inner();
        self.depth -= 1;
        result
    }

    fn unary_inner(&mut self) -> Result<Expr, FilterError> {
        if self.keyword("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.unary()?)));
        }
        if self.keyword("exists") {
            self.pos += 1;
            return Ok(Expr::Exists(self.path()?));
        }
        if matches!(self.peek(), Some(Token { kind: Kind::LParen, .. })) {
            self.pos += 1;
            let inner = self.or()?;
            match self.peek() {
                Some(Token { kind: Kind::RParen, .. }) => {
                    self.pos += 1;
                    return Ok(inner);
                }
                _ => return Err(self.expected("`)`")),
            }
        }
        let keys = self.path()?;
        if self.keyword("in") {
            self.pos += 1;
            if !matches!(self.next().map(|t| t.kind), Some(Kind::LBracket)) {
                self.pos -= 1;
                return Err(self.expected("`[` starting a list of values"));
            }
            let mut values = vec![self.value()?];
            loop {
                match self.next().map(|t| t.kind) {
                    Some(Kind::Comma) => values.push(self.value()?),
                    Some(Kind::RBracket) => break,
                    _ => {
                        self.pos -= 1;
                        return Err(self.expected("`,` or `]`"));
                    }
                }
            }
            return Ok(Expr::In(keys, values));
        }
        let op = match self.peek() {
            Some(Token { kind: Kind::Op(op), .. }) => *op,
            _ => return Err(self.expected("`=`, `!=`, `<`, `<=`, `>`, `>=` or `in`")),
        };
        self.pos += 1;
        let at = self.peek().map_or(self.end_column, |t| t.column);
        let value = self.value()?;
        if op.starts_with(['<', '>']) && !matches!(value, Value::Num(_)) {
            return Err(self.error_at(at, format!("`{op}` compares numbers only")));
        }
        Ok(Expr::Compare(keys, op, value))
    }

    fn path(&mut self) -> Result<Vec<String>, FilterError> {
        let mut keys = vec![self.key()?];
        while matches!(self.peek(), Some(Token { kind: Kind::Dot, .. })) {
            self.pos += 1;
            keys.push(self.key()?);
        }
        Ok(keys)
    }

    fn key(&mut self) -> Result<String, FilterError> {
        match self.peek().map(|t| &t.kind) {
            Some(Kind::Name(n)) if !["and", "or", "not", "in", "exists"].contains(&n.to_ascii_lowercase().as_str()) => {
                let n = n.clone();
                self.pos += 1;
                Ok(n)
            }
            Some(Kind::Str(s)) => {
                let s = s.clone();
                self.pos += 1;
                Ok(s)
            }
            _ => Err(self.expected("a field name")),
        }
    }

    fn value(&mut self) -> Result<Value, FilterError> {
        let v = match self.peek().map(|t| &t.kind) {
            Some(Kind::Str(s)) => Value::Str(s.clone()),
            Some(Kind::Num(n)) => Value::Num(n.clone()),
            Some(Kind::Name(n)) if n == "true" => Value::Bool(true),
            Some(Kind::Name(n)) if n == "false" => Value::Bool(false),
            Some(Kind::Name(n)) if n == "null" => Value::Null,
            _ => return Err(self.expected("a value (a \"string\", a number, true, false or null)")),
        };
        self.pos += 1;
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compiled(s: &str) -> String {
        match Filter::parse(s) {
            Ok(f) => f.jsonpath().to_owned(),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    fn error(s: &str) -> FilterError {
        match Filter::parse(s) {
            Ok(f) => panic!("{s} parsed as {}", f.jsonpath()),
            Err(e) => e,
        }
    }

    #[test]
    fn each_form_compiles_to_its_jsonpath() {
        let tv = |p: &str| format!("(!(({p}) is unknown) && ({p}))");
        let plain = |p: &str| format!("({p})");
        assert_eq!(compiled(r#"collection = "0xab""#), plain(r#"$."collection" == "0xab""#));
        assert_eq!(
            compiled("data.amount >= -1.5e3"),
            plain(r#"$."data"."amount" >= -1.5e3"#)
        );
        assert_eq!(
            compiled(r#"status in ["a", "b"]"#),
            plain(r#"$."status" == "a" || $."status" == "b""#)
        );
        assert_eq!(compiled("exists a.b"), r#"exists($."a"."b")"#);
        assert_eq!(
            compiled(r#"not (a = true) or b != null and "odd key" = 1"#),
            format!(
                "(!({}) || ({} && {}))",
                tv(r#"$."a" == true"#),
                plain(r#"$."b" != null"#),
                plain(r#"$."odd key" == 1"#)
            )
        );
        assert_eq!(
            compiled("a = 1 AND not (b = 2 or c in [3])"),
            format!(
                "({} && !(({} || {})))",
                plain(r#"$."a" == 1"#),
                tv(r#"$."b" == 2"#),
                tv(r#"$."c" == 3"#)
            )
        );
    }

    fn key(s: &str) -> Option<(String, String)> {
        match Filter::parse(s) {
            Ok(f) => f.key().map(|k| (k.path.clone(), k.value.clone())),
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn an_equality_every_match_needs_is_its_key() {
        let k = |p: &str, v: &str| Some((p.to_owned(), v.to_owned()));
        assert_eq!(
            key(r#"collection = "0x\"ab""#),
            k(r#"$."collection"[*]"#, r#""0x\"ab""#)
        );
        assert_eq!(key("data.shard = 7"), k(r#"$."data"."shard"[*]"#, "7"));
        assert_eq!(key("a > 1 and b.c = true and d = 2"), k(r#"$."b"."c"[*]"#, "true"));
        assert_eq!(key("a in [null]"), k(r#"$."a"[*]"#, "null"));
        // No term every match needs: no key.
        assert_eq!(key("a = 1 or b = 2"), None);
        assert_eq!(key("not (a = 1)"), None);
        assert_eq!(key("a != 1"), None);
        assert_eq!(key("a in [1, 2]"), None);
        assert_eq!(key("exists a"), None);
        assert_eq!(key("(a = 1 or b = 1) and c >= 2"), None);
    }

    #[test]
    fn strings_are_escaped_for_jsonpath() {
        assert!(compiled(r#"a = "q\"b\\s\n""#).contains(r#"$."a" == "q\"b\\s\u000a""#));
    }

    #[test]
    fn errors_name_their_column() {
        let e = error("a = ");
        assert_eq!(e.column, 5, "{e}");
        assert!(e.message.contains("expected a value"), "{e}");
        assert_eq!(error("a > \"x\"").column, 5);
        assert_eq!(error("a = 1 b = 2").column, 7);
        assert_eq!(error("(a = 1").column, 7);
        assert_eq!(error("a ! 1").column, 3);
        assert_eq!(error("a = 01").column, 5);
        assert_eq!(error("a = \"open").column, 5);
        assert_eq!(error("a in [1,").column, 9);
        assert_eq!(error("and = 1").column, 1);
        assert_eq!(error("é = 1 and € = 2").column, 11);
        assert!(error(&"(".repeat(40)).message.contains("levels"));
        assert!(Filter::parse(&"a".repeat(MAX_LEN + 1)).is_err());
        assert!(Filter::parse("").is_err());
    }
}
