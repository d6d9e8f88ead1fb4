//! Mocks: the target's dependency calls captured during a recording, per test set, with the test
//! case each one is attributed to (migration 3).

use std::collections::BTreeMap;

use rusqlite::{OptionalExtension, Row, params};

use super::{SqliteStore, StoreError, sqlite::json_text};

/// A mock as stored. `name` is `mock-N` within its test set.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StoredMock {
    pub name: String,
    pub record_id: String,
    pub namespace: String,
    pub deployment: String,
    pub test_set: String,
    /// `Http`, `PostgresV2`, `Redis`, `MySQL`, `Generic` (Keploy kind names).
    pub kind: String,
    /// `session`, `connection` or `per_test`.
    pub lifetime: String,
    pub connection_id: String,
    pub destination: String,
    pub request: Vec<u8>,
    pub response: Vec<u8>,
    pub fields: Vec<(String, String)>,
    pub summary: String,
    pub req_ts_ns: u64,
    pub resp_ts_ns: u64,
    pub test_case: Option<String>,
    pub noise: BTreeMap<String, Vec<String>>,
}

/// A captured mock on its way in: stored once per (agent, seq).
#[derive(Debug, Clone)]
pub struct NewMock {
    pub agent_id: String,
    pub seq: u64,
    pub mock: StoredMock,
}

/// Where a test set's mocks live: the set itself.
pub type MockSet = super::edit::SetKey;

pub trait MockStore {
    /// Stores mocks (idempotent per agent and seq) under their session's test set, naming them
    /// `mock-N` in arrival order. Returns how many were new.
    fn insert_mocks(&self, mocks: &[NewMock]) -> Result<usize, StoreError>;
    /// Every mock of a set, in recorded order.
    fn list_mocks(&self, set: &MockSet) -> Result<Vec<StoredMock>, StoreError>;
    /// Mock count and count per kind of a recording.
    fn mock_summary(&self, record_id: &str) -> Result<(u64, BTreeMap<String, u64>), StoreError>;
    /// Sets the attributed test case and lifetime of named mocks.
    fn attribute_mocks(
        &self,
        set: &MockSet,
        decisions: &[(String, Option<String>, String)],
    ) -> Result<(), StoreError>;
    /// Deletes named mocks of a set; returns how many.
    fn delete_mocks(&self, set: &MockSet, names: &[String]) -> Result<u64, StoreError>;
    /// Replaces every mock of a set (upload), keeping the given names.
    fn replace_mocks(
        &self,
        set: &MockSet,
        record_id: &str,
        mocks: &[StoredMock],
    ) -> Result<(), StoreError>;
}

const COLUMNS: &str = "name, record_id, namespace, deployment, test_set, kind, lifetime, connection_id, \
     destination, request, response, fields, summary, req_ts_ns, resp_ts_ns, test_case, noise";

fn from_row(r: &Row<'_>) -> rusqlite::Result<StoredMock> {
    let fields: String = r.get(11)?;
    let noise: String = r.get(16)?;
    let req_ts: i64 = r.get(13)?;
    let resp_ts: i64 = r.get(14)?;
    Ok(StoredMock {
        name: r.get(0)?,
        record_id: r.get(1)?,
        namespace: r.get(2)?,
        deployment: r.get(3)?,
        test_set: r.get(4)?,
        kind: r.get(5)?,
        lifetime: r.get(6)?,
        connection_id: r.get(7)?,
        destination: r.get(8)?,
        request: r.get(9)?,
        response: r.get(10)?,
        fields: serde_json::from_str(&fields).unwrap_or_default(),
        summary: r.get(12)?,
        req_ts_ns: u64::try_from(req_ts).unwrap_or(0),
        resp_ts_ns: u64::try_from(resp_ts).unwrap_or(0),
        test_case: r.get(15)?,
        noise: serde_json::from_str(&noise).unwrap_or_default(),
    })
}

fn insert_row(
    tx: &rusqlite::Transaction<'_>,
    agent_id: &str,
    seq: u64,
    m: &StoredMock,
) -> Result<(), StoreError> {
    tx.prepare_cached(
        "INSERT INTO mocks (agent_id, seq, name, record_id, namespace, deployment, test_set, kind,
             lifetime, connection_id, destination, request, response, fields, summary, req_ts_ns,
             resp_ts_ns, test_case, noise)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)",
    )?
    .execute(params![
        agent_id,
        i64::try_from(seq).unwrap_or(i64::MAX),
        m.name,
        m.record_id,
        m.namespace,
        m.deployment,
        m.test_set,
        m.kind,
        m.lifetime,
        m.connection_id,
        m.destination,
        m.request,
        m.response,
        json_text(&m.fields)?,
        m.summary,
        i64::try_from(m.req_ts_ns).unwrap_or(i64::MAX),
        i64::try_from(m.resp_ts_ns).unwrap_or(i64::MAX),
        m.test_case,
        json_text(&m.noise)?,
    ])?;
    Ok(())
}

