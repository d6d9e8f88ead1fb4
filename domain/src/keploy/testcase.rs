//! HTTP test cases: one `kind: Http` document per file (`keploy/<set>/tests/<name>.yaml`).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_yaml::Value;

use super::yamlio::{Ctx, binary_value, dump, is_binary_tag, load_one, mapping, scalar_text};
use super::{KeployError, VERSION, time};
use crate::http::{Header, HttpRequest, HttpResponse};

/// The `kind` of an HTTP test case document.
pub const TEST_KIND: &str = "Http";

/// One HTTP test case as a Keploy document holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCaseDoc {
    /// `test-1`, `get-users-2`, ...; also the file name (without `.yaml`).
    pub name: String,
    pub req: HttpRequest,
    pub resp: HttpResponse,
    /// `spec.assertions.noise`: path (`header.Date`, `body.ts`) -> regexes (empty: any value).
    pub noise: BTreeMap<String, Vec<String>>,
    /// `spec.created`, unix seconds.
    pub created: i64,
    /// `spec.metadata`.
    pub metadata: BTreeMap<String, String>,
    /// The top-level `curl` command reproducing the request.
    pub curl: Option<String>,
}

fn doc_label(name: &str) -> String {
    format!("test case `{name}`")
}

/// Headers as Keploy stores them: one entry per name, repeated values joined with ",",
/// names sorted (the map is written in key order, so output is deterministic).
fn encode_headers(headers: &[Header]) -> Value {
    let mut joined: BTreeMap<&str, String> = BTreeMap::new();
    for h in headers {
        joined
            .entry(h.name.as_str())
            .and_modify(|v| {
                v.push(',');
                v.push_str(&h.value);
            })
            .or_insert_with(|| h.value.clone());
    }
    mapping(joined.into_iter().map(|(k, v)| (k, Value::String(v))))
}

/// UTF-8 bodies are YAML strings; anything else is `!!binary` so the bytes survive.
fn encode_body(body: &[u8]) -> Value {
    match std::str::from_utf8(body) {
        Ok(text) => Value::String(text.to_owned()),
        Err(_) => binary_value(BASE64.encode(body)),
    }
}

/// Encodes one test case as a single `kind: Http` YAML document, fields in Keploy's order.
pub fn encode_test_case(tc: &TestCaseDoc) -> Result<String, KeployError> {
    let doc = doc_label(&tc.name);
    if tc.name.trim().is_empty() {
        return Err(KeployError::Encode {
            doc,
            reason: "the test case has no name".to_owned(),
        });
    }
    let (req, resp) = (&tc.req, &tc.resp);
    let mut req_fields = vec![
        ("method", Value::from(req.method.as_str())),
        ("proto_major", Value::from(1)),
        ("proto_minor", Value::from(req.proto_minor)),
        ("url", Value::from(req.url.as_str())),
        ("header", encode_headers(&req.headers)),
        ("body", encode_body(&req.body)),
    ];
    // Not a Keploy field: written only when set, so Keploy's own documents read as false.
    if req.body_truncated {
        req_fields.push(("body_truncated", Value::Bool(true)));
    }
    req_fields.push((
        "timestamp",
        Value::from(time::format_rfc3339_utc(req.timestamp_ns)),
    ));

    let mut resp_fields = vec![
        ("status_code", Value::from(resp.status_code)),
        ("header", encode_headers(&resp.headers)),
        ("body", encode_body(&resp.body)),
    ];
    if resp.body_truncated {
        resp_fields.push(("body_truncated", Value::Bool(true)));
    }
    resp_fields.extend([
        ("status_message", Value::from(resp.status_message.as_str())),
        ("proto_major", Value::from(1)),
        ("proto_minor", Value::from(resp.proto_minor)),
        (
            "timestamp",
            Value::from(time::format_rfc3339_utc(resp.timestamp_ns)),
        ),
    ]);

    let metadata = mapping(
        tc.metadata
            .iter()
            .map(|(k, v)| (k.as_str(), Value::from(v.as_str()))),
    );
    let mut spec = vec![
        ("metadata", metadata),
        ("req", mapping(req_fields)),
        ("resp", mapping(resp_fields)),
        ("objects", Value::Sequence(Vec::new())),
    ];
    if !tc.noise.is_empty() {
        let noise = mapping(tc.noise.iter().map(|(path, regexes)| {
            (
                path.as_str(),
                Value::Sequence(regexes.iter().map(|r| Value::from(r.as_str())).collect()),
            )
        }));
        spec.push(("assertions", mapping([("noise", noise)])));
    }
    spec.push(("created", Value::from(tc.created)));

    let mut top = vec![
        ("version", Value::from(VERSION)),
        ("kind", Value::from(TEST_KIND)),
        ("name", Value::from(tc.name.as_str())),
        ("spec", mapping(spec)),
    ];
    if let Some(curl) = &tc.curl {
        top.push(("curl", Value::from(curl.as_str())));
    }
    dump(&mapping(top), &doc)
}

