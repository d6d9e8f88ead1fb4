//! The replay-side tables on real SQLite files: mocks (naming, idempotency, attribution,
//! replacement), imported sets, run numbering and edits.

use serde_json::json;

use super::{
    EditStore, ImportStore, ImportedCase, MockSet, MockStore, NewMock, ReportFilter, ReportRow,
    ReportStore, RunKey, SetKey, SqliteStore, Store, StoredMock,
};
use crate::model::{NewSession, NewTestCase, StoredRequest, StoredResponse};

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open_in(dir.path()).unwrap();
    (dir, store)
}

fn session(store: &SqliteStore, record_id: &str) -> String {
    store
        .create_session(&NewSession {
            record_id: record_id.into(),
            namespace: "default".into(),
            deployment: "orders".into(),
            record_config: json!({}),
            auto_replay_config: json!({}),
            cluster_id: None,
            pods_count: None,
            created_at_ms: 1,
        })
        .unwrap()
        .test_set
}

fn mock(record_id: &str, kind: &str, ts: u64) -> StoredMock {
    StoredMock {
        record_id: record_id.into(),
        kind: kind.into(),
        lifetime: "per_test".into(),
        connection_id: "3".into(),
        destination: "127.0.0.1:5432".into(),
        request: vec![b'Q', 0, 1],
        response: vec![0xff, 0],
        fields: vec![("query".into(), format!("SELECT {ts}"))],
        summary: format!("SELECT {ts}"),
        req_ts_ns: ts,
        resp_ts_ns: ts + 1,
        ..StoredMock::default()
    }
}

fn set(test_set: &str) -> MockSet {
    SetKey {
        namespace: "default".into(),
        deployment: "orders".into(),
        test_set: test_set.into(),
    }
}

#[test]
fn mocks_are_named_per_set_stored_once_and_summarised() {
    let (_dir, store) = open();
    let test_set = session(&store, "rec-1");
    let batch: Vec<NewMock> = [("PostgresV2", 10), ("Redis", 20), ("PostgresV2", 30)]
        .iter()
        .enumerate()
        .map(|(i, (kind, ts))| NewMock {
            agent_id: "a".into(),
            seq: i as u64,
            mock: mock("rec-1", kind, *ts),
        })
        .collect();
    assert_eq!(store.insert_mocks(&batch).unwrap(), 3);
    // A resend after a reconnect stores nothing twice.
    assert_eq!(store.insert_mocks(&batch).unwrap(), 0);
    let stored = store.list_mocks(&set(&test_set)).unwrap();
    let names: Vec<&str> = stored.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, ["mock-0", "mock-1", "mock-2"]);
    assert_eq!(stored[0].request, vec![b'Q', 0, 1]);
    assert_eq!(
        stored[0].fields,
        vec![("query".to_owned(), "SELECT 10".to_owned())]
    );
    let (count, kinds) = store.mock_summary("rec-1").unwrap();
    assert_eq!(count, 3);
    assert_eq!(kinds.get("PostgresV2"), Some(&2));

    store
        .attribute_mocks(
            &set(&test_set),
            &[
                ("mock-1".into(), Some("test-2".into()), "per_test".into()),
                ("mock-0".into(), None, "session".into()),
            ],
        )
        .unwrap();
    let stored = store.list_mocks(&set(&test_set)).unwrap();
    assert_eq!(
        (stored[0].lifetime.as_str(), stored[0].test_case.as_deref()),
        ("session", None)
    );
    assert_eq!(stored[1].test_case.as_deref(), Some("test-2"));

    // Upload replaces the set; later captures continue after the highest name.
    store
        .replace_mocks(
            &set(&test_set),
            "rec-1",
            &[StoredMock {
                name: "mock-7".into(),
                ..mock("x", "Redis", 5)
            }],
        )
        .unwrap();
    let stored = store.list_mocks(&set(&test_set)).unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(
        (stored[0].name.as_str(), stored[0].record_id.as_str()),
        ("mock-7", "rec-1")
    );
    let later = NewMock {
        agent_id: "a".into(),
        seq: 99,
        mock: mock("rec-1", "Redis", 40),
    };
    store.insert_mocks(&[later]).unwrap();
    assert!(
        store
            .list_mocks(&set(&test_set))
            .unwrap()
            .iter()
            .any(|m| m.name == "mock-8")
    );

    // Deleting the set takes its mocks along.
    assert_eq!(store.delete_test_set(&set(&test_set)).unwrap(), 0);
    assert!(store.list_mocks(&set(&test_set)).unwrap().is_empty());
}

fn imported(name: &str, seq: u64) -> ImportedCase {
    ImportedCase {
        name: name.into(),
        case: NewTestCase {
            record_id: "import-1".into(),
            agent_id: "import-1".into(),
            seq,
            created_at_ms: 1,
            pid: 0,
            cgroup_id: 0,
            req: StoredRequest {
                method: "GET".into(),
                target: "/".into(),
                ..Default::default()
            },
            resp: StoredResponse {
                status_code: 200,
                ..Default::default()
            },
            noise: Default::default(),
        },
    }
}

#[test]
fn imported_sets_keep_their_names_and_later_cases_do_not_collide() {
    let (_dir, store) = open();
    let name = store
        .import_test_set(
            "default",
            "orders",
            "import-1",
            "test-set-4",
            &[imported("test-1", 1), imported("test-3", 2)],
            1,
        )
        .unwrap();
    assert_eq!(name, "test-set-4");
    // The next recording does not reuse an imported number.
    assert_eq!(session(&store, "rec-2"), "test-set-5");
    let key = SetKey {
        namespace: "default".into(),
        deployment: "orders".into(),
        test_set: name,
    };
    let (_, name_of_new) = store
        .append_test_case(&key, &imported("x", 3).case)
        .unwrap();
    assert_eq!(name_of_new, "test-4", "past the highest imported test-N");
    assert!(
        super::is_safe_name("test-set-4")
            && !super::is_safe_name("../x")
            && !super::is_safe_name(".hidden")
    );
}

#[test]
fn run_ids_never_reuse_imported_reports() {
    let (_dir, store) = open();
    store
        .upsert_report(&ReportRow {
            key: RunKey {
                namespace: "default".into(),
                deployment: "orders".into(),
                test_run_id: "test-run-3".into(),
            },
            test_set: "test-set-0".into(),
            status: "PASSED".into(),
            report: json!({"imported": true}),
            updated_at_ms: 1,
        })
        .unwrap();
    let id = store
        .create_test_run("default", "orders", "replay-1", &json!({}), 2)
        .unwrap();
    assert_eq!(id, "test-run-4");
    assert_eq!(store.interrupt_running_runs().unwrap(), 1);
    let runs = store.list_test_runs(&ReportFilter::default()).unwrap();
    assert_eq!(runs[0].status, "INTERRUPTED");
}
