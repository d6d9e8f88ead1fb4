//! Recording sessions: start/stop, the capture targets they imply, and their status streams.
//!
//! A session is registered (status `starting`) before anything touches the workload; it becomes
//! `running` once an agent confirms it applied targets that include it. Stopping removes the
//! targets, asks every agent that captured for the session to flush, waits for their
//! `SessionFlushed` markers (everything before a marker is stored), and only then reports
//! `stopped`. Status transitions are kept in memory so a late subscriber still sees all of them.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use kreplay_proto::v1::Target;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::{
    agents::AgentHub,
    model::{NewSession, SessionRecord, SessionStatus},
    orchestrator::Orchestrator,
    store::{SharedStore, StoreError, blocking},
    util::{now_unix_ms, random_hex, rfc3339_ms},
};

/// How long `POST /record/start` waits for an agent before answering `starting`.
const START_WAIT: Duration = Duration::from_secs(5);
const MAX_ENDPOINTS: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("deployment {namespace}/{name} not found")]
    UnknownDeployment { namespace: String, name: String },
    #[error("deployment {namespace}/{name} is already being recorded")]
    AlreadyRecording {
        namespace: String,
        name: String,
        record_id: String,
    },
    #[error("recording session {0} not found")]
    UnknownSession(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("random id: {0}")]
    Random(String),
}

struct Session {
    record: SessionRecord,
    /// One status line per state change so far.
    transitions: Vec<Value>,
    /// Mocks attribution could not give a test case, with the reason (set at stop).
    unattributed: Vec<kreplay_domain::mock::UnattributedReason>,
}

pub struct RecordingManager {
    store: SharedStore,
    hub: Arc<AgentHub>,
    orchestrator: Arc<dyn Orchestrator>,
    sessions: Mutex<HashMap<String, Session>>,
    /// Serialises start/stop so two starts of one deployment cannot both pass the 409 check.
    control: tokio::sync::Mutex<()>,
    changed: watch::Sender<u64>,
    flush_timeout: Duration,
}

