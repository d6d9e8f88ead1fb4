//! Dependency mocks (sans-IO): the calls a recorded service made to its dependencies, which
//! test caused each ([`attribute`]), how replay answers from them ([`MockPool`]), what to prune
//! after a passing replay ([`prune`]), and their Keploy `mocks.yaml` form ([`to_mock_doc`] /
//! [`from_mock_doc`]).
//!
//! A [`Mock`] keeps the raw request and response bytes (served exactly as recorded) plus the
//! request normalised into ordered `(name, value)` fields, which is all matching looks at.
//! Matching is exact, or noise-aware where a rule says a field may differ; it never guesses
//! (Keploy's fuzzy fallback served similar but wrong answers, #2510, #4498).
//!
//! # Keploy document layouts
//!
//! Every spec carries `metadata {name: <kind>, type: config|connection|mocks, operation:
//! <summary>, connID, destAddr}`, `created` (unix seconds), the request and response
//! timestamps (RFC 3339, UTC, nanoseconds), and `x-kreplay {fields: [[name, value], ...],
//! summary, test_case, lifetime, noise}` so our own documents read back exactly. Keploy ignores
//! the unknown key. Per kind:
//!
//! - `Http`: Keploy's `req {method, proto_major, proto_minor, url, header, body, timestamp}`,
//!   `resp {status_code, header, body, status_message, proto_major, proto_minor, timestamp}` and
//!   `objects: []`, derived from the raw bytes (bodies de-chunked, not decompressed; non-UTF-8
//!   bodies `!!binary`), plus `x-kreplay.raw {request, response}` (base64). A document without
//!   `x-kreplay.raw` (Keploy's, hand-written) is rebuilt into HTTP/1.1 bytes from `req`/`resp`
//!   with `Content-Length` recomputed (and `Transfer-Encoding`/`Content-Encoding` dropped, since
//!   Keploy stores bodies decoded); its fields are derived as [`http_request_fields`] does.
//! - `Generic`: Keploy's `genericrequests` / `genericresponses`, each
//!   `[{origin: client|server, message: [{type: utf-8|binary, data}]}]`, and lower-case
//!   `reqtimestampmock` / `restimestampmock` (Keploy's untagged struct keys). Reading
//!   concatenates every message in order; fields default to [`bytes_fields`].
//! - `Redis`: the same payload slices under Keploy's `redisrequests` / `redisresponses`
//!   (`genericrequests` is read too); fields default to [`redis_request_fields`].
//! - `PostgresV2` and `MySQL` — **kreplay's variant of these kinds**: Keploy's own packet
//!   layouts are not documented enough to reproduce, so the spec holds
//!   `requests: [{message: {raw: <base64>, fields: {name: value}}}]` and
//!   `responses: [{message: {raw: <base64>}}]`, with camel-case `reqTimestampMock` /
//!   `resTimestampMock`. Keploy-recorded documents of these kinds (no `raw`) are refused with
//!   [`MockError::Unsupported`].
//!
//! Without `x-kreplay`, the lifetime comes from `metadata.type` ([`Lifetime::from_keploy_type`]),
//! the summary from `metadata.operation`, the test from nowhere (see [`apply_mappings`] or
//! [`attribute`]), and the top-level Keploy `noise` is not imported (its paths address Keploy's
//! request bodies, not our fields).

mod attribution;
mod derive;
mod fields;
mod mappings;
mod model;
mod pool;
mod yaml;
mod yaml_http;

#[cfg(test)]
mod tests_attribution;
#[cfg(test)]
mod tests_pool;
#[cfg(test)]
mod tests_yaml;

pub use attribution::{Attribution, TestWindow, UnattributedCause, UnattributedReason, attribute};
pub use derive::{bytes_field_value, bytes_fields, http_request_fields, redis_request_fields};
pub use fields::{FIELD_NOISE_PREFIX, fields_summary};
pub use mappings::{apply_mappings, mappings_of};
pub use model::{FieldDiff, Lifetime, Mock, MockError, MockKind};
pub use pool::{Closest, MatchOutcome, MissReport, MockPool, prune};
pub use yaml::{EXTENSION_KEY, from_mock_doc, to_mock_doc};
