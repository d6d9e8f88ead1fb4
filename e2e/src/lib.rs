//! Harness for end-to-end runs on this host: the real `kreplay-proxy` and `kreplay-agent`
//! binaries, real servers (nginx, gunicorn + httpbin) declared as local deployments, and real
//! clients (curl). Used by the tests in `e2e/tests/` and by `cargo xtask demo` / `bench`.

pub mod client;
pub mod compare;
pub mod deps;
pub mod process;
pub mod rest;
pub mod servers;

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

pub use process::{Agent, Proxy};
pub use rest::{Rest, StatusStream};

/// One end-to-end scenario at a time: each runs its own proxy, agent and servers on 2 cores, and
/// deployments of the same name share a cgroup path.
pub fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Panics with a clear message unless running as root (eBPF and cgroups need it).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "these tests load eBPF programs and create cgroups: run them as root (`cargo xtask test`)"
    );
}

/// The workspace root.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where the binaries are: `KREPLAY_BIN_DIR`, else `target/debug` of this workspace.
pub fn bin_dir() -> PathBuf {
    std::env::var_os("KREPLAY_BIN_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/debug"))
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Polls `check` every 50 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    let mut last_error = None;
    while start.elapsed() < timeout {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(e) => last_error = Some(e),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    match last_error {
        Some(e) => bail!("timed out after {timeout:?} waiting for {what}: last error: {e:#}"),
        None => bail!("timed out after {timeout:?} waiting for {what}"),
    }
}

/// A scratch directory removed on drop (kept when `KREPLAY_KEEP_TMP` is set, for debugging).
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let unique = format!(
            "kreplay-{label}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos() ^ u128::from(free_port()?)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if std::env::var_os("KREPLAY_KEEP_TMP").is_none() {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// A local deployment as the proxy's config file declares it.
#[derive(Debug, Clone)]
pub struct Deployment {
    pub name: String,
    pub namespace: String,
    pub command: Vec<String>,
    pub port: u16,
    pub working_dir: Option<PathBuf>,
    pub health_path: Option<String>,
    pub env: Vec<(String, String)>,
    /// Restart when a recording starts, so start-up calls are recorded too.
    pub restart_on_record: bool,
}

impl Deployment {
    fn to_json(&self) -> serde_json::Value {
        let mut value = serde_json::json!({
            "name": self.name,
            "namespace": self.namespace,
            "command": self.command,
            "port": self.port,
            "replicas": 1,
        });
        if let Some(dir) = &self.working_dir {
            value["working_dir"] = serde_json::json!(dir);
        }
        if let Some(path) = &self.health_path {
            value["health_path"] = serde_json::json!(path);
        }
        if self.restart_on_record {
            value["restart_on_record"] = serde_json::json!(true);
        }
        if !self.env.is_empty() {
            let env: serde_json::Map<String, serde_json::Value> = self
                .env
                .iter()
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect();
            value["env"] = serde_json::Value::Object(env);
        }
        value
    }
}

/// Everything a proxy config needs; written as JSON, which is valid YAML.
pub struct ProxyConfig {
    pub rest_port: u16,
    pub grpc_port: u16,
    pub data_dir: PathBuf,
    pub cgroup_root: PathBuf,
    pub deployments: Vec<Deployment>,
    /// Where `kreplay-proxy` and `kreplay-agent` are.
    pub bin_dir: PathBuf,
    /// Run the agent as the proxy's supervised child, serving metrics on this port.
    pub local_agent_metrics_port: Option<u16>,
}

impl ProxyConfig {
    pub fn new(dir: &Path, deployments: Vec<Deployment>) -> anyhow::Result<Self> {
        Ok(Self {
            rest_port: free_port()?,
            grpc_port: free_port()?,
            data_dir: dir.join("data"),
            cgroup_root: PathBuf::from("/sys/fs/cgroup/unified"),
            deployments,
            bin_dir: bin_dir(),
            local_agent_metrics_port: None,
        })
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let tls_port = free_port()?;
        let mut config = serde_json::json!({
            "listen": format!("127.0.0.1:{tls_port}"),
            "insecure": true,
            "insecure_listen": format!("127.0.0.1:{}", self.rest_port),
            "grpc_listen": format!("127.0.0.1:{}", self.grpc_port),
            "data_dir": self.data_dir,
            "cgroup_root": self.cgroup_root,
            "stop_deployments_on_exit": false,
            "deployments": self.deployments.iter().map(Deployment::to_json).collect::<Vec<_>>(),
        });
        if let Some(port) = self.local_agent_metrics_port {
            config["local_agent"] = serde_json::json!({
                "binary": self.bin_dir.join("kreplay-agent"),
                "metrics_listen": format!("127.0.0.1:{port}"),
            });
        }
        std::fs::write(path, serde_json::to_vec_pretty(&config)?)
            .with_context(|| format!("writing {}", path.display()))
    }
}
