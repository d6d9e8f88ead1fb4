//! The orchestrator interface: where deployments come from and how capture finds their processes.
//! Local mode (`local`) runs declared commands in cgroups on this host; Kubernetes mode will
//! implement the same trait.

pub mod agent_process;
pub mod cgroup;
pub mod local;

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

    /// The cgroups/processes of every replica of a deployment.
    fn capture_targets(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<CaptureTargets, OrchestratorError>;
}
