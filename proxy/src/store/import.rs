//! Test sets that did not come from a recording: imported Keploy files. Each becomes a stopped
//! session of its own, so every read path treats it like a recorded test set.

use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, StoreError, sqlite::insert_case_row};
use crate::model::{NewTestCase, SessionStatus};

/// One test case to import, with the name it had.
#[derive(Debug, Clone)]
pub struct ImportedCase {
    pub name: String,
    pub case: NewTestCase,
}

pub trait ImportStore {
    /// Stores `cases` as a new test set of the deployment under `record_id`. The set keeps the
    /// name `wanted` when the deployment has no set of that name, else it gets the next
    /// `test-set-N`. Returns the set's name.
    fn import_test_set(
        &self,
        namespace: &str,
        deployment: &str,
        record_id: &str,
        wanted: &str,
        cases: &[ImportedCase],
        created_at_ms: i64,
    ) -> Result<String, StoreError>;
}

fn set_number(name: &str) -> Option<i64> {
    name.strip_prefix("test-set-")?.parse().ok()
}

/// The number after the last `-` of `test-N` style names.
fn case_number(name: &str) -> Option<i64> {
    name.rsplit('-').next()?.parse().ok()
}

/// Names that may become part of paths and URLs: letters, digits, `.`, `_`, `-`; not starting
/// with `.`; at most 100 characters.
pub fn is_safe_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ImportStore for SqliteStore {
    fn import_test_set(
        &self,
        namespace: &str,
        deployment: &str,
        record_id: &str,
        wanted: &str,
        cases: &[ImportedCase],
        created_at_ms: i64,
    ) -> Result<String, StoreError> {
        let conn = self.conn()?;
        let tx = conn.unchecked_transaction()?;
        let taken: bool = tx
            .query_row(
                "SELECT 1 FROM record_sessions WHERE namespace = ?1 AND deployment = ?2 AND test_set = ?3",
                params![namespace, deployment, wanted],
                |_| Ok(()),
            )
            .optional()?
            .is_some();
        let next: i64 = tx
            .query_row(
                "SELECT next_test_set FROM deployment_counters WHERE namespace = ?1 AND deployment = ?2",
                params![namespace, deployment],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        let (test_set, next) = if taken || wanted.is_empty() {
            (format!("test-set-{next}"), next + 1)
        } else {
            // Later recordings must not reuse an imported `test-set-N`.
            let after = set_number(wanted).map_or(next, |n| next.max(n + 1));
            (wanted.to_owned(), after)
        };
        tx.execute(
            "INSERT INTO deployment_counters (namespace, deployment, next_test_set) VALUES (?1, ?2, ?3)
             ON CONFLICT (namespace, deployment) DO UPDATE SET next_test_set = excluded.next_test_set",
            params![namespace, deployment, next],
        )?;
        tx.execute(
            "INSERT INTO record_sessions (record_id, namespace, deployment, test_set, status,
                 record_config, auto_replay_config, created_at, stopped_at, next_case)
             VALUES (?1, ?2, ?3, ?4, ?5, '{\"imported\":true}', '{}', ?6, ?6, ?7)",
            params![
                record_id,
                namespace,
                deployment,
                test_set,
                SessionStatus::Stopped.as_str(),
                created_at_ms,
                // Past every imported `test-N`, so cases added later never collide.
                cases
                    .iter()
                    .filter_map(|c| case_number(&c.name))
                    .max()
                    .unwrap_or(0)
                    .max(i64::try_from(cases.len()).unwrap_or(i64::MAX))
                    .saturating_add(1),
            ],
        )?;
        for imported in cases {
            insert_case_row(
                &tx,
                namespace,
                deployment,
                &test_set,
                &imported.name,
                &imported.case,
            )?;
        }
        tx.commit()?;
        Ok(test_set)
    }
}
