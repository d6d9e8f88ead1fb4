//! Domain types shared by the store, the session manager and the REST layer, plus the one JSON
//! shape of a test case.

use base64::Engine;
use kreplay_domain::http::{Header, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};

use crate::util::{rfc3339_ms, rfc3339_ns};

/// Lifecycle of a recording session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    Starting,
    Running,
    Stopping,
    Stopped,
    Failed,
}

impl SessionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "starting" => Self::Starting,
            "running" => Self::Running,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            "failed" => Self::Failed,
            _ => return None,
        })
    }

    /// The session still owns its deployment (no second recording may start).
    pub fn is_active(self) -> bool {
        matches!(self, Self::Starting | Self::Running | Self::Stopping)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Stopped | Self::Failed)
    }
}

/// A recording session as persisted.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRecord {
    pub record_id: String,
    pub namespace: String,
    pub deployment: String,
    pub test_set: String,
    pub status: SessionStatus,
    pub record_config: serde_json::Value,
    pub auto_replay_config: serde_json::Value,
    pub cluster_id: Option<String>,
    pub pods_count: Option<u32>,
    pub created_at_ms: i64,
    pub stopped_at_ms: Option<i64>,
    pub error: Option<String>,
}

/// What a caller supplies to create a session; the store assigns the test set.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub record_id: String,
    pub namespace: String,
    pub deployment: String,
    pub record_config: serde_json::Value,
    pub auto_replay_config: serde_json::Value,
    pub cluster_id: Option<String>,
    pub pods_count: Option<u32>,
    pub created_at_ms: i64,
}

/// One header exactly as seen on the wire (lossily decoded to UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderPair {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredRequest {
    pub method: String,
    pub target: String,
    pub version_minor: u32,
    pub headers: Vec<HeaderPair>,
    pub body: Vec<u8>,
    pub body_truncated: bool,
    pub body_wire_size: u64,
    pub timestamp_ns: u64,
}

impl StoredRequest {
    /// Value of the first `Host` header, if any.
    pub fn host(&self) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("host"))
            .map(|h| h.value.trim())
    }

    /// The request path without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// The shared domain type (comparison, interchange).
    pub fn to_domain(&self) -> HttpRequest {
        let host = self.host().unwrap_or("localhost");
        HttpRequest {
            method: self.method.clone(),
            url: format!("http://{host}{}", self.target),
            target: self.target.clone(),
            proto_minor: self.version_minor,
            headers: domain_headers(&self.headers),
            body: self.body.clone(),
            body_truncated: self.body_truncated,
            timestamp_ns: self.timestamp_ns,
        }
    }
}

fn domain_headers(list: &[HeaderPair]) -> Vec<Header> {
    list.iter()
        .map(|h| Header::new(h.name.clone(), h.value.clone()))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredResponse {
    pub status_code: u32,
    pub reason: String,
    pub version_minor: u32,
    pub headers: Vec<HeaderPair>,
    pub body: Vec<u8>,
    pub body_truncated: bool,
    pub body_wire_size: u64,
    pub timestamp_ns: u64,
}

impl StoredResponse {
    /// The shared domain type (comparison, interchange).
    pub fn to_domain(&self) -> HttpResponse {
        HttpResponse {
            status_code: u16::try_from(self.status_code).unwrap_or(0),
            status_message: self.reason.clone(),
            proto_minor: self.version_minor,
            headers: domain_headers(&self.headers),
            body: self.body.clone(),
            body_truncated: self.body_truncated,
            timestamp_ns: self.timestamp_ns,
        }
    }
}

/// A captured ingress exchange on its way into the store.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTestCase {
    pub record_id: String,
    pub agent_id: String,
    pub seq: u64,
    pub created_at_ms: i64,
    pub pid: u32,
    pub cgroup_id: u64,
    pub req: StoredRequest,
    pub resp: StoredResponse,
    /// Noise rules of this test case (path -> regexes), e.g. timestamps found at record time.
    pub noise: std::collections::BTreeMap<String, Vec<String>>,
}

/// A stored test case.
#[derive(Debug, Clone, PartialEq)]
pub struct TestCase {
    pub id: i64,
    pub name: String,
    pub test_set: String,
    pub namespace: String,
    pub deployment: String,
    pub case: NewTestCase,
}

/// The result of inserting one envelope's test case.
#[derive(Debug, Clone, PartialEq)]
pub struct InsertedCase {
    pub record_id: String,
    pub id: i64,
    pub name: String,
    pub endpoint: EndpointKey,
}

/// Distinct (method, path, status) seen in a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct EndpointKey {
    pub method: String,
    pub endpoint: String,
    pub status_code: u32,
}

