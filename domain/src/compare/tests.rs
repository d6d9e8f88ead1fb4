//! Status, header, JSON diff and risk-table tests.

use serde_json::{Value, json};

use super::*;
use crate::http::Header;

pub(super) fn resp(status: u16, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    HttpResponse {
        status_code: status,
        status_message: "OK".to_string(),
        proto_minor: 1,
        headers: headers.iter().map(|(n, v)| Header::new(*n, *v)).collect(),
        body: body.to_vec(),
        ..Default::default()
    }
}

pub(super) fn json_resp(body: Value) -> HttpResponse {
    resp(
        200,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

pub(super) fn noise(pairs: &[(&str, &[&str])]) -> NoiseMap {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
        .collect()
}

pub(super) fn run(e: &HttpResponse, a: &HttpResponse, n: &NoiseMap) -> Comparison {
    compare(e, a, n, &CompareOptions::default()).unwrap()
}

pub(super) fn unordered(e: &HttpResponse, a: &HttpResponse, n: &NoiseMap) -> Comparison {
    let opts = CompareOptions {
        ignore_ordering: true,
        ..CompareOptions::default()
    };
    compare(e, a, n, &opts).unwrap()
}

/// (path, kind) of every difference.
pub(super) fn kinds(c: &Comparison) -> Vec<(String, DiffKind)> {
    c.failure_info
        .assessment
        .diffs
        .iter()
        .map(|d| (d.path.clone(), d.kind))
        .collect()
}

pub(super) fn d(path: &str, kind: DiffKind) -> (String, DiffKind) {
    (path.to_string(), kind)
}

pub(super) fn assert_passed(c: &Comparison) {
    assert!(c.passed, "{c:#?}");
    assert_eq!(c.failure_info, FailureInfo::default());
}

fn risk_of(c: &Comparison) -> (Risk, Vec<Category>) {
    (c.failure_info.risk, c.failure_info.category.clone())
}

use DiffKind::{Added, Removed, TypeChanged, ValueChanged};

#[test]
fn identical_responses_pass() {
    let r = json_resp(json!({"id": 1, "tags": ["a", "b"], "o": {"x": null}}));
    let c = run(&r, &r, &NoiseMap::new());
    assert_passed(&c);
    assert_eq!(
        c.status_code,
        StatusCodeResult {
            normal: true,
            expected: 200,
            actual: 200
        }
    );
    assert_eq!(c.body_result.len(), 1);
    assert_eq!(c.body_result[0].body_type, BodyType::Json);
    assert!(c.body_result[0].normal);
    assert_eq!(c.headers_result.len(), 1);
    assert!(c.headers_result[0].normal);
    assert_eq!(
        c.headers_result[0].expected,
        HeaderValues {
            key: "Content-Type".into(),
            value: vec!["application/json".into()]
        }
    );
}

#[test]
fn status_code_change_is_high() {
    let e = json_resp(json!({"ok": true}));
    let mut a = e.clone();
    a.status_code = 500;
    let c = run(&e, &a, &NoiseMap::new());
    assert!(!c.passed);
    assert!(!c.status_code.normal);
    assert_eq!(risk_of(&c), (Risk::High, vec![Category::StatusCodeChanged]));
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "status_code".into(),
            ValueChanged,
            Some(json!(200)),
            Some(json!(500))
        )]
    );
    assert!(c.failure_info.assessment.value_changes.is_empty());
}

#[test]
fn value_change_is_medium_schema_unchanged() {
    let c = run(
        &json_resp(json!({"a": 1, "b": "x"})),
        &json_resp(json!({"a": 2, "b": "x"})),
        &NoiseMap::new(),
    );
    assert_eq!(risk_of(&c), (Risk::Medium, vec![Category::SchemaUnchanged]));
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body.a".into(),
            ValueChanged,
            Some(json!(1)),
            Some(json!(2))
        )]
    );
    assert_eq!(c.failure_info.assessment.value_changes, vec!["body.a"]);
    assert!(!c.body_result[0].normal);
    assert!(!c.passed);
}

#[test]
fn added_only_is_low_schema_added() {
    let c = run(
        &json_resp(json!({"a": 1})),
        &json_resp(json!({"a": 1, "z": {"n": 1}})),
        &NoiseMap::new(),
    );
    assert_eq!(risk_of(&c), (Risk::Low, vec![Category::SchemaAdded]));
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body.z".into(),
            Added,
            None,
            Some(json!({"n": 1}))
        )]
    );
    assert_eq!(c.failure_info.assessment.added_fields, vec!["body.z"]);
    assert!(!c.passed);
}

