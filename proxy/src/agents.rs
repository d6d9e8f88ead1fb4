//! Registry of connected agents: what target set each was sent and applied, their loss counters,
//! and which sessions they have flushed. The ingest stream and the recording manager meet here.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use kreplay_proto::v1::{
    AgentMetrics, FlushSession, ProxyMessage, ReplayCommand, ReplayReport, Target, TargetSet,
    proxy_message::Msg, replay_command::Action,
};
use tokio::sync::{mpsc, oneshot, watch};

/// Target-set versions remembered, so a late `TargetsApplied` still names its sessions.
const VERSION_HISTORY: usize = 256;

struct AgentEntry {
    node_name: String,
    /// Identifies one stream of this agent; a reconnect replaces it.
    serial: u64,
    tx: Option<mpsc::UnboundedSender<ProxyMessage>>,
    applied_version: u64,
    metrics: AgentMetrics,
    flushed: HashSet<String>,
}

#[derive(Default)]
struct HubState {
    version: u64,
    targets: Vec<Target>,
    /// version -> record ids in that set.
    history: BTreeMap<u64, Vec<String>>,
    agents: HashMap<String, AgentEntry>,
    pending_flushes: HashSet<String>,
    next_serial: u64,
    /// Replay commands awaiting the agent's report, by command id.
    pending_replay: HashMap<u64, oneshot::Sender<ReplayReport>>,
    next_command: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayCommandError {
    #[error("no agent is connected to serve mocks")]
    NoAgent,
    #[error("the agent did not answer within {0:?}")]
    Timeout(Duration),
    #[error("the agent disconnected before answering")]
    Disconnected,
    #[error("the agent failed: {0}")]
    Agent(String),
}

/// A snapshot of one agent, for status output.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AgentView {
    pub agent_id: String,
    pub node_name: String,
    pub connected: bool,
    pub applied_version: u64,
}

pub struct AgentHub {
    state: Mutex<HubState>,
    changed: watch::Sender<u64>,
}

impl Default for AgentHub {
    fn default() -> Self {
        Self::new()
    }
}

impl AgentHub {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(HubState::default()),
            changed: watch::channel(0).0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // Every mutation is a few field writes; a panic mid-way cannot break an invariant that
        // matters more than availability, so a poisoned lock is still used.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// Resolves on the next change of any agent's state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Registers a new stream of `agent_id` and queues the current targets and pending flushes.
    pub fn connect(
        &self,
        agent_id: &str,
        node_name: &str,
        tx: mpsc::UnboundedSender<ProxyMessage>,
    ) -> u64 {
        let mut state = self.lock();
        state.next_serial += 1;
        let serial = state.next_serial;
        let set = TargetSet {
            version: state.version,
            targets: state.targets.clone(),
        };
        let flushes: Vec<String> = state.pending_flushes.iter().cloned().collect();
        let _ = tx.send(ProxyMessage {
            msg: Some(Msg::Targets(set)),
        });
        for record_id in flushes {
            let _ = tx.send(ProxyMessage {
                msg: Some(Msg::Flush(FlushSession { record_id })),
            });
        }
        let entry = state
            .agents
            .entry(agent_id.to_owned())
            .or_insert_with(|| AgentEntry {
                node_name: node_name.to_owned(),
                serial,
                tx: None,
                applied_version: 0,
                metrics: AgentMetrics::default(),
                flushed: HashSet::new(),
            });
        entry.serial = serial;
        entry.node_name = node_name.to_owned();
        entry.tx = Some(tx);
        drop(state);
        self.bump();
        serial
    }

    pub fn disconnect(&self, agent_id: &str, serial: u64) {
        let mut state = self.lock();
        if let Some(entry) = state.agents.get_mut(agent_id)
            && entry.serial == serial
        {
            entry.tx = None;
        }
        drop(state);
        self.bump();
    }

    /// Ends every agent stream (graceful shutdown: long-lived streams would hold it up).
    pub fn disconnect_all(&self) {
        for entry in self.lock().agents.values_mut() {
            entry.tx = None;
        }
        self.bump();
    }