impl MockStore for SqliteStore {
    fn insert_mocks(&self, mocks: &[NewMock]) -> Result<usize, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let mut inserted = 0;
        for new in mocks {
            let seen = tx
                .prepare_cached("SELECT 1 FROM mocks WHERE agent_id = ?1 AND seq = ?2")?
                .exists(params![
                    new.agent_id,
                    i64::try_from(new.seq).unwrap_or(i64::MAX)
                ])?;
            if seen {
                continue;
            }
            let slot: Option<(String, String, String, i64)> = tx
                .prepare_cached(
                    "SELECT namespace, deployment, test_set, next_mock FROM record_sessions WHERE record_id = ?1",
                )?
                .query_row([&new.mock.record_id], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()?;
            let Some((namespace, deployment, test_set, next)) = slot else {
                continue;
            };
            let mock = StoredMock {
                name: format!("mock-{next}"),
                namespace,
                deployment,
                test_set,
                ..new.mock.clone()
            };
            insert_row(&tx, &new.agent_id, new.seq, &mock)?;
            tx.prepare_cached("UPDATE record_sessions SET next_mock = ?2 WHERE record_id = ?1")?
                .execute(params![new.mock.record_id, next + 1])?;
            inserted += 1;
        }
        tx.commit()?;
        Ok(inserted)
    }

    fn list_mocks(&self, set: &MockSet) -> Result<Vec<StoredMock>, StoreError> {
        let conn = self.conn()?;
        let mut stmt = conn.prepare(&format!(
            "SELECT {COLUMNS} FROM mocks WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3
             ORDER BY req_ts_ns, id"
        ))?;
        let rows = stmt.query_map(
            params![set.namespace, set.deployment, set.test_set],
            from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn mock_summary(&self, record_id: &str) -> Result<(u64, BTreeMap<String, u64>), StoreError> {
        let conn = self.conn()?;
        let mut stmt =
            conn.prepare("SELECT kind, COUNT(*) FROM mocks WHERE record_id = ?1 GROUP BY kind")?;
        let kinds: BTreeMap<String, u64> = stmt
            .query_map([record_id], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
            .collect();
        Ok((kinds.values().sum(), kinds))
    }

    fn attribute_mocks(
        &self,
        set: &MockSet,
        decisions: &[(String, Option<String>, String)],
    ) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        for (name, test_case, lifetime) in decisions {
            tx.prepare_cached(
                "UPDATE mocks SET test_case = ?5, lifetime = ?6
                 WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3 AND name = ?4",
            )?
            .execute(params![
                set.namespace,
                set.deployment,
                set.test_set,
                name,
                test_case,
                lifetime
            ])?;
        }
        tx.commit()?;
        Ok(())
    }

    fn delete_mocks(&self, set: &MockSet, names: &[String]) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let mut deleted = 0;
        for name in names {
            deleted += tx
                .prepare_cached(
                    "DELETE FROM mocks WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3 AND name = ?4",
                )?
                .execute(params![set.namespace, set.deployment, set.test_set, name])?;
        }
        tx.commit()?;
        Ok(deleted as u64)
    }

    fn replace_mocks(
        &self,
        set: &MockSet,
        record_id: &str,
        mocks: &[StoredMock],
    ) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        tx.execute(
            "DELETE FROM mocks WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3",
            params![set.namespace, set.deployment, set.test_set],
        )?;
        let agent_id = format!("upload-{record_id}");
        for (seq, m) in mocks.iter().enumerate() {
            let mock = StoredMock {
                record_id: record_id.to_owned(),
                namespace: set.namespace.clone(),
                deployment: set.deployment.clone(),
                test_set: set.test_set.clone(),
                ..m.clone()
            };
            insert_row(&tx, &agent_id, seq as u64, &mock)?;
        }
        let next = mocks
            .iter()
            .filter_map(|m| m.name.strip_prefix("mock-")?.parse::<i64>().ok())
            .max()
            .map_or(0, |n| n + 1);
        tx.execute(
            "UPDATE record_sessions SET next_mock = MAX(next_mock, ?2) WHERE record_id = ?1",
            params![record_id, next],
        )?;
        tx.commit()?;
        Ok(())
    }
}
