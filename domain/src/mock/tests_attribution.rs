//! Record-time attribution tests: start-up, sequential and overlapping windows, evidence.

use super::tests_pool::mock;
use super::*;

fn on(conn: &str, mut m: Mock) -> Mock {
    m.connection_id = conn.to_owned();
    m
}

fn per_test(name: &str, ts: u64) -> Mock {
    // The parser's guess of a test is overwritten by attribution.
    mock(
        name,
        Lifetime::PerTest,
        Some("stale"),
        ts,
        &[("query", name)],
        "",
    )
}

fn by_name<'a>(a: &'a Attribution, name: &str) -> &'a Mock {
    a.mocks
        .iter()
        .find(|m| m.name == name)
        .unwrap_or_else(|| panic!("{name} missing"))
}

fn test_and_lifetime(a: &Attribution, name: &str) -> (Option<String>, Lifetime) {
    let m = by_name(a, name);
    (m.test_case.clone(), m.lifetime)
}

#[test]
fn attribution_sequential_windows_and_start_up() {
    let tests = [
        TestWindow::new("test-1", 100, 200),
        TestWindow::new("test-2", 300, 400),
    ];
    let mocks = vec![
        per_test("warm-up", 50),
        mock("prepare", Lifetime::Connection, None, 60, &[], ""),
        per_test("in-1", 150),
        per_test("edge-start", 300),
        per_test("edge-end", 400),
        per_test("between", 250),
        per_test("after", 500),
        mock("handshake", Lifetime::Session, None, 160, &[], ""),
        mock("stmt", Lifetime::Connection, None, 170, &[], ""),
        mock("stmt-between", Lifetime::Connection, None, 260, &[], ""),
    ];
    let a = attribute(mocks, &tests);
    let names: Vec<&str> = a.mocks.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names[..3], ["warm-up", "prepare", "in-1"], "order is kept");

    let test = |t: &str| Some(t.to_owned());
    assert_eq!(test_and_lifetime(&a, "warm-up"), (None, Lifetime::Session));
    assert_eq!(test_and_lifetime(&a, "prepare"), (None, Lifetime::Session));
    assert_eq!(
        test_and_lifetime(&a, "in-1"),
        (test("test-1"), Lifetime::PerTest)
    );
    assert_eq!(
        test_and_lifetime(&a, "edge-start"),
        (test("test-2"), Lifetime::PerTest)
    );
    assert_eq!(
        test_and_lifetime(&a, "edge-end"),
        (test("test-2"), Lifetime::PerTest)
    );
    assert_eq!(
        test_and_lifetime(&a, "handshake"),
        (None, Lifetime::Session)
    );
    assert_eq!(
        test_and_lifetime(&a, "stmt"),
        (test("test-1"), Lifetime::Connection)
    );
    assert_eq!(
        test_and_lifetime(&a, "stmt-between"),
        (None, Lifetime::Connection)
    );
    assert_eq!(test_and_lifetime(&a, "between"), (None, Lifetime::PerTest));
    assert_eq!(test_and_lifetime(&a, "after"), (None, Lifetime::PerTest));

    // Only per-test mocks are reported, with the cause.
    let reported: Vec<(&str, &UnattributedCause)> = a
        .unattributed
        .iter()
        .map(|u| (u.mock.as_str(), &u.cause))
        .collect();
    assert_eq!(
        reported,
        [
            ("between", &UnattributedCause::OutsideWindows),
            ("after", &UnattributedCause::OutsideWindows),
        ]
    );
    let text = a.unattributed[0].to_string();
    assert!(
        text.contains("between") && text.contains("outside every test window"),
        "{text}"
    );
    assert_eq!(a.unattributed[0].req_ts_ns, 250);
}

#[test]
fn attribution_never_guesses_a_nested_window() {
    // test-b ran entirely inside test-a's window: the call may be either's.
    let tests = [
        TestWindow::new("test-a", 100, 500),
        TestWindow::new("test-b", 200, 300),
    ];
    let a = attribute(vec![on("c9", per_test("m", 250))], &tests);
    assert_eq!(by_name(&a, "m").test_case, None);
    assert_eq!(
        a.unattributed[0].cause,
        UnattributedCause::Ambiguous {
            candidates: vec!["test-a".to_owned(), "test-b".to_owned()]
        }
    );
}

#[test]
fn attribution_crossing_windows_are_ambiguous_with_candidates() {
    let tests = [
        TestWindow::new("test-a", 100, 300),
        TestWindow::new("test-b", 200, 400),
        TestWindow::new("test-c", 600, 700),
    ];
    let a = attribute(vec![on("c1", per_test("m", 250))], &tests);
    assert_eq!(by_name(&a, "m").test_case, None);
    assert_eq!(a.unattributed.len(), 1);
    let u = &a.unattributed[0];
    assert_eq!(
        u.cause,
        UnattributedCause::Ambiguous {
            candidates: vec!["test-a".to_owned(), "test-b".to_owned()]
        }
    );
    assert_eq!((u.mock.as_str(), u.connection_id.as_str()), ("m", "c1"));
    let text = u.to_string();
    assert!(
        text.contains("test-a, test-b") && text.contains("concurrent"),
        "{text}"
    );
    let json = serde_json::to_value(u).expect("json");
    assert_eq!(json["cause"], "ambiguous");
    assert_eq!(json["candidates"][1], "test-b");

    // Two identical windows have no innermost either.
    let twins = [TestWindow::new("x", 10, 20), TestWindow::new("y", 10, 20)];
    let a = attribute(vec![on("c2", per_test("m", 15))], &twins);
    assert_eq!(a.unattributed.len(), 1);
}

#[test]
fn attribution_overlap_is_ambiguous_whatever_the_connection_did_before() {
    let tests = [
        TestWindow::new("test-a", 100, 300),
        TestWindow::new("test-b", 200, 400),
    ];
    let mocks = vec![
        // Connection c1 served test-a alone before the overlap; c2 served test-b after it.
        on("c1", per_test("a-only", 150)),
        on("c1", per_test("a-overlap", 250)),
        on("c2", per_test("b-overlap", 260)),
        on("c2", per_test("b-only", 350)),
        // c3 made calls for both tests alone: no single answer, no innermost.
        on("c3", per_test("c3-a", 120)),
        on("c3", per_test("c3-b", 380)),
        on("c3", per_test("c3-overlap", 270)),
    ];
    let a = attribute(mocks, &tests);
    let t = |n: &str| by_name(&a, n).test_case.clone();
    assert_eq!(t("a-only").as_deref(), Some("test-a"));
    assert_eq!(t("b-only").as_deref(), Some("test-b"));
    // A pooled connection may have moved on to the other test: no guess.
    let reported: Vec<&str> = a.unattributed.iter().map(|u| u.mock.as_str()).collect();
    assert_eq!(reported, ["a-overlap", "b-overlap", "c3-overlap"]);
}

#[test]
fn attribution_without_tests_is_all_start_up() {
    let a = attribute(vec![per_test("m1", 5), per_test("m2", 10)], &[]);
    assert!(
        a.mocks
            .iter()
            .all(|m| m.lifetime == Lifetime::Session && m.test_case.is_none())
    );
    assert!(a.unattributed.is_empty());
}

#[test]
fn attribution_inverted_window_is_its_start_instant() {
    let tests = [TestWindow::new("t", 100, 90)];
    let a = attribute(vec![per_test("at", 100), per_test("later", 95)], &tests);
    assert_eq!(by_name(&a, "at").test_case.as_deref(), Some("t"));
    // 95 is before the window's start: start-up.
    assert_eq!(by_name(&a, "later").lifetime, Lifetime::Session);
}
