//! Proxy configuration file (YAML). Unknown fields are rejected so typos surface at start-up.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("invalid config: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// TLS listener for the REST API.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Also serve plain HTTP on `insecure_listen`.
    #[serde(default)]
    pub insecure: bool,
    #[serde(default = "default_insecure_listen")]
    pub insecure_listen: SocketAddr,
    /// gRPC listener agents connect to.
    #[serde(default = "default_grpc_listen")]
    pub grpc_listen: SocketAddr,
    /// SQLite file, token files, deployment logs.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Externally reachable base URL, echoed by the token exchange.
    #[serde(default)]
    pub ingress_url: Option<String>,
    /// When set, every call is forced into this namespace (SPEC section 3).
    #[serde(default)]
    pub watch_namespace: Option<String>,
    /// cgroup v2 mount point under which `kreplay/<ns>/<name>/<replica>` is created.
    #[serde(default = "default_cgroup_root")]
    pub cgroup_root: PathBuf,
    /// Kill the declared workloads on graceful shutdown (default: leave them running).
    #[serde(default)]
    pub stop_deployments_on_exit: bool,
    /// PEM certificate chain and key for the TLS listener; self-signed when absent.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Disable the TLS listener altogether (only the insecure one is served).
    #[serde(default = "default_true")]
    pub tls: bool,
    /// How long `POST /record/stop` waits for agents to confirm a flush.
    #[serde(default = "default_flush_timeout")]
    pub flush_timeout_secs: u64,
    #[serde(default)]
    pub deployments: Vec<DeploymentSpec>,
    /// Local mode: run the node agent as a supervised child process of the proxy.
    #[serde(default)]
    pub local_agent: Option<LocalAgentSpec>,
}

/// The agent the proxy runs itself in local mode (it connects back over gRPC like any agent).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LocalAgentSpec {
    /// Path of `kreplay-agent`; default: next to the proxy's own executable.
    #[serde(default)]
    pub binary: Option<PathBuf>,
    /// Extra command-line arguments (e.g. `--data-ring-bytes`).
    #[serde(default)]
    pub args: Vec<String>,
    /// Where the agent serves Prometheus metrics.
    #[serde(default = "default_agent_metrics")]
    pub metrics_listen: SocketAddr,
}

fn default_agent_metrics() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9464))
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeploymentSpec {
    pub name: String,
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// argv; `${PORT}` is replaced by the replica's port.
    pub command: Vec<String>,
    #[serde(default)]
    pub working_dir: Option<PathBuf>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub port: u16,
    #[serde(default = "default_replicas")]
    pub replicas: u16,
    /// HTTP path polled for readiness; TCP connect when absent.
    #[serde(default)]
    pub health_path: Option<String>,
    /// Restart the replicas once a recording's capture is in place, so their start-up calls
    /// (connections, migrations, warm-up queries) are recorded as session mocks.
    #[serde(default)]
    pub restart_on_record: bool,
}

impl DeploymentSpec {
    /// Port of replica `i` (validated at load time not to overflow).
    pub fn replica_port(&self, replica: u16) -> u16 {
        self.port.saturating_add(replica)
    }

    /// The command line of replica `i` with `${PORT}` substituted.
    pub fn argv(&self, replica: u16) -> Vec<String> {
        self.argv_on(self.replica_port(replica))
    }

