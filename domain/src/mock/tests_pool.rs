//! Replay pool tests: tiers, consumption order, noise, miss reports, test isolation, pruning.

use std::collections::BTreeSet;

use super::*;
use crate::noise::NoiseMap;

pub(super) fn fields(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// A mock with the given request fields and response text; request time `ts`.
pub(super) fn mock(
    name: &str,
    lifetime: Lifetime,
    test: Option<&str>,
    ts: u64,
    pairs: &[(&str, &str)],
    response: &str,
) -> Mock {
    Mock {
        name: name.to_owned(),
        kind: MockKind::Postgres,
        lifetime,
        connection_id: "1".to_owned(),
        destination: "db:5432".to_owned(),
        request: format!("req {name}").into_bytes(),
        response: response.as_bytes().to_vec(),
        fields: fields(pairs),
        summary: format!("summary of {name}"),
        req_ts_ns: ts,
        resp_ts_ns: ts + 1,
        test_case: test.map(str::to_owned),
        noise: NoiseMap::new(),
    }
}

fn hit(outcome: &MatchOutcome) -> (&str, &[u8]) {
    match outcome {
        MatchOutcome::Hit { name, response, .. } => (name.as_str(), response.as_slice()),
        MatchOutcome::Miss(report) => panic!("expected a hit, got a miss: {report:?}"),
    }
}

fn miss(outcome: MatchOutcome) -> MissReport {
    match outcome {
        MatchOutcome::Miss(report) => report,
        MatchOutcome::Hit { name, .. } => panic!("expected a miss, got {name}"),
    }
}

const SELECT: &[(&str, &str)] = &[("query", "SELECT * FROM t WHERE id = $1"), ("param.1", "7")];

#[test]
fn pool_exact_per_test_hit_is_consumed() {
    let mut pool = MockPool::new(vec![mock(
        "mock-1",
        Lifetime::PerTest,
        Some("test-1"),
        10,
        SELECT,
        "row 7",
    )]);
    pool.begin_test("test-1");
    let out = pool.match_request(MockKind::Postgres, &fields(SELECT));
    assert_eq!(hit(&out), ("mock-1", b"row 7".as_slice()));
    assert!(matches!(
        out,
        MatchOutcome::Hit {
            lifetime: Lifetime::PerTest,
            ..
        }
    ));
    assert_eq!(pool.consumed(), vec!["mock-1"]);
    assert_eq!(pool.used(), BTreeSet::from(["mock-1".to_owned()]));
    assert!(pool.unused_per_test().is_empty());
    // Another kind with the same fields is not this mock.
    let other = miss(pool.match_request(MockKind::MySql, &fields(SELECT)));
    assert_eq!(other.closest, None);
}

#[test]
fn pool_identical_requests_served_in_recorded_order_then_miss() {
    // Given out of order: recorded order is request time.
    let mut pool = MockPool::new(vec![
        mock(
            "mock-2",
            Lifetime::PerTest,
            Some("t"),
            20,
            SELECT,
            "count 2",
        ),
        mock(
            "mock-1",
            Lifetime::PerTest,
            Some("t"),
            10,
            SELECT,
            "count 1",
        ),
    ]);
    pool.begin_test("t");
    let first = pool.match_request(MockKind::Postgres, &fields(SELECT));
    assert_eq!(hit(&first), ("mock-1", b"count 1".as_slice()));
    let second = pool.match_request(MockKind::Postgres, &fields(SELECT));
    assert_eq!(hit(&second), ("mock-2", b"count 2".as_slice()));
    let third = miss(pool.match_request(MockKind::Postgres, &fields(SELECT)));
    let closest = third.closest.expect("a closest candidate");
    assert_eq!(closest.name, "mock-1");
    assert!(closest.consumed, "the repeated call's answers are used up");
    assert!(closest.field_diffs.is_empty());
    assert_eq!(third.test_case.as_deref(), Some("t"));
    assert_eq!(third.fields, fields(SELECT));
    assert!(third.request_summary.contains("param.1=7"));
    assert_eq!(pool.consumed(), vec!["mock-1", "mock-2"]);
}

#[test]
fn pool_connection_and_session_mocks_are_reused_not_consumed() {
    let startup = [("query", "SET search_path = app")];
    let prepared = [("parse", "S_1"), ("query", "SELECT 1")];
    let mut pool = MockPool::new(vec![
        mock("mock-0", Lifetime::Session, None, 1, &startup, "SET"),
        mock(
            "mock-1",
            Lifetime::Connection,
            None,
            2,
            &prepared,
            "ParseComplete",
        ),
        mock("mock-2", Lifetime::PerTest, Some("t1"), 3, SELECT, "row"),
    ]);
    // Before any test only reused mocks answer.
    assert_eq!(
        hit(&pool.match_request(MockKind::Postgres, &fields(&startup))).0,
        "mock-0"
    );
    let before = miss(pool.match_request(MockKind::Postgres, &fields(SELECT)));
    assert_eq!(before.test_case, None);
    for test in ["t1", "t2"] {
        pool.begin_test(test);
        for _ in 0..3 {
            assert_eq!(
                hit(&pool.match_request(MockKind::Postgres, &fields(&startup))).0,
                "mock-0"
            );
            let out = pool.match_request(MockKind::Postgres, &fields(&prepared));
            assert_eq!(hit(&out).0, "mock-1");
            assert!(matches!(
                out,
                MatchOutcome::Hit {
                    lifetime: Lifetime::Connection,
                    ..
                }
            ));
        }
    }
    assert!(pool.consumed().is_empty());
    assert_eq!(
        pool.used(),
        BTreeSet::from(["mock-0".to_owned(), "mock-1".to_owned()])
    );
    assert_eq!(pool.unused_per_test(), vec!["mock-2"]);
}

#[test]
fn pool_identical_session_mocks_each_once_then_the_last() {
    let q = [("query", "SELECT count(*) FROM jobs")];
    let mut pool = MockPool::new(vec![
        mock("mock-0", Lifetime::Session, None, 1, &q, "0"),
        mock("mock-1", Lifetime::Session, None, 2, &q, "1"),
    ]);
    let served: Vec<String> = (0..3)
        .map(|_| {
            hit(&pool.match_request(MockKind::Postgres, &fields(&q)))
                .0
                .to_owned()
        })
        .collect();
    assert_eq!(served, ["mock-0", "mock-1", "mock-1"]);
}

#[test]
fn pool_per_test_exact_beats_reused_and_noise() {
    let mut noisy = mock("mock-1", Lifetime::PerTest, Some("t"), 1, SELECT, "noisy");
    noisy.noise = NoiseMap::from([("field.param.1".to_owned(), vec![])]);
    let mut pool = MockPool::new(vec![
        noisy,
        mock("mock-2", Lifetime::Session, None, 2, SELECT, "session"),
        mock(
            "mock-3",
            Lifetime::PerTest,
            Some("t"),
            3,
            &[SELECT[0], ("param.1", "8")],
            "exact",
        ),
    ]);
    pool.begin_test("t");
    // mock-1 (per-test, earlier) would match only noise-aware: the exact mock-3 wins.
    let request = fields(&[SELECT[0], ("param.1", "8")]);
    assert_eq!(
        hit(&pool.match_request(MockKind::Postgres, &request)).0,
        "mock-3"
    );
    // Exact per-test before exact session.
    assert_eq!(
        hit(&pool.match_request(MockKind::Postgres, &fields(SELECT))).0,
        "mock-1"
    );
    // Now only the session mock is exact.
    assert_eq!(
        hit(&pool.match_request(MockKind::Postgres, &fields(SELECT))).0,
        "mock-2"
    );
}

#[test]
fn pool_noise_aware_match_with_regex() {
    let recorded = [
        ("query", "INSERT INTO ev VALUES ($1, $2)"),
        ("param.1", "a"),
        ("param.2", "2024-08-19T10:00:00Z"),
    ];
    let mut m = mock(
        "mock-1",
        Lifetime::PerTest,
        Some("t"),
        1,
        &recorded,
        "INSERT 0 1",
    );
    m.noise = NoiseMap::from([(
        "field.param.2".to_owned(),
        vec![r"^\d{4}-\d{2}-\d{2}T".to_owned()],
    )]);
    let mut pool = MockPool::new(vec![m.clone(), m.clone()]);
    pool.begin_test("t");
    let now = fields(&[
        recorded[0],
        recorded[1],
        ("param.2", "2031-01-02T03:04:05Z"),
    ]);
    assert_eq!(
        hit(&pool.match_request(MockKind::Postgres, &now)).0,
        "mock-1"
    );
    // The regex judges the received value: not a timestamp, not forgiven.
    let bad = fields(&[recorded[0], recorded[1], ("param.2", "yesterday")]);
    let report = miss(pool.match_request(MockKind::Postgres, &bad));
    let closest = report.closest.expect("closest");
    assert_eq!(
        closest.field_diffs,
        vec![FieldDiff {
            field: "param.2".to_owned(),
            expected: Some("2024-08-19T10:00:00Z".to_owned()),
            actual: Some("yesterday".to_owned()),
        }]
    );
    // Noise never covers another field.
    let other = fields(&[
        recorded[0],
        ("param.1", "b"),
        ("param.2", "2031-01-02T03:04:05Z"),
    ]);
    assert!(matches!(
        pool.match_request(MockKind::Postgres, &other),
        MatchOutcome::Miss(_)
    ));
}

#[test]
fn pool_global_noise_with_empty_list_ignores_the_field() {
    let recorded = [("command", "SET"), ("arg.1", "session:abc"), ("arg.2", "v")];
    let build = || {
        MockPool::new(vec![mock(
            "mock-1",
            Lifetime::PerTest,
            Some("t"),
            1,
            &recorded,
            "+OK",
        )])
    };
    let request = fields(&[("command", "SET"), ("arg.1", "session:xyz"), ("arg.2", "v")]);

    let mut strict = build();
    strict.begin_test("t");
    assert!(matches!(
        strict.match_request(MockKind::Postgres, &request),
        MatchOutcome::Miss(_)
    ));

    let mut pool = build().with_noise(NoiseMap::from([
        ("field.arg.1".to_owned(), vec![]),
        // Not a field rule: ignored by the pool.
        ("header.Date".to_owned(), vec![]),
    ]));
    pool.begin_test("t");
    assert_eq!(
        hit(&pool.match_request(MockKind::Postgres, &request)).0,
        "mock-1"
    );
    assert!(pool.noise_errors().is_empty());
}

#[test]
fn pool_bad_noise_regex_is_reported_and_forgives_nothing() {
    let mut m = mock("mock-1", Lifetime::PerTest, Some("t"), 1, SELECT, "row");
    m.noise = NoiseMap::from([("field.param.1".to_owned(), vec!["(".to_owned()])]);
    let mut pool = MockPool::new(vec![m]);
    pool.begin_test("t");
    assert_eq!(pool.noise_errors().len(), 1);
    assert!(pool.noise_errors()[0].contains("field.param.1"));
    let changed = fields(&[SELECT[0], ("param.1", "(")]);
    assert!(matches!(
        pool.match_request(MockKind::Postgres, &changed),
        MatchOutcome::Miss(_)
    ));
}

#[test]
fn pool_miss_reports_changed_query_param_and_never_serves_it() {
    let raw = b"GET /items?size=10&page=1 HTTP/1.1\r\nHost: api:80\r\n\r\n";
    let mut m = mock(
        "mock-4",
        Lifetime::PerTest,
        Some("t"),
        1,
        &[],
        "HTTP/1.1 200 OK\r\n\r\n",
    );
    m.kind = MockKind::Http;
    m.fields = http_request_fields(raw);
    let mut post = mock(
        "mock-5",
        Lifetime::PerTest,
        Some("t"),
        2,
        &[("method", "POST")],
        "x",
    );
    post.kind = MockKind::Http;
    let mut pool = MockPool::new(vec![m, post]);
    pool.begin_test("t");
    let changed =
        http_request_fields(b"GET /items?page=2&size=10 HTTP/1.1\r\nHost: api:80\r\n\r\n");
    let report = miss(pool.match_request(MockKind::Http, &changed));
    assert_eq!(report.kind, MockKind::Http);
    let closest = report.closest.expect("closest");
    assert_eq!(closest.name, "mock-4");
    assert!(!closest.consumed);
    assert_eq!(closest.test_case.as_deref(), Some("t"));
    assert_eq!(
        closest.field_diffs,
        vec![FieldDiff {
            field: "query.page".to_owned(),
            expected: Some("1".to_owned()),
            actual: Some("2".to_owned()),
        }]
    );
    assert!(pool.used().is_empty(), "a miss serves nothing");
    // Query order does not matter; the recorded request still gets its answer.
    let same = http_request_fields(b"GET /items?page=1&size=10 HTTP/1.1\r\nHost: api:80\r\n\r\n");
    assert_eq!(hit(&pool.match_request(MockKind::Http, &same)).0, "mock-4");
}

#[test]
fn pool_begin_test_isolates_tests_under_strict_windows() {
    let q1 = [("query", "SELECT 1")];
    let q2 = [("query", "SELECT 2")];
    let all = || {
        vec![
            mock("mock-1", Lifetime::PerTest, Some("test-1"), 1, &q1, "one"),
            mock("mock-2", Lifetime::PerTest, Some("test-2"), 2, &q2, "two"),
            mock("mock-3", Lifetime::PerTest, None, 3, &q2, "unattributed"),
        ]
    };
    let mut pool = MockPool::new(all());
    pool.begin_test("test-1");
    // An unattributed mock (concurrent recording) answers an exact match in any test...
    assert_eq!(
        hit(&pool.match_request(MockKind::Postgres, &fields(&q2))).0,
        "mock-3"
    );
    // ...once; test-2's own mock is not eligible during test-1.
    let report = miss(pool.match_request(MockKind::Postgres, &fields(&q2)));
    let closest = report.closest.expect("closest");
    assert_eq!(
        (closest.name.as_str(), closest.test_case.as_deref()),
        ("mock-2", Some("test-2"))
    );
    pool.begin_test("test-2");
    assert_eq!(
        hit(&pool.match_request(MockKind::Postgres, &fields(&q2))).0,
        "mock-2"
    );
    // test-1's leftover is out of the window now.
    assert!(matches!(
        pool.match_request(MockKind::Postgres, &fields(&q1)),
        MatchOutcome::Miss(_)
    ));
    assert_eq!(pool.unused_of("test-1"), vec!["mock-1"]);
    assert_eq!(pool.current_test(), Some("test-2"));

    // Without strict windows: earlier tests' leftovers and unattributed mocks answer, after
    // the current test's own; later tests' mocks still do not.
    let mut loose = MockPool::new(all()).with_strict_windows(false);
    loose.begin_test("test-1");
    assert_eq!(
        hit(&loose.match_request(MockKind::Postgres, &fields(&q2))).0,
        "mock-3"
    );
    assert!(matches!(
        loose.match_request(MockKind::Postgres, &fields(&q2)),
        MatchOutcome::Miss(_)
    ));
    loose.begin_test("test-2");
    assert_eq!(
        hit(&loose.match_request(MockKind::Postgres, &fields(&q1))).0,
        "mock-1"
    );
    assert_eq!(
        hit(&loose.match_request(MockKind::Postgres, &fields(&q2))).0,
        "mock-2"
    );
}

#[test]
fn pool_miss_without_shared_fields_names_no_closest() {
    let mut pool = MockPool::new(vec![
        mock("mock-1", Lifetime::Session, None, 1, &[("query", "A")], "a"),
        mock("mock-2", Lifetime::Session, None, 2, &[("query", "B")], "b"),
    ]);
    let report = miss(pool.match_request(MockKind::Postgres, &fields(&[("query", "C")])));
    assert_eq!(report.closest, None);
    // With one candidate of the kind, it is the clue.
    let mut single = MockPool::new(vec![mock(
        "mock-1",
        Lifetime::Session,
        None,
        1,
        &[("query", "A")],
        "a",
    )]);
    let report = miss(single.match_request(MockKind::Postgres, &fields(&[("query", "C")])));
    let closest = report.closest.clone().expect("closest");
    assert_eq!(closest.field_diffs[0].expected.as_deref(), Some("A"));
    assert_eq!(closest.lifetime, Lifetime::Session);
    // Serialisable for reports.
    let json = serde_json::to_string(&report).expect("json");
    assert!(json.contains("\"kind\":\"PostgresV2\""), "{json}");
}

#[test]
fn prune_keeps_what_it_must() {
    let q = [("query", "q")];
    let mocks = vec![
        mock("session", Lifetime::Session, None, 1, &q, ""),
        mock("conn", Lifetime::Connection, Some("t1"), 2, &q, ""),
        mock("used", Lifetime::PerTest, Some("t1"), 3, &q, ""),
        mock("unused", Lifetime::PerTest, Some("t1"), 4, &q, ""),
        mock("not-run", Lifetime::PerTest, Some("t2"), 5, &q, ""),
        mock("unattributed", Lifetime::PerTest, None, 6, &q, ""),
    ];
    let used = BTreeSet::from(["used".to_owned()]);
    let ran = BTreeSet::from(["t1".to_owned()]);
    assert_eq!(prune(&mocks, &used, &ran), vec!["unused"]);
    assert!(prune(&mocks, &used, &BTreeSet::new()).is_empty());
}
