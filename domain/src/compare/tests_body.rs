//! Body noise forms, non-JSON bodies, errors and serde names.

use serde_json::{Value, json};

use super::tests::{assert_passed, d, json_resp, kinds, noise, resp, run};
use super::*;

use DiffKind::{Added, Removed, TypeChanged, ValueChanged};

#[test]
fn whole_body_noise() {
    let e = json_resp(json!({"a": 1}));
    let a = resp(
        200,
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", "99"),
        ],
        b"<html>oops</html>",
    );
    assert_passed(&run(&e, &a, &noise(&[("body", &[])])));
    assert_passed(&run(&e, &a, &noise(&[("body", &["oops"])])));
    let c = run(&e, &a, &noise(&[("body", &["^\\{"])]));
    // The added Content-Length follows the body; the body's own change is what is reported.
    assert_eq!(kinds(&c), vec![d("body", TypeChanged)]);
}

#[test]
fn body_dot_path_noise() {
    let e = json_resp(
        json!({"user": {"id": 1, "name": "a", "session": {"tok": "x", "exp": 1}}, "n": 1}),
    );
    let a = json_resp(json!({"user": {"id": 1, "name": "b", "session": {"tok": "y"}}, "n": 1}));
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(
        kinds(&c),
        vec![
            d("body.user.name", ValueChanged),
            d("body.user.session.exp", Removed),
            d("body.user.session.tok", ValueChanged)
        ]
    );
    // A rule covers its subtree, including removed fields.
    let c = run(&e, &a, &noise(&[("body.user.session", &[])]));
    assert_eq!(kinds(&c), vec![d("body.user.name", ValueChanged)]);
    assert_passed(&run(
        &e,
        &a,
        &noise(&[("body.user.session", &[]), ("body.user.name", &[])]),
    ));
    // Keys are case-sensitive.
    assert!(!run(&e, &a, &noise(&[("body.User", &[])])).passed);
}

#[test]
fn index_free_and_indexed_array_noise() {
    let e = json_resp(
        json!({"items": [{"id": "u1", "v": 1}, {"id": "u2", "v": 2}, {"id": "u3", "v": 3}]}),
    );
    let a = json_resp(
        json!({"items": [{"id": "w1", "v": 1}, {"id": "w2", "v": 2}, {"id": "w3", "v": 3}]}),
    );
    assert_passed(&run(&e, &a, &noise(&[("body.items.id", &[])])));
    let c = run(&e, &a, &noise(&[("body.items.0.id", &[])]));
    assert_eq!(
        kinds(&c),
        vec![
            d("body.items.1.id", ValueChanged),
            d("body.items.2.id", ValueChanged)
        ]
    );
    // A rule on a field does not hide a whole added element.
    let more = json_resp(
        json!({"items": [{"id": "w1", "v": 1}, {"id": "w2", "v": 2}, {"id": "w3", "v": 3}, {"id": "w4", "v": 4}]}),
    );
    assert_eq!(
        kinds(&run(&e, &more, &noise(&[("body.items.id", &[])]))),
        vec![d("body.items.3", Added)]
    );
    assert_passed(&run(&e, &more, &noise(&[("body.items", &[])])));
}

#[test]
fn regex_noise_matches_actual_values_only() {
    let e = json_resp(json!({"ts": "2024-08-19T10:36:18Z", "tags": ["v1", "v2"], "n": 10}));
    let a = json_resp(json!({"ts": "2024-08-20T11:00:00Z", "tags": ["v7", "x"], "n": 11}));
    let rules = noise(&[
        ("body.ts", &["^\\d{4}-\\d{2}-\\d{2}T"]),
        ("body.tags", &["^v\\d$"]),
        ("body.n", &["^1\\d$"]),
    ]);
    let c = run(&e, &a, &rules);
    // "x" does not match; every other changed value does.
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body.tags.1".into(),
            ValueChanged,
            Some(json!("v2")),
            Some(json!("x"))
        )]
    );
    let c = run(&e, &a, &noise(&[("body.ts", &["^nope$", "^2024-08-20"])]));
    assert!(!kinds(&c).contains(&d("body.ts", ValueChanged)));
    let c = run(&e, &a, &noise(&[("body.ts", &["^2023"])]));
    assert!(kinds(&c).contains(&d("body.ts", ValueChanged)));
    // A removed field has no actual value for a regex to match.
    let gone = json_resp(json!({"tags": ["v1", "v2"], "n": 10}));
    assert_eq!(
        kinds(&run(&e, &gone, &noise(&[("body.ts", &["."])]))),
        vec![d("body.ts", Removed)]
    );
}

