//! The proxy and agent as child processes, and cleanup of the cgroups they leave behind.

use std::{
    collections::HashMap,
    fs::File,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context, bail};

use crate::{ProxyConfig, Rest, free_port, wait_for};

fn log_file(path: &Path) -> anyhow::Result<(File, File)> {
    let file = File::options()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    Ok((file.try_clone()?, file))
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(child.id() as i32, sig) };
}

/// Stops a child: SIGTERM, then SIGKILL after `grace`.
fn stop(child: &mut Child, grace: Duration) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    signal(child, libc::SIGTERM);
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A running `kreplay-proxy`.
pub struct Proxy {
    child: Option<Child>,
    config_path: PathBuf,
    pub log_path: PathBuf,
    pub data_dir: PathBuf,
    pub grpc_url: String,
    pub rest: Rest,
    cgroup_dirs: Vec<PathBuf>,
    bin_dir: PathBuf,
}

impl Proxy {
    /// Writes the config into `dir` and starts the proxy; returns once `/healthz` answers.
    pub fn start(dir: &Path, config: &ProxyConfig) -> anyhow::Result<Self> {
        let config_path = dir.join("proxy.yaml");
        config.write(&config_path)?;
        let cgroup_dirs = config
            .deployments
            .iter()
            .map(|d| {
                config
                    .cgroup_root
                    .join("kreplay")
                    .join(&d.namespace)
                    .join(&d.name)
            })
            .collect();
        let mut proxy = Self {
            child: None,
            config_path,
            log_path: dir.join("proxy.log"),
            data_dir: config.data_dir.clone(),
            grpc_url: format!("http://127.0.0.1:{}", config.grpc_port),
            rest: Rest::new(
                format!("http://127.0.0.1:{}", config.rest_port),
                String::new(),
            ),
            cgroup_dirs,
            bin_dir: config.bin_dir.clone(),
        };
        proxy.spawn()?;
        Ok(proxy)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let (out, err) = log_file(&self.log_path)?;
        let token_file = self.data_dir.join("shared.token");
        let _ = std::fs::remove_file(&token_file);
        let child = Command::new(self.bin_dir.join("kreplay-proxy"))
            .arg("--config")
            .arg(&self.config_path)
            .arg("--token-file")
            .arg(&token_file)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting kreplay-proxy (run `cargo xtask build` first)")?;
        self.child = Some(child);
        let token = wait_for(
            "the proxy's shared token file",
            Duration::from_secs(30),
            || {
                if let Some(child) = self.child.as_mut()
                    && let Some(status) = child.try_wait()?
                {
                    bail!("proxy exited: {status}; log:\n{}", self.log());
                }
                Ok(std::fs::read_to_string(&token_file)
                    .ok()
                    .filter(|t| t.trim().len() == 64))
            },
        )?;
        self.rest.token = token.trim().to_string();
        wait_for("proxy /healthz", Duration::from_secs(30), || {
            Ok((self.rest.get("/healthz")?.status == 200).then_some(()))
        })?;
        Ok(())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Process id, for CPU accounting in benchmarks.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn agent_token_file(&self) -> PathBuf {
        self.data_dir.join("agent.token")
    }

    /// SIGKILL: no chance to flush or say goodbye.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill();
        self.spawn()
    }

    /// Graceful stop (SIGTERM), bounded.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
        for dir in &self.cgroup_dirs {
            kill_cgroup_tree(dir);
        }
    }
}

/// Kills every process in a cgroup subtree and removes its directories.
pub fn kill_cgroup_tree(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            kill_cgroup_tree(&entry.path());
        }
    }
    let _ = std::fs::write(dir.join("cgroup.kill"), "1");
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `kreplay-agent`.
pub struct Agent {
    child: Option<Child>,
    pub log_path: PathBuf,
    pub metrics_url: String,
}

impl Agent {
    pub fn start(dir: &Path, proxy: &Proxy, extra_args: &[&str]) -> anyhow::Result<Self> {
        let log_path = dir.join("agent.log");
        let (out, err) = log_file(&log_path)?;
        let metrics_port = free_port()?;
        let child = Command::new(proxy.bin_dir.join("kreplay-agent"))
            .arg("--proxy")
            .arg(&proxy.grpc_url)
            .arg("--token-file")
            .arg(proxy.agent_token_file())
            .arg("--metrics-addr")
            .arg(format!("127.0.0.1:{metrics_port}"))
            .args(extra_args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .context("starting kreplay-agent (run `cargo xtask build` first)")?;
        let mut agent = Self {
            child: Some(child),
            log_path,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
        };
        wait_for("agent metrics endpoint", Duration::from_secs(30), || {
            if let Some(child) = agent.child.as_mut()
                && let Some(status) = child.try_wait()?
            {
                bail!("agent exited: {status}; log:\n{}", agent.log());
            }
            Ok(agent.metrics().ok())
        })?;
        Ok(agent)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Parsed Prometheus text from the agent's /metrics.
    pub fn metrics(&self) -> anyhow::Result<HashMap<String, f64>> {
        let text = crate::rest::curl_text(&self.metrics_url)?;
        Ok(text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| {
                let (name, value) = l.split_once(' ')?;
                Some((name.to_string(), value.trim().parse().ok()?))
            })
            .collect())
    }

    /// Process id, for CPU accounting in benchmarks.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            stop(&mut child, Duration::from_secs(10));
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}
