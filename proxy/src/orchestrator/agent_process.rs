//! Local mode can run the node agent as a supervised child of the proxy, so one command starts
//! the whole product. The child connects back over gRPC with the agent token like any agent.

use std::{path::PathBuf, time::Duration};

use tokio_util::sync::CancellationToken;

use crate::config::{Config, LocalAgentSpec};

const MAX_BACKOFF: Duration = Duration::from_secs(30);

fn agent_binary(spec: &LocalAgentSpec) -> PathBuf {
    spec.binary.clone().unwrap_or_else(|| {
        std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(|dir| dir.join("kreplay-agent")))
            .unwrap_or_else(|| PathBuf::from("kreplay-agent"))
    })
}

/// Runs the agent until `cancel`, restarting it with backoff when it exits.
pub async fn supervise(config: Config, spec: LocalAgentSpec, cancel: CancellationToken) {
    let binary = agent_binary(&spec);
    let log_path = config.data_dir.join("logs").join("agent.log");
    let mut backoff = Duration::from_millis(500);
    loop {
        let log = std::fs::create_dir_all(config.data_dir.join("logs")).and_then(|()| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log_path)
        });
        let child = log.and_then(|log| {
            tokio::process::Command::new(&binary)
                .arg("--proxy")
                .arg(format!("http://{}", config.grpc_listen))
                .arg("--token-file")
                .arg(config.data_dir.join("agent.token"))
                .arg("--metrics-addr")
                .arg(spec.metrics_listen.to_string())
                .args(&spec.args)
                .stdin(std::process::Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true)
                .spawn()
        });
        match child {
            Ok(mut child) => {
                tracing::info!(binary = %binary.display(), log = %log_path.display(), pid = child.id(), "local agent started");
                let started = tokio::time::Instant::now();
                tokio::select! {
                    _ = cancel.cancelled() => {
                        // SIGTERM lets the agent detach its programs; SIGKILL after a grace period.
                        if let Some(pid) = child.id() {
                            // SAFETY: kill(2) on our own child.
                            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                        }
                        if tokio::time::timeout(Duration::from_secs(5), child.wait()).await.is_err() {
                            let _ = child.kill().await;
                        }
                        return;
                    }
                    status = child.wait() => {
                        tracing::error!(?status, log = %log_path.display(), "local agent exited; restarting");
                        if started.elapsed() > Duration::from_secs(30) {
                            backoff = Duration::from_millis(500);
                        }
                    }
                }
            }
            Err(e) => {
                tracing::error!(binary = %binary.display(), error = %e, "cannot start the local agent")
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}
