//! [`Mock`] <-> Keploy mock document ([`MockDoc`]); the spec layouts are in the parent
//! module's docs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_yaml::{Mapping, Value};

use super::derive::{bytes_fields, redis_request_fields};
use super::fields::fields_summary;
use super::model::{Lifetime, Mock, MockError, MockKind};
use super::yaml_http;
use crate::keploy::{BINARY_TAG, MockDoc, format_rfc3339_utc, parse_rfc3339};
use crate::noise::NoiseMap;

/// Our extension key in every spec: what Keploy's layouts cannot hold, so our own documents
/// read back exactly.
pub const EXTENSION_KEY: &str = "x-kreplay";

pub(super) fn map<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value::Mapping(
        entries
            .into_iter()
            .map(|(k, v)| (Value::from(k), v))
            .collect::<Mapping>(),
    )
}

/// Field access within one named mock document.
pub(super) struct Ctx<'a> {
    pub mock: &'a str,
}

impl Ctx<'_> {
    pub fn missing(&self, field: &str) -> MockError {
        MockError::MissingField {
            mock: self.mock.to_owned(),
            field: field.to_owned(),
        }
    }

    pub fn invalid(&self, field: &str, reason: impl Into<String>) -> MockError {
        MockError::InvalidField {
            mock: self.mock.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// A scalar as text (`None` when absent or null).
    pub fn opt_text(&self, v: &Value, key: &str, path: &str) -> Result<Option<String>, MockError> {
        match v.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(self.invalid(path, "must be a string")),
        }
    }

    pub fn base64(&self, text: &str, path: &str) -> Result<Vec<u8>, MockError> {
        BASE64
            .decode(text.trim())
            .map_err(|e| self.invalid(path, format!("is not base64: {e}")))
    }

    /// A YAML string's bytes, or the bytes of a `!!binary` scalar.
    pub fn bytes(&self, v: &Value, path: &str) -> Result<Vec<u8>, MockError> {
        match v {
            Value::Null => Ok(Vec::new()),
            Value::String(s) => Ok(s.as_bytes().to_vec()),
            Value::Number(n) => Ok(n.to_string().into_bytes()),
            Value::Bool(b) => Ok(b.to_string().into_bytes()),
            Value::Tagged(t) if is_binary_tag(&t.tag.to_string()) => match &t.value {
                Value::String(s) => self.base64(s, path),
                _ => Err(self.invalid(path, "!!binary must hold base64 text")),
            },
            _ => Err(self.invalid(path, "must be text or !!binary")),
        }
    }
}

fn is_binary_tag(tag: &str) -> bool {
    matches!(
        tag,
        BINARY_TAG | "!binary" | "!tag:yaml.org,2002:binary" | "tag:yaml.org,2002:binary"
    )
}

/// Bytes as a YAML value: a string when UTF-8, `!!binary` otherwise.
pub(super) fn bytes_value(bytes: &[u8]) -> Value {
    match std::str::from_utf8(bytes) {
        Ok(text) => Value::from(text),
        Err(_) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
            tag: serde_yaml::value::Tag::new(BINARY_TAG),
            value: Value::from(BASE64.encode(bytes)),
        })),
    }
}

/// Keploy's spec key names for the payload slices of the generic-shaped kinds.
fn payload_keys(kind: MockKind) -> Option<(&'static str, &'static str)> {
    match kind {
        MockKind::Generic => Some(("genericrequests", "genericresponses")),
        MockKind::Redis => Some(("redisrequests", "redisresponses")),
        _ => None,
    }
}

/// Generic and Redis specs have no YAML tags in Keploy, so its writer lower-cases the keys.
fn timestamp_keys(kind: MockKind) -> (&'static str, &'static str) {
    match payload_keys(kind) {
        Some(_) => ("reqtimestampmock", "restimestampmock"),
        None => ("reqTimestampMock", "resTimestampMock"),
    }
}

/// One generic payload: `{origin, message: [{type: utf-8|binary, data}]}`.
fn payload(origin: &str, bytes: &[u8]) -> Value {
    let message = match std::str::from_utf8(bytes) {
        Ok(text) => map([("type", Value::from("utf-8")), ("data", Value::from(text))]),
        Err(_) => map([
            ("type", Value::from("binary")),
            ("data", Value::from(BASE64.encode(bytes))),
        ]),
    };
    map([
        ("origin", Value::from(origin)),
        ("message", Value::Sequence(vec![message])),
    ])
}