    /// Replaces the desired target set and sends it to every connected agent; returns its version.
    pub fn set_targets(&self, targets: Vec<Target>) -> u64 {
        let mut state = self.lock();
        state.version += 1;
        let version = state.version;
        let records = targets.iter().map(|t| t.record_id.clone()).collect();
        state.history.insert(version, records);
        while state.history.len() > VERSION_HISTORY {
            state.history.pop_first();
        }
        state.targets = targets;
        let set = TargetSet {
            version,
            targets: state.targets.clone(),
        };
        for entry in state.agents.values() {
            if let Some(tx) = &entry.tx {
                let _ = tx.send(ProxyMessage {
                    msg: Some(Msg::Targets(set.clone())),
                });
            }
        }
        drop(state);
        self.bump();
        version
    }

    /// An agent applied `version`; returns the sessions that set targeted.
    pub fn on_applied(&self, agent_id: &str, version: u64) -> Vec<String> {
        let mut state = self.lock();
        let records = state.history.get(&version).cloned().unwrap_or_default();
        if let Some(entry) = state.agents.get_mut(agent_id) {
            entry.applied_version = entry.applied_version.max(version);
        }
        drop(state);
        self.bump();
        records
    }

    pub fn on_metrics(&self, agent_id: &str, metrics: AgentMetrics) {
        if let Some(entry) = self.lock().agents.get_mut(agent_id) {
            entry.metrics = metrics;
        }
        self.bump();
    }

    pub fn on_flushed(&self, agent_id: &str, record_id: &str) {
        if let Some(entry) = self.lock().agents.get_mut(agent_id) {
            entry.flushed.insert(record_id.to_owned());
        }
        self.bump();
    }

    /// Asks every agent (connected now or later) to flush `record_id`.
    pub fn request_flush(&self, record_id: &str) {
        let mut state = self.lock();
        state.pending_flushes.insert(record_id.to_owned());
        for entry in state.agents.values_mut() {
            entry.flushed.remove(record_id);
            if let Some(tx) = &entry.tx {
                let msg = Msg::Flush(FlushSession {
                    record_id: record_id.to_owned(),
                });
                let _ = tx.send(ProxyMessage { msg: Some(msg) });
            }
        }
    }

    /// Sends a replay command to a connected agent (the first by id: local mode has one) and
    /// waits for its report.
    pub async fn replay_command(
        &self,
        replay_id: &str,
        action: Action,
        timeout: Duration,
    ) -> Result<ReplayReport, ReplayCommandError> {
        let (tx, rx) = oneshot::channel();
        let command_id = {
            let mut state = self.lock();
            let mut connected: Vec<(&String, &AgentEntry)> = state
                .agents
                .iter()
                .filter(|(_, e)| e.tx.is_some())
                .collect();
            connected.sort_by_key(|(id, _)| *id);
            let Some(sender) = connected.first().and_then(|(_, e)| e.tx.clone()) else {
                return Err(ReplayCommandError::NoAgent);
            };
            state.next_command += 1;
            let command_id = state.next_command;
            state.pending_replay.insert(command_id, tx);
            let message = ProxyMessage {
                msg: Some(Msg::Replay(ReplayCommand {
                    command_id,
                    replay_id: replay_id.to_owned(),
                    action: Some(action),
                })),
            };
            if sender.send(message).is_err() {
                state.pending_replay.remove(&command_id);
                return Err(ReplayCommandError::Disconnected);
            }
            command_id
        };
        let answer = tokio::time::timeout(timeout, rx).await;
        self.lock().pending_replay.remove(&command_id);
        match answer {
            Err(_) => Err(ReplayCommandError::Timeout(timeout)),
            Ok(Err(_)) => Err(ReplayCommandError::Disconnected),
            Ok(Ok(report)) if !report.error.is_empty() => {
                Err(ReplayCommandError::Agent(report.error))
            }
            Ok(Ok(report)) => Ok(report),
        }
    }

    /// An agent answered a replay command.
    pub fn on_replay_report(&self, report: ReplayReport) {
        if let Some(waiter) = self.lock().pending_replay.remove(&report.command_id) {
            let _ = waiter.send(report);
        }
    }

    pub fn flush_done(&self, record_id: &str) {
        self.lock().pending_flushes.remove(record_id);
    }