/// The request-target (path and query) of an absolute URL; `/` when it has no path.
pub fn target_from_url(url: &str) -> String {
    let url = url.split('#').next().unwrap_or_default();
    let after_authority = match url.find("://") {
        Some(i) => url[i + 3..].find(['/', '?']).map(|j| &url[i + 3 + j..]),
        None if url.starts_with('/') => Some(url),
        None => url.find(['/', '?']).map(|j| &url[j..]),
    };
    match after_authority {
        Some(rest) if rest.starts_with('?') => format!("/{rest}"),
        Some(rest) => rest.to_owned(),
        None => "/".to_owned(),
    }
}

fn decode_headers(
    ctx: &Ctx,
    value: Option<&Value>,
    path: &str,
) -> Result<Vec<Header>, KeployError> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    let Value::Mapping(map) = value else {
        return Err(ctx.invalid(path, "must be a mapping of header name to value"));
    };
    let mut headers = Vec::with_capacity(map.len());
    for (name, v) in map {
        let name = scalar_text(name)
            .ok_or_else(|| ctx.invalid(path, "has a header name that is not a string"))?;
        let value = match v {
            // Older writers kept every value of a name as a list.
            Value::Sequence(items) => items
                .iter()
                .map(scalar_text)
                .collect::<Option<Vec<_>>>()
                .map(|v| v.join(",")),
            other => scalar_text(other),
        }
        .ok_or_else(|| ctx.invalid(&format!("{path}.{name}"), "must be a string"))?;
        headers.push(Header { name, value });
    }
    Ok(headers)
}

fn decode_body(ctx: &Ctx, value: Option<&Value>, path: &str) -> Result<Vec<u8>, KeployError> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Tagged(t)) if is_binary_tag(&t.tag) => {
            let Value::String(b64) = &t.value else {
                return Err(ctx.invalid(path, "is tagged !!binary but is not base64 text"));
            };
            // Long base64 may be broken into lines.
            let compact: String = b64.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            BASE64
                .decode(compact)
                .map_err(|e| ctx.invalid(path, format!("is not valid base64: {e}")))
        }
        Some(Value::Tagged(t)) => Err(ctx.invalid(path, format!("has an unknown tag {}", t.tag))),
        // A hand-written JSON body that YAML parsed as a structure: back to JSON text.
        Some(v @ (Value::Mapping(_) | Value::Sequence(_))) => serde_json::to_string(v)
            .map(String::into_bytes)
            .map_err(|e| ctx.invalid(path, format!("is a structure that is not JSON: {e}"))),
        Some(v) => Ok(scalar_text(v).unwrap_or_default().into_bytes()),
    }
}

fn decode_timestamp(ctx: &Ctx, map: &Value, path: &str) -> Result<u64, KeployError> {
    match ctx.opt_text(map, "timestamp", path)? {
        None => Ok(0),
        Some(text) if text.trim().is_empty() => Ok(0),
        Some(text) => time::parse_rfc3339(&text).map_err(|e| ctx.invalid(path, e)),
    }
}

fn decode_request(ctx: &Ctx, req: &Value) -> Result<HttpRequest, KeployError> {
    let url = ctx.text(req, "url", "spec.req.url")?;
    // A body Keploy offloaded to assets/ (over 1 MB) is not in the document.
    let offloaded = ctx
        .get(req, "body_ref")
        .and_then(|r| r.get("path"))
        .and_then(scalar_text)
        .is_some_and(|p| !p.is_empty());
    Ok(HttpRequest {
        method: ctx.text(req, "method", "spec.req.method")?,
        target: target_from_url(&url),
        url,
        proto_minor: ctx
            .opt_int(req, "proto_minor", "spec.req.proto_minor")?
            .unwrap_or(1),
        headers: decode_headers(ctx, ctx.get(req, "header"), "spec.req.header")?,
        body: decode_body(ctx, ctx.get(req, "body"), "spec.req.body")?,
        body_truncated: ctx
            .opt_bool(req, "body_truncated", "spec.req.body_truncated")?
            .unwrap_or(false)
            || offloaded,
        timestamp_ns: decode_timestamp(ctx, req, "spec.req.timestamp")?,
    })
}