/// The encoding of a mock as a Keploy document (layouts: parent module docs).
pub fn to_mock_doc(m: &Mock) -> MockDoc {
    let metadata = map([
        ("name", Value::from(m.kind.as_str())),
        ("type", Value::from(m.lifetime.keploy_type())),
        ("operation", Value::from(m.summary.as_str())),
        ("connID", Value::from(m.connection_id.as_str())),
        ("destAddr", Value::from(m.destination.as_str())),
    ]);
    let mut spec = vec![("metadata", metadata)];
    let mut extension = vec![
        (
            "fields",
            Value::Sequence(
                m.fields
                    .iter()
                    .map(|(n, v)| {
                        Value::Sequence(vec![Value::from(n.as_str()), Value::from(v.as_str())])
                    })
                    .collect(),
            ),
        ),
        ("summary", Value::from(m.summary.as_str())),
        (
            "test_case",
            m.test_case.as_deref().map_or(Value::Null, Value::from),
        ),
        ("lifetime", Value::from(m.lifetime.to_string())),
    ];
    if !m.noise.is_empty() {
        let noise = m.noise.iter().map(|(k, res)| {
            (
                k.as_str(),
                Value::Sequence(res.iter().map(|r| Value::from(r.as_str())).collect()),
            )
        });
        extension.push(("noise", map(noise)));
    }
    match m.kind {
        MockKind::Http => {
            spec.extend(yaml_http::encode(m));
            extension.push((
                "raw",
                map([
                    ("request", Value::from(BASE64.encode(&m.request))),
                    ("response", Value::from(BASE64.encode(&m.response))),
                ]),
            ));
        }
        MockKind::Generic | MockKind::Redis => {
            let (req_key, resp_key) = payload_keys(m.kind).unwrap_or_default();
            let one = |origin, bytes: &[u8]| match bytes.is_empty() {
                true => Value::Sequence(Vec::new()),
                false => Value::Sequence(vec![payload(origin, bytes)]),
            };
            spec.push((req_key, one("client", &m.request)));
            spec.push((resp_key, one("server", &m.response)));
        }
        MockKind::Postgres | MockKind::MySql => {
            let fields = map(m
                .fields
                .iter()
                .map(|(n, v)| (n.as_str(), Value::from(v.as_str()))));
            let request = map([
                ("raw", Value::from(BASE64.encode(&m.request))),
                ("fields", fields),
            ]);
            let response = map([("raw", Value::from(BASE64.encode(&m.response)))]);
            spec.push((
                "requests",
                Value::Sequence(vec![map([("message", request)])]),
            ));
            spec.push((
                "responses",
                Value::Sequence(vec![map([("message", response)])]),
            ));
        }
    }
    let (req_ts, resp_ts) = timestamp_keys(m.kind);
    spec.push(("created", Value::from(m.req_ts_ns / 1_000_000_000)));
    spec.push((req_ts, Value::from(format_rfc3339_utc(m.req_ts_ns))));
    spec.push((resp_ts, Value::from(format_rfc3339_utc(m.resp_ts_ns))));
    spec.push((EXTENSION_KEY, map(extension)));
    MockDoc {
        name: m.name.clone(),
        kind: m.kind.as_str().to_owned(),
        spec: map(spec),
        noise: None,
        connection_id: (!m.connection_id.is_empty()).then(|| m.connection_id.clone()),
    }
}

