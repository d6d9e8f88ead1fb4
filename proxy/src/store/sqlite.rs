//! SQLite implementation of [`Store`] (bundled SQLite, WAL, embedded migrations).

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, params};

use super::{Store, StoreError, schema::MIGRATIONS};
use crate::model::{
    EndpointEntry, EndpointKey, HeaderPair, InsertedCase, NewSession, NewTestCase, SessionRecord,
    SessionStatus, StoredRequest, StoredResponse, TestCase, TestCaseFilter, TestSetSummary,
};
use crate::util::rfc3339_ms;

const SESSION_COLUMNS: &str = "record_id, namespace, deployment, test_set, status, record_config, \
     auto_replay_config, cluster_id, pods_count, created_at, stopped_at, error";

const CASE_COLUMNS: &str = "id, name, test_set, namespace, deployment, record_id, agent_id, seq, \
     created_at, pid, cgroup_id, req_method, req_target, req_version_minor, req_headers, req_body, \
     req_body_truncated, req_body_wire_size, req_timestamp_ns, resp_status, resp_reason, \
     resp_version_minor, resp_headers, resp_body, resp_body_truncated, resp_body_wire_size, \
     resp_timestamp_ns, noise";

/// SQLite stores signed 64-bit integers; u64 values are kept bit-for-bit.
pub(super) fn to_i64(v: u64) -> i64 {
    i64::from_ne_bytes(v.to_ne_bytes())
}
fn from_i64(v: i64) -> u64 {
    u64::from_ne_bytes(v.to_ne_bytes())
}

pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// Opens (creating if needed) `<data_dir>/kreplay.db` and migrates it.
    pub fn open_in(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::Dir {
            path: data_dir.display().to_string(),
            source,
        })?;
        Self::open(&data_dir.join("kreplay.db"))
    }

    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        conn.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
        migrate(&conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    pub(super) fn conn(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        self.conn.lock().map_err(|_| StoreError::Poisoned)
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")?;
    let current: Option<i64> = conn
        .query_row("SELECT version FROM schema_version", [], |r| r.get(0))
        .optional()?;
    let supported = MIGRATIONS.len() as i64;
    let current = current.unwrap_or(0);
    if current > supported {
        return Err(StoreError::TooNew {
            found: current,
            supported,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(sql)?;
        tx.execute("DELETE FROM schema_version", [])?;
        tx.execute(
            "INSERT INTO schema_version (version) VALUES (?1)",
            [i as i64 + 1],
        )?;
        tx.commit()?;
        tracing::info!(version = i + 1, "applied database migration");
    }
    Ok(())
}

fn session_from_row(r: &Row<'_>) -> rusqlite::Result<SessionRecord> {
    let status: String = r.get(4)?;
    let record_config: String = r.get(5)?;
    let auto_replay: String = r.get(6)?;
    let pods: Option<i64> = r.get(8)?;
    Ok(SessionRecord {
        record_id: r.get(0)?,
        namespace: r.get(1)?,
        deployment: r.get(2)?,
        test_set: r.get(3)?,
        status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
        record_config: serde_json::from_str(&record_config).unwrap_or(serde_json::Value::Null),
        auto_replay_config: serde_json::from_str(&auto_replay).unwrap_or(serde_json::Value::Null),
        cluster_id: r.get(7)?,
        pods_count: pods.and_then(|p| u32::try_from(p).ok()),
        created_at_ms: r.get(9)?,
        stopped_at_ms: r.get(10)?,
        error: r.get(11)?,
    })
}

fn headers_from(text: &str) -> Vec<HeaderPair> {
    serde_json::from_str(text).unwrap_or_default()
}

fn case_from_row(r: &Row<'_>) -> rusqlite::Result<TestCase> {
    let req_headers: String = r.get(14)?;
    let resp_headers: String = r.get(22)?;
    Ok(TestCase {
        id: r.get(0)?,
        name: r.get(1)?,
        test_set: r.get(2)?,
        namespace: r.get(3)?,
        deployment: r.get(4)?,
        case: NewTestCase {
            record_id: r.get(5)?,
            agent_id: r.get(6)?,
            seq: from_i64(r.get(7)?),
            created_at_ms: r.get(8)?,
            pid: r.get(9)?,
            cgroup_id: from_i64(r.get(10)?),
            req: StoredRequest {
                method: r.get(11)?,
                target: r.get(12)?,
                version_minor: r.get(13)?,
                headers: headers_from(&req_headers),
                body: r.get(15)?,
                body_truncated: r.get(16)?,
                body_wire_size: from_i64(r.get(17)?),
                timestamp_ns: from_i64(r.get(18)?),
            },
            resp: StoredResponse {
                status_code: r.get(19)?,
                reason: r.get(20)?,
                version_minor: r.get(21)?,
                headers: headers_from(&resp_headers),
                body: r.get(23)?,
                body_truncated: r.get(24)?,
                body_wire_size: from_i64(r.get(25)?),
                timestamp_ns: from_i64(r.get(26)?),
            },
            noise: {
                let text: String = r.get(27)?;
                serde_json::from_str(&text).unwrap_or_default()
            },
        },
    })
}

pub(super) fn json_text<T: serde::Serialize>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The session's (namespace, deployment, test_set) and its next case number.
struct SessionSlot {
    namespace: String,
    deployment: String,
    test_set: String,
    next_case: i64,
}

/// Inserts one test case row (shared by capture ingest and import).
pub(super) fn insert_case_row(
    tx: &rusqlite::Transaction<'_>,
    namespace: &str,
    deployment: &str,
    test_set: &str,
    name: &str,
    c: &NewTestCase,
) -> Result<(), StoreError> {
    let mut insert = tx.prepare_cached(
        "INSERT INTO test_cases (namespace, deployment, test_set, name, record_id, agent_id,
             seq, created_at, pid, cgroup_id, req_method, req_target, req_path,
             req_version_minor, req_headers, req_body, req_body_truncated,
             req_body_wire_size, req_timestamp_ns, resp_status, resp_reason,
             resp_version_minor, resp_headers, resp_body, resp_body_truncated,
             resp_body_wire_size, resp_timestamp_ns, noise)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16,
             ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26, ?27, ?28)",
    )?;
    insert.execute(params![
        namespace,
        deployment,
        test_set,
        name,
        c.record_id,
        c.agent_id,
        to_i64(c.seq),
        c.created_at_ms,
        c.pid,
        to_i64(c.cgroup_id),
        c.req.method,
        c.req.target,
        c.req.path(),
        c.req.version_minor,
        json_text(&c.req.headers)?,
        c.req.body,
        c.req.body_truncated,
        to_i64(c.req.body_wire_size),
        to_i64(c.req.timestamp_ns),
        c.resp.status_code,
        c.resp.reason,
        c.resp.version_minor,
        json_text(&c.resp.headers)?,
        c.resp.body,
        c.resp.body_truncated,
        to_i64(c.resp.body_wire_size),
        to_i64(c.resp.timestamp_ns),
        json_text(&c.noise)?,
    ])?;
    Ok(())
}

impl Store for SqliteStore {
    fn create_session(&self, new: &NewSession) -> Result<SessionRecord, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let next: i64 = tx
            .query_row(
                "SELECT next_test_set FROM deployment_counters WHERE namespace = ?1 AND deployment = ?2",
                params![new.namespace, new.deployment],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        tx.execute(
            "INSERT INTO deployment_counters (namespace, deployment, next_test_set) VALUES (?1, ?2, ?3)
             ON CONFLICT (namespace, deployment) DO UPDATE SET next_test_set = excluded.next_test_set",
            params![new.namespace, new.deployment, next + 1],
        )?;
        let test_set = format!("test-set-{next}");
        tx.execute(
            "INSERT INTO record_sessions (record_id, namespace, deployment, test_set, status,
                 record_config, auto_replay_config, cluster_id, pods_count, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            params![
                new.record_id,
                new.namespace,
                new.deployment,
                test_set,
                SessionStatus::Starting.as_str(),
                json_text(&new.record_config)?,
                json_text(&new.auto_replay_config)?,
                new.cluster_id,
                new.pods_count,
                new.created_at_ms,
            ],
        )?;
        tx.commit()?;
        Ok(SessionRecord {
            record_id: new.record_id.clone(),
            namespace: new.namespace.clone(),
            deployment: new.deployment.clone(),
            test_set,
            status: SessionStatus::Starting,
            record_config: new.record_config.clone(),
            auto_replay_config: new.auto_replay_config.clone(),
            cluster_id: new.cluster_id.clone(),
            pods_count: new.pods_count,
            created_at_ms: new.created_at_ms,
            stopped_at_ms: None,
            error: None,
        })
    }

    fn set_session_status(
        &self,
        record_id: &str,
        status: SessionStatus,
        stopped_at_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let n = self.conn()?.execute(
            "UPDATE record_sessions SET status = ?2,
                 stopped_at = COALESCE(?3, stopped_at), error = COALESCE(?4, error)
             WHERE record_id = ?1",
            params![record_id, status.as_str(), stopped_at_ms, error],
        )?;
        if n == 0 {
            return Err(StoreError::NoSession(record_id.to_owned()));
        }
        Ok(())
    }

    fn get_session(&self, record_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let conn = self.conn()?;
        let sql = format!("SELECT {SESSION_COLUMNS} FROM record_sessions WHERE record_id = ?1");
        Ok(conn
            .query_row(&sql, [record_id], session_from_row)
            .optional()?)
    }

    fn sessions_with_status(
        &self,
        statuses: &[SessionStatus],
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM record_sessions WHERE status = ?1 ORDER BY created_at"
        );
        let mut stmt = conn.prepare(&sql)?;
        let mut out = Vec::new();
        for s in statuses {
            let rows = stmt.query_map([s.as_str()], session_from_row)?;
            for row in rows {
                out.push(row?);
            }
        }
        Ok(out)
    }

    fn add_session_agent(&self, record_id: &str, agent_id: &str) -> Result<(), StoreError> {
        self.conn()?.execute(
            "INSERT OR IGNORE INTO session_agents (record_id, agent_id) VALUES (?1, ?2)",
            params![record_id, agent_id],
        )?;
        Ok(())
    }

    fn session_agents(&self, record_id: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT agent_id FROM session_agents WHERE record_id = ?1 ORDER BY agent_id",
        )?;
        let rows = stmt.query_map([record_id], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn insert_test_cases(
        &self,
        cases: &[NewTestCase],
    ) -> Result<Vec<Option<InsertedCase>>, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let mut slots: HashMap<String, Option<SessionSlot>> = HashMap::new();
        let mut out = Vec::with_capacity(cases.len());
        {
            let mut exists =
                tx.prepare_cached("SELECT 1 FROM test_cases WHERE agent_id = ?1 AND seq = ?2")?;
            let mut slot_q = tx.prepare_cached(
                "SELECT namespace, deployment, test_set, next_case FROM record_sessions WHERE record_id = ?1",
            )?;
            for c in cases {
                if exists.exists(params![c.agent_id, to_i64(c.seq)])? {
                    out.push(None);
                    continue;
                }
                if !slots.contains_key(&c.record_id) {
                    let slot = slot_q
                        .query_row([&c.record_id], |r| {
                            Ok(SessionSlot {
                                namespace: r.get(0)?,
                                deployment: r.get(1)?,
                                test_set: r.get(2)?,
                                next_case: r.get(3)?,
                            })
                        })
                        .optional()?;
                    slots.insert(c.record_id.clone(), slot);
                }
                let Some(Some(slot)) = slots.get_mut(&c.record_id) else {
                    out.push(None);
                    continue;
                };
                let name = format!("test-{}", slot.next_case);
                slot.next_case += 1;
                insert_case_row(
                    &tx,
                    &slot.namespace,
                    &slot.deployment,
                    &slot.test_set,
                    &name,
                    c,
                )?;
                out.push(Some(InsertedCase {
                    record_id: c.record_id.clone(),
                    id: tx.last_insert_rowid(),
                    name,
                    endpoint: EndpointKey {
                        method: c.req.method.clone(),
                        endpoint: c.req.path().to_owned(),
                        status_code: c.resp.status_code,
                    },
                }));
            }
            let mut bump = tx
                .prepare_cached("UPDATE record_sessions SET next_case = ?2 WHERE record_id = ?1")?;
            for (record_id, slot) in &slots {
                if let Some(slot) = slot {
                    bump.execute(params![record_id, slot.next_case])?;
                }
            }
        }
        tx.commit()?;
        Ok(out)
    }

    fn session_summary(
        &self,
        record_id: &str,
        max_endpoints: usize,
    ) -> Result<(u64, Vec<EndpointEntry>), StoreError> {
        let conn = self.conn()?;
        let count: i64 = conn.query_row(
            "SELECT COUNT(*) FROM test_cases WHERE record_id = ?1",
            [record_id],
            |r| r.get(0),
        )?;
        let mut stmt = conn.prepare(
            "SELECT name, req_path, req_method, resp_status FROM test_cases WHERE id IN (
                 SELECT MIN(id) FROM test_cases WHERE record_id = ?1
                 GROUP BY req_method, req_path, resp_status)
             ORDER BY id LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![record_id, max_endpoints as i64], |r| {
            Ok(EndpointEntry {
                name: r.get(0)?,
                endpoint: r.get(1)?,
                method: r.get(2)?,
                status_code: r.get(3)?,
            })
        })?;
        let endpoints = rows.collect::<Result<_, _>>()?;
        Ok((u64::try_from(count).unwrap_or(0), endpoints))
    }

    fn list_test_cases(&self, f: &TestCaseFilter) -> Result<Vec<TestCase>, StoreError> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM test_cases
             WHERE (?1 IS NULL OR namespace = ?1) AND (?2 IS NULL OR deployment = ?2)
               AND (?3 IS NULL OR test_set = ?3) AND (?4 IS NULL OR record_id = ?4)
             ORDER BY id LIMIT ?5 OFFSET ?6"
        );
        let mut stmt = conn.prepare(&sql)?;
        let rows = stmt.query_map(
            params![
                f.namespace,
                f.deployment,
                f.test_set,
                f.record_id,
                f.limit,
                f.offset
            ],
            case_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn get_test_case(&self, id: i64) -> Result<Option<TestCase>, StoreError> {
        let conn = self.conn()?;
        let sql = format!("SELECT {CASE_COLUMNS} FROM test_cases WHERE id = ?1");
        Ok(conn.query_row(&sql, [id], case_from_row).optional()?)
    }

    fn find_test_case(
        &self,
        namespace: &str,
        deployment: &str,
        test_set: &str,
        name: &str,
    ) -> Result<Option<TestCase>, StoreError> {
        let conn = self.conn()?;
        let sql = format!(
            "SELECT {CASE_COLUMNS} FROM test_cases
             WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3 AND name = ?4"
        );
        Ok(conn
            .query_row(
                &sql,
                params![namespace, deployment, test_set, name],
                case_from_row,
            )
            .optional()?)
    }

    fn list_test_sets(
        &self,
        namespace: Option<&str>,
        deployment: Option<&str>,
    ) -> Result<Vec<TestSetSummary>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(
            "SELECT s.namespace, s.deployment, s.test_set, s.record_id, s.status, s.created_at,
                    (SELECT COUNT(*) FROM test_cases t WHERE t.record_id = s.record_id)
             FROM record_sessions s
             WHERE (?1 IS NULL OR s.namespace = ?1) AND (?2 IS NULL OR s.deployment = ?2)
             ORDER BY s.namespace, s.deployment, s.created_at",
        )?;
        let rows = stmt.query_map(params![namespace, deployment], |r| {
            let status: String = r.get(4)?;
            let count: i64 = r.get(6)?;
            Ok(TestSetSummary {
                namespace: r.get(0)?,
                deployment: r.get(1)?,
                test_set: r.get(2)?,
                record_id: r.get(3)?,
                status: SessionStatus::parse(&status).unwrap_or(SessionStatus::Failed),
                test_cases_count: u64::try_from(count).unwrap_or(0),
                created: rfc3339_ms(r.get(5)?),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
