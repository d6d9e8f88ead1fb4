//! The replay mock pool (sans-IO): requests in, recorded answers or miss reports out.
//!
//! Matching is deterministic and never fuzzy. For each request, the first tier (in this order)
//! holding a match answers:
//!
//! 1. per-test mocks of the current test, unconsumed, exact fields; then unconsumed per-test
//!    mocks no test was attributed (concurrent recordings, keploy #2679: an exact match is
//!    unambiguous whoever caused it); then, with strict windows off, unconsumed per-test mocks
//!    of earlier tests;
//! 2. connection mocks, exact;
//! 3. session mocks, exact;
//! 4. the same tiers again, noise-aware: fields may differ where the mock's own noise rules or
//!    the pool's global rules ([`MockPool::with_noise`]) forgive the received value.
//!
//! Within a per-test tier the first unconsumed match in recorded order wins and is consumed,
//! so identical requests recorded with different answers are answered in recorded order, one
//! answer per request (#916, #2510, #4570); once they are used up, the request misses. Reused
//! mocks (connection, session) with identical requests are likewise served in recorded order
//! once each, after which the last one keeps answering.
//!
//! "Recorded order" is request time, ties in the order given.

use std::collections::{BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::fields::{FieldRules, compare, fields_summary, noise_equal};
use super::model::{FieldDiff, Lifetime, Mock, MockKind};
use crate::noise::NoiseMap;

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchOutcome {
    Hit {
        name: String,
        response: Vec<u8>,
        lifetime: Lifetime,
    },
    Miss(MissReport),
}

/// A request no eligible mock matched, with the closest recorded one to explain why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissReport {
    pub kind: MockKind,
    pub request_summary: String,
    pub fields: Vec<(String, String)>,
    pub closest: Option<Closest>,
    /// The test being replayed; `None` before the first test (start-up).
    pub test_case: Option<String>,
}

/// The recorded mock of the same kind sharing the most field values with the missed request
/// (then: the fewest differing fields, then recorded order), eligible or not. It was not
/// served; it is shown so the user sees what was expected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closest {
    pub name: String,
    pub summary: String,
    /// Each field that differs: recorded value (`expected`) and received value (`actual`).
    pub field_diffs: Vec<FieldDiff>,
    /// Already consumed: the request repeats a call whose recorded answers are used up.
    pub consumed: bool,
    pub test_case: Option<String>,
    pub lifetime: Lifetime,
}

#[derive(Debug, Clone)]
struct Entry {
    mock: Mock,
    rules: FieldRules,
    consumed: bool,
    hits: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    CurrentTest,
    Unattributed,
    OtherTests,
    Connection,
    Session,
}

const TIERS: [Tier; 5] = [
    Tier::CurrentTest,
    Tier::Unattributed,
    Tier::OtherTests,
    Tier::Connection,
    Tier::Session,
];

/// The mocks of one replay and what has been served from them.
#[derive(Debug, Clone)]
pub struct MockPool {
    entries: Vec<Entry>,
    global: FieldRules,
    strict: bool,
    current: Option<String>,
    begun: BTreeSet<String>,
    consumed: Vec<String>,
    used: BTreeSet<String>,
    noise_errors: Vec<String>,
    /// Entries by exact request (kind and fields), in recorded order: the exact pass looks only
    /// at these instead of comparing every mock's fields on every request.
    exact: HashMap<u64, Vec<usize>>,
}

/// The exact pass's key: a hash of kind and fields (candidates are still compared in full).
fn exact_key(kind: MockKind, fields: &[(String, String)]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    kind.hash(&mut hasher);
    fields.hash(&mut hasher);
    hasher.finish()
}

