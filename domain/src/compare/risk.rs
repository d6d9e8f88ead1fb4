//! Risk and category of a comparison's differences (Keploy's risk table):
//!
//! | difference                         | risk   | category            |
//! |------------------------------------|--------|---------------------|
//! | status code                        | HIGH   | STATUS_CODE_CHANGED |
//! | body field removed / type changed  | HIGH   | SCHEMA_BROKEN       |
//! | body value changed (JSON or not)   | MEDIUM | SCHEMA_UNCHANGED    |
//! | body field added                   | LOW    | SCHEMA_ADDED        |
//! | Content-Type header                | HIGH   | HEADER_CHANGED      |
//! | any other header                   | MEDIUM | HEADER_CHANGED      |
//!
//! The risk is the maximum; SCHEMA_UNCHANGED is dropped when the schema is broken.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Assessment, Category, DiffKind, FailureInfo, FieldDiff, Risk, StatusCodeResult};

pub(crate) fn assess(
    status: &StatusCodeResult,
    header_diffs: Vec<FieldDiff>,
    body_diffs: Vec<FieldDiff>,
) -> FailureInfo {
    let mut risk = Risk::None;
    let mut categories = BTreeSet::new();
    let mut assessment = Assessment::default();

    if !status.normal {
        risk = Risk::High;
        categories.insert(Category::StatusCodeChanged);
        assessment.diffs.push(FieldDiff::new(
            "status_code".to_string(),
            DiffKind::ValueChanged,
            Some(Value::from(status.expected)),
            Some(Value::from(status.actual)),
        ));
    }

    for d in &header_diffs {
        categories.insert(Category::HeaderChanged);
        let content_type = d.path.eq_ignore_ascii_case("header.content-type");
        risk = risk.max(if content_type {
            Risk::High
        } else {
            Risk::Medium
        });
    }

    for d in &body_diffs {
        let list = match d.kind {
            DiffKind::Added => &mut assessment.added_fields,
            DiffKind::Removed => &mut assessment.removed_fields,
            DiffKind::TypeChanged => &mut assessment.type_changes,
            DiffKind::ValueChanged => &mut assessment.value_changes,
        };
        list.push(d.path.clone());
    }
    let broken = !assessment.removed_fields.is_empty() || !assessment.type_changes.is_empty();
    if broken {
        risk = Risk::High;
        categories.insert(Category::SchemaBroken);
    }
    if !assessment.value_changes.is_empty() {
        risk = risk.max(Risk::Medium);
        if !broken {
            categories.insert(Category::SchemaUnchanged);
        }
    }
    if !assessment.added_fields.is_empty() {
        risk = risk.max(Risk::Low);
        categories.insert(Category::SchemaAdded);
    }

    assessment.diffs.extend(header_diffs);
    assessment.diffs.extend(body_diffs);
    FailureInfo {
        risk,
        category: categories.into_iter().collect(),
        assessment,
        unmatched_calls: Vec::new(),
    }
}
