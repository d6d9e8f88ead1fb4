//! Replays: recorded test sets sent to a fresh instance of their deployment, each response
//! compared with the recorded one under noise rules, results and reports stored as they come.
//!
//! [`ReplayManager`] owns the runs in flight (one per deployment at a time) and their NDJSON
//! status history; [`run`] is the loop of one run; [`client`] talks HTTP to the instance.

pub mod client;
mod mocking;
mod run;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use kreplay_domain::noise::GlobalNoise;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    agents::AgentHub,
    model::TestCaseFilter,
    orchestrator::Orchestrator,
    store::{SharedStore, StoreError, blocking},
    util::{now_unix_ms, random_hex},
};

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("deployment {namespace}/{name} not found")]
    UnknownDeployment { namespace: String, name: String },
    #[error("test set {test_set} of {namespace}/{name} not found")]
    UnknownTestSet {
        namespace: String,
        name: String,
        test_set: String,
    },
    #[error("test case {test_case} not found in {test_set}")]
    UnknownTestCase { test_set: String, test_case: String },
    #[error("{namespace}/{name} has no recorded test cases to replay")]
    NothingToReplay { namespace: String, name: String },
    #[error("{namespace}/{name} is already being replayed by {replay_id}")]
    AlreadyReplaying {
        namespace: String,
        name: String,
        replay_id: String,
    },
    #[error("replay {0} not found")]
    UnknownReplay(String),
    #[error("invalid test_config: {0}")]
    InvalidConfig(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("cannot create a replay id: {0}")]
    Random(String),
}

/// `test_config` of a ReplayRequest (SPEC section 4).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestConfig {
    /// test set -> test case names; an empty list or no entry for a set = every case of it.
    #[serde(default)]
    pub selected_tests: BTreeMap<String, Vec<String>>,
    /// Seconds per request.
    #[serde(default)]
    pub api_timeout: Option<f64>,
    /// Seconds to wait after the instance starts, before the first request.
    #[serde(default)]
    pub delay: Option<f64>,
    #[serde(default)]
    pub global_noise: Option<GlobalNoise>,
    #[serde(default)]
    pub env_overrides: BTreeMap<String, String>,
    /// Compare JSON arrays as multisets.
    #[serde(default)]
    pub ignore_ordering: bool,
    /// Longest wait for the instance to accept connections (or answer its health path).
    #[serde(default)]
    pub health_poll_timeout: Option<f64>,
}

const DEFAULT_API_TIMEOUT: Duration = Duration::from_secs(5);
/// Runs kept in memory for `/test/status` (finished ones are dropped beyond this; their reports
/// stay in the store).
const MAX_KEPT_RUNS: usize = 64;
const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);

fn seconds(value: Option<f64>, default: Duration) -> Result<Duration, ReplayError> {
    match value {
        None => Ok(default),
        Some(s) if s.is_finite() && (0.0..=3600.0).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(s) => Err(ReplayError::InvalidConfig(format!(
            "{s} is not a number of seconds in 0..=3600"
        ))),
    }
}

/// One test set to replay: its name and the test cases (by name, in recorded order).
#[derive(Debug, Clone)]
pub struct PlannedSet {
    pub test_set: String,
    pub cases: Vec<crate::model::TestCase>,
}

/// Everything a run needs, validated.
#[derive(Debug, Clone)]
pub struct RunPlan {
    pub replay_id: String,
    pub test_run_id: String,
    pub namespace: String,
    pub deployment: String,
    pub sets: Vec<PlannedSet>,
    pub api_timeout: Duration,
    pub delay: Duration,
    pub health_timeout: Duration,
    pub global_noise: GlobalNoise,
    pub env_overrides: BTreeMap<String, String>,
    pub ignore_ordering: bool,
}

/// A run in flight or finished during this proxy's life.
pub struct RunState {
    pub replay_id: String,
    pub namespace: String,
    pub deployment: String,
    pub test_run_id: String,
    pub cancel: CancellationToken,
    lines: Mutex<Vec<Value>>,
    finished: AtomicBool,
    changed: watch::Sender<u64>,
}

