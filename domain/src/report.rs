//! The stored/exported test report: Keploy's report YAML shape
//! (`keploy/reports/test-run-<N>/<test-set>-report.yaml`) and JUnit XML.

mod junit;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use junit::junit_xml;

use crate::compare::{BodyResult, Comparison, FailureInfo, HeaderResult, Risk, StatusCodeResult};
use crate::http::{Header, HttpRequest, HttpResponse};
use crate::noise::NoiseMap;
use crate::noise::datetime::format_rfc3339_nanos;

/// The report `version` Keploy writes.
pub const REPORT_VERSION: &str = "api.keploy.io/v1beta1";

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("report YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TestStatus {
    #[default]
    Pending,
    Running,
    Failed,
    Passed,
    Ignored,
    Obsolete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TestSetStatus {
    #[default]
    Running,
    Failed,
    Passed,
    AppHalted,
    UserAbort,
    AppFault,
    InternalErr,
    /// Keploy's pre/post script failure; kept so its reports read back.
    ScriptFault,
    Ignored,
    NoTestsToRun,
}

impl TestSetStatus {
    /// The run ended abnormally (not a plain pass/fail verdict).
    pub fn is_error(self) -> bool {
        matches!(
            self,
            TestSetStatus::AppHalted
                | TestSetStatus::UserAbort
                | TestSetStatus::AppFault
                | TestSetStatus::InternalErr
                | TestSetStatus::ScriptFault
        )
    }
}

/// YAML view of a request (Keploy `req`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportRequest {
    pub method: String,
    pub proto_major: u32,
    pub proto_minor: u32,
    pub url: String,
    /// Repeated headers joined with ", " under the first spelling seen.
    pub header: BTreeMap<String, String>,
    /// Lossy UTF-8.
    pub body: String,
    /// RFC 3339 UTC with nanoseconds.
    pub timestamp: String,
}

/// YAML view of a response (Keploy `resp`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct ReportResponse {
    pub status_code: u16,
    pub header: BTreeMap<String, String>,
    pub body: String,
    pub status_message: String,
    pub proto_major: u32,
    pub proto_minor: u32,
    pub timestamp: String,
}

/// Headers as a map, repeated names (case-insensitive) joined with ", ".
pub fn header_map(headers: &[Header]) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    for h in headers {
        let existing = out
            .keys()
            .find(|k| k.eq_ignore_ascii_case(&h.name))
            .cloned();
        match existing.and_then(|k| out.get_mut(&k)) {
            Some(v) => {
                v.push_str(", ");
                v.push_str(&h.value);
            }
            None => {
                out.insert(h.name.clone(), h.value.clone());
            }
        }
    }
    out
}

impl ReportRequest {
    pub fn from_request(req: &HttpRequest) -> Self {
        ReportRequest {
            method: req.method.clone(),
            proto_major: 1,
            proto_minor: req.proto_minor,
            url: req.url.clone(),
            header: header_map(&req.headers),
            body: String::from_utf8_lossy(&req.body).into_owned(),
            timestamp: format_rfc3339_nanos(req.timestamp_ns),
        }
    }
}

impl ReportResponse {
    pub fn from_response(resp: &HttpResponse) -> Self {
        ReportResponse {
            status_code: resp.status_code,
            header: header_map(&resp.headers),
            body: String::from_utf8_lossy(&resp.body).into_owned(),
            status_message: resp.status_message.clone(),
            proto_major: 1,
            proto_minor: resp.proto_minor,
            timestamp: format_rfc3339_nanos(resp.timestamp_ns),
        }
    }
}

/// Keploy `result`: the per-part verdicts of a [`Comparison`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct MatchResult {
    pub status_code: StatusCodeResult,
    pub headers_result: Vec<HeaderResult>,
    pub body_result: Vec<BodyResult>,
}

impl From<&Comparison> for MatchResult {
    fn from(c: &Comparison) -> Self {
        MatchResult {
            status_code: c.status_code.clone(),
            headers_result: c.headers_result.clone(),
            body_result: c.body_result.clone(),
        }
    }
}

/// One `tests[]` entry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TestResult {
    /// `Http`.
    pub kind: String,
    /// The test set.
    pub name: String,
    pub status: TestStatus,
    /// Unix seconds.
    pub started: i64,
    pub completed: i64,
    pub test_case_path: String,
    pub mock_path: String,
    pub test_case_id: String,
    pub req: ReportRequest,
    /// The actual (replayed) response.
    pub resp: ReportResponse,
    pub noise: NoiseMap,
    pub result: MatchResult,
    pub failure_info: FailureInfo,
    /// Go duration text (`1.5s`, `120ms`), see [`format_duration`].
    pub time_taken: String,
}