fn decode_response(ctx: &Ctx, resp: &Value) -> Result<HttpResponse, KeployError> {
    let status_code = ctx.opt_int(resp, "status_code", "spec.resp.status_code")?;
    // Keploy's body_skipped: a body over 1 MB whose size alone was kept.
    let skipped = ctx
        .opt_bool(resp, "body_skipped", "spec.resp.body_skipped")?
        .unwrap_or(false);
    Ok(HttpResponse {
        status_code: status_code.ok_or_else(|| ctx.missing("spec.resp.status_code"))?,
        status_message: ctx
            .opt_text(resp, "status_message", "spec.resp.status_message")?
            .unwrap_or_default(),
        proto_minor: ctx
            .opt_int(resp, "proto_minor", "spec.resp.proto_minor")?
            .unwrap_or(1),
        headers: decode_headers(ctx, ctx.get(resp, "header"), "spec.resp.header")?,
        body: decode_body(ctx, ctx.get(resp, "body"), "spec.resp.body")?,
        body_truncated: ctx
            .opt_bool(resp, "body_truncated", "spec.resp.body_truncated")?
            .unwrap_or(false)
            || skipped,
        timestamp_ns: decode_timestamp(ctx, resp, "spec.resp.timestamp")?,
    })
}

/// `spec.assertions.noise`: a map path -> regexes, or the older bare list of paths.
fn decode_noise(ctx: &Ctx, spec: &Value) -> Result<BTreeMap<String, Vec<String>>, KeployError> {
    const PATH: &str = "spec.assertions.noise";
    let Some(noise) = ctx
        .get(spec, "assertions")
        .and_then(|a| ctx.get(a, "noise"))
    else {
        return Ok(BTreeMap::new());
    };
    let mut out = BTreeMap::new();
    match noise {
        Value::Mapping(map) => {
            for (path, regexes) in map {
                let path = scalar_text(path)
                    .ok_or_else(|| ctx.invalid(PATH, "has a path that is not a string"))?;
                let regexes = match regexes {
                    Value::Null => Some(Vec::new()),
                    Value::Sequence(items) => {
                        items.iter().map(scalar_text).collect::<Option<Vec<_>>>()
                    }
                    other => scalar_text(other).map(|r| vec![r]),
                }
                .ok_or_else(|| {
                    ctx.invalid(&format!("{PATH}.{path}"), "must be a list of regexes")
                })?;
                out.insert(path, regexes);
            }
        }
        Value::Sequence(paths) => {
            for path in paths {
                let path = scalar_text(path)
                    .ok_or_else(|| ctx.invalid(PATH, "must list paths as strings"))?;
                out.insert(path, Vec::new());
            }
        }
        _ => return Err(ctx.invalid(PATH, "must map paths to regex lists")),
    }
    Ok(out)
}

/// Decodes one `kind: Http` test case document (Keploy-written or our own).
pub fn decode_test_case(yaml: &str) -> Result<TestCaseDoc, KeployError> {
    let root = load_one(yaml, "test case document")?;
    let name = root
        .get("name")
        .and_then(scalar_text)
        .filter(|n| !n.trim().is_empty());
    let label = name
        .as_deref()
        .map_or_else(|| "test case document".to_owned(), doc_label);
    let ctx = Ctx { doc: &label };
    if !root.is_mapping() {
        return Err(KeployError::Yaml {
            doc: label,
            error: "expected a mapping with version, kind, name and spec".to_owned(),
        });
    }
    let kind = ctx.text(&root, "kind", "kind")?;
    if !kind.eq_ignore_ascii_case(TEST_KIND) {
        return Err(KeployError::WrongKind {
            doc: label,
            expected: TEST_KIND.to_owned(),
            found: kind,
        });
    }
    let name = name.ok_or_else(|| ctx.missing("name"))?;
    let spec = ctx.mapping(&root, "spec", "spec")?;
    let metadata = match ctx.get(spec, "metadata") {
        None => BTreeMap::new(),
        Some(Value::Mapping(map)) => map
            .iter()
            .map(|(k, v)| Some((scalar_text(k)?, scalar_text(v)?)))
            .collect::<Option<_>>()
            .ok_or_else(|| ctx.invalid("spec.metadata", "must map strings to strings"))?,
        Some(_) => return Err(ctx.invalid("spec.metadata", "must be a mapping")),
    };
    Ok(TestCaseDoc {
        req: decode_request(&ctx, ctx.mapping(spec, "req", "spec.req")?)?,
        resp: decode_response(&ctx, ctx.mapping(spec, "resp", "spec.resp")?)?,
        noise: decode_noise(&ctx, spec)?,
        created: ctx.opt_int(spec, "created", "spec.created")?.unwrap_or(0),
        metadata,
        curl: ctx.opt_text(&root, "curl", "curl")?,
        name,
    })
}
