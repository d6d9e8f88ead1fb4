//! A recorded HTTP/1.x exchange as a test case holds it.

use serde::{Deserialize, Serialize};

/// One header exactly as seen on the wire; order and duplicates are kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

impl Header {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Value of the first header called `name` (case-insensitive).
pub fn header_value<'a>(headers: &'a [Header], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpRequest {
    pub method: String,
    /// Absolute URL (`http://<Host header><target>`).
    pub url: String,
    /// Request-target as sent (path and query).
    pub target: String,
    /// HTTP/1.<proto_minor>.
    pub proto_minor: u32,
    pub headers: Vec<Header>,
    /// Decoded body (de-chunked, decompressed).
    pub body: Vec<u8>,
    pub body_truncated: bool,
    /// Unix time of the first byte, in nanoseconds.
    pub timestamp_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HttpResponse {
    pub status_code: u16,
    pub status_message: String,
    pub proto_minor: u32,
    pub headers: Vec<Header>,
    /// Decoded body (de-chunked, decompressed).
    pub body: Vec<u8>,
    pub body_truncated: bool,
    pub timestamp_ns: u64,
}
