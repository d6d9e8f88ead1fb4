//! The SQLite store on real files: numbering, idempotent inserts, filters, persistence.

use serde_json::json;

use super::{SqliteStore, Store, StoreError};
use crate::model::{
    HeaderPair, NewSession, NewTestCase, SessionStatus, StoredRequest, StoredResponse,
    TestCaseFilter,
};

fn session(record_id: &str, deployment: &str) -> NewSession {
    NewSession {
        record_id: record_id.into(),
        namespace: "default".into(),
        deployment: deployment.into(),
        record_config: json!({"filters": []}),
        auto_replay_config: json!({}),
        cluster_id: None,
        pods_count: Some(1),
        created_at_ms: 1_700_000_000_000,
    }
}

fn case(record_id: &str, agent: &str, seq: u64, path: &str, status: u32) -> NewTestCase {
    NewTestCase {
        record_id: record_id.into(),
        agent_id: agent.into(),
        seq,
        created_at_ms: 1,
        pid: 7,
        cgroup_id: u64::MAX - 1,
        req: StoredRequest {
            method: "GET".into(),
            target: format!("{path}?x=1"),
            version_minor: 1,
            headers: vec![HeaderPair {
                name: "Host".into(),
                value: "h".into(),
            }],
            body: vec![0, 159, 146, 150],
            body_wire_size: 4,
            timestamp_ns: u64::MAX,
            ..Default::default()
        },
        resp: StoredResponse {
            status_code: status,
            reason: "OK".into(),
            version_minor: 1,
            body: b"{}".to_vec(),
            ..Default::default()
        },
        noise: Default::default(),
    }
}

#[test]
fn test_sets_and_cases_are_numbered_per_deployment_and_session() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    assert_eq!(
        store
            .create_session(&session("r1", "app"))
            .unwrap()
            .test_set,
        "test-set-0"
    );
    assert_eq!(
        store
            .create_session(&session("r2", "app"))
            .unwrap()
            .test_set,
        "test-set-1"
    );
    assert_eq!(
        store
            .create_session(&session("r3", "other"))
            .unwrap()
            .test_set,
        "test-set-0"
    );
    let inserted = store
        .insert_test_cases(&[
            case("r1", "a", 1, "/a", 200),
            case("r2", "a", 2, "/b", 200),
            case("r1", "a", 3, "/c", 404),
        ])
        .unwrap();
    let names: Vec<_> = inserted
        .iter()
        .map(|i| i.as_ref().map(|i| i.name.clone()))
        .collect();
    assert_eq!(
        names,
        [
            Some("test-1".into()),
            Some("test-1".into()),
            Some("test-2".into())
        ]
    );
}

#[test]
fn resent_captures_and_unknown_sessions_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    store.create_session(&session("r1", "app")).unwrap();
    store
        .insert_test_cases(&[case("r1", "a", 1, "/a", 200)])
        .unwrap();
    let again = store
        .insert_test_cases(&[
            case("r1", "a", 1, "/a", 200),
            case("nope", "a", 2, "/a", 200),
            case("r1", "b", 1, "/a", 200),
        ])
        .unwrap();
    assert!(again[0].is_none(), "same agent and seq: already stored");
    assert!(again[1].is_none(), "unknown session");
    assert_eq!(
        again[2].as_ref().map(|i| i.name.as_str()),
        Some("test-2"),
        "another agent's seq 1"
    );
    let all = store
        .list_test_cases(&TestCaseFilter {
            limit: 100,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(all.len(), 2);
}

#[test]
fn values_round_trip_bit_for_bit_and_filters_apply() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    store.create_session(&session("r1", "app")).unwrap();
    store.create_session(&session("r2", "other")).unwrap();
    store
        .insert_test_cases(&[
            case("r1", "a", 1, "/a", 200),
            case("r1", "a", 2, "/a", 200),
            case("r2", "a", 3, "/z", 500),
        ])
        .unwrap();
    let filter = TestCaseFilter {
        deployment: Some("app".into()),
        limit: 100,
        ..Default::default()
    };
    let cases = store.list_test_cases(&filter).unwrap();
    assert_eq!(cases.len(), 2);
    let original = case("r1", "a", 1, "/a", 200);
    assert_eq!(
        cases[0].case, original,
        "u64::MAX timestamps, binary bodies, headers survive"
    );
    let page = store
        .list_test_cases(&TestCaseFilter {
            limit: 1,
            offset: 1,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(page[0].name, "test-2");
    let found = store
        .find_test_case("default", "other", "test-set-0", "test-1")
        .unwrap()
        .unwrap();
    assert_eq!(found.case.req.target, "/z?x=1");
    assert_eq!(
        store.get_test_case(found.id).unwrap().unwrap().name,
        "test-1"
    );
    let (count, endpoints) = store.session_summary("r1", 10).unwrap();
    assert_eq!(count, 2);
    assert_eq!(
        endpoints.len(),
        1,
        "one endpoint for two identical requests"
    );
    assert_eq!(endpoints[0].endpoint, "/a");
}

#[test]
fn sessions_persist_across_reopen_and_newer_schemas_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open_in(dir.path()).unwrap();
        store.create_session(&session("r1", "app")).unwrap();
        store
            .set_session_status("r1", SessionStatus::Running, None, None)
            .unwrap();
        store.add_session_agent("r1", "agent-1").unwrap();
        store.add_session_agent("r1", "agent-1").unwrap();
        assert!(matches!(
            store.set_session_status("missing", SessionStatus::Running, None, None),
            Err(StoreError::NoSession(_))
        ));
    }
    let store = SqliteStore::open_in(dir.path()).unwrap();
    let running = store
        .sessions_with_status(&[SessionStatus::Running])
        .unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].record_config, json!({"filters": []}));
    assert_eq!(store.session_agents("r1").unwrap(), ["agent-1"]);
    store
        .set_session_status("r1", SessionStatus::Stopped, Some(5), Some("late"))
        .unwrap();
    let s = store.get_session("r1").unwrap().unwrap();
    assert_eq!(
        (s.status, s.stopped_at_ms, s.error.as_deref()),
        (SessionStatus::Stopped, Some(5), Some("late"))
    );
    drop(store);

    let conn = rusqlite::Connection::open(dir.path().join("kreplay.db")).unwrap();
    conn.execute("UPDATE schema_version SET version = 999", [])
        .unwrap();
    drop(conn);
    assert!(matches!(
        SqliteStore::open_in(dir.path()),
        Err(StoreError::TooNew { found: 999, .. })
    ));
}
