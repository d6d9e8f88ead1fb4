//! Test runs, per-test-set reports and per-test-case results (SQLite tables of migration 2).
//! Reports and results are kept as the JSON the REST API serves, with their keys as columns.

use rusqlite::params;
use serde_json::Value;

use super::{SqliteStore, StoreError};

/// Where a report or result belongs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RunKey {
    pub namespace: String,
    pub deployment: String,
    pub test_run_id: String,
}

/// Filters of the report routes; `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct ReportFilter {
    pub namespace: Option<String>,
    pub deployment: Option<String>,
    pub test_run_id: Option<String>,
    pub test_set: Option<String>,
    pub test_case_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestRunRow {
    pub key: RunKey,
    pub replay_id: String,
    pub status: String,
    pub config: Value,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReportRow {
    pub key: RunKey,
    pub test_set: String,
    pub status: String,
    pub report: Value,
    pub updated_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TestCaseResultRow {
    pub id: i64,
    pub key: RunKey,
    pub test_set: String,
    pub test_case_id: String,
    pub status: String,
    pub result: Value,
    pub created_at_ms: i64,
}

/// Persistence of replay outcomes.
pub trait ReportStore {
    /// Records a run under the deployment's next `test-run-N` and returns that id.
    fn create_test_run(
        &self,
        namespace: &str,
        deployment: &str,
        replay_id: &str,
        config: &Value,
        created_at_ms: i64,
    ) -> Result<String, StoreError>;
    fn set_test_run_status(&self, replay_id: &str, status: &str) -> Result<(), StoreError>;
    /// Runs still `RUNNING` from an earlier proxy process are over: marks them `INTERRUPTED`.
    fn interrupt_running_runs(&self) -> Result<u64, StoreError>;
    fn list_test_runs(&self, filter: &ReportFilter) -> Result<Vec<TestRunRow>, StoreError>;
    /// Inserts or replaces the report of one test set in one run.
    fn upsert_report(&self, row: &ReportRow) -> Result<(), StoreError>;
    fn list_reports(&self, filter: &ReportFilter) -> Result<Vec<ReportRow>, StoreError>;
    fn insert_test_case_result(&self, row: &TestCaseResultRow) -> Result<i64, StoreError>;
    /// Several results in one transaction (a replay stores them in batches).
    fn insert_test_case_results(&self, rows: &[TestCaseResultRow]) -> Result<(), StoreError>;
    fn list_test_case_results(
        &self,
        filter: &ReportFilter,
    ) -> Result<Vec<TestCaseResultRow>, StoreError>;
    /// Deletes the matching results; returns how many.
    fn clear_test_case_results(&self, filter: &ReportFilter) -> Result<u64, StoreError>;
}

fn json_of(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or(Value::Null)
}

fn text_of(value: &Value) -> Result<String, StoreError> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn insert_result(conn: &rusqlite::Connection, row: &TestCaseResultRow) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO test_case_results (namespace, deployment, test_run_id, test_set, test_case_id, status, result, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        row.key.namespace,
        row.key.deployment,
        row.key.test_run_id,
        row.test_set,
        row.test_case_id,
        row.status,
        text_of(&row.result)?,
        row.created_at_ms
    ])?;
    Ok(())
}

const FILTER: &str = "(?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR deployment = ?2)
     AND (?3 IS NULL OR test_run_id = ?3)";