    /// Waits until some connected agent applied `version` or later; returns those agents.
    pub async fn wait_applied(&self, version: u64, timeout: Duration) -> Option<Vec<String>> {
        let mut changes = self.subscribe();
        let wait = async {
            loop {
                let applied: Vec<String> = self
                    .lock()
                    .agents
                    .iter()
                    .filter(|(_, e)| e.tx.is_some() && e.applied_version >= version)
                    .map(|(id, _)| id.clone())
                    .collect();
                if !applied.is_empty() {
                    return applied;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.ok()
    }

    /// Waits until each of `agents` has flushed `record_id`; returns the ones that did not.
    pub async fn wait_flushed(
        &self,
        record_id: &str,
        agents: &[String],
        timeout: Duration,
    ) -> Vec<String> {
        let mut changes = self.subscribe();
        let missing = || -> Vec<String> {
            let state = self.lock();
            agents
                .iter()
                .filter(|id| {
                    state
                        .agents
                        .get(*id)
                        .is_none_or(|e| !e.flushed.contains(record_id))
                })
                .cloned()
                .collect()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = missing();
            if left.is_empty() {
                return left;
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return missing(),
            }
        }
    }

    /// Loss and volume counters summed over every agent seen since the proxy started.
    pub fn total_metrics(&self) -> AgentMetrics {
        let state = self.lock();
        let mut sum = AgentMetrics::default();
        for e in state.agents.values() {
            let m = &e.metrics;
            sum.ring_full_drops += m.ring_full_drops;
            sum.control_ring_drops += m.control_ring_drops;
            sum.read_faults += m.read_faults;
            sum.truncated_bytes += m.truncated_bytes;
            sum.queue_drops += m.queue_drops;
            sum.stream_gaps += m.stream_gaps;
            sum.parse_errors += m.parse_errors;
            sum.events += m.events;
            sum.exchanges += m.exchanges;
            sum.stash_misses += m.stash_misses;
        }
        sum
    }

    pub fn agents(&self) -> Vec<AgentView> {
        let state = self.lock();
        let mut out: Vec<AgentView> = state
            .agents
            .iter()
            .map(|(id, e)| AgentView {
                agent_id: id.clone(),
                node_name: e.node_name.clone(),
                connected: e.tx.is_some(),
                applied_version: e.applied_version,
            })
            .collect();
        out.sort_by(|a, b| a.agent_id.cmp(&b.agent_id));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(record: &str) -> Target {
        Target {
            record_id: record.into(),
            cgroup_ids: vec![1],
            tgids: vec![],
        }
    }

    #[tokio::test]
    async fn targets_reach_agents_and_applied_versions_name_sessions() {
        let hub = AgentHub::new();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let serial = hub.connect("a1", "node", tx);
        assert!(matches!(
            rx.recv().await,
            Some(ProxyMessage {
                msg: Some(Msg::Targets(_))
            })
        ));
        let v = hub.set_targets(vec![target("r1")]);
        match rx.recv().await {
            Some(ProxyMessage {
                msg: Some(Msg::Targets(set)),
            }) => assert_eq!(set.version, v),
            other => panic!("unexpected {other:?}"),
        }
        assert!(
            hub.wait_applied(v, Duration::from_millis(20))
                .await
                .is_none()
        );
        assert_eq!(hub.on_applied("a1", v), vec!["r1".to_string()]);
        assert_eq!(
            hub.wait_applied(v, Duration::from_millis(20)).await,
            Some(vec!["a1".into()])
        );
        hub.disconnect("a1", serial);
        assert!(
            hub.wait_applied(v, Duration::from_millis(20))
                .await
                .is_none()
        );
    }

    #[tokio::test]
    async fn flush_requests_survive_reconnects() {
        let hub = AgentHub::new();
        hub.request_flush("r1");
        let (tx, mut rx) = mpsc::unbounded_channel();
        hub.connect("a1", "node", tx);
        let _targets = rx.recv().await;
        assert!(matches!(
            rx.recv().await,
            Some(ProxyMessage {
                msg: Some(Msg::Flush(_))
            })
        ));
        let agents = vec!["a1".to_string()];
        assert_eq!(
            hub.wait_flushed("r1", &agents, Duration::from_millis(10))
                .await,
            agents
        );
        hub.on_flushed("a1", "r1");
        assert!(
            hub.wait_flushed("r1", &agents, Duration::from_millis(10))
                .await
                .is_empty()
        );
    }
}
