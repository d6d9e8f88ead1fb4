//! The Keploy YAML interchange format (sans-IO: text and bytes in, text and bytes out).
//!
//! Keploy keeps a recording as a directory tree (`keploy/test-set-N/...`, see
//! [`export_layout`]) of YAML documents sharing one envelope: `version`, `kind`, `name`,
//! `spec`. This module reads and writes the parts kreplay needs:
//!
//! - HTTP test cases (`kind: Http`, one per file): [`encode_test_case`] / [`decode_test_case`];
//! - `mocks.yaml` (multi-document, any kind, spec kept verbatim): [`encode_mocks`] /
//!   [`decode_mocks`];
//! - `mappings.yaml` (test -> mocks): [`encode_mappings`] / [`decode_mappings`];
//! - the whole tree, reports included as opaque text: [`export_layout`] / [`import_layout`].
//!
//! Writing is deterministic (maps sorted, files ordered), so export -> import -> export gives
//! the same bytes. Reading is lenient about what older or hand-written documents contain,
//! and strict about what it needs, with errors naming the file and document.
//!
//! YAML's core `!!binary` tag (what Keploy's Go YAML library writes for non-UTF-8 strings)
//! is kept: a non-UTF-8 body is written as `!!binary <base64>`, and inside a verbatim mock
//! spec such a scalar is a [`serde_yaml::Value::Tagged`] whose tag is [`BINARY_TAG`] and
//! whose value is the base64 text.

mod layout;
mod mappings;
mod mocks;
mod testcase;
mod time;
mod yamlio;

#[cfg(test)]
mod tests_docs;
#[cfg(test)]
mod tests_layout;
#[cfg(test)]
mod tests_mocks;

pub use layout::{ExportedFile, TestSetFiles, export_layout, import_layout, natural_cmp};
pub use mappings::{MAPPING_KIND, Mappings, MockEntry, decode_mappings, encode_mappings};
pub use mocks::{MockDoc, decode_mocks, encode_mocks};
pub use testcase::{TEST_KIND, TestCaseDoc, decode_test_case, encode_test_case, target_from_url};
pub use time::{format_rfc3339_utc, parse_rfc3339};
pub use yamlio::BINARY_TAG;

/// The envelope version the current Keploy writer emits.
pub const VERSION: &str = "api.keploy.io/v1beta1";

/// Everything that can go wrong reading or writing the interchange format. Each variant
/// names the document (and, through [`KeployError::InFile`], the file) it is about.
#[derive(Debug, thiserror::Error)]
pub enum KeployError {
    /// The text is not YAML (or not the one document expected).
    #[error("{doc}: malformed YAML: {error}")]
    Yaml { doc: String, error: String },
    /// A document of another kind where this one was expected (e.g. `Mongo` for a test).
    #[error("{doc}: expected kind {expected}, found {found:?}")]
    WrongKind {
        doc: String,
        expected: String,
        found: String,
    },
    /// A field without which the document means nothing (dotted path, e.g. `spec.req.method`).
    #[error("{doc}: missing required field `{field}`")]
    MissingField { doc: String, field: String },
    /// A field that is present but unusable.
    #[error("{doc}: field `{field}` {reason}")]
    InvalidField {
        doc: String,
        field: String,
        reason: String,
    },
    /// A value that cannot be written (an empty name, a name that is no file name, ...).
    #[error("{doc}: cannot encode: {reason}")]
    Encode { doc: String, reason: String },
    /// A layout-level problem: a duplicate path, a file that is not UTF-8, ...
    #[error("{path}: {reason}")]
    Layout { path: String, reason: String },
    /// Any of the above, in the named file of a layout.
    #[error("{file}: {cause}")]
    InFile {
        file: String,
        cause: Box<KeployError>,
    },
}

impl KeployError {
    /// Wraps `self` with the file it came from (import) or goes to (export).
    pub fn in_file(self, file: impl Into<String>) -> Self {
        KeployError::InFile {
            file: file.into(),
            cause: Box::new(self),
        }
    }
}
