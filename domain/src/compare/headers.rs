//! Header comparison by exact name (case-insensitive), with the forgiveness rules.

use serde_json::Value;

use super::{DiffKind, FieldDiff, HeaderResult, HeaderValues};
use crate::http::{Header, HttpResponse};
use crate::noise::CompiledNoise;

/// Response headers whose value changes on every response; only their presence is asserted.
const VOLATILE: &[&str] = &[
    "date",
    "x-request-id",
    "request-id",
    "x-correlation-id",
    "x-runtime",
    "traceparent",
    "tracestate",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-amzn-trace-id",
    "x-cloud-trace-context",
    "sentry-trace",
    "server-timing",
    "age",
    "expires",
    "last-modified",
];

/// Connection management, not content: never a difference.
const HOP_BY_HOP: &[&str] = &["connection", "keep-alive"];

/// Message framing: derived from the body (a chunked replay of a Content-Length recording, a
/// different length after noise or after a body change the body diff already reports).
const FRAMING: &[&str] = &["content-length", "transfer-encoding"];

/// A header name with all its values in order.
struct Group<'a> {
    name: &'a str,
    lower: String,
    values: Vec<String>,
}

fn group(headers: &[Header]) -> Vec<Group<'_>> {
    let mut out: Vec<Group> = Vec::new();
    for h in headers {
        let lower = h.name.to_ascii_lowercase();
        match out.iter_mut().find(|g| g.lower == lower) {
            Some(g) => g.values.push(h.value.clone()),
            None => out.push(Group {
                name: &h.name,
                lower,
                values: vec![h.value.clone()],
            }),
        }
    }
    out
}

/// Media types and parameter names are case-insensitive and spacing around `;` is free.
fn normalize_content_type(v: &str) -> String {
    v.split(';')
        .map(|p| p.trim().to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(";")
}

fn values_equal(lower: &str, e: &[String], a: &[String]) -> bool {
    if lower == "content-type" {
        e.iter()
            .map(|v| normalize_content_type(v))
            .eq(a.iter().map(|v| normalize_content_type(v)))
    } else {
        e == a
    }
}

pub(crate) fn compare_headers(
    exp: &HttpResponse,
    act: &HttpResponse,
    noise: &CompiledNoise,
    body_matched: bool,
) -> (Vec<HeaderResult>, Vec<FieldDiff>) {
    let e_groups = group(&exp.headers);
    let a_groups = group(&act.headers);
    let mut results = Vec::new();
    let mut diffs = Vec::new();
    let names = e_groups.iter().map(|g| (g.name, g.lower.as_str())).chain(
        a_groups
            .iter()
            .filter(|a| !e_groups.iter().any(|e| e.lower == a.lower))
            .map(|g| (g.name, g.lower.as_str())),
    );
    for (name, lower) in names {
        let e = e_groups.iter().find(|g| g.lower == lower);
        let a = a_groups.iter().find(|g| g.lower == lower);
        let joined = |g: Option<&Group>| g.map(|g| g.values.join(", "));
        let (e_joined, a_joined) = (joined(e), joined(a));
        let equal = match (e, a) {
            (Some(e), Some(a)) => values_equal(lower, &e.values, &a.values),
            _ => false,
        };
        let forgiven = noise.header_forgives(name, a_joined.as_deref())
            || HOP_BY_HOP.contains(&lower)
            || (VOLATILE.contains(&lower) && e.is_some() && a.is_some())
            || (FRAMING.contains(&lower) && body_matched);
        let normal = equal || forgiven;
        let side = |g: Option<&Group>| HeaderValues {
            key: g.map_or(name, |g| g.name).to_string(),
            value: g.map(|g| g.values.clone()).unwrap_or_default(),
        };
        results.push(HeaderResult {
            normal,
            expected: side(e),
            actual: side(a),
        });
        if !normal {
            let kind = match (e, a) {
                (Some(_), Some(_)) => DiffKind::ValueChanged,
                (Some(_), None) => DiffKind::Removed,
                _ => DiffKind::Added,
            };
            diffs.push(FieldDiff::new(
                format!("header.{name}"),
                kind,
                e_joined.map(Value::String),
                a_joined.map(Value::String),
            ));
        }
    }
    (results, diffs)
}
