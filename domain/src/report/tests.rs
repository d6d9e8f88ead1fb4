use serde_json::json;

use super::*;
use crate::compare::{Category, CompareOptions, compare};

fn req() -> HttpRequest {
    HttpRequest {
        method: "POST".into(),
        url: "http://svc:8080/items?q=1".into(),
        target: "/items?q=1".into(),
        proto_minor: 1,
        headers: vec![
            Header::new("Host", "svc:8080"),
            Header::new("Accept", "application/json"),
            Header::new("accept", "text/plain"),
        ],
        body: br#"{"name":"x"}"#.to_vec(),
        body_truncated: false,
        timestamp_ns: 1_724_063_778_340_635_824,
    }
}

fn resp(status: u16, body: &str) -> HttpResponse {
    HttpResponse {
        status_code: status,
        status_message: "OK".into(),
        proto_minor: 1,
        headers: vec![
            Header::new("Content-Type", "application/json"),
            Header::new("Date", "Mon, 19 Aug 2024 10:36:18 GMT"),
        ],
        body: body.as_bytes().to_vec(),
        body_truncated: false,
        timestamp_ns: 1_724_063_780_000_000_001,
    }
}

fn result_for(id: &str, expected: &HttpResponse, actual: &HttpResponse) -> TestResult {
    let noise = NoiseMap::from([
        ("header.Date".to_string(), vec![]),
        ("body.ts".to_string(), vec!["^\\d+$".to_string()]),
    ]);
    let c = compare(expected, actual, &noise, &CompareOptions::default()).unwrap();
    let mut t = TestResult::new("test-set-0", id);
    t.started = 1_724_063_790;
    t.completed = 1_724_063_791;
    t.test_case_path = "keploy/test-set-0/tests".into();
    t.mock_path = "keploy/test-set-0/mocks.yaml".into();
    t.req = ReportRequest::from_request(&req());
    t.resp = ReportResponse::from_response(actual);
    t.noise = noise;
    t.time_taken = "12.5ms".into();
    t.set_comparison(&c);
    t
}

