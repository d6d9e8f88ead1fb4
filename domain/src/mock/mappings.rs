//! Keploy's `mappings.yaml` (test -> mocks) from attributed mocks, and back onto mocks.

use super::model::{Lifetime, Mock};
use crate::keploy::{Mappings, MockEntry, format_rfc3339_utc};

/// The mappings of a test set: for each test (in the order given), its per-test mocks in
/// recorded order. Reused mocks are left out: they belong to no one test.
pub fn mappings_of(test_set_id: &str, tests: &[String], mocks: &[Mock]) -> Mappings {
    let tests = tests
        .iter()
        .map(|test| {
            let entries = mocks
                .iter()
                .filter(|m| {
                    m.lifetime == Lifetime::PerTest && m.test_case.as_deref() == Some(test.as_str())
                })
                .map(|m| MockEntry {
                    name: m.name.clone(),
                    kind: m.kind.as_str().to_owned(),
                    timestamp: i64::try_from(m.req_ts_ns / 1_000_000_000).ok(),
                    req_timestamp_mock: Some(format_rfc3339_utc(m.req_ts_ns)),
                    res_timestamp_mock: Some(format_rfc3339_utc(m.resp_ts_ns)),
                })
                .collect();
            (test.clone(), entries)
        })
        .collect();
    Mappings {
        test_set_id: test_set_id.to_owned(),
        tests,
    }
}

/// Attributes per-test mocks to the test whose mapping names them (for Keploy recordings,
/// whose mocks carry no test). A mock named by several tests goes to the first; mocks named by
/// none keep their test. Returns the names the mappings mention that no mock has.
pub fn apply_mappings(mocks: &mut [Mock], mappings: &Mappings) -> Vec<String> {
    let mut dangling = Vec::new();
    let mut assigned = std::collections::BTreeSet::new();
    for (test, entries) in &mappings.tests {
        for entry in entries {
            match mocks.iter_mut().find(|m| m.name == entry.name) {
                None => dangling.push(entry.name.clone()),
                Some(m) if m.lifetime == Lifetime::PerTest && assigned.insert(m.name.clone()) => {
                    m.test_case = Some(test.clone());
                }
                Some(_) => {}
            }
        }
    }
    dangling
}