    /// The command line with `${PORT}` replaced by `port`.
    pub fn argv_on(&self, port: u16) -> Vec<String> {
        let port = port.to_string();
        self.command
            .iter()
            .map(|a| a.replace("${PORT}", &port))
            .collect()
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_insecure_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8081))
}
fn default_grpc_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 9090))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from(".kreplay")
}
fn default_cgroup_root() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup/unified")
}
fn default_namespace() -> String {
    "default".to_owned()
}
fn default_replicas() -> u16 {
    1
}
fn default_true() -> bool {
    true
}
fn default_flush_timeout() -> u64 {
    15
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let cfg: Config = serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let cfg: Config = serde_yaml::from_str(text).map_err(|source| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            source,
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid(
                "tls_cert and tls_key must be given together".into(),
            ));
        }
        if let Some(ns) = &self.watch_namespace {
            check_component("watch_namespace", ns)?;
        }
        let mut seen = HashSet::new();
        for d in &self.deployments {
            check_component("deployment name", &d.name)?;
            check_component("deployment namespace", &d.namespace)?;
            if !seen.insert((d.namespace.clone(), d.name.clone())) {
                return Err(ConfigError::Invalid(format!(
                    "deployment {}/{} is declared twice",
                    d.namespace, d.name
                )));
            }
            if d.command.is_empty() || d.command[0].is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "deployment {}/{}: command must not be empty",
                    d.namespace, d.name
                )));
            }
            if d.replicas == 0 {
                return Err(ConfigError::Invalid(format!(
                    "deployment {}/{}: replicas must be at least 1",
                    d.namespace, d.name
                )));
            }
            if d.port == 0 || u32::from(d.port) + u32::from(d.replicas) - 1 > u32::from(u16::MAX) {
                return Err(ConfigError::Invalid(format!(
                    "deployment {}/{}: port {} with {} replicas is out of range",
                    d.namespace, d.name, d.port, d.replicas
                )));
            }
            if let Some(p) = &d.health_path
                && !p.starts_with('/')
            {
                return Err(ConfigError::Invalid(format!(
                    "deployment {}/{}: health_path must start with '/'",
                    d.namespace, d.name
                )));
            }
        }
        Ok(())
    }
}

/// Names become cgroup and log path components, so keep them to DNS-label-like characters.
fn check_component(what: &str, s: &str) -> Result<(), ConfigError> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s != "."
        && s != ".."
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Invalid(format!(
            "{what} {s:?} must be non-empty and use only [A-Za-z0-9._-]"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
listen: 127.0.0.1:8080
insecure: true
insecure_listen: 127.0.0.1:8081
grpc_listen: 127.0.0.1:9090
data_dir: .kreplay
ingress_url: https://127.0.0.1:8080
watch_namespace: null
deployments:
  - name: httpbin
    command: ["gunicorn", "-b", "127.0.0.1:${PORT}", "httpbin:app"]
    working_dir: /tmp
    env: {KEY: value}
    port: 8000
    replicas: 2
    health_path: /
"#;

    #[test]
    fn parses_sample_with_defaults() {
        let cfg = Config::from_yaml(SAMPLE).expect("valid");
        assert!(cfg.insecure);
        assert_eq!(cfg.cgroup_root, PathBuf::from("/sys/fs/cgroup/unified"));
        let d = &cfg.deployments[0];
        assert_eq!(d.namespace, "default");
        assert_eq!(d.argv(1)[2], "127.0.0.1:8001");
        assert_eq!(d.env.get("KEY").map(String::as_str), Some("value"));
    }

    #[test]
    fn rejects_unknown_fields() {
        let err = Config::from_yaml("listen: 127.0.0.1:1\nlisten_typo: 1\n").unwrap_err();
        assert!(err.to_string().contains("listen_typo"), "{err}");
        let err =
            Config::from_yaml("deployments:\n  - {name: a, command: [x], port: 1, replica: 2}\n")
                .unwrap_err();
        assert!(err.to_string().contains("replica"), "{err}");
    }

    #[test]
    fn rejects_bad_deployments() {
        for bad in [
            "deployments:\n  - {name: a/b, command: [x], port: 1}\n",
            "deployments:\n  - {name: a, command: [], port: 1}\n",
            "deployments:\n  - {name: a, command: [x], port: 65535, replicas: 2}\n",
            "deployments:\n  - {name: a, command: [x], port: 1}\n  - {name: a, command: [y], port: 2}\n",
        ] {
            assert!(Config::from_yaml(bad).is_err(), "{bad}");
        }
    }
}