impl TestResult {
    /// A pending `Http` result for `test_case_id` of `test_set`.
    pub fn new(test_set: &str, test_case_id: &str) -> Self {
        TestResult {
            kind: "Http".to_string(),
            name: test_set.to_string(),
            test_case_id: test_case_id.to_string(),
            ..TestResult::default()
        }
    }

    /// Takes the verdict of `c`: result, failure info and PASSED/FAILED.
    pub fn set_comparison(&mut self, c: &Comparison) {
        self.result = MatchResult::from(c);
        self.failure_info = c.failure_info.clone();
        self.status = if c.passed {
            TestStatus::Passed
        } else {
            TestStatus::Failed
        };
    }
}

/// One test set's report.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct TestSetReport {
    pub version: String,
    /// `<test-set>-report`.
    pub name: String,
    pub status: TestSetStatus,
    pub failure_reason: String,
    pub success: u32,
    pub failure: u32,
    pub obsolete: u32,
    #[serde(rename = "high-risk")]
    pub high_risk: u32,
    #[serde(rename = "medium-risk")]
    pub medium_risk: u32,
    #[serde(rename = "low-risk")]
    pub low_risk: u32,
    pub ignored: u32,
    pub total: u32,
    pub tests: Vec<TestResult>,
    pub test_set: String,
    /// Unix seconds.
    pub created_at: i64,
    pub time_taken: String,
}

impl TestSetReport {
    /// An empty, running report for `test_set`.
    pub fn new(test_set: &str, created_at: i64) -> Self {
        TestSetReport {
            version: REPORT_VERSION.to_string(),
            name: format!("{test_set}-report"),
            test_set: test_set.to_string(),
            created_at,
            ..TestSetReport::default()
        }
    }

    /// Recomputes the counters from `tests`; risk counts come from failed tests only.
    pub fn tally(&mut self) {
        let count = |s: TestStatus| self.tests.iter().filter(|t| t.status == s).count() as u32;
        let risk = |r: Risk| {
            self.tests
                .iter()
                .filter(|t| t.status == TestStatus::Failed && t.failure_info.risk == r)
                .count() as u32
        };
        self.success = count(TestStatus::Passed);
        self.failure = count(TestStatus::Failed);
        self.obsolete = count(TestStatus::Obsolete);
        self.ignored = count(TestStatus::Ignored);
        self.high_risk = risk(Risk::High);
        self.medium_risk = risk(Risk::Medium);
        self.low_risk = risk(Risk::Low);
        self.total = self.tests.len() as u32;
    }
}

pub fn report_to_yaml(r: &TestSetReport) -> Result<String, ReportError> {
    Ok(serde_yaml::to_string(r)?)
}

pub fn report_from_yaml(s: &str) -> Result<TestSetReport, ReportError> {
    Ok(serde_yaml::from_str(s)?)
}

/// Go's `time.Duration` text: `0s`, `850ns`, `1.5µs`, `120ms`, `2.5s`, `1m30s`, `1h0m5s`.
pub fn format_duration(nanos: u64) -> String {
    const US: u64 = 1_000;
    const MS: u64 = 1_000_000;
    const S: u64 = 1_000_000_000;
    let frac = |v: u64, unit: u64| {
        let whole = v / unit;
        let rest = v % unit;
        if rest == 0 {
            return whole.to_string();
        }
        let width = unit.ilog10() as usize;
        let digits = format!("{rest:0width$}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    };
    match nanos {
        0 => "0s".to_string(),
        n if n < US => format!("{n}ns"),
        n if n < MS => format!("{}µs", frac(n, US)),
        n if n < S => format!("{}ms", frac(n, MS)),
        n => {
            let (h, rem) = (n / (3600 * S), n % (3600 * S));
            let (m, rem) = (rem / (60 * S), rem % (60 * S));
            let secs = format!("{}s", frac(rem, S));
            match (h, m) {
                (0, 0) => secs,
                (0, m) => format!("{m}m{secs}"),
                (h, m) => format!("{h}h{m}m{secs}"),
            }
        }
    }
}

/// Seconds in a Go duration text (`1h2m3.5s`, `120ms`, `850ns`, `1.5us`); `None` if malformed.
pub fn parse_duration_secs(text: &str) -> Option<f64> {
    let s = text.trim();
    if s == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    (!s.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests;
