//! Replay redirect in user space: loads the cgroup/connect4+6 and getpeername4+6 programs of the
//! capture object once, attaches them to a replay instance's cgroup on request, and points that
//! cgroup at its mock server through the `REDIRECT` map.

use std::{collections::HashMap as StdHashMap, net::SocketAddrV4, path::Path};

use aya::{
    Ebpf,
    maps::{HashMap, MapData},
    programs::{CgroupAttachMode, CgroupSockAddr, cgroup_sock_addr::CgroupSockAddrLinkId},
};
use kreplay_agent_ebpf::{MockTarget, names};

use crate::loader::LoadError;

const PROGRAMS: [&str; 4] = [
    names::CONNECT4,
    names::CONNECT6,
    names::GETPEERNAME4,
    names::GETPEERNAME6,
];

#[derive(Debug, thiserror::Error)]
pub enum RedirectError {
    #[error("opening cgroup {path}: {source}")]
    Cgroup {
        path: String,
        source: std::io::Error,
    },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        source: aya::programs::ProgramError,
    },
    #[error("REDIRECT map: {0}")]
    Map(#[from] aya::maps::MapError),
}

/// Links of one attached cgroup, so they can be detached.
struct Attached {
    links: Vec<(&'static str, CgroupSockAddrLinkId)>,
}

pub struct Redirector {
    targets: HashMap<MapData, u64, MockTarget>,
    attached: StdHashMap<u64, Attached>,
}

impl Redirector {
    /// Loads the four programs (not attached yet) and takes the `REDIRECT` map.
    pub fn load(ebpf: &mut Ebpf) -> Result<Self, LoadError> {
        for name in PROGRAMS {
            let program: &mut CgroupSockAddr = ebpf
                .program_mut(name)
                .ok_or_else(|| LoadError::MissingProgram(name.to_owned()))?
                .try_into()
                .map_err(|source| LoadError::Program {
                    name: name.to_owned(),
                    source,
                })?;
            program.load().map_err(|source| LoadError::Program {
                name: name.to_owned(),
                source,
            })?;
        }
        let map = ebpf
            .take_map(names::REDIRECT)
            .ok_or(LoadError::MissingMap(names::REDIRECT))?;
        let targets = HashMap::try_from(map).map_err(|source| LoadError::Map {
            name: names::REDIRECT,
            source,
        })?;
        Ok(Self {
            targets,
            attached: StdHashMap::new(),
        })
    }

    /// Sends the TCP connections of processes in `cgroup` to `mock_server`.
    pub fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        cgroup: &Path,
        cgroup_id: u64,
        mock_server: SocketAddrV4,
    ) -> Result<(), RedirectError> {
        self.detach(ebpf, cgroup_id);
        let target = MockTarget {
            ip4: u32::from_ne_bytes(mock_server.ip().octets()),
            port_be: mock_server.port().to_be(),
            _pad: 0,
        };
        let file = std::fs::File::open(cgroup).map_err(|source| RedirectError::Cgroup {
            path: cgroup.display().to_string(),
            source,
        })?;
        // The map entry before the programs: a connect between attach and insert would
        // otherwise go out.
        self.targets.insert(cgroup_id, target, 0)?;
        let mut links = Vec::new();
        for name in PROGRAMS {
            let result = program(ebpf, name).and_then(|p| {
                p.attach(&file, CgroupAttachMode::Single)
                    .map_err(|source| RedirectError::Program { name, source })
            });
            match result {
                Ok(link) => links.push((name, link)),
                Err(e) => {
                    self.attached.insert(cgroup_id, Attached { links });
                    self.detach(ebpf, cgroup_id);
                    return Err(e);
                }
            }
        }
        self.attached.insert(cgroup_id, Attached { links });
        tracing::info!(cgroup = %cgroup.display(), cgroup_id, %mock_server, "replay redirect attached");
        Ok(())
    }

    /// Removes the redirect of a cgroup (nothing happens when there is none).
    pub fn detach(&mut self, ebpf: &mut Ebpf, cgroup_id: u64) {
        if let Some(attached) = self.attached.remove(&cgroup_id) {
            for (name, link) in attached.links {
                if let Err(e) = program(ebpf, name).and_then(|p| {
                    p.detach(link)
                        .map_err(|source| RedirectError::Program { name, source })
                }) {
                    tracing::warn!(error = %e, cgroup_id, "detaching a redirect program");
                }
            }
            tracing::info!(cgroup_id, "replay redirect detached");
        }
        let _ = self.targets.remove(&cgroup_id);
    }
}

fn program<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut CgroupSockAddr, RedirectError> {
    let program = ebpf.program_mut(name).ok_or(RedirectError::Program {
        name,
        source: aya::programs::ProgramError::NotLoaded,
    })?;
    program
        .try_into()
        .map_err(|source| RedirectError::Program { name, source })
}
