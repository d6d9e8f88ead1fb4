//! The orchestrator interface: where deployments come from and how capture finds their processes.
//! Local mode (`local`) runs declared commands in cgroups on this host; Kubernetes mode will
//! implement the same trait.

pub mod agent_process;
pub mod cgroup;
pub mod instance;
pub mod local;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use serde::Serialize;

/// One deployment as `GET /deployments` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeploymentStatus {
    pub name: String,
    pub namespace: String,
    pub replicas: u32,
    #[serde(rename = "readyReplicas")]
    pub ready_replicas: u32,
}

/// What the agents must watch to capture a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureTargets {
    pub cgroup_ids: Vec<u64>,
    pub tgids: Vec<u32>,
}

#[derive(Debug, thiserror::Error)]
pub enum OrchestratorError {
    #[error("deployment {namespace}/{name} not found")]
    NotFound { namespace: String, name: String },
    #[error("cgroup {path}: {source}")]
    Cgroup {
        path: String,
        source: std::io::Error,
    },
    #[error("starting {what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("no free port for a replay instance: {0}")]
    Port(std::io::Error),
    #[error("processes of {what} survived the kill")]
    Survivors { what: String },
}

/// What a replay asks for: a fresh instance of a deployment, isolated from its replicas.
#[derive(Debug, Clone)]
pub struct InstanceRequest {
    pub namespace: String,
    pub name: String,
    /// Distinguishes instances (the replay id); part of the cgroup and log names.
    pub label: String,
    /// Environment set on top of the deployment's own.
    pub env_overrides: BTreeMap<String, String>,
}

/// A replay instance: prepared (its cgroup exists, so the agent can redirect it before the app's
/// first connection), then launched. Every process it started is killed by `stop` (and by drop).
pub trait ReplayInstance: Send + Sync {
    /// The cgroup the instance's processes run in (path, id).
    fn cgroup(&self) -> Result<(PathBuf, u64), OrchestratorError>;
    /// Starts the app.
    fn launch(&self) -> Result<(), OrchestratorError>;
    /// Where the instance listens.
    fn addr(&self) -> SocketAddr;
    /// The deployment's HTTP health path, when it declares one.
    fn health_path(&self) -> Option<String>;
    /// False once every process of the instance has exited.
    fn alive(&self) -> bool;
    /// The instance's own log (stdout and stderr).
    fn log_path(&self) -> PathBuf;
    /// Kills every process of the instance and waits until they are gone.
    fn stop(&self) -> Result<(), OrchestratorError>;
}

pub trait Orchestrator: Send + Sync + 'static {
    /// Deployments, optionally of one namespace, sorted by namespace then name.
    fn deployments(&self, namespace: Option<&str>) -> Vec<DeploymentStatus>;

    fn deployment(&self, namespace: &str, name: &str) -> Option<DeploymentStatus> {
        self.deployments(Some(namespace))
            .into_iter()
            .find(|d| d.name == name)
    }

    /// A recording of the deployment began or ended (local mode pauses HTTP probes meanwhile so
    /// they never become test cases).
    fn recording_changed(&self, _namespace: &str, _name: &str, _active: bool) {}

    /// Capture of a new recording is in place: restart the deployment's replicas if it asks for
    /// that (`restart_on_record`), so its start-up is recorded. Returns whether it restarted.
    fn restart_for_recording(&self, _namespace: &str, _name: &str) -> bool {
        false
    }

    /// The cgroups/processes of every replica of a deployment.
    fn capture_targets(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<CaptureTargets, OrchestratorError>;

    /// Prepares a fresh instance of a deployment for a replay (not launched yet).
    fn prepare_instance(
        &self,
        request: &InstanceRequest,
    ) -> Result<Box<dyn ReplayInstance>, OrchestratorError>;
}
