//! Expected (recorded) vs actual (replayed) response comparison with noise, risk and category.
//!
//! - The status code must be equal.
//! - Headers are compared by exact name, case-insensitively (multi-valued: the values in order).
//!   Forgiven: noise rules, volatile headers present on both sides, framing headers
//!   (Content-Length, Transfer-Encoding: they follow the body, whose own differences are
//!   reported; only a truncated capture keeps them), Connection/Keep-Alive.
//! - JSON bodies get a structural diff with noise; other bodies are compared byte for byte.
//!
//! Every difference is a [`FieldDiff`] whose path is noise-key shaped: `status_code`,
//! `header.<Name>`, `body` (whole body) or `body.<dot.path>` with array indexes
//! (`body.items.2.id`); [`FieldDiff::noise_key`] gives the index-free rule that would silence it.

mod body;
mod headers;
mod json_diff;
mod risk;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_body;
#[cfg(test)]
mod tests_headers;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::http::HttpResponse;
use crate::noise::{CompiledNoise, NoiseError, NoiseMap};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CompareOptions {
    /// Compare JSON arrays as multisets.
    pub ignore_ordering: bool,
    /// Compare non-JSON bodies byte for byte (when false they always pass).
    pub compare_non_json: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            ignore_ordering: false,
            compare_non_json: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Comparison {
    pub passed: bool,
    pub status_code: StatusCodeResult,
    pub headers_result: Vec<HeaderResult>,
    pub body_result: Vec<BodyResult>,
    pub failure_info: FailureInfo,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusCodeResult {
    pub normal: bool,
    pub expected: u16,
    pub actual: u16,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HeaderValues {
    pub key: String,
    /// Empty when the header is absent on that side.
    pub value: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct HeaderResult {
    pub normal: bool,
    pub expected: HeaderValues,
    pub actual: HeaderValues,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BodyType {
    #[default]
    Json,
    Plain,
    /// Not UTF-8: `expected`/`actual` texts are standard base64.
    Binary,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct BodyResult {
    pub normal: bool,
    #[serde(rename = "type")]
    pub body_type: BodyType,
    pub expected: String,
    pub actual: String,
}

#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Risk {
    #[default]
    None,
    Low,
    Medium,
    High,
}

impl Risk {
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::None => "NONE",
            Risk::Low => "LOW",
            Risk::Medium => "MEDIUM",
            Risk::High => "HIGH",
        }
    }
}

impl std::fmt::Display for Risk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Category {
    SchemaUnchanged,
    SchemaAdded,
    SchemaBroken,
    StatusCodeChanged,
    HeaderChanged,
    InternalFailure,
    AppConnectionError,
    /// A dependency call of the replayed app had no matching mock (our own category: Keploy
    /// reports these only as `unmatched_calls`).
    DependencyMismatch,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct FailureInfo {
    pub risk: Risk,
    /// Sorted, without duplicates.
    pub category: Vec<Category>,
    pub assessment: Assessment,
    /// Dependency calls no mock answered: protocol, the request, the closest mock and its field
    /// differences (Keploy's `unmatched_calls`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unmatched_calls: Vec<Value>,
}

impl FailureInfo {
    /// Fails the test for dependency calls no mock answered (risk HIGH: the app asked its
    /// dependencies something the recording never saw).
    pub fn add_unmatched_calls(&mut self, calls: Vec<Value>) {
        if calls.is_empty() {
            return;
        }
        self.risk = self.risk.max(Risk::High);
        if !self.category.contains(&Category::DependencyMismatch) {
            self.category.push(Category::DependencyMismatch);
            self.category.sort();
        }
        self.unmatched_calls.extend(calls);
    }
}

/// The four path lists hold body paths only; `diffs` holds every difference (status, headers,
/// body) in that order.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Assessment {
    pub added_fields: Vec<String>,
    pub removed_fields: Vec<String>,
    pub type_changes: Vec<String>,
    pub value_changes: Vec<String>,
    pub diffs: Vec<FieldDiff>,
    /// Why a comparison could not be made (app unreachable, ...); Keploy's `reasons`.
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiffKind {
    /// Only in the actual response.
    Added,
    /// Only in the expected response.
    Removed,
    TypeChanged,
    ValueChanged,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub path: String,
    pub kind: DiffKind,
    /// `Some(Value::Null)` (a JSON null) survives a round trip; an absent side is `None`.
    #[serde(
        default,
        deserialize_with = "present_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub expected: Option<Value>,
    #[serde(
        default,
        deserialize_with = "present_value",
        skip_serializing_if = "Option::is_none"
    )]
    pub actual: Option<Value>,
}

/// A present key is `Some`, even when its value is null; a missing key falls back to `None`.
fn present_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl FieldDiff {
    pub(crate) fn new(
        path: String,
        kind: DiffKind,
        expected: Option<Value>,
        actual: Option<Value>,
    ) -> Self {
        FieldDiff {
            path,
            kind,
            expected,
            actual,
        }
    }

    /// The index-free noise key that would silence this difference (`body.items.2.id` ->
    /// `body.items.id`). All-digit segments are taken as indexes. `status_code` is never noise.
    pub fn noise_key(&self) -> Option<String> {
        if self.path == "status_code" {
            return None;
        }
        if self.path.starts_with("header.") {
            return Some(self.path.clone());
        }
        let kept: Vec<&str> = self
            .path
            .split('.')
            .filter(|seg| seg.is_empty() || !seg.bytes().all(|c| c.is_ascii_digit()))
            .collect();
        Some(kept.join("."))
    }
}

impl Comparison {
    /// A failed comparison for a test whose actual response could not be obtained (the app was
    /// unreachable, the replay engine failed, ...): status `actual` is 0, risk HIGH.
    pub fn failure(expected: &HttpResponse, category: Category, reason: impl Into<String>) -> Self {
        Comparison {
            passed: false,
            status_code: StatusCodeResult {
                normal: false,
                expected: expected.status_code,
                actual: 0,
            },
            headers_result: Vec::new(),
            body_result: Vec::new(),
            failure_info: FailureInfo {
                risk: Risk::High,
                category: vec![category],
                assessment: Assessment {
                    reasons: vec![reason.into()],
                    ..Assessment::default()
                },
                unmatched_calls: Vec::new(),
            },
        }
    }
}

/// Compares `actual` against `expected` under `noise`. Fails only when a noise regex is invalid.
pub fn compare(
    expected: &HttpResponse,
    actual: &HttpResponse,
    noise: &NoiseMap,
    options: &CompareOptions,
) -> Result<Comparison, NoiseError> {
    let compiled = CompiledNoise::compile(noise)?;
    Ok(compare_compiled(expected, actual, &compiled, options))
}

/// [`compare`] with noise compiled once (for many test cases sharing rules).
pub fn compare_compiled(
    expected: &HttpResponse,
    actual: &HttpResponse,
    noise: &CompiledNoise,
    options: &CompareOptions,
) -> Comparison {
    let status_code = StatusCodeResult {
        normal: expected.status_code == actual.status_code,
        expected: expected.status_code,
        actual: actual.status_code,
    };
    let body = body::compare_bodies(expected, actual, noise, options);
    let (headers_result, header_diffs) =
        headers::compare_headers(expected, actual, noise, body.framing_ok);
    let failure_info = risk::assess(&status_code, header_diffs, body.diffs);
    let passed =
        status_code.normal && headers_result.iter().all(|h| h.normal) && body.result.normal;
    Comparison {
        passed,
        status_code,
        headers_result,
        body_result: vec![body.result],
        failure_info,
    }
}
