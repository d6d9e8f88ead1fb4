//! Local mode: every declared deployment replica runs as a child process in its own cgroup v2
//! directory `<cgroup_root>/kreplay/<namespace>/<name>/<replica>`, restarted when it exits.
//!
//! Children join their cgroup before `exec` (so capture sees their first syscall) and start a new
//! session (so a proxy restart or a Ctrl-C in the proxy's terminal does not take the app down). A
//! proxy that restarts finds the replica's processes still in the cgroup and adopts them.

use std::{
    collections::BTreeMap,
    os::{fd::AsRawFd, unix::process::CommandExt},
    path::PathBuf,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    time::Duration,
};

use tokio::{io::AsyncReadExt, io::AsyncWriteExt, net::TcpStream};
use tokio_util::sync::CancellationToken;

use super::{
    CaptureTargets, DeploymentStatus, InstanceRequest, Orchestrator, OrchestratorError,
    ReplayInstance, cgroup::Cgroup, instance::LocalInstance,
};
use crate::config::{Config, DeploymentSpec};

const READY_EVERY: Duration = Duration::from_millis(500);
const ADOPTED_POLL: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

struct Replica {
    spec: DeploymentSpec,
    index: u16,
    cgroup: Cgroup,
    log_path: PathBuf,
    ready: AtomicBool,
    /// Sessions recording this deployment; HTTP readiness probes pause while it is non-zero so
    /// they never become test cases.
    recording: Arc<AtomicU32>,
}

pub struct LocalOrchestrator {
    replicas: Vec<Arc<Replica>>,
    recording: Vec<((String, String), Arc<AtomicU32>)>,
    cgroup_root: PathBuf,
    data_dir: PathBuf,
}

impl LocalOrchestrator {
    /// Creates every replica's cgroup and starts its supervisor. Fails early when the cgroup root
    /// is unusable, with the path in the error.
    pub fn start(
        config: &Config,
        cancel: CancellationToken,
    ) -> Result<Arc<Self>, OrchestratorError> {
        let mut replicas = Vec::new();
        let mut recording = Vec::new();
        for spec in &config.deployments {
            sweep_replay_instances(&config.cgroup_root, spec);
            let counter = Arc::new(AtomicU32::new(0));
            recording.push(((spec.namespace.clone(), spec.name.clone()), counter.clone()));
            for index in 0..spec.replicas {
                let dir = config
                    .cgroup_root
                    .join("kreplay")
                    .join(&spec.namespace)
                    .join(&spec.name)
                    .join(index.to_string());
                let cgroup = Cgroup::create(dir)?;
                let log_path = config
                    .data_dir
                    .join("logs")
                    .join(&spec.namespace)
                    .join(format!("{}-{index}.log", spec.name));
                replicas.push(Arc::new(Replica {
                    spec: spec.clone(),
                    index,
                    cgroup,
                    log_path,
                    ready: AtomicBool::new(false),
                    recording: counter.clone(),
                }));
            }
        }
        let this = Arc::new(Self {
            replicas,
            recording,
            cgroup_root: config.cgroup_root.clone(),
            data_dir: config.data_dir.clone(),
        });
        for replica in &this.replicas {
            tokio::spawn(supervise(
                replica.clone(),
                config.stop_deployments_on_exit,
                cancel.clone(),
            ));
            tokio::spawn(probe_readiness(replica.clone(), cancel.clone()));
        }
        Ok(this)
    }

    fn set_recording(&self, namespace: &str, name: &str, active: bool) {
        for ((ns, n), counter) in &self.recording {
            if ns == namespace && n == name {
                if active {
                    counter.fetch_add(1, Ordering::Relaxed);
                } else {
                    let _ = counter.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |c| {
                        Some(c.saturating_sub(1))
                    });
                }
            }
        }
    }
}

impl Orchestrator for LocalOrchestrator {
    fn recording_changed(&self, namespace: &str, name: &str, active: bool) {
        self.set_recording(namespace, name, active);
    }

