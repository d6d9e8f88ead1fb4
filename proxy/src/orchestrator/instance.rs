//! Local replay instances: the deployment's command started once more, on a free port, in its own
//! cgroup `<cgroup_root>/kreplay/<namespace>/<name>/replay-<label>`, so it is isolated from the
//! recorded replicas and can be killed as a whole.

use std::{
    net::{SocketAddr, TcpListener},
    path::PathBuf,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use super::{InstanceRequest, OrchestratorError, ReplayInstance, cgroup::Cgroup};
use crate::config::DeploymentSpec;

/// How long `stop` waits for killed processes to disappear.
const KILL_WAIT: Duration = Duration::from_secs(10);

pub struct LocalInstance {
    what: String,
    spec: DeploymentSpec,
    addr: SocketAddr,
    env_overrides: std::collections::BTreeMap<String, String>,
    cgroup: Cgroup,
    log_path: PathBuf,
    stopped: AtomicBool,
}

/// A port that was free a moment ago on loopback.
fn free_port() -> Result<u16, OrchestratorError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(OrchestratorError::Port)?;
    Ok(listener
        .local_addr()
        .map_err(OrchestratorError::Port)?
        .port())
}

impl LocalInstance {
    pub fn prepare(
        spec: &DeploymentSpec,
        request: &InstanceRequest,
        cgroup_root: &std::path::Path,
        data_dir: &std::path::Path,
    ) -> Result<Self, OrchestratorError> {
        let what = format!(
            "{}/{} replay instance {}",
            spec.namespace, spec.name, request.label
        );
        let dir = cgroup_root
            .join("kreplay")
            .join(&spec.namespace)
            .join(&spec.name)
            .join(format!("replay-{}", request.label));
        let cgroup = Cgroup::create(dir)?;
        let log_path = data_dir
            .join("logs")
            .join(&spec.namespace)
            .join(format!("{}-replay-{}.log", spec.name, request.label));
        let port = free_port()?;
        Ok(Self {
            what,
            spec: spec.clone(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            env_overrides: request.env_overrides.clone(),
            cgroup,
            log_path,
            stopped: AtomicBool::new(false),
        })
    }
}

impl ReplayInstance for LocalInstance {
    fn cgroup(&self) -> Result<(PathBuf, u64), OrchestratorError> {
        Ok((self.cgroup.path().to_path_buf(), self.cgroup.id()?))
    }

    fn launch(&self) -> Result<(), OrchestratorError> {
        // The child is owned by its cgroup from here on: `stop` kills it there, and dropping the
        // handle does not (tokio reaps it in the background).
        super::local::spawn_in_cgroup(
            &self.what,
            &self.spec,
            self.addr.port(),
            &self.env_overrides,
            &self.cgroup,
            &self.log_path,
        )?;
        tracing::info!(instance = %self.what, addr = %self.addr, "replay instance started");
        Ok(())
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn health_path(&self) -> Option<String> {
        self.spec.health_path.clone()
    }

    fn alive(&self) -> bool {
        !self.cgroup.pids().is_empty()
    }

    fn log_path(&self) -> PathBuf {
        self.log_path.clone()
    }

    fn stop(&self) -> Result<(), OrchestratorError> {
        if self.stopped.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let deadline = Instant::now() + KILL_WAIT;
        while !self.cgroup.pids().is_empty() {
            self.cgroup.kill()?;
            if Instant::now() > deadline {
                return Err(OrchestratorError::Survivors {
                    what: self.what.clone(),
                });
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // The directory goes once the kernel has released the cgroup.
        for _ in 0..50 {
            if std::fs::remove_dir(self.cgroup.path()).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        tracing::info!(instance = %self.what, "replay instance stopped");
        Ok(())
    }
}

impl Drop for LocalInstance {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "stopping a replay instance");
        }
    }
}
