//! Hand edits of stored test cases and sets (the write routes of `/k8s-proxy/testcases`).

use rusqlite::{OptionalExtension, params};

use super::{
    SqliteStore, StoreError,
    sqlite::{insert_case_row, json_text},
};
use crate::model::{NewTestCase, StoredRequest, StoredResponse};

/// Where a test set lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetKey {
    pub namespace: String,
    pub deployment: String,
    pub test_set: String,
}

pub trait EditStore {
    /// The recording (or import) a test set belongs to, and whether it is still recording.
    fn set_owner(&self, set: &SetKey) -> Result<Option<(String, bool)>, StoreError>;
    /// Appends a case to an existing set under its next `test-N`; returns (id, name).
    fn append_test_case(
        &self,
        set: &SetKey,
        case: &NewTestCase,
    ) -> Result<(i64, String), StoreError>;
    /// Replaces the request, response and noise of a case; false when there is no such case.
    fn update_test_case(
        &self,
        id: i64,
        req: &StoredRequest,
        resp: &StoredResponse,
        noise: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<bool, StoreError>;
    /// Deletes the named cases of a set (every case when `names` is empty); returns how many.
    fn delete_test_cases(&self, set: &SetKey, names: &[String]) -> Result<u64, StoreError>;
    /// Deletes a set with its cases; returns how many cases went.
    fn delete_test_set(&self, set: &SetKey) -> Result<u64, StoreError>;
}

impl EditStore for SqliteStore {
    fn set_owner(&self, set: &SetKey) -> Result<Option<(String, bool)>, StoreError> {
        let conn = self.conn()?;
        Ok(conn
            .query_row(
                "SELECT record_id, status FROM record_sessions
                 WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3",
                params![set.namespace, set.deployment, set.test_set],
                |r| {
                    let status: String = r.get(1)?;
                    Ok((
                        r.get(0)?,
                        matches!(status.as_str(), "starting" | "running" | "stopping"),
                    ))
                },
            )
            .optional()?)
    }

    fn append_test_case(
        &self,
        set: &SetKey,
        case: &NewTestCase,
    ) -> Result<(i64, String), StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let next: i64 = tx.query_row(
            "SELECT next_case FROM record_sessions WHERE record_id = ?1",
            [&case.record_id],
            |r| r.get(0),
        )?;
        let name = format!("test-{next}");
        insert_case_row(
            &tx,
            &set.namespace,
            &set.deployment,
            &set.test_set,
            &name,
            case,
        )?;
        let id = tx.last_insert_rowid();
        tx.execute(
            "UPDATE record_sessions SET next_case = ?2 WHERE record_id = ?1",
            params![case.record_id, next + 1],
        )?;
        tx.commit()?;
        Ok((id, name))
    }

    fn update_test_case(
        &self,
        id: i64,
        req: &StoredRequest,
        resp: &StoredResponse,
        noise: &std::collections::BTreeMap<String, Vec<String>>,
    ) -> Result<bool, StoreError> {
        let changed = self.conn()?.execute(
            "UPDATE test_cases SET req_method = ?2, req_target = ?3, req_path = ?4,
                 req_version_minor = ?5, req_headers = ?6, req_body = ?7, req_body_truncated = ?8,
                 resp_status = ?9, resp_reason = ?10, resp_version_minor = ?11, resp_headers = ?12,
                 resp_body = ?13, resp_body_truncated = ?14, noise = ?15
             WHERE id = ?1",
            params![
                id,
                req.method,
                req.target,
                req.path(),
                req.version_minor,
                json_text(&req.headers)?,
                req.body,
                req.body_truncated,
                resp.status_code,
                resp.reason,
                resp.version_minor,
                json_text(&resp.headers)?,
                resp.body,
                resp.body_truncated,
                json_text(noise)?,
            ],
        )?;
        Ok(changed > 0)
    }

    fn delete_test_cases(&self, set: &SetKey, names: &[String]) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let mut deleted = 0;
        if names.is_empty() {
            deleted += tx.execute(
                "DELETE FROM test_cases WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3",
                params![set.namespace, set.deployment, set.test_set],
            )?;
        } else {
            let mut stmt = tx.prepare(
                "DELETE FROM test_cases
                 WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3 AND name = ?4",
            )?;
            for name in names {
                deleted +=
                    stmt.execute(params![set.namespace, set.deployment, set.test_set, name])?;
            }
        }
        tx.commit()?;
        Ok(deleted as u64)
    }

    fn delete_test_set(&self, set: &SetKey) -> Result<u64, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let deleted = tx.execute(
            "DELETE FROM test_cases WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3",
            params![set.namespace, set.deployment, set.test_set],
        )?;
        tx.execute(
            "DELETE FROM mocks WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3",
            params![set.namespace, set.deployment, set.test_set],
        )?;
        tx.execute(
            "DELETE FROM session_agents WHERE record_id IN (SELECT record_id FROM record_sessions
                 WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3)",
            params![set.namespace, set.deployment, set.test_set],
        )?;
        tx.execute(
            "DELETE FROM record_sessions WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3",
            params![set.namespace, set.deployment, set.test_set],
        )?;
        tx.commit()?;
        Ok(deleted as u64)
    }
}