#[test]
fn added_plus_value_change_is_medium_with_both_categories() {
    let c = run(
        &json_resp(json!({"a": 1})),
        &json_resp(json!({"a": 2, "b": 0})),
        &NoiseMap::new(),
    );
    assert_eq!(
        risk_of(&c),
        (
            Risk::Medium,
            vec![Category::SchemaUnchanged, Category::SchemaAdded]
        )
    );
    assert_eq!(
        kinds(&c),
        vec![d("body.a", ValueChanged), d("body.b", Added)]
    );
}

#[test]
fn removed_field_is_high_schema_broken() {
    let c = run(
        &json_resp(json!({"a": 1, "b": [1]})),
        &json_resp(json!({"a": 3})),
        &NoiseMap::new(),
    );
    assert_eq!(risk_of(&c), (Risk::High, vec![Category::SchemaBroken]));
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![
            FieldDiff::new(
                "body.a".into(),
                ValueChanged,
                Some(json!(1)),
                Some(json!(3))
            ),
            FieldDiff::new("body.b".into(), Removed, Some(json!([1])), None),
        ]
    );
    assert_eq!(c.failure_info.assessment.removed_fields, vec!["body.b"]);
    assert_eq!(c.failure_info.assessment.value_changes, vec!["body.a"]);
}

#[test]
fn type_changes() {
    let e = json_resp(
        json!({"n": 1, "o": {"k": 1}, "nul": null, "s": "x", "b": true, "same_null": null}),
    );
    let a = json_resp(
        json!({"n": "1", "o": [1], "nul": {"k": 1}, "s": null, "b": 1, "same_null": null}),
    );
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(risk_of(&c), (Risk::High, vec![Category::SchemaBroken]));
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![
            FieldDiff::new(
                "body.b".into(),
                TypeChanged,
                Some(json!(true)),
                Some(json!(1))
            ),
            FieldDiff::new(
                "body.n".into(),
                TypeChanged,
                Some(json!(1)),
                Some(json!("1"))
            ),
            FieldDiff::new(
                "body.nul".into(),
                TypeChanged,
                Some(Value::Null),
                Some(json!({"k": 1}))
            ),
            FieldDiff::new(
                "body.o".into(),
                TypeChanged,
                Some(json!({"k": 1})),
                Some(json!([1]))
            ),
            FieldDiff::new(
                "body.s".into(),
                TypeChanged,
                Some(json!("x")),
                Some(Value::Null)
            ),
        ]
    );
    assert_eq!(
        c.failure_info.assessment.type_changes,
        vec!["body.b", "body.n", "body.nul", "body.o", "body.s"]
    );
}

