//! The Keploy `Http` mock spec: `req`/`resp` derived from the raw bytes when writing, and raw
//! bytes rebuilt from `req`/`resp` when a document (hand-written, or Keploy's) has none.

use std::collections::BTreeMap;

use serde_yaml::Value;

use super::derive::{HttpMessage, bytes_fields, parse_http, split_target};
use super::fields::fields_summary;
use super::model::{Mock, MockError};
use super::yaml::{Ctx, bytes_value, map, scalar};
use crate::keploy::format_rfc3339_utc;

/// Framing follows the body we write, and Keploy stores bodies decoded, so these recorded
/// headers would lie about the rebuilt message.
const REBUILT_HEADERS: [&str; 3] = ["content-length", "transfer-encoding", "content-encoding"];

/// Keploy's header map: one entry per name, repeated values joined with ",", names sorted.
fn header_map(headers: &[(String, String)]) -> Value {
    let mut joined: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in headers {
        joined
            .entry(name.as_str())
            .and_modify(|v| {
                v.push(',');
                v.push_str(value);
            })
            .or_insert_with(|| value.clone());
    }
    map(joined.iter().map(|(k, v)| (*k, Value::from(v.as_str()))))
}

/// `http://<Host or destination><target>`; absolute-form targets are kept.
fn absolute_url(msg: &HttpMessage, destination: &str) -> String {
    let target = &msg.start[1];
    if target.contains("://") {
        return target.clone();
    }
    let host = msg.header("host").unwrap_or(destination);
    format!("http://{host}{target}")
}

/// `req`, `resp` and `objects` of the spec, derived from the raw bytes (informational: the
/// raw bytes travel in `x-kreplay.raw`).
pub(super) fn encode(m: &Mock) -> Vec<(&'static str, Value)> {
    let req = match parse_http(&m.request) {
        Some(msg) => map([
            ("method", Value::from(msg.start[0].as_str())),
            ("proto_major", Value::from(1)),
            ("proto_minor", Value::from(msg.proto_minor())),
            ("url", Value::from(absolute_url(&msg, &m.destination))),
            ("header", header_map(&msg.headers)),
            ("body", bytes_value(&msg.body)),
            ("timestamp", Value::from(format_rfc3339_utc(m.req_ts_ns))),
        ]),
        None => map([
            ("method", Value::from("")),
            ("url", Value::from("")),
            ("header", map([])),
            ("body", bytes_value(&m.request)),
            ("timestamp", Value::from(format_rfc3339_utc(m.req_ts_ns))),
        ]),
    };
    let resp = match parse_http(&m.response) {
        Some(msg) => map([
            (
                "status_code",
                Value::from(msg.start[1].parse::<u16>().unwrap_or(0)),
            ),
            ("header", header_map(&msg.headers)),
            ("body", bytes_value(&msg.body)),
            ("status_message", Value::from(msg.start[2].as_str())),
            ("proto_major", Value::from(1)),
            ("proto_minor", Value::from(msg.proto_minor())),
            ("timestamp", Value::from(format_rfc3339_utc(m.resp_ts_ns))),
        ]),
        None => map([
            ("status_code", Value::from(0)),
            ("header", map([])),
            ("body", bytes_value(&m.response)),
            ("timestamp", Value::from(format_rfc3339_utc(m.resp_ts_ns))),
        ]),
    };
    vec![
        ("req", req),
        ("resp", resp),
        ("objects", Value::Sequence(Vec::new())),
    ]
}

/// `METHOD target` of a raw request, for mocks read without a summary.
pub(super) fn summary(request: &[u8]) -> String {
    match parse_http(request) {
        Some(msg) => format!("{} {}", msg.start[0], msg.start[1]),
        None => fields_summary(&bytes_fields(request)),
    }
}

/// The raw request and response: `x-kreplay.raw` when present, else rebuilt from `req`/`resp`.
pub(super) fn decode_bytes(
    ctx: &Ctx<'_>,
    spec: &Value,
    ext: Option<&Value>,
) -> Result<(Vec<u8>, Vec<u8>), MockError> {
    if let Some(raw) = ext.and_then(|e| e.get("raw")).filter(|r| !r.is_null()) {
        let part = |key: &str| -> Result<Vec<u8>, MockError> {
            let path = format!("spec.x-kreplay.raw.{key}");
            match ctx.opt_text(raw, key, &path)? {
                Some(text) => ctx.base64(&text, &path),
                None => Err(ctx.missing(&path)),
            }
        };
        return Ok((part("request")?, part("response")?));
    }
    let req = spec.get("req").filter(|v| v.is_mapping());
    let req = req.ok_or_else(|| ctx.missing("spec.req"))?;
    let request = rebuild_request(ctx, req)?;
    let response = match spec.get("resp").filter(|v| !v.is_null()) {
        Some(resp) => rebuild_response(ctx, resp)?,
        None => Vec::new(),
    };
    Ok((request, response))
}

