//! The mock model: kinds, lifetimes, one recorded dependency call, and errors.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::noise::NoiseMap;

/// The protocol of a mock. Serialised (and written to Keploy documents) as Keploy's kind name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum MockKind {
    #[serde(rename = "Http")]
    Http,
    #[serde(rename = "PostgresV2", alias = "Postgres")]
    Postgres,
    #[serde(rename = "Redis")]
    Redis,
    #[serde(rename = "MySQL")]
    MySql,
    #[serde(rename = "Generic")]
    Generic,
}

impl MockKind {
    pub const ALL: [MockKind; 5] = [
        MockKind::Http,
        MockKind::Postgres,
        MockKind::Redis,
        MockKind::MySql,
        MockKind::Generic,
    ];

    /// Keploy's `kind` name.
    pub fn as_str(self) -> &'static str {
        match self {
            MockKind::Http => "Http",
            MockKind::Postgres => "PostgresV2",
            MockKind::Redis => "Redis",
            MockKind::MySql => "MySQL",
            MockKind::Generic => "Generic",
        }
    }

    /// A Keploy `kind` name; the legacy `Postgres` (v1) reads as PostgreSQL too. Exact case,
    /// as Keploy writes them; other kinds (`Mongo`, `DNS`, ...) are `None`.
    pub fn from_kind_str(kind: &str) -> Option<MockKind> {
        match kind {
            "Http" => Some(MockKind::Http),
            "PostgresV2" | "Postgres" => Some(MockKind::Postgres),
            "Redis" => Some(MockKind::Redis),
            "MySQL" => Some(MockKind::MySql),
            "Generic" => Some(MockKind::Generic),
            _ => None,
        }
    }
}

impl fmt::Display for MockKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How long a mock may answer in replay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lifetime {
    /// Start-up and connection set-up: reusable by every test and connection, never consumed
    /// (Keploy `type: config`).
    Session,
    /// Reusable, never consumed; state a connection set up (prepared statements) that any
    /// replay connection may need again (Keploy `type: connection`).
    Connection,
    /// Caused by one test: eligible only during that test, consumed by its one match
    /// (Keploy `type: mocks`).
    #[serde(alias = "per_test", alias = "per-test")]
    PerTest,
}

impl Lifetime {
    /// Keploy's `metadata.type`.
    pub fn keploy_type(self) -> &'static str {
        match self {
            Lifetime::Session => "config",
            Lifetime::Connection => "connection",
            Lifetime::PerTest => "mocks",
        }
    }

    /// Reads Keploy's `metadata.type`. Untagged (absent or empty) legacy mocks of the kinds
    /// kreplay models are session-scoped, as Keploy derives them; any other tag
    /// (`mocks`, `HTTP_CLIENT`, ...) is per-test.
    pub fn from_keploy_type(tag: Option<&str>) -> Lifetime {
        match tag.map(str::trim) {
            None | Some("") | Some("config") => Lifetime::Session,
            Some("connection") => Lifetime::Connection,
            Some(_) => Lifetime::PerTest,
        }
    }

    /// Session and connection mocks are reused; per-test mocks are consumed.
    pub fn is_reusable(self) -> bool {
        !matches!(self, Lifetime::PerTest)
    }
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Lifetime::Session => "session",
            Lifetime::Connection => "connection",
            Lifetime::PerTest => "pertest",
        })
    }
}

/// One recorded dependency call: the raw bytes (served exactly as recorded) and the normalised
/// request the matcher compares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mock {
    /// `mock-N`.
    pub name: String,
    pub kind: MockKind,
    pub lifetime: Lifetime,
    /// The agent's connection id, as text.
    pub connection_id: String,
    /// `host:port` the service connected to.
    pub destination: String,
    /// Base64 in JSON (a number array would be four times the size on the wire).
    #[serde(with = "base64_bytes")]
    pub request: Vec<u8>,
    #[serde(with = "base64_bytes")]
    pub response: Vec<u8>,
    /// The request normalised for matching, ordered `(name, value)` pairs.
    pub fields: Vec<(String, String)>,
    /// One line for humans.
    pub summary: String,
    /// Capture time of the first request byte and of the last response byte (unix ns).
    pub req_ts_ns: u64,
    pub resp_ts_ns: u64,
    /// The test case this call belongs to; `None` when not attributed.
    pub test_case: Option<String>,
    /// Noise on request fields: `field.<name>` -> regexes (empty: any value).
    pub noise: NoiseMap,
}

/// Serde for raw bytes as one base64 string.
mod base64_bytes {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(serde::de::Error::custom)
    }
}

/// One field that differs between a recorded request and a received one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldDiff {
    pub field: String,
    /// The recorded value; `None` when the recorded request had no such field.
    pub expected: Option<String>,
    /// The received value; `None` when the received request has no such field.
    pub actual: Option<String>,
}

/// Why a mock document could not become a [`Mock`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MockError {
    #[error("mock `{mock}`: kind {kind:?} is not one kreplay replays")]
    UnknownKind { mock: String, kind: String },
    #[error("mock `{mock}`: missing field `{field}`")]
    MissingField { mock: String, field: String },
    #[error("mock `{mock}`: field `{field}` {reason}")]
    InvalidField {
        mock: String,
        field: String,
        reason: String,
    },
    /// A kind whose Keploy-native layout kreplay cannot turn back into bytes.
    #[error("mock `{mock}` ({kind}): {reason}")]
    Unsupported {
        mock: String,
        kind: MockKind,
        reason: String,
    },
}
