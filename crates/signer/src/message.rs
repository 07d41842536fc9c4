//! What goes into signing and what comes out.

use bytes::Bytes;
use http::HeaderName;

use crate::error::SignError;

/// The event to sign: a stable id (the same on every retry), the send time,
/// and the provider's JSON payload.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    /// The event id, sent as `webhook-id` by schemes that carry one; receivers
    /// deduplicate on it.
    pub id: &'a str,
    /// Unix seconds at which this attempt is signed.
    pub timestamp: i64,
    /// The JSON payload exactly as the provider wrote it.
    pub payload: &'a Bytes,
}

impl<'a> Message<'a> {
    /// Bundles the parts of a message.
    pub fn new(id: &'a str, timestamp: i64, payload: &'a Bytes) -> Self {
        Self { id, timestamp, payload }
    }

    /// Rejects ids that would make `{id}.{timestamp}.{body}` ambiguous or
    /// break a header value.
    pub(crate) fn check_id(&self) -> Result<(), SignError> {
        let ok = !self.id.is_empty() && self.id.bytes().all(|b| b.is_ascii_graphic() && b != b'.' && b != b',');
        if ok { Ok(()) } else { Err(SignError::InvalidId) }
    }
}

/// A signed request: the exact body to send and the headers that sign it.
///
/// The body is the only one the signature covers; send it unchanged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    /// The body bytes to send.
    pub body: Bytes,
    /// Header names (HTTP header names are case-insensitive; these are
    /// lowercase) and values.
    pub headers: Vec<(HeaderName, String)>,
}

impl SignedRequest {
    /// The value of header `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Where a verifier reads request headers from.
pub trait HeaderSource {
    /// The first value of header `name`, compared case-insensitively.
    fn header(&self, name: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for [(K, V)] {
    fn header(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.as_ref().eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

impl<K: AsRef<str>, V: AsRef<str>> HeaderSource for Vec<(K, V)> {
    fn header(&self, name: &str) -> Option<&str> {
        self.as_slice().header(name)
    }
}

impl HeaderSource for http::HeaderMap {
    fn header(&self, name: &str) -> Option<&str> {
        self.get(name).and_then(|v| v.to_str().ok())
    }
}

impl HeaderSource for SignedRequest {
    fn header(&self, name: &str) -> Option<&str> {
        SignedRequest::header(self, name)
    }
}