impl RecordingManager {
    pub fn new(
        store: SharedStore,
        hub: Arc<AgentHub>,
        orchestrator: Arc<dyn Orchestrator>,
        flush_timeout: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            hub,
            orchestrator,
            sessions: Mutex::new(HashMap::new()),
            control: tokio::sync::Mutex::new(()),
            changed: watch::channel(0).0,
            flush_timeout,
        })
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Session>> {
        // Only whole-value inserts and field writes happen under this lock.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Something a status line shows may have changed (test cases stored, agent metrics).
    pub fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Resumes sessions a previous run of the proxy left active: `starting`/`running` ones keep
    /// recording (agents resend what they held), `stopping` ones are closed.
    pub async fn resume(self: &Arc<Self>) -> Result<(), RecordError> {
        let active = blocking(&self.store, |s| {
            s.sessions_with_status(&[
                SessionStatus::Starting,
                SessionStatus::Running,
                SessionStatus::Stopping,
            ])
        })
        .await?;
        for record in active {
            if record.status == SessionStatus::Stopping {
                let id = record.record_id.clone();
                blocking(&self.store, move |s| {
                    s.set_session_status(&id, SessionStatus::Stopped, Some(now_unix_ms()), None)
                })
                .await?;
                continue;
            }
            tracing::info!(record_id = %record.record_id, "resuming recording session");
            self.orchestrator
                .recording_changed(&record.namespace, &record.deployment, true);
            let record_id = record.record_id.clone();
            self.lock().insert(
                record_id.clone(),
                Session {
                    record,
                    transitions: Vec::new(),
                    unattributed: Vec::new(),
                },
            );
            let line = self.status_line(&record_id).await?;
            if let Some(s) = self.lock().get_mut(&record_id) {
                s.transitions.push(line);
            }
            let version = self.push_targets();
            self.spawn_running_watch(record_id, version);
        }
        Ok(())
    }

    /// The active session of a deployment, if any.
    pub fn active_for(&self, namespace: &str, deployment: &str) -> Option<String> {
        self.lock()
            .values()
            .find(|s| {
                s.record.status.is_active()
                    && s.record.namespace == namespace
                    && s.record.deployment == deployment
            })
            .map(|s| s.record.record_id.clone())
    }

    pub async fn start(
        self: &Arc<Self>,
        namespace: String,
        deployment: String,
        record_config: Value,
        auto_replay_config: Value,
        cluster_id: Option<String>,
        pods_count: Option<u32>,
    ) -> Result<SessionRecord, RecordError> {
        let _control = self.control.lock().await;
        if self
            .orchestrator
            .deployment(&namespace, &deployment)
            .is_none()
        {
            return Err(RecordError::UnknownDeployment {
                namespace,
                name: deployment,
            });
        }
        if let Some(record_id) = self.active_for(&namespace, &deployment) {
            return Err(RecordError::AlreadyRecording {
                namespace,
                name: deployment,
                record_id,
            });
        }
        let record_id = format!(
            "rec-{}",
            random_hex(8).map_err(|e| RecordError::Random(e.to_string()))?
        );
        let new = NewSession {
            record_id: record_id.clone(),
            namespace,
            deployment,
            record_config,
            auto_replay_config,
            cluster_id,
            pods_count,
            created_at_ms: now_unix_ms(),
        };
        let record = blocking(&self.store, move |s| s.create_session(&new)).await?;
        tracing::info!(%record_id, namespace = %record.namespace, deployment = %record.deployment,
            test_set = %record.test_set, "recording session registered");
        self.orchestrator
            .recording_changed(&record.namespace, &record.deployment, true);
        self.lock().insert(
            record_id.clone(),
            Session {
                record,
                transitions: Vec::new(),
                unattributed: Vec::new(),
            },
        );
        self.transition(&record_id, SessionStatus::Starting, None)
            .await?;
        let version = self.push_targets();
        drop(_control);
        if let Some(agents) = self.hub.wait_applied(version, START_WAIT).await {
            self.mark_running(&record_id, agents).await?;
        } else {
            tracing::warn!(%record_id, "no agent has applied the capture targets yet; waiting");
            self.spawn_running_watch(record_id.clone(), version);
        }
        self.get(&record_id).await
    }

    fn spawn_running_watch(self: &Arc<Self>, record_id: String, version: u64) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                if !this.lock().get(&record_id).is_some_and(|s| {
                    matches!(
                        s.record.status,
                        SessionStatus::Starting | SessionStatus::Running
                    )
                }) {
                    return;
                }
                if let Some(agents) = this.hub.wait_applied(version, Duration::from_secs(1)).await {
                    if let Err(e) = this.mark_running(&record_id, agents).await {
                        tracing::error!(%record_id, error = %e, "cannot mark session running");
                    }
                    return;
                }
            }
        });
    }

    async fn mark_running(&self, record_id: &str, agents: Vec<String>) -> Result<(), RecordError> {
        for agent in agents {
            let id = record_id.to_owned();
            blocking(&self.store, move |s| s.add_session_agent(&id, &agent)).await?;
        }
        let starting = self
            .lock()
            .get(record_id)
            .is_some_and(|s| s.record.status == SessionStatus::Starting);
        if starting {
            let target = self
                .lock()
                .get(record_id)
                .map(|s| (s.record.namespace.clone(), s.record.deployment.clone()));
            if let Some((namespace, deployment)) = target {
                self.orchestrator
                    .restart_for_recording(&namespace, &deployment);
            }
            self.transition(record_id, SessionStatus::Running, None)
                .await?;
        }
        Ok(())
    }

    /// Rebuilds the full target set from the sessions that capture and sends it to the agents.
    fn push_targets(&self) -> u64 {
        let wanted: Vec<(String, String, String)> = self
            .lock()
            .values()
            .filter(|s| {
                matches!(
                    s.record.status,
                    SessionStatus::Starting | SessionStatus::Running
                )
            })
            .map(|s| {
                (
                    s.record.record_id.clone(),
                    s.record.namespace.clone(),
                    s.record.deployment.clone(),
                )
            })
            .collect();
        let mut targets = Vec::new();
        for (record_id, namespace, deployment) in wanted {
            match self.orchestrator.capture_targets(&namespace, &deployment) {
                Ok(t) => targets.push(Target {
                    record_id,
                    cgroup_ids: t.cgroup_ids,
                    tgids: t.tgids,
                }),
                Err(e) => tracing::error!(%record_id, error = %e, "cannot resolve capture targets"),
            }
        }
        self.hub.set_targets(targets)
    }

    async fn transition(
        &self,
        record_id: &str,
        status: SessionStatus,
        error: Option<String>,
    ) -> Result<(), RecordError> {
        let stopped_at = status.is_terminal().then(now_unix_ms);
        let (id, err) = (record_id.to_owned(), error.clone());
        blocking(&self.store, move |s| {
            s.set_session_status(&id, status, stopped_at, err.as_deref())
        })
        .await?;
        if let Some(s) = self.lock().get_mut(record_id) {
            s.record.status = status;
            s.record.stopped_at_ms = stopped_at.or(s.record.stopped_at_ms);
            if error.is_some() {
                s.record.error = error;
            }
        }
        let line = self.status_line(record_id).await?;
        if let Some(s) = self.lock().get_mut(record_id) {
            s.transitions.push(line);
        }
        tracing::info!(record_id, status = status.as_str(), "recording session");
        self.notify();
        Ok(())
    }

    /// Stops a session; returns once every agent that captured for it has flushed (or the flush
    /// timeout passed, which is reported in the session's `error`; late captures are still
    /// stored when they arrive).
    pub async fn stop(self: &Arc<Self>, record_id: &str) -> Result<SessionRecord, RecordError> {
        let control = self.control.lock().await;
        let status = self.lock().get(record_id).map(|s| s.record.status);
        match status {
            None => {
                let id = record_id.to_owned();
                return match blocking(&self.store, move |s| s.get_session(&id)).await? {
                    Some(record) => Ok(record),
                    None => Err(RecordError::UnknownSession(record_id.to_owned())),
                };
            }
            Some(s) if s.is_terminal() => return self.get(record_id).await,
            Some(SessionStatus::Stopping) => {
                drop(control);
                return self.wait_terminal(record_id).await;
            }
            Some(_) => {}
        }
        self.transition(record_id, SessionStatus::Stopping, None)
            .await?;
        self.push_targets();
        drop(control);
        self.hub.request_flush(record_id);
        let id = record_id.to_owned();
        let agents = blocking(&self.store, move |s| s.session_agents(&id)).await?;
        let missing = self
            .hub
            .wait_flushed(record_id, &agents, self.flush_timeout)
            .await;
        self.hub.flush_done(record_id);
        let error = (!missing.is_empty()).then(|| {
            format!("agents {} did not confirm their flush in time; their late captures are stored when they arrive", missing.join(", "))
        });
        if let Some(e) = &error {
            tracing::warn!(record_id, "{e}");
        }
        if let Some((ns, dep)) = self
            .lock()
            .get(record_id)
            .map(|s| (s.record.namespace.clone(), s.record.deployment.clone()))
        {
            self.orchestrator.recording_changed(&ns, &dep, false);
        }
        // Every capture is stored: each mock can now be given its test case.
        let record = self.get(record_id).await?;
        match crate::mocks::attribute_recording(&self.store, &record).await {
            Ok(unattributed) => self.set_unattributed(record_id, unattributed),
            Err(e) => tracing::error!(record_id, error = %e, "attributing mocks"),
        }
        self.transition(record_id, SessionStatus::Stopped, error)
            .await?;
        self.get(record_id).await
    }

    async fn wait_terminal(&self, record_id: &str) -> Result<SessionRecord, RecordError> {
        let mut changes = self.changed.subscribe();
        loop {
            if self
                .lock()
                .get(record_id)
                .is_some_and(|s| s.record.status.is_terminal())
            {
                return self.get(record_id).await;
            }
            if changes.changed().await.is_err() {
                return self.get(record_id).await;
            }
        }
    }

    pub async fn get(&self, record_id: &str) -> Result<SessionRecord, RecordError> {
        if let Some(s) = self.lock().get(record_id) {
            return Ok(s.record.clone());
        }
        let id = record_id.to_owned();
        blocking(&self.store, move |s| s.get_session(&id))
            .await?
            .ok_or_else(|| RecordError::UnknownSession(record_id.to_owned()))
    }

    fn set_unattributed(
        &self,
        record_id: &str,
        unattributed: Vec<kreplay_domain::mock::UnattributedReason>,
    ) {
        if let Some(session) = self.lock().get_mut(record_id) {
            session.unattributed = unattributed;
        }
    }

    /// The current status line of a session (SPEC `/record/status` fields).
    pub async fn status_line(&self, record_id: &str) -> Result<Value, RecordError> {
        let record = self.get(record_id).await?;
        let id = record_id.to_owned();
        let (count, endpoints, (mock_count, mock_types)) = blocking(&self.store, move |s| {
            let (count, endpoints) = s.session_summary(&id, MAX_ENDPOINTS)?;
            Ok((count, endpoints, s.mock_summary(&id)?))
        })
        .await?;
        let pods_running = self
            .orchestrator
            .deployment(&record.namespace, &record.deployment)
            .map_or(0, |d| d.ready_replicas);
        let m = self.hub.total_metrics();
        let mut line = json!({
            "record_id": record.record_id,
            "namespace": record.namespace,
            "deployment": record.deployment,
            "test_set": record.test_set,
            "status": record.status.as_str(),
            "test_cases_count": count,
            "endpoints": endpoints,
            "mock_count": mock_count,
            "mock_types": mock_types,
            "pods_running": pods_running,
            "static_dedup_stats": [],
            "started_at": rfc3339_ms(record.created_at_ms),
            "capture": {
                "ring_full_drops": m.ring_full_drops,
                "control_ring_drops": m.control_ring_drops,
                "read_faults": m.read_faults,
                "truncated_bytes": m.truncated_bytes,
                "queue_drops": m.queue_drops,
                "stream_gaps": m.stream_gaps,
                "parse_errors": m.parse_errors,
                "exchanges": m.exchanges,
            },
            "agents": self.hub.agents(),
        });
        if let Some(e) = record.error {
            line["error"] = Value::String(e);
        }
        let unattributed = self
            .lock()
            .get(record_id)
            .map(|s| s.unattributed.clone())
            .unwrap_or_default();
        if !unattributed.is_empty() {
            line["unattributed_mocks"] = json!(
                unattributed
                    .iter()
                    .map(|u| json!({"mock": u.mock, "kind": u.kind, "summary": u.summary, "reason": u.to_string()}))
                    .collect::<Vec<_>>()
            );
        }
        Ok(line)
    }

    /// The transitions seen so far (for a new subscriber), or `None` for an unknown session.
    pub async fn history(&self, record_id: &str) -> Result<Vec<Value>, RecordError> {
        if let Some(s) = self.lock().get(record_id) {
            return Ok(s.transitions.clone());
        }
        // A session of an earlier proxy run: only its final state is known.
        Ok(vec![self.status_line(record_id).await?])
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}
