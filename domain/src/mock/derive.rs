//! Match fields derived from raw bytes, for mocks that arrive without them (hand-written Keploy
//! documents) and for any caller that wants the same normalisation at record and replay time.
//!
//! - HTTP: exactly what [`crate::http::request_fields`] gives for the request's method, target
//!   and (de-chunked) body, the derivation the mock server applies to live requests, so an
//!   imported mock and a replayed request normalise alike.
//! - Redis: `command` (upper case) and `arg.<n>` of one command (a RESP array, or an inline
//!   line without quotes), as the Redis parser gives them.
//! - Anything else: one `bytes` field, as the generic TCP parser gives it.
//!
//! Values are the text when UTF-8, else `b64:<base64>`; text that itself starts with `b64:` is
//! encoded too, so a value never reads two ways.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

/// A value as match-field text (module docs).
pub fn bytes_field_value(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.starts_with("b64:") => text.to_owned(),
        _ => format!("b64:{}", BASE64.encode(bytes)),
    }
}

/// One `bytes` field holding the whole request.
pub fn bytes_fields(request: &[u8]) -> Vec<(String, String)> {
    vec![("bytes".to_owned(), bytes_field_value(request))]
}

/// One HTTP/1.x message split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HttpMessage {
    /// The start line's three parts (`GET /x HTTP/1.1`, `HTTP/1.1 200 OK`); the third may be
    /// empty (a reason phrase is optional).
    pub start: [String; 3],
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked when the message was chunked.
    pub body: Vec<u8>,
}

impl HttpMessage {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// `1` of `HTTP/1.1` (in either start-line position); 1 when unreadable.
    pub fn proto_minor(&self) -> u32 {
        self.start
            .iter()
            .find_map(|p| p.strip_prefix("HTTP/1."))
            .and_then(|m| m.parse().ok())
            .unwrap_or(1)
    }
}

/// Parses the first HTTP/1.x message of `raw`; `None` when the head is incomplete or not HTTP.
pub(crate) fn parse_http(raw: &[u8]) -> Option<HttpMessage> {
    let (head_len, sep_len) = find(raw, b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| find(raw, b"\n\n").map(|i| (i, 2)))?;
    let head = std::str::from_utf8(&raw[..head_len]).ok()?;
    let mut lines = head.lines();
    let mut parts = lines.next()?.splitn(3, ' ').map(str::to_owned);
    let start = [
        parts.next()?,
        parts.next()?,
        parts.next().unwrap_or_default(),
    ];
    if !start[0].starts_with("HTTP/") && !start[2].starts_with("HTTP/") {
        return None;
    }
    let mut headers = Vec::new();
    for line in lines {
        let (name, value) = line.split_once(':')?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut msg = HttpMessage {
        start,
        headers,
        body: Vec::new(),
    };
    let rest = &raw[head_len + sep_len..];
    let chunked = msg
        .header("transfer-encoding")
        .is_some_and(|te| te.to_ascii_lowercase().contains("chunked"));
    let length = msg
        .header("content-length")
        .and_then(|v| v.trim().parse::<usize>().ok());
    msg.body = match (chunked, length) {
        // A malformed chunked body is kept as sent rather than dropped.
        (true, _) => dechunk(rest).unwrap_or_else(|| rest.to_vec()),
        (false, Some(n)) => rest[..n.min(rest.len())].to_vec(),
        (false, None) => rest.to_vec(),
    };
    Some(msg)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(rest, b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size_text = size_text.split(';').next()?.trim();
        let size = usize::from_str_radix(size_text, 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body);
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// The match fields of a raw HTTP request (module docs); `bytes` when it is not HTTP.
pub fn http_request_fields(raw: &[u8]) -> Vec<(String, String)> {
    match parse_http(raw) {
        Some(msg) => crate::http::request_fields(&msg.start[0], &msg.start[1], &msg.body),
        None => bytes_fields(raw),
    }
}

/// The path and query of a request target; absolute-form targets lose scheme and authority.
pub(crate) fn split_target(target: &str) -> (&str, Option<&str>) {
    let origin_form = match target.find("://") {
        Some(i) => {
            let after = &target[i + 3..];
            after.find('/').map_or("/", |j| &after[j..])
        }
        None => target,
    };
    match origin_form.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (origin_form, None),
    }
}

/// The match fields of one Redis command: `command` upper-cased and `arg.1`...; `bytes` for
/// anything else (pipelines, partial input, quoted inline commands).
pub fn redis_request_fields(raw: &[u8]) -> Vec<(String, String)> {
    let args = match raw.first() {
        Some(b'*') => parse_resp_command(raw),
        _ => parse_inline_command(raw),
    };
    match args {
        Some(args) if !args.is_empty() => {
            let mut fields = Vec::with_capacity(args.len());
            for (i, arg) in args.iter().enumerate() {
                if i == 0 {
                    let command = bytes_field_value(&arg.to_ascii_uppercase());
                    fields.push(("command".to_owned(), command));
                } else {
                    fields.push((format!("arg.{i}"), bytes_field_value(arg)));
                }
            }
            fields
        }
        _ => bytes_fields(raw),
    }
}

fn parse_resp_command(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let (count, mut rest) = resp_line(raw.strip_prefix(b"*")?)?;
    let mut args = Vec::new();
    for _ in 0..count {
        let (len, after) = resp_line(rest.strip_prefix(b"$")?)?;
        args.push(after.get(..len)?);
        rest = after.get(len..)?.strip_prefix(b"\r\n")?;
    }
    // Exactly one command: a pipeline is not one request.
    rest.is_empty().then_some(args)
}

/// `PING\r\n`, `GET key\r\n`: one line of whitespace-separated words. Quoting rules are not
/// reproduced, so a line with quotes is not read.
fn parse_inline_command(raw: &[u8]) -> Option<Vec<&[u8]>> {
    let line = raw.strip_suffix(b"\n")?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().any(|b| matches!(b, b'\n' | b'"' | b'\'')) {
        return None;
    }
    Some(
        line.split(u8::is_ascii_whitespace)
            .filter(|w| !w.is_empty())
            .collect(),
    )
}

/// A decimal number up to CRLF, and what follows the CRLF.
fn resp_line(raw: &[u8]) -> Option<(usize, &[u8])> {
    let end = find(raw, b"\r\n")?;
    let n = std::str::from_utf8(&raw[..end]).ok()?.parse().ok()?;
    Some((n, &raw[end + 2..]))
}
