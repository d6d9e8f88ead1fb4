//! Header rules: volatile names, exact-name noise, Content-Type, framing, hop-by-hop.

use serde_json::json;

use super::tests::{assert_passed, d, kinds, noise, resp, run};
use super::*;

use DiffKind::{Added, Removed, ValueChanged};

fn risk_of(c: &Comparison) -> (Risk, Vec<Category>) {
    (c.failure_info.risk, c.failure_info.category.clone())
}

#[test]
fn volatile_headers_forgiven_only_when_present_on_both_sides() {
    let e = resp(
        200,
        &[
            ("Date", "Mon, 19 Aug 2024 10:36:18 GMT"),
            ("X-Request-Id", "a"),
            ("traceparent", "00-1"),
        ],
        b"hi",
    );
    let a = resp(
        200,
        &[
            ("date", "Tue, 20 Aug 2024 10:36:18 GMT"),
            ("x-request-id", "b"),
            ("TraceParent", "00-2"),
        ],
        b"hi",
    );
    let c = run(&e, &a, &NoiseMap::new());
    assert_passed(&c);
    assert_eq!(c.headers_result.len(), 3);
    assert_eq!(c.headers_result[0].actual.key, "date");
    let a = resp(200, &[("Date", "x"), ("traceparent", "00-1")], b"hi");
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "header.X-Request-Id".into(),
            Removed,
            Some(json!("a")),
            None
        )]
    );
    assert_eq!(risk_of(&c), (Risk::Medium, vec![Category::HeaderChanged]));
    let bad = c.headers_result.iter().find(|h| !h.normal).unwrap();
    assert_eq!(
        bad.actual,
        HeaderValues {
            key: "X-Request-Id".into(),
            value: vec![]
        }
    );
}

#[test]
fn etag_is_compared() {
    let c = run(
        &resp(200, &[("ETag", "\"1\"")], b""),
        &resp(200, &[("ETag", "\"2\"")], b""),
        &NoiseMap::new(),
    );
    assert_eq!(kinds(&c), vec![d("header.ETag", ValueChanged)]);
    assert_eq!(risk_of(&c), (Risk::Medium, vec![Category::HeaderChanged]));
}

#[test]
fn header_noise_is_exact_name() {
    let e = resp(200, &[("X-Token", "t1"), ("X-Token-2", "u1")], b"");
    let a = resp(200, &[("x-token", "t2"), ("X-Token-2", "u2")], b"");
    let c = run(&e, &a, &noise(&[("header.x-TOKEN", &[])]));
    assert_eq!(kinds(&c), vec![d("header.X-Token-2", ValueChanged)]);
    // Regex rules judge the actual value.
    assert_passed(&run(
        &e,
        &a,
        &noise(&[
            ("header.X-Token", &["^t\\d$"]),
            ("header.X-Token-2", &["u"]),
        ]),
    ));
    let c = run(
        &e,
        &a,
        &noise(&[("header.X-Token", &["^zzz"]), ("header.X-Token-2", &[])]),
    );
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "header.X-Token".into(),
            ValueChanged,
            Some(json!("t1")),
            Some(json!("t2"))
        )]
    );
    // An empty list also forgives absence; a regex cannot match a missing value.
    let gone = resp(200, &[], b"");
    assert_passed(&run(
        &e,
        &gone,
        &noise(&[("header.X-Token", &[]), ("header.X-Token-2", &[])]),
    ));
    assert_eq!(
        kinds(&run(
            &e,
            &gone,
            &noise(&[("header.X-Token", &["."]), ("header.X-Token-2", &[])])
        )),
        vec![d("header.X-Token", Removed)]
    );
}

#[test]
fn content_type_change_is_high() {
    let e = resp(
        200,
        &[("Content-Type", "application/json; charset=utf-8")],
        b"{}",
    );
    let same = resp(
        200,
        &[("content-type", "Application/JSON;charset=UTF-8")],
        b"{}",
    );
    assert_passed(&run(&e, &same, &NoiseMap::new()));
    let a = resp(200, &[("Content-Type", "text/html")], b"{}");
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(risk_of(&c), (Risk::High, vec![Category::HeaderChanged]));
    assert_eq!(kinds(&c), vec![d("header.Content-Type", ValueChanged)]);
    let c = run(&e, &resp(200, &[], b"{}"), &NoiseMap::new());
    assert_eq!(risk_of(&c), (Risk::High, vec![Category::HeaderChanged]));
    assert_eq!(kinds(&c), vec![d("header.Content-Type", Removed)]);
}

#[test]
fn header_only_on_actual_side_and_multi_values() {
    let e = resp(200, &[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")], b"");
    let a = resp(
        200,
        &[("Set-Cookie", "a=1"), ("Set-Cookie", "b=2"), ("X-New", "1")],
        b"",
    );
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "header.X-New".into(),
            Added,
            None,
            Some(json!("1"))
        )]
    );
    assert_eq!(c.headers_result[0].expected.value, vec!["a=1", "b=2"]);
    assert_eq!(risk_of(&c), (Risk::Medium, vec![Category::HeaderChanged]));
    let swapped = resp(200, &[("Set-Cookie", "b=2"), ("set-cookie", "a=1")], b"");
    let c = run(&e, &swapped, &NoiseMap::new());
    assert_eq!(
        c.failure_info.assessment.diffs,
        vec![FieldDiff::new(
            "header.Set-Cookie".into(),
            ValueChanged,
            Some(json!("a=1, b=2")),
            Some(json!("b=2, a=1"))
        )]
    );
}

#[test]
fn content_length_follows_the_body_and_never_adds_risk() {
    let e = resp(200, &[("Content-Length", "13")], br#"{"a":1,"b":2}"#);
    let a = resp(200, &[("Content-Length", "17")], br#"{"a": 1, "b": 2}"#);
    assert_passed(&run(&e, &a, &NoiseMap::new()));
    // Matched after noise counts as matched.
    let a = resp(200, &[("Content-Length", "14")], br#"{"a":1,"b":20}"#);
    assert_passed(&run(&e, &a, &noise(&[("body.b", &[])])));
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(kinds(&c), vec![d("body.b", ValueChanged)]);
    assert_eq!(risk_of(&c), (Risk::Medium, vec![Category::SchemaUnchanged]));
    // An added field stays LOW although the length changed with it.
    let a = resp(200, &[("Content-Length", "19")], br#"{"a":1,"b":2,"c":3}"#);
    let c = run(&e, &a, &NoiseMap::new());
    assert_eq!(kinds(&c), vec![d("body.c", Added)]);
    assert_eq!(risk_of(&c), (Risk::Low, vec![Category::SchemaAdded]));
}

#[test]
fn chunked_vs_content_length_framing() {
    let e = resp(200, &[("Content-Length", "5")], b"hello");
    let a = resp(200, &[("Transfer-Encoding", "chunked")], b"hello");
    let c = run(&e, &a, &NoiseMap::new());
    assert_passed(&c);
    assert_eq!(c.headers_result.len(), 2);
    assert!(c.headers_result.iter().all(|h| h.normal));
    let a = resp(200, &[("Transfer-Encoding", "chunked")], b"hellO");
    assert_eq!(
        kinds(&run(&e, &a, &NoiseMap::new())),
        vec![d("body", ValueChanged)]
    );
}

#[test]
fn connection_headers_are_ignored() {
    let e = resp(
        200,
        &[("Connection", "keep-alive"), ("Keep-Alive", "timeout=5")],
        b"",
    );
    let a = resp(200, &[("Connection", "close")], b"");
    assert_passed(&run(&e, &a, &NoiseMap::new()));
}
