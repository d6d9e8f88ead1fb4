//! Persistence behind a small synchronous trait; async callers go through [`blocking`].

mod edit;
mod import;
mod mocks;
mod reports;
mod schema;
mod sqlite;

use std::sync::Arc;

pub use edit::{EditStore, SetKey};
pub use import::{ImportStore, ImportedCase, is_safe_name};
pub use mocks::{MockSet, MockStore, NewMock, StoredMock};
pub use reports::{ReportFilter, ReportRow, ReportStore, RunKey, TestCaseResultRow, TestRunRow};
pub use sqlite::SqliteStore;

use crate::model::{
    EndpointEntry, InsertedCase, NewSession, NewTestCase, SessionRecord, SessionStatus, TestCase,
    TestCaseFilter, TestSetSummary,
};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create data directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("corrupt row: {0}")]
    Corrupt(String),
    #[error("database schema version {found} is newer than this binary supports ({supported})")]
    TooNew { found: i64, supported: i64 },
    #[error("session {0} not found")]
    NoSession(String),
    #[error("store lock poisoned")]
    Poisoned,
    #[error("blocking store task failed: {0}")]
    Task(String),
}

/// Everything the proxy persists. Methods are synchronous and may block on disk I/O.
pub trait Store: ReportStore + ImportStore + EditStore + MockStore + Send + Sync + 'static {
    /// Creates a session in status `starting` and assigns the deployment's next `test-set-N`.
    fn create_session(&self, new: &NewSession) -> Result<SessionRecord, StoreError>;

    fn set_session_status(
        &self,
        record_id: &str,
        status: SessionStatus,
        stopped_at_ms: Option<i64>,
        error: Option<&str>,
    ) -> Result<(), StoreError>;

    fn get_session(&self, record_id: &str) -> Result<Option<SessionRecord>, StoreError>;

    fn sessions_with_status(
        &self,
        statuses: &[SessionStatus],
    ) -> Result<Vec<SessionRecord>, StoreError>;

    /// Remembers that `agent_id` was given the session's targets (so stop waits for its flush).
    fn add_session_agent(&self, record_id: &str, agent_id: &str) -> Result<(), StoreError>;

    fn session_agents(&self, record_id: &str) -> Result<Vec<String>, StoreError>;

    /// Inserts test cases in one transaction. Entry `i` of the result is `None` when case `i`
    /// was already stored (same agent_id and seq) or its session is unknown.
    fn insert_test_cases(
        &self,
        cases: &[NewTestCase],
    ) -> Result<Vec<Option<InsertedCase>>, StoreError>;

    /// Test case count and distinct endpoints (first test case of each) of a session.
    fn session_summary(
        &self,
        record_id: &str,
        max_endpoints: usize,
    ) -> Result<(u64, Vec<EndpointEntry>), StoreError>;

    fn list_test_cases(&self, filter: &TestCaseFilter) -> Result<Vec<TestCase>, StoreError>;

    fn get_test_case(&self, id: i64) -> Result<Option<TestCase>, StoreError>;

    fn find_test_case(
        &self,
        namespace: &str,
        deployment: &str,
        test_set: &str,
        name: &str,
    ) -> Result<Option<TestCase>, StoreError>;

    fn list_test_sets(
        &self,
        namespace: Option<&str>,
        deployment: Option<&str>,
    ) -> Result<Vec<TestSetSummary>, StoreError>;
}

pub type SharedStore = Arc<dyn Store>;

/// Runs a store call on the blocking pool.
pub async fn blocking<T, F>(store: &SharedStore, f: F) -> Result<T, StoreError>
where
    T: Send + 'static,
    F: FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
{
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(store.as_ref()))
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_replay;