    fn restart_for_recording(&self, namespace: &str, name: &str) -> bool {
        let mut restarted = false;
        for r in &self.replicas {
            if r.spec.namespace == namespace && r.spec.name == name && r.spec.restart_on_record {
                // The supervisor sees its child exit and starts a fresh one in the same cgroup,
                // which capture already targets.
                r.ready.store(false, Ordering::Relaxed);
                match r.cgroup.kill() {
                    Ok(()) => restarted = true,
                    Err(e) => tracing::error!(error = %e, "restarting a replica for recording"),
                }
            }
        }
        if restarted {
            tracing::info!(
                namespace,
                name,
                "replicas restarted so their start-up is recorded"
            );
        }
        restarted
    }

    fn deployments(&self, namespace: Option<&str>) -> Vec<DeploymentStatus> {
        let mut out: Vec<DeploymentStatus> = Vec::new();
        for r in &self.replicas {
            if namespace.is_some_and(|ns| ns != r.spec.namespace) {
                continue;
            }
            let ready = u32::from(r.ready.load(Ordering::Relaxed));
            match out
                .iter_mut()
                .find(|d| d.name == r.spec.name && d.namespace == r.spec.namespace)
            {
                Some(d) => d.ready_replicas += ready,
                None => out.push(DeploymentStatus {
                    name: r.spec.name.clone(),
                    namespace: r.spec.namespace.clone(),
                    replicas: u32::from(r.spec.replicas),
                    ready_replicas: ready,
                }),
            }
        }
        out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        out
    }