fn proto_minor(ctx: &Ctx<'_>, v: &Value, path: &str) -> Result<u32, MockError> {
    match ctx.opt_text(v, "proto_minor", path)? {
        None => Ok(1),
        Some(text) => text
            .trim()
            .parse()
            .map_err(|_| ctx.invalid(path, "must be 0 or 1")),
    }
}

/// The header map minus the rebuilt headers, in document order.
fn kept_headers(ctx: &Ctx<'_>, v: &Value, path: &str) -> Result<Vec<(String, String)>, MockError> {
    let Some(headers) = v.get("header").filter(|h| !h.is_null()) else {
        return Ok(Vec::new());
    };
    let headers = headers
        .as_mapping()
        .ok_or_else(|| ctx.invalid(path, "must be a mapping"))?;
    let mut out = Vec::new();
    for (name, value) in headers {
        let (Some(name), Some(value)) = (name.as_str(), scalar(value)) else {
            return Err(ctx.invalid(path, "must map header names to text"));
        };
        if !REBUILT_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) {
            out.push((name.to_owned(), value));
        }
    }
    Ok(out)
}

fn write_message(
    start: String,
    headers: &[(String, String)],
    content_length: Option<usize>,
    body: &[u8],
) -> Vec<u8> {
    let mut out = start.into_bytes();
    out.extend_from_slice(b"\r\n");
    for (name, value) in headers {
        out.extend_from_slice(format!("{name}: {value}\r\n").as_bytes());
    }
    if let Some(n) = content_length {
        out.extend_from_slice(format!("Content-Length: {n}\r\n").as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

fn rebuild_request(ctx: &Ctx<'_>, req: &Value) -> Result<Vec<u8>, MockError> {
    let method = ctx
        .opt_text(req, "method", "spec.req.method")?
        .filter(|m| !m.trim().is_empty())
        .ok_or_else(|| ctx.missing("spec.req.method"))?;
    let url = ctx
        .opt_text(req, "url", "spec.req.url")?
        .ok_or_else(|| ctx.missing("spec.req.url"))?;
    let authority = url.split_once("://").map(|(_, rest)| {
        let end = rest.find(['/', '?']).unwrap_or(rest.len());
        &rest[..end]
    });
    let (path, query) = split_target(&url);
    let path = if path.is_empty() { "/" } else { path };
    let target = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let mut headers = kept_headers(ctx, req, "spec.req.header")?;
    if let Some(host) = authority.filter(|a| !a.is_empty())
        && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host"))
    {
        headers.insert(0, ("Host".to_owned(), host.to_owned()));
    }
    let body = ctx.bytes(req.get("body").unwrap_or(&Value::Null), "spec.req.body")?;
    let minor = proto_minor(ctx, req, "spec.req.proto_minor")?;
    let needs_length = !body.is_empty() || matches!(method.as_str(), "POST" | "PUT" | "PATCH");
    let start = format!("{method} {target} HTTP/1.{minor}");
    Ok(write_message(
        start,
        &headers,
        needs_length.then_some(body.len()),
        &body,
    ))
}

fn rebuild_response(ctx: &Ctx<'_>, resp: &Value) -> Result<Vec<u8>, MockError> {
    let path = "spec.resp.status_code";
    let status: u16 = ctx
        .opt_text(resp, "status_code", path)?
        .ok_or_else(|| ctx.missing(path))?
        .trim()
        .parse()
        .map_err(|_| ctx.invalid(path, "must be an HTTP status code"))?;
    let message = ctx
        .opt_text(resp, "status_message", "spec.resp.status_message")?
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| reason(status).to_owned());
    let headers = kept_headers(ctx, resp, "spec.resp.header")?;
    let body = ctx.bytes(resp.get("body").unwrap_or(&Value::Null), "spec.resp.body")?;
    let minor = proto_minor(ctx, resp, "spec.resp.proto_minor")?;
    // Keploy writes proto 0.0 on responses; an HTTP/1.0 answer would end keep-alive.
    let minor = if minor == 0 { 1 } else { minor };
    let bodiless = (100..200).contains(&status) || status == 204 || status == 304;
    let start = format!("HTTP/1.{minor} {status} {message}");
    Ok(write_message(
        start,
        &headers,
        (!bodiless).then_some(body.len()),
        &body,
    ))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "",
    }
}