impl MockPool {
    /// A pool in recorded order (request time, ties as given), strict windows on, no test
    /// begun: until [`MockPool::begin_test`] only connection and session mocks answer.
    pub fn new(mut mocks: Vec<Mock>) -> Self {
        mocks.sort_by_key(|m| m.req_ts_ns);
        let mut noise_errors = Vec::new();
        let entries: Vec<Entry> = mocks
            .into_iter()
            .map(|mock| Entry {
                rules: FieldRules::compile(&mock.noise, &mut noise_errors),
                mock,
                consumed: false,
                hits: 0,
            })
            .collect();
        let mut exact: HashMap<u64, Vec<usize>> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            exact
                .entry(exact_key(e.mock.kind, &e.mock.fields))
                .or_default()
                .push(i);
        }
        MockPool {
            exact,
            entries,
            global: FieldRules::default(),
            strict: true,
            current: None,
            begun: BTreeSet::new(),
            consumed: Vec::new(),
            used: BTreeSet::new(),
            noise_errors,
        }
    }

    /// Global noise on request fields (`field.<name>` keys), applied to every mock in the
    /// noise-aware pass.
    pub fn with_noise(mut self, noise: NoiseMap) -> Self {
        self.global = FieldRules::compile(&noise, &mut self.noise_errors);
        self
    }

    /// With strict windows off, per-test mocks of earlier tests (left unconsumed) and
    /// unattributed per-test mocks stay eligible after the current test's own.
    pub fn with_strict_windows(mut self, strict: bool) -> Self {
        self.strict = strict;
        self
    }

    /// Noise rules that could not be compiled (they forgive nothing).
    pub fn noise_errors(&self) -> &[String] {
        &self.noise_errors
    }

    /// The replay moves to the next test: its per-test mocks become eligible, those of the
    /// previous test stop being (unless strict windows are off).
    pub fn begin_test(&mut self, test_case: &str) {
        self.current = Some(test_case.to_owned());
        self.begun.insert(test_case.to_owned());
    }

    pub fn current_test(&self) -> Option<&str> {
        self.current.as_deref()
    }

    /// Answers one request (module docs for the order).
    pub fn match_request(&mut self, kind: MockKind, fields: &[(String, String)]) -> MatchOutcome {
        for noise_aware in [false, true] {
            for tier in TIERS {
                if let Some(i) = self.pick(tier, noise_aware, kind, fields) {
                    return self.serve(i);
                }
            }
        }
        MatchOutcome::Miss(self.miss_report(kind, fields))
    }

    fn eligible(&self, entry: &Entry, tier: Tier) -> bool {
        let m = &entry.mock;
        match tier {
            Tier::CurrentTest => {
                m.lifetime == Lifetime::PerTest
                    && !entry.consumed
                    && self.current.is_some()
                    && m.test_case == self.current
            }
            Tier::Unattributed => {
                m.lifetime == Lifetime::PerTest && !entry.consumed && m.test_case.is_none()
            }
            Tier::OtherTests => {
                !self.strict
                    && m.lifetime == Lifetime::PerTest
                    && !entry.consumed
                    && m.test_case != self.current
                    && m.test_case.as_ref().is_some_and(|t| self.begun.contains(t))
            }
            Tier::Connection => m.lifetime == Lifetime::Connection,
            Tier::Session => m.lifetime == Lifetime::Session,
        }
    }

    fn pick(
        &self,
        tier: Tier,
        noise_aware: bool,
        kind: MockKind,
        fields: &[(String, String)],
    ) -> Option<usize> {
        let exact: &[usize] = if noise_aware {
            &[]
        } else {
            self.exact
                .get(&exact_key(kind, fields))
                .map_or(&[], Vec::as_slice)
        };
        let candidates: Box<dyn Iterator<Item = (usize, &Entry)>> = if noise_aware {
            Box::new(self.entries.iter().enumerate().filter(|(_, e)| {
                e.mock.kind == kind
                    && noise_equal(&e.mock.fields, fields, &[&e.rules, &self.global])
            }))
        } else {
            Box::new(
                exact
                    .iter()
                    .map(|&i| (i, &self.entries[i]))
                    .filter(move |(_, e)| e.mock.kind == kind && e.mock.fields == fields),
            )
        };
        let mut matching = candidates.filter(|(_, e)| self.eligible(e, tier));
        match tier {
            // Consumed on use, so the first unconsumed is the next recorded answer.
            Tier::CurrentTest | Tier::Unattributed | Tier::OtherTests => {
                matching.next().map(|(i, _)| i)
            }
            // Reused: each recorded answer once, in order, then the last one.
            Tier::Connection | Tier::Session => {
                let mut last = None;
                for (i, e) in matching {
                    if e.hits == 0 {
                        return Some(i);
                    }
                    last = Some(i);
                }
                last
            }
        }
    }

    fn serve(&mut self, i: usize) -> MatchOutcome {
        let entry = &mut self.entries[i];
        entry.hits += 1;
        if entry.mock.lifetime == Lifetime::PerTest {
            entry.consumed = true;
            self.consumed.push(entry.mock.name.clone());
        }
        self.used.insert(entry.mock.name.clone());
        MatchOutcome::Hit {
            name: entry.mock.name.clone(),
            response: entry.mock.response.clone(),
            lifetime: entry.mock.lifetime,
        }
    }

    fn miss_report(&self, kind: MockKind, fields: &[(String, String)]) -> MissReport {
        let same_kind: Vec<&Entry> = self
            .entries
            .iter()
            .filter(|e| e.mock.kind == kind)
            .collect();
        // Lowest key wins: most equal fields, fewest diffs, recorded order (min_by_key keeps
        // the first of equal keys).
        let best = same_kind
            .iter()
            .map(|e| (e, compare(&e.mock.fields, fields)))
            .min_by_key(|(_, c)| (std::cmp::Reverse(c.equal), c.diffs.len()));
        // Sharing nothing with the request, one of many mocks is no clue; the only one is.
        let closest = best
            .filter(|(_, c)| c.equal > 0 || same_kind.len() == 1)
            .map(|(e, c)| Closest {
                name: e.mock.name.clone(),
                summary: e.mock.summary.clone(),
                field_diffs: c.diffs,
                consumed: e.consumed,
                test_case: e.mock.test_case.clone(),
                lifetime: e.mock.lifetime,
            });
        MissReport {
            kind,
            request_summary: fields_summary(fields),
            fields: fields.to_vec(),
            closest,
            test_case: self.current.clone(),
        }
    }

    /// Names of the per-test mocks consumed so far, in the order they were.
    pub fn consumed(&self) -> Vec<String> {
        self.consumed.clone()
    }

    /// Every mock that answered at least one request, any lifetime.
    pub fn used(&self) -> BTreeSet<String> {
        self.used.clone()
    }

    /// Per-test mocks not consumed (any test, unattributed ones included), recorded order.
    pub fn unused_per_test(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.mock.lifetime == Lifetime::PerTest && !e.consumed)
            .map(|e| e.mock.name.clone())
            .collect()
    }

    /// The per-test mocks of `test_case` not consumed, recorded order: calls the test made at
    /// record time and did not make in replay.
    pub fn unused_of(&self, test_case: &str) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| {
                e.mock.lifetime == Lifetime::PerTest
                    && !e.consumed
                    && e.mock.test_case.as_deref() == Some(test_case)
            })
            .map(|e| e.mock.name.clone())
            .collect()
    }

    /// The mocks, recorded order.
    pub fn mocks(&self) -> impl Iterator<Item = &Mock> {
        self.entries.iter().map(|e| &e.mock)
    }
}

/// After a passing replay, the mocks to delete: per-test mocks of tests that ran (and passed)
/// without using them. Kept: session and connection mocks, unattributed mocks, mocks of tests
/// that did not run, and every mock that served a request.
pub fn prune(mocks: &[Mock], used: &BTreeSet<String>, tests_run: &BTreeSet<String>) -> Vec<String> {
    mocks
        .iter()
        .filter(|m| {
            m.lifetime == Lifetime::PerTest
                && !used.contains(&m.name)
                && m.test_case.as_ref().is_some_and(|t| tests_run.contains(t))
        })
        .map(|m| m.name.clone())
        .collect()
}