#[test]
fn non_json_text_bodies() {
    let e = resp(200, &[("Content-Type", "text/plain")], b"Hello, World!");
    assert_passed(&run(&e, &e, &NoiseMap::new()));
    let a = resp(200, &[("Content-Type", "text/plain")], b"Hello, Mars!");
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(c.body_result[0].body_type, BodyType::Plain);
    assert_eq!(c.body_result[0].expected, "Hello, World!");
    assert_eq!(c.body_result[0].actual, "Hello, Mars!");
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body".into(),
            ValueChanged,
            Some(json!("Hello, World!")),
            Some(json!("Hello, Mars!"))
        )]
    );
    assert_eq!(
        (c.failure_info.risk, c.failure_info.category.clone()),
        (Risk::Medium, vec![Category::SchemaUnchanged])
    );
    assert_eq!(c.failure_info.assessment.value_changes, vec!["body"]);
    // Not compared when compare_non_json is off.
    let opts = CompareOptions {
        compare_non_json: false,
        ..CompareOptions::default()
    };
    assert_passed(&compare(&e, &a, &NoiseMap::new(), &opts).unwrap());
}

#[test]
fn binary_bodies_are_base64() {
    let e = resp(
        200,
        &[("Content-Type", "image/png")],
        &[0x89, b'P', b'N', b'G', 0xff],
    );
    let a = resp(
        200,
        &[("Content-Type", "image/png")],
        &[0x89, b'P', b'N', b'G', 0xfe],
    );
    assert_passed(&run(&e, &e, &NoiseMap::new()));
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(c.body_result[0].body_type, BodyType::Binary);
    assert_eq!(c.body_result[0].expected, "iVBOR/8=");
    assert_eq!(c.body_result[0].actual, "iVBOR/4=");
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body".into(),
            ValueChanged,
            Some(json!("iVBOR/8=")),
            Some(json!("iVBOR/4="))
        )]
    );
    assert_eq!(c.failure_info.risk, Risk::Medium);
}

#[test]
fn json_replaced_by_non_json_is_schema_broken() {
    let e = json_resp(json!({"a": 1}));
    let a = resp(
        200,
        &[("Content-Type", "application/json")],
        b"<html>502</html>",
    );
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(c.body_result[0].body_type, BodyType::Json);
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "body".into(),
            TypeChanged,
            Some(json!({"a": 1})),
            Some(json!("<html>502</html>"))
        )]
    );
    assert_eq!(
        (c.failure_info.risk, c.failure_info.category.clone()),
        (Risk::High, vec![Category::SchemaBroken])
    );
    // Even with compare_non_json off: the recording was JSON.
    let opts = CompareOptions {
        compare_non_json: false,
        ..CompareOptions::default()
    };
    assert!(!compare(&e, &a, &NoiseMap::new(), &opts).unwrap().passed);
    // A text/plain scalar that happens to parse as JSON is just text.
    let e = resp(200, &[("Content-Type", "text/plain")], b"42");
    let a = resp(200, &[("Content-Type", "text/plain")], b"forty-two");
    assert_eq!(
        kinds(&run(&e, &a, &NoiseMap::new())),
        vec![d("body", ValueChanged)]
    );
}