/// Numeric part of `test-run-N`, for ordering runs as numbers.
fn run_number(id: &str) -> u64 {
    id.rsplit('-')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

impl ReportStore for SqliteStore {
    fn create_test_run(
        &self,
        namespace: &str,
        deployment: &str,
        replay_id: &str,
        config: &Value,
        created_at_ms: i64,
    ) -> Result<String, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        // Reports imported or inserted by hand name runs too: never reuse their ids.
        let mut ids = tx.prepare(
            "SELECT test_run_id FROM test_runs WHERE namespace = ?1 AND deployment = ?2
             UNION SELECT test_run_id FROM test_set_reports WHERE namespace = ?1 AND deployment = ?2",
        )?;
        let next = ids
            .query_map(params![namespace, deployment], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?
            .iter()
            .map(|id| run_number(id) + 1)
            .max()
            .unwrap_or(0);
        drop(ids);
        let id = format!("test-run-{next}");
        tx.execute(
            "INSERT INTO test_runs (namespace, deployment, test_run_id, replay_id, status, config, created_at)
             VALUES (?1, ?2, ?3, ?4, 'RUNNING', ?5, ?6)",
            params![namespace, deployment, id, replay_id, text_of(config)?, created_at_ms],
        )?;
        tx.commit()?;
        Ok(id)
    }

    fn set_test_run_status(&self, replay_id: &str, status: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "UPDATE test_runs SET status = ?2 WHERE replay_id = ?1",
            params![replay_id, status],
        )?;
        Ok(())
    }

    fn interrupt_running_runs(&self) -> Result<u64, StoreError> {
        let n = self.conn()?.execute(
            "UPDATE test_runs SET status = 'INTERRUPTED' WHERE status = 'RUNNING'",
            [],
        )?;
        Ok(n as u64)
    }

    fn list_test_runs(&self, f: &ReportFilter) -> Result<Vec<TestRunRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT namespace, deployment, test_run_id, replay_id, status, config, created_at
             FROM test_runs WHERE {FILTER} ORDER BY created_at"
        ))?;
        let rows = stmt.query_map(params![f.namespace, f.deployment, f.test_run_id], |r| {
            let config: String = r.get(5)?;
            Ok(TestRunRow {
                key: RunKey {
                    namespace: r.get(0)?,
                    deployment: r.get(1)?,
                    test_run_id: r.get(2)?,
                },
                replay_id: r.get(3)?,
                status: r.get(4)?,
                config: json_of(&config),
                created_at_ms: r.get(6)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn upsert_report(&self, row: &ReportRow) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT INTO test_set_reports (namespace, deployment, test_run_id, test_set, status, report, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (namespace, deployment, test_run_id, test_set)
             DO UPDATE SET status = excluded.status, report = excluded.report, updated_at = excluded.updated_at",
            params![
                row.key.namespace,
                row.key.deployment,
                row.key.test_run_id,
                row.test_set,
                row.status,
                text_of(&row.report)?,
                row.updated_at_ms
            ],
        )?;
        Ok(())
    }

    fn list_reports(&self, f: &ReportFilter) -> Result<Vec<ReportRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT namespace, deployment, test_run_id, test_set, status, report, updated_at
             FROM test_set_reports WHERE {FILTER} AND (?4 IS NULL OR test_set = ?4)
             ORDER BY namespace, deployment, updated_at"
        ))?;
        let rows = stmt.query_map(
            params![f.namespace, f.deployment, f.test_run_id, f.test_set],
            |r| {
                let report: String = r.get(5)?;
                Ok(ReportRow {
                    key: RunKey {
                        namespace: r.get(0)?,
                        deployment: r.get(1)?,
                        test_run_id: r.get(2)?,
                    },
                    test_set: r.get(3)?,
                    status: r.get(4)?,
                    report: json_of(&report),
                    updated_at_ms: r.get(6)?,
                })
            },
        )?;
        let mut out: Vec<ReportRow> = rows.collect::<Result<_, _>>()?;
        out.sort_by_key(|r| (run_number(&r.key.test_run_id), run_number(&r.test_set)));
        Ok(out)
    }

    fn insert_test_case_result(&self, row: &TestCaseResultRow) -> Result<i64, StoreError> {
        let conn = self.conn()?;
        insert_result(&conn, row)?;
        Ok(conn.last_insert_rowid())
    }

    fn insert_test_case_results(&self, rows: &[TestCaseResultRow]) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        for row in rows {
            insert_result(&tx, row)?;
        }
        tx.commit()?;
        Ok(())
    }

    fn list_test_case_results(
        &self,
        f: &ReportFilter,
    ) -> Result<Vec<TestCaseResultRow>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT id, namespace, deployment, test_run_id, test_set, test_case_id, status, result, created_at
             FROM test_case_results WHERE {FILTER} AND (?4 IS NULL OR test_set = ?4)
               AND (?5 IS NULL OR test_case_id = ?5)
             ORDER BY id"
        ))?;
        let rows = stmt.query_map(
            params![
                f.namespace,
                f.deployment,
                f.test_run_id,
                f.test_set,
                f.test_case_id
            ],
            |r| {
                let result: String = r.get(7)?;
                Ok(TestCaseResultRow {
                    id: r.get(0)?,
                    key: RunKey {
                        namespace: r.get(1)?,
                        deployment: r.get(2)?,
                        test_run_id: r.get(3)?,
                    },
                    test_set: r.get(4)?,
                    test_case_id: r.get(5)?,
                    status: r.get(6)?,
                    result: json_of(&result),
                    created_at_ms: r.get(8)?,
                })
            },
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn clear_test_case_results(&self, f: &ReportFilter) -> Result<u64, StoreError> {
        let deleted = self.conn()?.execute(
            &format!(
                "DELETE FROM test_case_results WHERE {FILTER} AND (?4 IS NULL OR test_set = ?4)
                   AND (?5 IS NULL OR test_case_id = ?5)"
            ),
            params![
                f.namespace,
                f.deployment,
                f.test_run_id,
                f.test_set,
                f.test_case_id
            ],
        )?;
        Ok(deleted as u64)
    }
}
