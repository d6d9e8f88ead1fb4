//! The SQLite schema as ordered migrations, applied by `sqlite::migrate` in one transaction each.

/// Schema migrations; entry `i` moves the schema from version `i` to `i + 1`.
pub(super) const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE record_sessions (
    record_id          TEXT PRIMARY KEY,
    namespace          TEXT NOT NULL,
    deployment         TEXT NOT NULL,
    test_set           TEXT NOT NULL,
    status             TEXT NOT NULL,
    record_config      TEXT NOT NULL,
    auto_replay_config TEXT NOT NULL,
    cluster_id         TEXT,
    pods_count         INTEGER,
    created_at         INTEGER NOT NULL,
    stopped_at         INTEGER,
    error              TEXT,
    next_case          INTEGER NOT NULL DEFAULT 1,
    UNIQUE (namespace, deployment, test_set)
);
CREATE INDEX record_sessions_status ON record_sessions (status);

CREATE TABLE deployment_counters (
    namespace     TEXT NOT NULL,
    deployment    TEXT NOT NULL,
    next_test_set INTEGER NOT NULL,
    PRIMARY KEY (namespace, deployment)
);

CREATE TABLE session_agents (
    record_id TEXT NOT NULL REFERENCES record_sessions (record_id),
    agent_id  TEXT NOT NULL,
    PRIMARY KEY (record_id, agent_id)
);

CREATE TABLE test_cases (
    id                  INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace           TEXT NOT NULL,
    deployment          TEXT NOT NULL,
    test_set            TEXT NOT NULL,
    name                TEXT NOT NULL,
    record_id           TEXT NOT NULL REFERENCES record_sessions (record_id),
    agent_id            TEXT NOT NULL,
    seq                 INTEGER NOT NULL,
    created_at          INTEGER NOT NULL,
    pid                 INTEGER NOT NULL,
    cgroup_id           INTEGER NOT NULL,
    req_method          TEXT NOT NULL,
    req_target          TEXT NOT NULL,
    req_path            TEXT NOT NULL,
    req_version_minor   INTEGER NOT NULL,
    req_headers         TEXT NOT NULL,
    req_body            BLOB NOT NULL,
    req_body_truncated  INTEGER NOT NULL,
    req_body_wire_size  INTEGER NOT NULL,
    req_timestamp_ns    INTEGER NOT NULL,
    resp_status         INTEGER NOT NULL,
    resp_reason         TEXT NOT NULL,
    resp_version_minor  INTEGER NOT NULL,
    resp_headers        TEXT NOT NULL,
    resp_body           BLOB NOT NULL,
    resp_body_truncated INTEGER NOT NULL,
    resp_body_wire_size INTEGER NOT NULL,
    resp_timestamp_ns   INTEGER NOT NULL,
    UNIQUE (agent_id, seq),
    UNIQUE (namespace, deployment, test_set, name)
);
CREATE INDEX test_cases_set ON test_cases (namespace, deployment, test_set, id);
CREATE INDEX test_cases_record ON test_cases (record_id, id);
"#,
    r#"
ALTER TABLE test_cases ADD COLUMN noise TEXT NOT NULL DEFAULT '{}';

CREATE TABLE test_runs (
    namespace   TEXT NOT NULL,
    deployment  TEXT NOT NULL,
    test_run_id TEXT NOT NULL,
    replay_id   TEXT NOT NULL UNIQUE,
    status      TEXT NOT NULL,
    config      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, deployment, test_run_id)
);

CREATE TABLE test_set_reports (
    namespace   TEXT NOT NULL,
    deployment  TEXT NOT NULL,
    test_run_id TEXT NOT NULL,
    test_set    TEXT NOT NULL,
    status      TEXT NOT NULL,
    report      TEXT NOT NULL,
    updated_at  INTEGER NOT NULL,
    PRIMARY KEY (namespace, deployment, test_run_id, test_set)
);

CREATE TABLE test_case_results (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace    TEXT NOT NULL,
    deployment   TEXT NOT NULL,
    test_run_id  TEXT NOT NULL,
    test_set     TEXT NOT NULL,
    test_case_id TEXT NOT NULL,
    status       TEXT NOT NULL,
    result       TEXT NOT NULL,
    created_at   INTEGER NOT NULL
);
CREATE INDEX test_case_results_run ON test_case_results (namespace, deployment, test_run_id, test_set, id);
"#,
    r#"
ALTER TABLE record_sessions ADD COLUMN next_mock INTEGER NOT NULL DEFAULT 0;

CREATE TABLE mocks (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    agent_id      TEXT NOT NULL,
    seq           INTEGER NOT NULL,
    name          TEXT NOT NULL,
    record_id     TEXT NOT NULL,
    namespace     TEXT NOT NULL,
    deployment    TEXT NOT NULL,
    test_set      TEXT NOT NULL,
    kind          TEXT NOT NULL,
    lifetime      TEXT NOT NULL,
    connection_id TEXT NOT NULL,
    destination   TEXT NOT NULL,
    request       BLOB NOT NULL,
    response      BLOB NOT NULL,
    fields        TEXT NOT NULL,
    summary       TEXT NOT NULL,
    req_ts_ns     INTEGER NOT NULL,
    resp_ts_ns    INTEGER NOT NULL,
    test_case     TEXT,
    noise         TEXT NOT NULL DEFAULT '{}',
    UNIQUE (agent_id, seq),
    UNIQUE (namespace, deployment, test_set, name)
);
CREATE INDEX mocks_set ON mocks (namespace, deployment, test_set, req_ts_ns);
CREATE INDEX mocks_record ON mocks (record_id);
"#,
];