fn sample_report() -> TestSetReport {
    let e = resp(
        200,
        r#"{"id":1,"nul":null,"ts":"1","text":"multi\nline: 'quoted' \"x\" # not a comment"}"#,
    );
    let mut r = TestSetReport::new("test-set-0", 1_724_063_800);
    r.tests.push(result_for("test-1", &e, &e));
    r.tests.push(result_for(
        "test-2",
        &e,
        &resp(500, r#"{"id":2,"nul":3,"ts":"2","extra":[1.5,true]}"#),
    ));
    r.tests.push(result_for(
        "test-3",
        &e,
        &resp(
            200,
            r#"{"id":7,"nul":null,"ts":"1","text":"multi\nline: 'quoted' \"x\" # not a comment"}"#,
        ),
    ));
    let mut ignored = TestResult::new("test-set-0", "test-4");
    ignored.status = TestStatus::Ignored;
    r.tests.push(ignored);
    let mut obsolete = TestResult::new("test-set-0", "test-5");
    obsolete.status = TestStatus::Obsolete;
    r.tests.push(obsolete);
    r.status = TestSetStatus::Failed;
    r.time_taken = "1.25s".into();
    r.tally();
    r
}

#[test]
fn views_from_messages() {
    let v = ReportRequest::from_request(&req());
    assert_eq!(v.method, "POST");
    assert_eq!((v.proto_major, v.proto_minor), (1, 1));
    assert_eq!(v.url, "http://svc:8080/items?q=1");
    assert_eq!(
        v.header.get("Accept").map(String::as_str),
        Some("application/json, text/plain")
    );
    assert_eq!(v.header.len(), 2);
    assert_eq!(v.body, r#"{"name":"x"}"#);
    assert_eq!(v.timestamp, "2024-08-19T10:36:18.340635824Z");
    let mut r = resp(201, "");
    r.body = vec![b'a', 0xff, b'b'];
    let v = ReportResponse::from_response(&r);
    assert_eq!(v.status_code, 201);
    assert_eq!(v.body, "a\u{FFFD}b");
    assert_eq!(v.status_message, "OK");
    assert_eq!(v.timestamp, "2024-08-19T10:36:20.000000001Z");
}

#[test]
fn tally_counts_statuses_and_failed_risks() {
    let r = sample_report();
    assert_eq!(r.tests[0].status, TestStatus::Passed);
    assert_eq!(r.tests[1].status, TestStatus::Failed);
    assert_eq!(r.tests[1].failure_info.risk, Risk::High);
    assert_eq!(r.tests[2].status, TestStatus::Failed);
    assert_eq!(r.tests[2].failure_info.risk, Risk::Medium);
    assert_eq!(
        (r.success, r.failure, r.obsolete, r.ignored, r.total),
        (1, 2, 1, 1, 5)
    );
    assert_eq!((r.high_risk, r.medium_risk, r.low_risk), (1, 1, 0));
    // A passed test's risk never counts, even if set.
    let mut r2 = r.clone();
    r2.tests[0].failure_info.risk = Risk::Low;
    r2.tally();
    assert_eq!(r2.low_risk, 0);
    assert_eq!(r.name, "test-set-0-report");
    assert_eq!(r.version, REPORT_VERSION);
}

#[test]
fn yaml_round_trip_is_lossless_and_uses_keploy_names() {
    let r = sample_report();
    let yaml = report_to_yaml(&r).unwrap();
    for key in [
        "\nhigh-risk: 1\n",
        "\nmedium-risk: 1\n",
        "\nlow-risk: 0\n",
        "\nfailure_reason: ''\n",
        "\nstatus: FAILED\n",
        "test_case_id: test-1",
        "failure_info:",
        "time_taken: 12.5ms",
        "status_code:",
        "headers_result:",
        "body_result:",
        "type: JSON",
        "risk: HIGH",
        "- STATUS_CODE_CHANGED",
        "kind: type_changed",
        "header.Date: []",
    ] {
        assert!(yaml.contains(key), "missing {key:?} in\n{yaml}");
    }
    let back = report_from_yaml(&yaml).unwrap();
    assert_eq!(back, r);
    // The JSON null in a diff stays a null, distinct from an absent side.
    let diff = back.tests[1]
        .failure_info
        .assessment
        .diffs
        .iter()
        .find(|d| d.path == "body.nul")
        .unwrap();
    assert_eq!(diff.expected, Some(serde_json::Value::Null));
    assert_eq!(diff.actual, Some(json!(3)));
    assert_eq!(report_to_yaml(&back).unwrap(), yaml);
}

#[test]
fn reads_keploy_report_extras_and_statuses() {
    let yaml = "version: api.keploy.io/v1beta1\nname: test-set-1-report\nstatus: APP_HALTED\nfailure_reason: app exited\n\
                success: 0\nfailure: 0\nhigh-risk: 0\ntotal: 0\ntests: []\ntest_set: test-set-1\ncreated_at: 1\n\
                time_taken: 3s\ncmdUsed: go run .\napp_logs: ''\n";
    let r = report_from_yaml(yaml).unwrap();
    assert_eq!(r.status, TestSetStatus::AppHalted);
    assert!(r.status.is_error());
    assert_eq!(r.failure_reason, "app exited");
    assert!(report_from_yaml("status: [").is_err());
    for (s, v) in [
        (TestSetStatus::NoTestsToRun, "NO_TESTS_TO_RUN"),
        (TestSetStatus::InternalErr, "INTERNAL_ERR"),
        (TestSetStatus::UserAbort, "USER_ABORT"),
    ] {
        assert_eq!(serde_json::to_value(s).unwrap(), json!(v));
    }
    assert_eq!(
        serde_json::to_value(TestStatus::Obsolete).unwrap(),
        json!("OBSOLETE")
    );
}

#[test]
fn junit_document() {
    let mut r = sample_report();
    r.tests[1].test_case_id = "test-<2>&\"x\"".into();
    let mut halted = TestSetReport::new("set&1", 5);
    halted.status = TestSetStatus::AppHalted;
    halted.failure_reason = "app exited <code 1>".into();
    let xml = junit_xml("run-\"7\"", &[r, halted]);
    let expected_head = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
        <testsuites name=\"run-&quot;7&quot;\" tests=\"5\" failures=\"2\" errors=\"1\" skipped=\"2\" time=\"1.250\">\n  \
        <testsuite name=\"test-set-0\" tests=\"5\" failures=\"2\" errors=\"0\" skipped=\"2\" time=\"1.250\">\n    \
        <testcase name=\"test-1\" classname=\"test-set-0\" time=\"0.013\"/>\n    \
        <testcase name=\"test-&lt;2&gt;&amp;&quot;x&quot;\" classname=\"test-set-0\" time=\"0.013\">\n      \
        <failure message=\"risk HIGH: status_code, body.id, body.nul, body.text, body.extra\" type=\"HIGH\">\
        value_changed status_code: expected 200, actual 500\n\
        value_changed body.id: expected 1, actual 2\n\
        type_changed body.nul: expected null, actual 3\n\
        removed body.text: expected &quot;multi\\nline: &apos;quoted&apos; \\&quot;x\\&quot; # not a comment&quot;, actual (absent)\n\
        added body.extra: expected (absent), actual [1.5,true]\
        </failure>\n    </testcase>\n";
    assert!(xml.starts_with(expected_head), "{xml}");
    assert!(xml.contains(
        "    <testcase name=\"test-4\" classname=\"test-set-0\" time=\"0.000\">\n      <skipped message=\"ignored\"/>\n    </testcase>\n"
    ));
    assert!(xml.contains("<skipped message=\"obsolete\"/>"));
    assert!(xml.contains(
        "  <testsuite name=\"set&amp;1\" tests=\"0\" failures=\"0\" errors=\"1\" skipped=\"0\" time=\"0.000\">\n    \
         <system-err>app exited &lt;code 1&gt;</system-err>\n  </testsuite>\n</testsuites>\n"
    ));
}

#[test]
fn failure_without_diffs_uses_reasons() {
    let mut t = TestResult::new("s", "t");
    t.set_comparison(&Comparison::failure(
        &resp(200, "{}"),
        Category::AppConnectionError,
        "connection refused",
    ));
    let mut r = TestSetReport::new("s", 0);
    r.tests.push(t);
    let xml = junit_xml("run", &[r]);
    assert!(
        xml.contains("<failure message=\"risk HIGH: connection refused\" type=\"HIGH\">connection refused</failure>"),
        "{xml}"
    );
}

#[test]
fn durations() {
    assert_eq!(format_duration(0), "0s");
    assert_eq!(format_duration(850), "850ns");
    assert_eq!(format_duration(1_500), "1.5µs");
    assert_eq!(format_duration(12_500_000), "12.5ms");
    assert_eq!(format_duration(1_000_000), "1ms");
    assert_eq!(format_duration(2_500_000_000), "2.5s");
    assert_eq!(format_duration(90_000_000_000), "1m30s");
    assert_eq!(format_duration(3_605_000_000_000), "1h0m5s");
    assert_eq!(format_duration(1_000_000_001), "1.000000001s");
    for (text, secs) in [
        ("1h2m3.5s", 3723.5),
        ("12.5ms", 0.0125),
        ("850ns", 8.5e-7),
        ("1.5us", 1.5e-6),
        ("1.5µs", 1.5e-6),
        ("0", 0.0),
    ] {
        let got = parse_duration_secs(text).unwrap();
        assert!((got - secs).abs() < 1e-12, "{text}: {got}");
    }
    for bad in ["", "5", "1x", "s", "1..2s"] {
        assert_eq!(parse_duration_secs(bad), None, "{bad}");
    }
}
