//! The dependency side of a replay: the test set's mocks go to the agent, whose mock server
//! answers the instance's outbound connections (redirected before the app starts); per test case
//! the proxy learns which mocks answered and which calls found none.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use kreplay_domain::mock::{Mock, prune};
use kreplay_proto::v1::{ReplayStart, replay_command::Action};
use serde_json::Value;

use crate::{
    agents::{AgentHub, ReplayCommandError},
    mocks::to_domain,
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
    /// Mock server running (false: no mocks and no agent, the app talks to whatever it finds).
    active: bool,
    used: BTreeSet<String>,
}

impl MockSession {
    /// Loads the set's mocks and, when there is an agent, has it redirect the (not yet launched)
    /// instance to a mock server holding them.
    pub async fn start(
        hub: Arc<AgentHub>,
        store: &SharedStore,
        replay_id: &str,
        set: MockSet,
        instance: &dyn ReplayInstance,
    ) -> Result<Self, String> {
        let key = set.clone();
        let stored = blocking(store, move |s| s.list_mocks(&key))
            .await
            .map_err(|e| format!("loading mocks: {e}"))?;
        let mocks: Vec<Mock> = stored.iter().filter_map(to_domain).collect();
        let mut session = Self {
            hub,
            replay_id: replay_id.to_owned(),
            set,
            mocks,
            active: false,
            used: BTreeSet::new(),
        };
        let (cgroup_path, cgroup_id) = instance.cgroup();
        let start = ReplayStart {
            cgroup_path: cgroup_path.display().to_string(),
            cgroup_id,
            mocks_json: serde_json::to_string(&session.mocks).map_err(|e| e.to_string())?,
            noise_json: String::new(),
        };
        match session.command(Action::Start(start)).await {
            Ok(_) => session.active = true,
            // Without mocks the replay can run unredirected (nothing recorded to answer from).
            Err(ReplayCommandError::NoAgent) if session.mocks.is_empty() => {}
            Err(e) => return Err(format!("starting the mock server: {e}")),
        }
        Ok(session)
    }

    async fn command(&self, action: Action) -> Result<Outcome, ReplayCommandError> {
        let report = self
            .hub
            .replay_command(&self.replay_id, action, COMMAND_TIMEOUT)
            .await?;
        Ok(serde_json::from_str(&report.outcome_json).unwrap_or_default())
    }

    pub async fn begin_test(&self, test_case: &str) -> Result<(), String> {
        if !self.active {
            return Ok(());
        }
        self.command(Action::BeginTest(test_case.to_owned()))
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// The calls of `test_case` no mock answered (each a miss report with the closest mock).
    pub async fn end_test(&mut self, test_case: &str) -> Result<Vec<Value>, String> {
        if !self.active {
            return Ok(Vec::new());
        }
        let outcome = self
            .command(Action::EndTest(test_case.to_owned()))
            .await
            .map_err(|e| e.to_string())?;
        Ok(self.absorb(outcome))
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
                    tracing::warn!(replay_id = %self.replay_id, error = %e, "stopping the mock server")
                }
            }
        }
        if !passed || !self.active {
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