/// Reads a mock document: ours exactly, Keploy's Http, Generic and Redis by deriving what it
/// lacks (parent module docs). Keploy-native PostgresV2 and MySQL packet layouts are refused.
pub fn from_mock_doc(doc: &MockDoc) -> Result<Mock, MockError> {
    let ctx = Ctx { mock: &doc.name };
    let kind = MockKind::from_kind_str(&doc.kind).ok_or_else(|| MockError::UnknownKind {
        mock: doc.name.clone(),
        kind: doc.kind.clone(),
    })?;
    let spec = &doc.spec;
    if !spec.is_mapping() {
        return Err(ctx.invalid("spec", "must be a mapping"));
    }
    let meta = match spec.get("metadata") {
        None | Some(Value::Null) => &Value::Null,
        Some(m @ Value::Mapping(_)) => m,
        Some(_) => return Err(ctx.invalid("spec.metadata", "must be a mapping")),
    };
    let ext = match spec.get(EXTENSION_KEY) {
        None | Some(Value::Null) => None,
        Some(e @ Value::Mapping(_)) => Some(e),
        Some(_) => return Err(ctx.invalid("spec.x-kreplay", "must be a mapping")),
    };
    let timestamp = |keys: [&str; 2]| -> Result<u64, MockError> {
        for key in keys {
            if let Some(text) = ctx.opt_text(spec, key, &format!("spec.{key}"))? {
                return parse_rfc3339(&text).map_err(|e| ctx.invalid(&format!("spec.{key}"), e));
            }
        }
        Ok(0)
    };
    let req_ts_ns = timestamp(["reqTimestampMock", "reqtimestampmock"])?;
    let resp_ts_ns = timestamp(["resTimestampMock", "restimestampmock"])?;
    let connection_id = match ctx.opt_text(meta, "connID", "spec.metadata.connID")? {
        Some(id) => id,
        None => doc.connection_id.clone().unwrap_or_default(),
    };
    let destination = ctx
        .opt_text(meta, "destAddr", "spec.metadata.destAddr")?
        .unwrap_or_default();
    let keploy_type = ctx.opt_text(meta, "type", "spec.metadata.type")?;
    let operation = ctx.opt_text(meta, "operation", "spec.metadata.operation")?;

    let (request, response) = match kind {
        MockKind::Http => yaml_http::decode_bytes(&ctx, spec, ext)?,
        MockKind::Generic | MockKind::Redis => {
            let (req_key, resp_key) = payload_keys(kind).unwrap_or_default();
            let pick = |own: &'static str, generic: &'static str| {
                [own, generic]
                    .into_iter()
                    .find_map(|k| spec.get(k).filter(|v| !v.is_null()).map(|v| (k, v)))
            };
            let request = match pick(req_key, "genericrequests") {
                Some((key, v)) => payload_bytes(&ctx, v, &format!("spec.{key}"))?,
                None => Vec::new(),
            };
            let response = match pick(resp_key, "genericresponses") {
                Some((key, v)) => payload_bytes(&ctx, v, &format!("spec.{key}"))?,
                None => Vec::new(),
            };
            (request, response)
        }
        MockKind::Postgres | MockKind::MySql => (
            raw_messages(&ctx, kind, spec, "requests")?,
            raw_messages(&ctx, kind, spec, "responses")?,
        ),
    };

    let fields = match ext.and_then(|e| e.get("fields")) {
        Some(v) => ext_fields(&ctx, v)?,
        None => match kind {
            MockKind::Http => super::derive::http_request_fields(&request),
            MockKind::Redis => redis_request_fields(&request),
            MockKind::Generic => bytes_fields(&request),
            MockKind::Postgres | MockKind::MySql => {
                message_fields(&ctx, spec)?.unwrap_or_else(|| bytes_fields(&request))
            }
        },
    };
    let ext_or_null = ext.unwrap_or(&Value::Null);
    let summary = match ctx.opt_text(ext_or_null, "summary", "spec.x-kreplay.summary")? {
        Some(s) => s,
        None => operation
            .filter(|op| !op.is_empty() && kind != MockKind::Http)
            .unwrap_or_else(|| match kind {
                MockKind::Http => yaml_http::summary(&request),
                _ => fields_summary(&fields),
            }),
    };
    let lifetime = match ext_or_null.get("lifetime") {
        None | Some(Value::Null) => Lifetime::from_keploy_type(keploy_type.as_deref()),
        Some(v) => serde_yaml::from_value(v.clone())
            .map_err(|e| ctx.invalid("spec.x-kreplay.lifetime", e.to_string()))?,
    };
    let test_case = ctx.opt_text(ext_or_null, "test_case", "spec.x-kreplay.test_case")?;
    let noise: NoiseMap = match ext_or_null.get("noise") {
        None | Some(Value::Null) => NoiseMap::new(),
        Some(v) => serde_yaml::from_value(v.clone())
            .map_err(|e| ctx.invalid("spec.x-kreplay.noise", e.to_string()))?,
    };
    Ok(Mock {
        name: doc.name.clone(),
        kind,
        lifetime,
        connection_id,
        destination,
        request,
        response,
        fields,
        summary,
        req_ts_ns,
        resp_ts_ns,
        test_case,
        noise,
    })
}

