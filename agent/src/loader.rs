//! Loads the capture object, fills in its globals, attaches the tracepoints and hands out maps.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{HashMap, MapData, PerCpuArray, RingBuf},
    programs::TracePoint,
};
use kreplay_agent_ebpf::{counter, names};

use crate::{
    redirect::{RedirectError, Redirector},
    tracefs::{self, SYSCALLS},
};

#[cfg(kreplay_capture_object)]
static CAPTURE_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/kreplay-capture"));
#[cfg(not(kreplay_capture_object))]
static CAPTURE_OBJECT: &[u8] = &[];

pub const TRACEFS: &str = "/sys/kernel/tracing";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("this agent was built without the capture object: run `cargo xtask build`")]
    NoObject,
    #[error(transparent)]
    Tracefs(#[from] tracefs::TracefsError),
    #[error("loading the capture object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("program {0} missing from the capture object")]
    MissingProgram(String),
    #[error("program {name}: {source}")]
    Program {
        name: String,
        source: aya::programs::ProgramError,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
    #[error("map {0} missing from the capture object")]
    MissingMap(&'static str),
    #[error("mounting tracefs at {TRACEFS}: {0}")]
    Mount(std::io::Error),
    #[error("{ring} ring size {bytes} must be a power of two and a multiple of the page size")]
    RingSize { ring: &'static str, bytes: u32 },
}

/// Sizes of the rings, in bytes (powers of two, multiples of the page size).
#[derive(Debug, Clone, Copy)]
pub struct RingSizes {
    pub data: u32,
    pub control: u32,
}

impl Default for RingSizes {
    fn default() -> Self {
        Self {
            data: 32 << 20,
            control: 1 << 20,
        }
    }
}

/// The loaded programs (kept alive: dropping them detaches) and the maps user space drives.
pub struct Capture {
    ebpf: Ebpf,
    redirect: Redirector,
    pub data_ring: RingBuf<MapData>,
    pub control_ring: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    pub cgroup_targets: HashMap<MapData, u64, u8>,
    pub tgid_targets: HashMap<MapData, u32, u8>,
}

impl Capture {
    /// Sends the TCP connections of processes in `cgroup` to `mock_server` (a replay instance).
    pub fn attach_redirect(
        &mut self,
        cgroup: &Path,
        cgroup_id: u64,
        mock_server: std::net::SocketAddrV4,
    ) -> Result<(), RedirectError> {
        self.redirect
            .attach(&mut self.ebpf, cgroup, cgroup_id, mock_server)
    }

    pub fn detach_redirect(&mut self, cgroup_id: u64) {
        self.redirect.detach(&mut self.ebpf, cgroup_id);
    }

    /// The kernel's loss and activity counters, summed over CPUs (indexes: [`counter`]).
    pub fn kernel_counters(&self) -> [u64; counter::COUNT as usize] {
        let mut sums = [0u64; counter::COUNT as usize];
        for (index, sum) in (0u32..).zip(sums.iter_mut()) {
            match self.counters.get(&index, 0) {
                Ok(values) => *sum = values.iter().sum(),
                Err(e) => tracing::debug!(index, error = %e, "reading a kernel counter"),
            }
        }
        sums
    }
}

fn ensure_tracefs() -> Result<(), LoadError> {
    if Path::new(TRACEFS).join("events/syscalls").exists() {
        return Ok(());
    }
    let target = std::ffi::CString::new(TRACEFS).map_err(|e| LoadError::Mount(e.into()))?;
    let fstype = c"tracefs";
    // SAFETY: plain mount(2) with valid C strings.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(LoadError::Mount(std::io::Error::last_os_error()));
    }
    Ok(())
}

fn raise_memlock() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: setrlimit with a valid struct; failure only matters on old kernels (memcg accounting
    // is used from 5.11 on), so it is logged and ignored.
    if unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) } != 0 {
        tracing::debug!(
            "setrlimit(RLIMIT_MEMLOCK) failed: {}",
            std::io::Error::last_os_error()
        );
    }
}

fn page_size() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u32::try_from(size).unwrap_or(4096)
}

fn check_ring(ring: &'static str, bytes: u32) -> Result<(), LoadError> {
    if bytes.is_power_of_two() && bytes.is_multiple_of(page_size()) {
        Ok(())
    } else {
        Err(LoadError::RingSize { ring, bytes })
    }
}

fn take<T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>>(
    ebpf: &mut Ebpf,
    name: &'static str,
) -> Result<T, LoadError> {
    let map = ebpf.take_map(name).ok_or(LoadError::MissingMap(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

fn attach(ebpf: &mut Ebpf, program: &str, tracepoint: &str) -> Result<(), LoadError> {
    let wrap = |source| LoadError::Program {
        name: program.to_string(),
        source,
    };
    let tp: &mut TracePoint = ebpf
        .program_mut(program)
        .ok_or_else(|| LoadError::MissingProgram(program.to_string()))?
        .try_into()
        .map_err(wrap)?;
    tp.load().map_err(wrap)?;
    tp.attach("syscalls", tracepoint).map_err(wrap)?;
    Ok(())
}

/// Loads and attaches the embedded capture object. Nothing is captured until a cgroup id or tgid
/// is put into the target maps.
pub fn load(rings: RingSizes) -> Result<Capture, LoadError> {
    if CAPTURE_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    check_ring("data", rings.data)?;
    check_ring("control", rings.control)?;
    ensure_tracefs()?;
    raise_memlock();
    let offsets = tracefs::read_offsets(Path::new(TRACEFS))?;
    let agent_tgid = std::process::id();
    let mut ebpf = EbpfLoader::new()
        .override_global(names::ENTER_ARGS_OFFSET, &offsets.enter_args, true)
        .override_global(names::EXIT_RET_OFFSET, &offsets.exit_ret, true)
        .override_global(names::AGENT_TGID, &agent_tgid, true)
        .map_max_entries(names::DATA_RING, rings.data)
        .map_max_entries(names::CONTROL_RING, rings.control)
        .load(CAPTURE_OBJECT)?;
    // Exits first: an enter whose exit is not attached yet would leave a stash entry behind.
    for (syscall, _) in SYSCALLS {
        attach(
            &mut ebpf,
            &format!("exit_{syscall}"),
            &format!("sys_exit_{syscall}"),
        )?;
    }
    for (syscall, _) in SYSCALLS {
        attach(
            &mut ebpf,
            &format!("enter_{syscall}"),
            &format!("sys_enter_{syscall}"),
        )?;
    }
    attach(&mut ebpf, "enter_close", "sys_enter_close")?;
    tracing::info!(
        enter_args = offsets.enter_args,
        exit_ret = offsets.exit_ret,
        data_ring = rings.data,
        control_ring = rings.control,
        "capture programs attached"
    );
    let redirect = Redirector::load(&mut ebpf)?;
    Ok(Capture {
        redirect,
        data_ring: take(&mut ebpf, names::DATA_RING)?,
        control_ring: take(&mut ebpf, names::CONTROL_RING)?,
        counters: take(&mut ebpf, names::COUNTERS)?,
        cgroup_targets: take(&mut ebpf, names::CGROUP_TARGETS)?,
        tgid_targets: take(&mut ebpf, names::TGID_TARGETS)?,
        ebpf,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_are_checked_before_loading() {
        assert!(check_ring("data", 4096).is_ok());
        assert!(check_ring("data", 32 << 20).is_ok());
        assert!(matches!(
            check_ring("data", 6000),
            Err(LoadError::RingSize { bytes: 6000, .. })
        ));
        assert!(check_ring("data", 2048).is_err());
        assert!(check_ring("data", 0).is_err());
    }
}