impl RunState {
    fn lock_lines(&self) -> MutexGuard<'_, Vec<Value>> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends a status line and wakes the status streams.
    pub fn push(&self, line: Value) {
        self.lock_lines().push(line);
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Appends the run's last line and marks it finished, atomically for readers that check
    /// [`Self::is_finished`] before reading the lines.
    pub fn finish(&self, line: Value) {
        {
            let mut lines = self.lock_lines();
            lines.push(line);
            self.finished.store(true, Ordering::SeqCst);
        }
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Lines from index `from` on.
    pub fn lines_since(&self, from: usize) -> Vec<Value> {
        self.lock_lines().iter().skip(from).cloned().collect()
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

pub struct ReplayManager {
    store: SharedStore,
    orchestrator: Arc<dyn Orchestrator>,
    hub: Arc<AgentHub>,
    runs: Mutex<HashMap<String, Arc<RunState>>>,
    /// Serialises starts: check for an active run, record the new one, register it.
    control: tokio::sync::Mutex<()>,
}

impl ReplayManager {
    pub fn new(
        store: SharedStore,
        orchestrator: Arc<dyn Orchestrator>,
        hub: Arc<AgentHub>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            orchestrator,
            hub,
            runs: Mutex::new(HashMap::new()),
            control: tokio::sync::Mutex::new(()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<RunState>>> {
        self.runs.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, replay_id: &str) -> Option<Arc<RunState>> {
        self.lock().get(replay_id).cloned()
    }

    /// The replay in progress for a deployment, if any.
    pub fn active_for(&self, namespace: &str, deployment: &str) -> Option<Arc<RunState>> {
        self.lock()
            .values()
            .find(|r| r.namespace == namespace && r.deployment == deployment && !r.is_finished())
            .cloned()
    }

    /// Validates the request, records the run and starts it in the background.
    pub async fn start(
        self: &Arc<Self>,
        namespace: String,
        deployment: String,
        config: TestConfig,
        raw_config: Value,
    ) -> Result<Arc<RunState>, ReplayError> {
        if self
            .orchestrator
            .deployment(&namespace, &deployment)
            .is_none()
        {
            return Err(ReplayError::UnknownDeployment {
                namespace,
                name: deployment,
            });
        }
        let api_timeout = seconds(config.api_timeout, DEFAULT_API_TIMEOUT)?;
        let delay = seconds(config.delay, Duration::ZERO)?;
        let health_timeout = seconds(config.health_poll_timeout, DEFAULT_HEALTH_TIMEOUT)?;
        let global_noise = config.global_noise.clone().unwrap_or_default();
        run::check_noise(&global_noise).map_err(ReplayError::InvalidConfig)?;
        let sets = self.plan_sets(&namespace, &deployment, &config).await?;
        let replay_id = format!(
            "replay-{}",
            random_hex(8).map_err(|e| ReplayError::Random(e.to_string()))?
        );
        // Checked and registered under one lock so two starts cannot both pass.
        let _control = self.control.lock().await;
        if let Some(active) = self.active_for(&namespace, &deployment) {
            return Err(ReplayError::AlreadyReplaying {
                namespace,
                name: deployment,
                replay_id: active.replay_id.clone(),
            });
        }
        let test_run_id = {
            let (ns, dep, id) = (namespace.clone(), deployment.clone(), replay_id.clone());
            blocking(&self.store, move |s| {
                s.create_test_run(&ns, &dep, &id, &raw_config, now_unix_ms())
            })
            .await?
        };
        let state = Arc::new(RunState {
            replay_id: replay_id.clone(),
            namespace: namespace.clone(),
            deployment: deployment.clone(),
            test_run_id: test_run_id.clone(),
            cancel: CancellationToken::new(),
            lines: Mutex::new(Vec::new()),
            finished: AtomicBool::new(false),
            changed: watch::channel(0).0,
        });
        {
            let mut runs = self.lock();
            // Finished runs are kept for their status streams, not forever.
            if runs.len() >= MAX_KEPT_RUNS {
                let finished: Vec<String> = runs
                    .iter()
                    .filter(|(_, r)| r.is_finished())
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in finished.iter().take(runs.len() + 1 - MAX_KEPT_RUNS) {
                    runs.remove(id);
                }
            }
            runs.insert(replay_id.clone(), state.clone());
        }
        drop(_control);
        let plan = RunPlan {
            replay_id,
            test_run_id,
            namespace,
            deployment,
            sets,
            api_timeout,
            delay,
            health_timeout,
            global_noise,
            env_overrides: config.env_overrides,
            ignore_ordering: config.ignore_ordering,
        };
        state.push(run::state_line(&plan, "starting", json!({})));
        let task = tokio::spawn(run::run(
            plan,
            state.clone(),
            self.store.clone(),
            self.orchestrator.clone(),
            self.hub.clone(),
        ));
        // A run that dies (panic) must still end: its stream ends and the deployment is free.
        let watched = state.clone();
        tokio::spawn(async move {
            if let Err(e) = task.await
                && !watched.is_finished()
            {
                tracing::error!(replay_id = %watched.replay_id, error = %e, "replay task died");
                watched.finish(json!({
                    "type": "status",
                    "replay_id": watched.replay_id,
                    "test_run_id": watched.test_run_id,
                    "status": "failed",
                    "error": format!("the replay task died: {e}"),
                }));
            }
        });
        Ok(state)
    }

    /// Cancels a run; it stops its instance and stores what it has.
    pub fn stop(&self, replay_id: &str) -> Result<Arc<RunState>, ReplayError> {
        let state = self
            .get(replay_id)
            .ok_or_else(|| ReplayError::UnknownReplay(replay_id.to_owned()))?;
        state.cancel.cancel();
        Ok(state)
    }

    /// Cancels every run (proxy shutdown).
    pub fn stop_all(&self) {
        for run in self.lock().values() {
            run.cancel.cancel();
        }
    }

    /// Waits until no run is in flight, at most `timeout`.
    pub async fn wait_idle(&self, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.lock().values().any(|r| !r.is_finished())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn plan_sets(
        &self,
        namespace: &str,
        deployment: &str,
        config: &TestConfig,
    ) -> Result<Vec<PlannedSet>, ReplayError> {
        let (ns, dep) = (namespace.to_owned(), deployment.to_owned());
        let known = blocking(&self.store, move |s| {
            s.list_test_sets(Some(&ns), Some(&dep))
        })
        .await?;
        let names: Vec<String> = if config.selected_tests.is_empty() {
            known.iter().map(|s| s.test_set.clone()).collect()
        } else {
            for set in config.selected_tests.keys() {
                if !known.iter().any(|k| &k.test_set == set) {
                    return Err(ReplayError::UnknownTestSet {
                        namespace: namespace.to_owned(),
                        name: deployment.to_owned(),
                        test_set: set.clone(),
                    });
                }
            }
            config.selected_tests.keys().cloned().collect()
        };
        let mut sets = Vec::new();
        for test_set in names {
            let filter = TestCaseFilter::all_of(namespace, deployment, Some(&test_set));
            let mut cases = blocking(&self.store, move |s| s.list_test_cases(&filter)).await?;
            if let Some(wanted) = config
                .selected_tests
                .get(&test_set)
                .filter(|w| !w.is_empty())
            {
                for name in wanted {
                    if !cases.iter().any(|c| &c.name == name) {
                        return Err(ReplayError::UnknownTestCase {
                            test_set,
                            test_case: name.clone(),
                        });
                    }
                }
                cases.retain(|c| wanted.contains(&c.name));
            }
            if !cases.is_empty() {
                sets.push(PlannedSet { test_set, cases });
            }
        }
        if sets.is_empty() {
            return Err(ReplayError::NothingToReplay {
                namespace: namespace.to_owned(),
                name: deployment.to_owned(),
            });
        }
        Ok(sets)
    }
}
