//! Record-time attribution: which test case caused each dependency call, decided from the
//! test windows (the test request's first byte to its response's last byte).
//!
//! The rule, deterministic and in this order, for a mock whose request started at `t`:
//!
//! 1. Before the first test window starts (or when there are no tests): start-up (connection
//!    set-up, migrations, warm-up queries). The mock becomes [`Lifetime::Session`], whatever
//!    its parser said, and belongs to no test.
//! 2. A session mock (by its parser) stays session and belongs to no test.
//! 3. Otherwise the windows containing `t` (`start <= t <= end`) are the candidates:
//!    - none (between windows, after the last one): no test;
//!    - exactly one: that test;
//!    - several (concurrent requests, keploy #2679): no test. Every pick would be a guess —
//!      a pooled connection serves one test and then another, and a window nested in another
//!      does not own the outer test's calls — and a wrong pick fails a correct replay.
//!
//! A per-test mock left without a test is reported in [`Attribution::unattributed`] with the
//! cause (and, when ambiguous, the candidate tests) so the product can say which captures it
//! could not attribute. In replay the pool still serves it to an exact (or noise-aware)
//! match in any test, once, so concurrent recordings replay without a guess. Connection
//! mocks get a test by the same rule for information only: they are reused, never consumed,
//! and never reported.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::model::{Lifetime, Mock, MockKind};

/// One recorded test case's time window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TestWindow {
    pub name: String,
    /// First byte of the test's request (unix ns).
    pub start_ns: u64,
    /// Last byte of the test's response (unix ns).
    pub end_ns: u64,
}

impl TestWindow {
    pub fn new(name: impl Into<String>, start_ns: u64, end_ns: u64) -> Self {
        Self {
            name: name.into(),
            start_ns,
            end_ns,
        }
    }

    /// An inverted window (bad clocks) is read as the instant of its start.
    fn end(&self) -> u64 {
        self.end_ns.max(self.start_ns)
    }

    fn contains(&self, t: u64) -> bool {
        self.start_ns <= t && t <= self.end()
    }
}

/// Why a per-test mock belongs to no test.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum UnattributedCause {
    /// Its request started between test windows or after the last one.
    OutsideWindows,
    /// Its request started inside several overlapping windows and no rule could pick one.
    Ambiguous { candidates: Vec<String> },
}

/// A per-test mock attribution left without a test, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnattributedReason {
    pub mock: String,
    pub kind: MockKind,
    pub summary: String,
    pub connection_id: String,
    pub req_ts_ns: u64,
    #[serde(flatten)]
    pub cause: UnattributedCause,
}

impl fmt::Display for UnattributedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {}): ", self.mock, self.kind, self.summary)?;
        match &self.cause {
            UnattributedCause::OutsideWindows => f.write_str("outside every test window"),
            UnattributedCause::Ambiguous { candidates } => write!(
                f,
                "inside the overlapping windows of {} (concurrent requests); cannot tell which \
                 test caused it",
                candidates.join(", ")
            ),
        }
    }
}

/// The mocks with lifetime and test decided (same order as given), and the per-test mocks
/// that could not be attributed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribution {
    pub mocks: Vec<Mock>,
    pub unattributed: Vec<UnattributedReason>,
}

/// Decides each mock's lifetime and test (module docs for the rule).
pub fn attribute(mut mocks: Vec<Mock>, tests: &[TestWindow]) -> Attribution {
    let first_start = tests.iter().map(|t| t.start_ns).min();
    // Candidate windows per mock; `None` for start-up mocks.
    let candidates: Vec<Option<Vec<usize>>> = mocks
        .iter()
        .map(|m| match first_start {
            Some(first) if m.req_ts_ns >= first => Some(
                (0..tests.len())
                    .filter(|&i| tests[i].contains(m.req_ts_ns))
                    .collect(),
            ),
            _ => None,
        })
        .collect();
    let decisions: Vec<Decision> = candidates
        .iter()
        .map(|cands| match cands {
            None => Decision::StartUp,
            Some(cands) => decide(cands, tests),
        })
        .collect();

    let mut unattributed = Vec::new();
    for (m, decision) in mocks.iter_mut().zip(decisions) {
        m.test_case = None;
        match decision {
            Decision::StartUp => m.lifetime = Lifetime::Session,
            _ if m.lifetime == Lifetime::Session => {}
            Decision::Test(i) => m.test_case = Some(tests[i].name.clone()),
            Decision::None(_) if m.lifetime == Lifetime::Connection => {}
            Decision::None(cause) => unattributed.push(UnattributedReason {
                mock: m.name.clone(),
                kind: m.kind,
                summary: m.summary.clone(),
                connection_id: m.connection_id.clone(),
                req_ts_ns: m.req_ts_ns,
                cause,
            }),
        }
    }
    Attribution {
        mocks,
        unattributed,
    }
}

enum Decision {
    StartUp,
    Test(usize),
    None(UnattributedCause),
}

fn decide(cands: &[usize], tests: &[TestWindow]) -> Decision {
    match cands {
        [] => Decision::None(UnattributedCause::OutsideWindows),
        [only] => Decision::Test(*only),
        // Any pick would be a guess (a pooled connection serves one test, then another; a
        // nested window does not own the outer test's calls): say so instead.
        _ => Decision::None(UnattributedCause::Ambiguous {
            candidates: cands.iter().map(|&i| tests[i].name.clone()).collect(),
        }),
    }
}
