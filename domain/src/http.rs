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

/// A request normalised for mock matching: method, path, each query parameter (sorted, so
/// parameter order does not matter) and the body (JSON re-serialised with sorted keys, other
/// UTF-8 as is, binary as `b64:`). Headers are left out: they carry dates, ids and tracing.
pub fn request_fields(method: &str, target: &str, body: &[u8]) -> Vec<(String, String)> {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut fields = vec![
        ("method".to_owned(), method.to_owned()),
        ("path".to_owned(), path.to_owned()),
    ];
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (name, value) = p.split_once('=').unwrap_or((p, ""));
            (format!("query.{name}"), value.to_owned())
        })
        .collect();
    params.sort();
    fields.extend(params);
    if !body.is_empty() {
        let text = match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(json) => json.to_string(),
            Err(_) => match std::str::from_utf8(body) {
                Ok(text) => text.to_owned(),
                Err(_) => {
                    use base64::Engine;
                    format!(
                        "b64:{}",
                        base64::engine::general_purpose::STANDARD.encode(body)
                    )
                }
            },
        };
        fields.push(("body".to_owned(), text));
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_fields_ignore_query_order_and_json_layout() {
        let a = request_fields("GET", "/v1/rate?to=EUR&from=USD", b"");
        let b = request_fields("GET", "/v1/rate?from=USD&to=EUR", b"");
        assert_eq!(a, b);
        assert_eq!(
            a,
            [
                ("method".to_owned(), "GET".to_owned()),
                ("path".to_owned(), "/v1/rate".to_owned()),
                ("query.from".to_owned(), "USD".to_owned()),
                ("query.to".to_owned(), "EUR".to_owned()),
            ]
        );
        let json = request_fields("POST", "/x", br#"{ "b": 1, "a": [1, 2] }"#);
        assert_eq!(
            json[2],
            ("body".to_owned(), r#"{"a":[1,2],"b":1}"#.to_owned())
        );
        assert_eq!(request_fields("POST", "/x", &[0xff, 0x00])[2].1, "b64:/wA=");
    }
}