    fn capture_targets(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<CaptureTargets, OrchestratorError> {
        let mut targets = CaptureTargets::default();
        let mut found = false;
        for r in &self.replicas {
            if r.spec.namespace == namespace && r.spec.name == name {
                found = true;
                targets.cgroup_ids.push(r.cgroup.id()?);
            }
        }
        if !found {
            return Err(OrchestratorError::NotFound {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(targets)
    }

    fn prepare_instance(
        &self,
        request: &InstanceRequest,
    ) -> Result<Box<dyn ReplayInstance>, OrchestratorError> {
        let spec = self
            .replicas
            .iter()
            .map(|r| &r.spec)
            .find(|s| s.namespace == request.namespace && s.name == request.name)
            .ok_or_else(|| OrchestratorError::NotFound {
                namespace: request.namespace.clone(),
                name: request.name.clone(),
            })?;
        Ok(Box::new(LocalInstance::prepare(
            spec,
            request,
            &self.cgroup_root,
            &self.data_dir,
        )?))
    }
}

/// Replay instances a previous proxy run left behind (it crashed mid-replay): their processes
/// are killed and their cgroups removed, so nothing of an interrupted replay keeps running.
fn sweep_replay_instances(cgroup_root: &std::path::Path, spec: &DeploymentSpec) {
    let dir = cgroup_root
        .join("kreplay")
        .join(&spec.namespace)
        .join(&spec.name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("replay-") {
            continue;
        }
        let path = entry.path();
        tracing::warn!(cgroup = %path.display(), "removing a replay instance left by an earlier run");
        let _ = std::fs::write(path.join("cgroup.kill"), "1");
        for _ in 0..100 {
            if std::fs::remove_dir(&path).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn spawn(replica: &Replica) -> Result<tokio::process::Child, OrchestratorError> {
    let what = format!(
        "{}/{} replica {}",
        replica.spec.namespace, replica.spec.name, replica.index
    );
    spawn_in_cgroup(
        &what,
        &replica.spec,
        replica.spec.replica_port(replica.index),
        &BTreeMap::new(),
        &replica.cgroup,
        &replica.log_path,
    )
}

/// Starts the deployment's command on `port` (substituted for `${PORT}` and exported as `PORT`)
/// inside `cgroup`, with `env_overrides` on top of the spec's env; output goes to `log_path`.
pub(super) fn spawn_in_cgroup(
    what: &str,
    spec: &DeploymentSpec,
    port: u16,
    env_overrides: &BTreeMap<String, String>,
    cgroup: &Cgroup,
    log_path: &std::path::Path,
) -> Result<tokio::process::Child, OrchestratorError> {
    let wrap = |source| OrchestratorError::Spawn {
        what: what.to_owned(),
        source,
    };
    if let Some(parent) = log_path.parent() {
        std::fs::create_dir_all(parent).map_err(wrap)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(wrap)?;
    let argv = spec.argv_on(port);
    let procs = cgroup.procs_file()?;
    let procs_fd = procs.as_raw_fd();
    let mut cmd = std::process::Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .envs(&spec.env)
        .envs(env_overrides)
        .env("PORT", port.to_string())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(wrap)?)
        .stderr(log);
    if let Some(dir) = &spec.working_dir {
        cmd.current_dir(dir);
    }
    // SAFETY: between fork and exec only async-signal-safe calls (write, setsid) are made; the
    // fd stays open in the parent until spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if libc::write(procs_fd, b"0".as_ptr().cast(), 1) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::setsid();
            Ok(())
        });
    }
    let child = tokio::process::Command::from(cmd).spawn().map_err(wrap)?;
    drop(procs);
    Ok(child)
}

async fn supervise(replica: Arc<Replica>, stop_on_exit: bool, cancel: CancellationToken) {
    let name = format!(
        "{}/{}#{}",
        replica.spec.namespace, replica.spec.name, replica.index
    );
    let mut backoff = Duration::from_millis(500);
    loop {
        if !replica.cgroup.pids().is_empty() {
            tracing::info!(replica = %name, "adopting processes already running in its cgroup");
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(ADOPTED_POLL) => {}
                }
                if replica.cgroup.pids().is_empty() {
                    break;
                }
            }
        } else {
            match spawn(&replica) {
                Ok(mut child) => {
                    tracing::info!(replica = %name, pid = child.id(), log = %replica.log_path.display(), "started");
                    let started = tokio::time::Instant::now();
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        status = child.wait() => {
                            tracing::warn!(replica = %name, ?status, "exited; restarting");
                            // Leftover workers would hold the port; clear the cgroup first.
                            let _ = replica.cgroup.kill();
                            if started.elapsed() > Duration::from_secs(10) {
                                backoff = Duration::from_millis(500);
                            }
                        }
                    }
                }
                Err(e) => tracing::error!(replica = %name, error = %e, "cannot start"),
            }
        }
        if cancel.is_cancelled() {
            if stop_on_exit {
                let _ = replica.cgroup.kill();
            }
            return;
        }
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// TCP connect always (no bytes, so nothing is captured); the HTTP `health_path` only while
/// nobody records the deployment.
async fn probe_readiness(replica: Arc<Replica>, cancel: CancellationToken) {
    let addr = format!("127.0.0.1:{}", replica.spec.replica_port(replica.index));
    loop {
        let probe = async {
            let Ok(mut stream) = TcpStream::connect(&addr).await else {
                return false;
            };
            match replica.spec.health_path.as_deref() {
                Some(path) if replica.recording.load(Ordering::Relaxed) == 0 => {
                    http_ok(&mut stream, path).await.unwrap_or(false)
                }
                // No health path, or recording: an accepted connection is the signal.
                _ => true,
            }
        };
        let ready = tokio::time::timeout(Duration::from_secs(2), probe)
            .await
            .unwrap_or(false);
        replica.ready.store(ready, Ordering::Relaxed);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(READY_EVERY) => {}
        }
    }
}

async fn http_ok(stream: &mut TcpStream, path: &str) -> Option<bool> {
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nUser-Agent: kreplay-readiness\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut head = [0u8; 16];
    let n = stream.read(&mut head).await.ok()?;
    let line = std::str::from_utf8(&head[..n]).ok()?;
    let code: u16 = line.split(' ').nth(1)?.parse().ok()?;
    Some((200..400).contains(&code))
}