/// An endpoint with the first test case that exercised it (`/record/status` `endpoints[]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointEntry {
    pub name: String,
    pub endpoint: String,
    pub method: String,
    pub status_code: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestSetSummary {
    pub namespace: String,
    pub deployment: String,
    pub test_set: String,
    pub record_id: String,
    pub status: SessionStatus,
    pub test_cases_count: u64,
    pub created: String,
}

/// Filters of `GET /k8s-proxy/testcases`.
#[derive(Debug, Clone, Default)]
pub struct TestCaseFilter {
    pub namespace: Option<String>,
    pub deployment: Option<String>,
    pub test_set: Option<String>,
    pub record_id: Option<String>,
    pub limit: u32,
    pub offset: u32,
}

impl TestCaseFilter {
    /// Every case of a deployment (or of one of its test sets), in recorded order.
    pub fn all_of(namespace: &str, deployment: &str, test_set: Option<&str>) -> Self {
        Self {
            namespace: Some(namespace.to_owned()),
            deployment: Some(deployment.to_owned()),
            test_set: test_set.map(str::to_owned),
            record_id: None,
            limit: u32::MAX,
            offset: 0,
        }
    }
}

// ---- JSON view --------------------------------------------------------------------------------

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct TestCaseJson {
    pub id: i64,
    pub name: String,
    pub test_set: String,
    pub namespace: String,
    pub deployment: String,
    pub record_id: String,
    pub created: String,
    pub req: RequestJson,
    pub resp: ResponseJson,
    /// Noise rules (path -> regexes); an empty list ignores the field.
    pub noise: std::collections::BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RequestJson {
    pub method: String,
    pub url: String,
    pub target: String,
    pub proto_major: u32,
    pub proto_minor: u32,
    pub header: Vec<HeaderPair>,
    pub body: String,
    pub body_encoding: BodyEncoding,
    pub body_truncated: bool,
    pub timestamp: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ResponseJson {
    pub status_code: u32,
    pub status_message: String,
    pub proto_major: u32,
    pub proto_minor: u32,
    pub header: Vec<HeaderPair>,
    pub body: String,
    pub body_encoding: BodyEncoding,
    pub body_truncated: bool,
    pub timestamp: String,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum BodyEncoding {
    Utf8,
    Base64,
}

/// Body as UTF-8 text when it is valid UTF-8, else base64.
pub fn encode_body(body: &[u8]) -> (String, BodyEncoding) {
    match std::str::from_utf8(body) {
        Ok(s) => (s.to_owned(), BodyEncoding::Utf8),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(body),
            BodyEncoding::Base64,
        ),
    }
}

impl From<&TestCase> for TestCaseJson {
    fn from(tc: &TestCase) -> Self {
        let req = &tc.case.req;
        let resp = &tc.case.resp;
        let (req_body, req_enc) = encode_body(&req.body);
        let (resp_body, resp_enc) = encode_body(&resp.body);
        let host = req.host().unwrap_or("localhost");
        Self {
            id: tc.id,
            name: tc.name.clone(),
            test_set: tc.test_set.clone(),
            namespace: tc.namespace.clone(),
            deployment: tc.deployment.clone(),
            record_id: tc.case.record_id.clone(),
            created: rfc3339_ms(tc.case.created_at_ms),
            req: RequestJson {
                method: req.method.clone(),
                url: format!("http://{host}{}", req.target),
                target: req.target.clone(),
                proto_major: 1,
                proto_minor: req.version_minor,
                header: req.headers.clone(),
                body: req_body,
                body_encoding: req_enc,
                body_truncated: req.body_truncated,
                timestamp: rfc3339_ns(req.timestamp_ns),
            },
            resp: ResponseJson {
                status_code: resp.status_code,
                status_message: resp.reason.clone(),
                proto_major: 1,
                proto_minor: resp.version_minor,
                header: resp.headers.clone(),
                body: resp_body,
                body_encoding: resp_enc,
                body_truncated: resp.body_truncated,
                timestamp: rfc3339_ns(resp.timestamp_ns),
            },
            noise: tc.case.noise.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_encoding_switches_on_utf8() {
        assert_eq!(encode_body(b"hi"), ("hi".to_owned(), BodyEncoding::Utf8));
        assert_eq!(
            encode_body(&[0xff, 0x00]),
            ("/wA=".to_owned(), BodyEncoding::Base64)
        );
    }

    #[test]
    fn status_round_trip() {
        for s in [
            SessionStatus::Starting,
            SessionStatus::Running,
            SessionStatus::Stopping,
            SessionStatus::Stopped,
            SessionStatus::Failed,
        ] {
            assert_eq!(SessionStatus::parse(s.as_str()), Some(s));
        }
        assert!(SessionStatus::Stopping.is_active());
        assert!(!SessionStatus::Failed.is_active());
    }
}