#[test]
fn truncated_bodies_compare_as_prefixes() {
    let mut e = resp(200, &[("Content-Length", "10")], b"{\"a\": [1,");
    e.body_truncated = true;
    let a = resp(200, &[("Content-Length", "10")], b"{\"a\": [1,2]}");
    assert_passed(&run(&e, &a, &NoiseMap::new()));
    // The size is still asserted through Content-Length.
    let a = resp(200, &[("Content-Length", "11")], b"{\"a\": [1,22]}");
    assert_eq!(
        kinds(&run(&e, &a, &NoiseMap::new())),
        vec![d("header.Content-Length", ValueChanged)]
    );
    let a = resp(200, &[("Content-Length", "10")], b"{\"b\": [1,2]}");
    assert_eq!(
        kinds(&run(&e, &a, &NoiseMap::new())),
        vec![d("body", ValueChanged)]
    );
}

#[test]
fn invalid_regex_is_an_error() {
    let e = json_resp(json!({}));
    let err = compare(
        &e,
        &e,
        &noise(&[("body.x", &["[z-a]"])]),
        &CompareOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(&err, NoiseError::Regex { path, pattern, .. } if path == "body.x" && pattern == "[z-a]")
    );
}

#[test]
fn serde_names_are_the_contract() {
    let c = run(
        &json_resp(json!({"a": null, "b": 1})),
        &json_resp(json!({"a": 1, "c": 2})),
        &NoiseMap::new(),
    );
    let v = serde_json::to_value(&c).unwrap();
    assert_eq!(v["passed"], json!(false));
    assert_eq!(
        v["status_code"],
        json!({"normal": true, "expected": 200, "actual": 200})
    );
    assert_eq!(v["body_result"][0]["type"], json!("JSON"));
    assert_eq!(v["failure_info"]["risk"], json!("HIGH"));
    assert_eq!(
        v["failure_info"]["category"],
        json!(["SCHEMA_ADDED", "SCHEMA_BROKEN"])
    );
    assert_eq!(
        v["failure_info"]["assessment"]["type_changes"],
        json!(["body.a"])
    );
    assert_eq!(
        v["failure_info"]["assessment"]["diffs"],
        json!([
            {"path": "body.a", "kind": "type_changed", "expected": null, "actual": 1},
            {"path": "body.b", "kind": "removed", "expected": 1},
            {"path": "body.c", "kind": "added", "actual": 2},
        ])
    );
    assert_eq!(
        v["headers_result"][0]["expected"],
        json!({"key": "Content-Type", "value": ["application/json"]})
    );
    // A JSON null survives the round trip distinct from an absent side.
    let back: Comparison = serde_json::from_value(v).unwrap();
    assert_eq!(back, c);
    assert_eq!(
        back.failure_info.assessment.diffs[0].expected,
        Some(Value::Null)
    );
    let opts: CompareOptions = serde_json::from_str(r#"{"ignore_ordering": true}"#).unwrap();
    assert_eq!(
        opts,
        CompareOptions {
            ignore_ordering: true,
            compare_non_json: true
        }
    );
}

#[test]
fn noise_keys_and_failure_constructor() {
    let f = |p: &str| FieldDiff::new(p.into(), ValueChanged, None, None).noise_key();
    assert_eq!(f("body.items.2.id").as_deref(), Some("body.items.id"));
    assert_eq!(f("body.m.1.1").as_deref(), Some("body.m"));
    assert_eq!(f("header.X-Token").as_deref(), Some("header.X-Token"));
    assert_eq!(f("body").as_deref(), Some("body"));
    assert_eq!(f("status_code"), None);

    let e = json_resp(json!({}));
    let c = Comparison::failure(&e, Category::AppConnectionError, "connection refused");
    assert!(!c.passed);
    assert_eq!(
        c.status_code,
        StatusCodeResult {
            normal: false,
            expected: 200,
            actual: 0
        }
    );
    assert_eq!(c.failure_info.risk, Risk::High);
    assert_eq!(c.failure_info.category, vec![Category::AppConnectionError]);
    assert_eq!(
        c.failure_info.assessment.reasons,
        vec!["connection refused"]
    );
    assert_eq!(
        serde_json::to_value(Category::AppConnectionError).unwrap(),
        json!("APP_CONNECTION_ERROR")
    );
}