#[test]
fn root_type_change_and_number_equality() {
    let c = run(
        &json_resp(json!({"a": 1})),
        &json_resp(json!([1])),
        &NoiseMap::new(),
    );
    assert_eq!(kinds(&c), vec![d("body", TypeChanged)]);
    // 1 and 1.0 are the same JSON number.
    let e = resp(200, &[], br#"{"n": 1, "m": [2]}"#);
    let a = resp(200, &[], br#"{"n": 1.0, "m": [2.0]}"#);
    assert_passed(&run(&e, &a, &NoiseMap::new()));
    let a = resp(200, &[], br#"{"n": 1.5, "m": [2]}"#);
    assert_eq!(
        kinds(&run(&e, &a, &NoiseMap::new())),
        vec![d("body.n", ValueChanged)]
    );
}

#[test]
fn nested_arrays_report_indexed_paths() {
    let e =
        json_resp(json!({"orders": [{"lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}]}]}));
    let a =
        json_resp(json!({"orders": [{"lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 5}]}]}));
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body.orders.0.lines.1.qty".into(),
            ValueChanged,
            Some(json!(2)),
            Some(json!(5))
        )]
    );
    assert_eq!(
        c.failure_info.assessment.diffs[0].noise_key().as_deref(),
        Some("body.orders.lines.qty")
    );
    // Index-free rule covers it; a rule for another index does not.
    assert_passed(&run(&e, &a, &noise(&[("body.orders.lines.qty", &[])])));
    assert_passed(&run(&e, &a, &noise(&[("body.orders.0.lines.1.qty", &[])])));
    assert!(!run(&e, &a, &noise(&[("body.orders.0.lines.0.qty", &[])])).passed);
    // Arrays directly inside arrays.
    let e = json_resp(json!({"m": [[1, 2], [3, 4]]}));
    let a = json_resp(json!({"m": [[1, 2], [3, 9]]}));
    assert_eq!(
        kinds(&run(&e, &a, &NoiseMap::new())),
        vec![d("body.m.1.1", ValueChanged)]
    );
    assert_passed(&run(&e, &a, &noise(&[("body.m", &["^9$"])])));
}

#[test]
fn arrays_of_different_length() {
    let e = json_resp(json!({"xs": [1, 2, 3]}));
    let a = json_resp(json!({"xs": [1, 2]}));
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body.xs.2".into(),
            Removed,
            Some(json!(3)),
            None
        )]
    );
    assert_eq!(risk_of(&c), (Risk::High, vec![Category::SchemaBroken]));
    let c = run(&a, &e, &NoiseMap::new());
    assert_eq!(kinds(&c), vec![d("body.xs.2", Added)]);
    assert_eq!(risk_of(&c), (Risk::Low, vec![Category::SchemaAdded]));
}

#[test]
fn ignore_ordering_compares_multisets() {
    let e = json_resp(json!({"xs": [{"id": 1}, {"id": 2}, {"id": 3}]}));
    let a = json_resp(json!({"xs": [{"id": 3}, {"id": 1}, {"id": 2}]}));
    assert_passed(&unordered(&e, &a, &NoiseMap::new()));
    assert_eq!(
        kinds(&run(&e, &a, &NoiseMap::new())),
        vec![
            d("body.xs.0.id", ValueChanged),
            d("body.xs.1.id", ValueChanged),
            d("body.xs.2.id", ValueChanged)
        ]
    );
    // Multiplicity matters: [1,1,2] is not [1,2,2]; the unpaired elements are diffed.
    let c = unordered(
        &json_resp(json!([1, 1, 2])),
        &json_resp(json!([2, 1, 2])),
        &NoiseMap::new(),
    );
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body.1".into(),
            ValueChanged,
            Some(json!(1)),
            Some(json!(2))
        )]
    );
    // A reordered element with one changed field is diffed field by field; extras are added.
    let e = json_resp(json!([{"id": 1, "v": "a"}, {"id": 2, "v": "b"}]));
    let a = json_resp(json!([{"id": 2, "v": "b"}, {"id": 1, "v": "z"}, {"id": 3}]));
    assert_eq!(
        kinds(&unordered(&e, &a, &NoiseMap::new())),
        vec![d("body.0.v", ValueChanged), d("body.2", Added)]
    );
    // Elements equal only under noise still pair up.
    let e = json_resp(json!({"xs": [{"id": 1, "ts": 10}, {"id": 2, "ts": 20}]}));
    let a = json_resp(json!({"xs": [{"id": 2, "ts": 99}, {"id": 1, "ts": 98}]}));
    assert_passed(&unordered(&e, &a, &noise(&[("body.xs.ts", &[])])));
    // Nested arrays are unordered too.
    let e = json_resp(json!({"g": [[1, 2], [3, 4]]}));
    let a = json_resp(json!({"g": [[4, 3], [2, 1]]}));
    assert_passed(&unordered(&e, &a, &NoiseMap::new()));
}

#[test]
fn risk_is_the_maximum_over_everything() {
    let e = resp(
        200,
        &[("Content-Type", "application/json"), ("X-A", "1")],
        br#"{"a":1,"b":2}"#,
    );
    let a = resp(
        201,
        &[("Content-Type", "application/json"), ("X-A", "2")],
        br#"{"a":1,"c":3}"#,
    );
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(
        risk_of(&c),
        (
            Risk::High,
            vec![
                Category::SchemaAdded,
                Category::SchemaBroken,
                Category::StatusCodeChanged,
                Category::HeaderChanged
            ]
        )
    );
    assert_eq!(
        kinds(&c),
        vec![
            d("status_code", ValueChanged),
            d("header.X-A", ValueChanged),
            d("body.b", Removed),
            d("body.c", Added)
        ]
    );
    assert!(Risk::None < Risk::Low && Risk::Low < Risk::Medium && Risk::Medium < Risk::High);
}
