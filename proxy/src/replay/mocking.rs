//! The dependency side of a replay: the test set's mocks go to the agent, whose mock server
//! answers the instance's outbound connections (redirected before the app starts); per test case
//! the proxy learns which mocks answered and which calls found none.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use kreplay_domain::mock::{Mock, prune};
use kreplay_proto::v1::{ReplayStart, replay_command::Action};
use serde_json::Value;

use crate::{
    agents::{AgentHub, ReplayCommandError},
    mocks::load_set,
    orchestrator::ReplayInstance,
    store::{MockSet, SharedStore, blocking},
};

/// How long one command to the agent may take (starting includes attaching programs).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(15);

/// The hits and misses the agent reports (see the agent's `mockserver::Outcome`).
#[derive(Debug, Default, serde::Deserialize)]
struct Outcome {
    #[serde(default)]
    hits: Vec<Hit>,
    #[serde(default)]
    misses: Vec<Value>,
    #[serde(default)]
    refused: Vec<String>,
}

#[derive(Debug, serde::Deserialize)]
struct Hit {
    name: String,
}

pub struct MockSession {
    hub: Arc<AgentHub>,
    replay_id: String,
    set: MockSet,
    mocks: Vec<Mock>,
    /// Mock server running.
    active: bool,
    used: BTreeSet<String>,
    /// A command failed: what the server served is no longer known, so nothing is pruned.
    failed: bool,
}

impl MockSession {
    /// Loads the set's mocks and has the agent redirect the (not yet launched)
    /// instance to a mock server holding them.
    pub async fn start(
        hub: Arc<AgentHub>,
        store: &SharedStore,
        replay_id: &str,
        set: MockSet,
        instance: &dyn ReplayInstance,
    ) -> Result<Self, String> {
        let mocks = load_set(store, &set)
            .await
            .map_err(|e| format!("loading mocks: {e}"))?;
        let mut session = Self {
            hub,
            replay_id: replay_id.to_owned(),
            set,
            mocks,
            active: false,
            used: BTreeSet::new(),
            failed: false,
        };
        let (cgroup_path, cgroup_id) = instance
            .cgroup()
            .map_err(|e| format!("the replay instance's cgroup: {e}"))?;
        let start = ReplayStart {
            cgroup_path: cgroup_path.display().to_string(),
            cgroup_id,
            mocks_json: serde_json::to_string(&session.mocks).map_err(|e| e.to_string())?,
            noise_json: String::new(),
        };
        match session.command(Action::Start(start)).await {
            Ok(_) => session.active = true,
            // Without the redirect the app would talk to its real dependencies.
            Err(ReplayCommandError::NoAgent) => {
                return Err(
                    "no agent is connected: the replay instance cannot be isolated from its \
                     dependencies (start kreplay-agent, or set local_agent in the config)"
                        .to_owned(),
                );
            }
            Err(e) => {
                // A start that timed out may still complete on the agent: take it down.
                let _ = session.command(Action::Stop(true)).await;
                return Err(format!("starting the mock server: {e}"));
            }
        }
        Ok(session)
    }

    async fn command(&self, action: Action) -> Result<Outcome, ReplayCommandError> {
        let report = self
            .hub
            .replay_command(&self.replay_id, action, COMMAND_TIMEOUT)
            .await?;
        if report.outcome_json.is_empty() {
            return Ok(Outcome::default());
        }
        serde_json::from_str(&report.outcome_json)
            .map_err(|e| ReplayCommandError::Agent(format!("unreadable mock server report: {e}")))
    }

    pub async fn begin_test(&mut self, test_case: &str) -> Result<(), String> {
        if !self.active {
            return Ok(());
        }
        let result = self.command(Action::BeginTest(test_case.to_owned())).await;
        self.failed |= result.is_err();
        result.map(|_| ()).map_err(|e| e.to_string())
    }

    /// A command failed: the set should stop (calls may have gone unanswered or unrecorded).
    pub fn broken(&self) -> bool {
        self.failed
    }

    /// The calls of `test_case` no mock answered (each a miss report with the closest mock).
    pub async fn end_test(&mut self, test_case: &str) -> Result<Vec<Value>, String> {
        if !self.active {
            return Ok(Vec::new());
        }
        let result = self.command(Action::EndTest(test_case.to_owned())).await;
        self.failed |= result.is_err();
        Ok(self.absorb(result.map_err(|e| e.to_string())?))
    }

    fn absorb(&mut self, outcome: Outcome) -> Vec<Value> {
        self.used.extend(outcome.hits.into_iter().map(|h| h.name));
        let mut misses = outcome.misses;
        misses.extend(
            outcome
                .refused
                .into_iter()
                .map(|reason| serde_json::json!({"refused": reason})),
        );
        misses
    }

    /// Stops the mock server. After a passing set, mocks no test used are deleted (start-up,
    /// connection and unrun tests' mocks are kept); returns how many.
    pub async fn finish(
        mut self,
        store: &SharedStore,
        passed: bool,
        tests_run: BTreeSet<String>,
    ) -> u64 {
        if self.active {
            match self.command(Action::Stop(true)).await {
                Ok(outcome) => {
                    self.absorb(outcome);
                }
                Err(e) => {
                    self.failed = true;
                    tracing::warn!(replay_id = %self.replay_id, error = %e, "stopping the mock server");
                }
            }
        }
        if !passed || !self.active || self.failed {
            return 0;
        }
        let doomed = prune(&self.mocks, &self.used, &tests_run);
        if doomed.is_empty() {
            return 0;
        }
        let set = self.set.clone();
        match blocking(store, move |s| s.delete_mocks(&set, &doomed)).await {
            Ok(n) => {
                tracing::info!(replay_id = %self.replay_id, pruned = n, "unused mocks pruned");
                n
            }
            Err(e) => {
                tracing::error!(error = %e, "pruning unused mocks");
                0
            }
        }
    }
}
