//! cgroup v2 directories: create, identify (the directory's inode is the id that
//! `bpf_get_current_cgroup_id` returns), list and kill their processes.

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use super::OrchestratorError;

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> OrchestratorError + '_ {
    move |source| OrchestratorError::Cgroup {
        path: path.display().to_string(),
        source,
    }
}

/// A cgroup v2 directory owned by the proxy.
#[derive(Debug, Clone)]
pub struct Cgroup {
    path: PathBuf,
}

impl Cgroup {
    /// Creates the directory (and parents) when missing.
    pub fn create(path: PathBuf) -> Result<Self, OrchestratorError> {
        std::fs::create_dir_all(&path).map_err(err(&path))?;
        if !path.join("cgroup.procs").exists() {
            return Err(OrchestratorError::Cgroup {
                path: path.display().to_string(),
                source: std::io::Error::new(
                    std::io::ErrorKind::Unsupported,
                    "not a cgroup v2 directory (set cgroup_root to the cgroup2 mount)",
                ),
            });
        }
        Ok(Self { path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The cgroup id, as the kernel reports it to eBPF programs.
    pub fn id(&self) -> Result<u64, OrchestratorError> {
        Ok(std::fs::metadata(&self.path)
            .map_err(err(&self.path))?
            .ino())
    }

    /// Process ids currently in the cgroup (not its children).
    pub fn pids(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|t| t.lines().filter_map(|l| l.trim().parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Kills every process in the cgroup (`cgroup.kill`, kernel 5.14+).
    pub fn kill(&self) -> Result<(), OrchestratorError> {
        std::fs::write(self.path.join("cgroup.kill"), "1").map_err(err(&self.path))
    }

    /// Opens `cgroup.procs` for writing so a child can join before exec (see `local::spawn`).
    pub fn procs_file(&self) -> Result<std::fs::File, OrchestratorError> {
        let path = self.path.join("cgroup.procs");
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(err(&path))
    }
}