/// The bytes of a list of generic payloads, messages concatenated in order.
fn payload_bytes(ctx: &Ctx<'_>, list: &Value, path: &str) -> Result<Vec<u8>, MockError> {
    let items = list
        .as_sequence()
        .ok_or_else(|| ctx.invalid(path, "must be a list of payloads"))?;
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let Some(messages) = item.get("message").and_then(Value::as_sequence) else {
            return Err(ctx.missing(&format!("{path}[{i}].message")));
        };
        for (j, msg) in messages.iter().enumerate() {
            let at = format!("{path}[{i}].message[{j}]");
            let data = ctx
                .opt_text(msg, "data", &format!("{at}.data"))?
                .ok_or_else(|| ctx.missing(&format!("{at}.data")))?;
            match ctx.opt_text(msg, "type", &format!("{at}.type"))?.as_deref() {
                Some("binary") => out.extend(ctx.base64(&data, &format!("{at}.data"))?),
                _ => out.extend(data.into_bytes()),
            }
        }
    }
    Ok(out)
}

/// `requests` / `responses` of our PostgresV2 / MySQL variant: each `message.raw` (base64),
/// concatenated. Keploy's own packet layouts have no `raw` and are refused.
fn raw_messages(
    ctx: &Ctx<'_>,
    kind: MockKind,
    spec: &Value,
    key: &str,
) -> Result<Vec<u8>, MockError> {
    let Some(items) = spec.get(key).and_then(Value::as_sequence) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("spec.{key}[{i}].message.raw");
        let raw = item
            .get("message")
            .map_or(Ok(None), |m| ctx.opt_text(m, "raw", &path))?;
        let Some(raw) = raw else {
            return Err(MockError::Unsupported {
                mock: ctx.mock.to_owned(),
                kind,
                reason: format!(
                    "`{path}` is missing: Keploy's own {} packet layout is not readable; \
                     re-record the dependency with kreplay",
                    kind.as_str()
                ),
            });
        };
        out.extend(ctx.base64(&raw, &path)?);
    }
    Ok(out)
}

/// `requests[*].message.fields` of our PostgresV2 / MySQL variant, in order.
fn message_fields(ctx: &Ctx<'_>, spec: &Value) -> Result<Option<Vec<(String, String)>>, MockError> {
    let Some(items) = spec.get("requests").and_then(Value::as_sequence) else {
        return Ok(None);
    };
    let mut out = Vec::new();
    let mut any = false;
    for (i, item) in items.iter().enumerate() {
        let Some(Value::Mapping(fields)) = item.get("message").and_then(|m| m.get("fields")) else {
            continue;
        };
        any = true;
        for (k, v) in fields {
            let path = format!("spec.requests[{i}].message.fields");
            let (Some(k), Some(v)) = (scalar(k), scalar(v)) else {
                return Err(ctx.invalid(&path, "must map names to text"));
            };
            out.push((k, v));
        }
    }
    Ok(any.then_some(out))
}

pub(super) fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Null => Some(String::new()),
        _ => None,
    }
}

/// `x-kreplay.fields`: `[[name, value], ...]`.
fn ext_fields(ctx: &Ctx<'_>, v: &Value) -> Result<Vec<(String, String)>, MockError> {
    let path = "spec.x-kreplay.fields";
    let items = v
        .as_sequence()
        .ok_or_else(|| ctx.invalid(path, "must be a list of [name, value] pairs"))?;
    items
        .iter()
        .map(|pair| match pair.as_sequence().map(Vec::as_slice) {
            Some([name, value]) => match (scalar(name), scalar(value)) {
                (Some(n), Some(v)) => Ok((n, v)),
                _ => Err(ctx.invalid(path, "names and values must be text")),
            },
            _ => Err(ctx.invalid(path, "must be a list of [name, value] pairs")),
        })
        .collect()
}
