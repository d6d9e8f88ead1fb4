//! Types shared between the capture programs (`src/main.rs`, built for `bpfel-unknown-none`) and the
//! agent in user space. Every struct is `#[repr(C)]` with explicit padding so both sides agree on
//! the layout byte for byte.
#![no_std]

/// Payload bytes carried by one data record. A power of two so the programs can bound lengths with
/// a mask the verifier understands.
pub const CHUNK_BYTES: usize = 16 * 1024;
/// Data records one syscall is guaranteed (budget >= `MAX_CHUNKS * CHUNK_BYTES` = 1 MiB).
pub const MAX_CHUNKS: u32 = 64;
/// Upper bound on iovec entries walked for readv/writev/sendmsg/recvmsg.
pub const MAX_IOV: u32 = 16;
/// Iterations of the payload walk for one syscall: each one either emits a chunk or steps to the
/// next iovec entry, so any syscall gets at least `MAX_CHUNKS` chunks. Bytes beyond the walk are
/// counted in [`counter::TRUNCATED_BYTES`].
pub const MAX_STEPS: u32 = MAX_CHUNKS + MAX_IOV;

/// Direction of a data record, seen from the traced process.
pub const DIR_READ: u8 = 0;
pub const DIR_WRITE: u8 = 1;

/// Role of a connection, decided by the syscall that created it.
pub const ROLE_SERVER: u32 = 1; // accept/accept4: the traced process is the server
pub const ROLE_CLIENT: u32 = 2; // connect: the traced process is the client

/// Control record kinds.
pub const CONTROL_OPEN: u32 = 1;
pub const CONTROL_CLOSE: u32 = 2;

/// Indexes into the per-CPU `COUNTERS` array.
pub mod counter {
    /// A data record could not be written to the data ring (it was full).
    pub const DATA_RING_FULL: u32 = 0;
    /// A control record could not be written to the control ring.
    pub const CONTROL_RING_FULL: u32 = 1;
    /// `bpf_probe_read_user` failed (page not resident, bad pointer).
    pub const READ_FAULT: u32 = 2;
    /// Payload bytes beyond the per-syscall copy budget (never copied).
    pub const TRUNCATED_BYTES: u32 = 3;
    /// A syscall exit found no stashed arguments (agent attached mid-syscall, LRU eviction).
    pub const STASH_MISS: u32 = 4;
    /// Data records emitted.
    pub const DATA_RECORDS: u32 = 5;
    /// Payload bytes lost because the data ring was full.
    pub const DATA_RING_FULL_BYTES: u32 = 6;
    pub const COUNT: u32 = 8;
}

/// Header of every record in the data ring, followed by `len` payload bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct DataHeader {
    /// `bpf_ktime_get_ns()` at syscall exit.
    pub ts_ns: u64,
    pub cgroup_id: u64,
    pub pid_tgid: u64,
    /// Generation of the connection (its open time), so fd reuse is never confused.
    pub conn_gen: u64,
    /// Stream offset of the first payload byte within this direction of the connection.
    pub pos: u64,
    pub fd: u32,
    /// Payload bytes that follow this header.
    pub len: u32,
    pub direction: u8,
    pub _pad: [u8; 7],
}

/// A socket address as the programs saw it in a `sockaddr` (family 0 = unknown).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SockAddr {
    pub family: u16,
    /// Network byte order, as in `sockaddr_in`.
    pub port_be: u16,
    pub _pad: [u8; 4],
    /// IPv4 in the first 4 bytes, or IPv6.
    pub addr: [u8; 16],
}

/// A record in the control ring: a connection opened or closed.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ControlEvent {
    pub ts_ns: u64,
    pub cgroup_id: u64,
    pub pid_tgid: u64,
    pub conn_gen: u64,
    /// Final stream positions (close only): bytes read and written over the connection's life.
    pub read_pos: u64,
    pub write_pos: u64,
    pub kind: u32,
    pub role: u32,
    pub fd: u32,
    pub _pad: u32,
    /// accept: the peer; connect: the destination.
    pub peer: SockAddr,
}

/// Per-connection state kept in the `CONNS` map, keyed by [`conn_key`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ConnState {
    pub generation: u64,
    pub read_pos: u64,
    pub write_pos: u64,
    pub role: u32,
    pub _pad: u32,
}

/// Syscall arguments stashed at enter and consumed at exit, keyed by `pid_tgid`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct SyscallStash {
    pub kind: u32,
    pub fd: u32,
    /// Buffer, iovec array, msghdr or sockaddr pointer, depending on `kind`.
    pub ptr: u64,
    /// Buffer length or iovec count.
    pub count: u64,
}

/// Syscall kinds stored in [`SyscallStash::kind`].
pub mod syscall {
    pub const READ: u32 = 1; // read, recvfrom: one buffer
    pub const WRITE: u32 = 2; // write, sendto: one buffer
    pub const READV: u32 = 3; // readv: iovec array
    pub const WRITEV: u32 = 4; // writev: iovec array
    pub const RECVMSG: u32 = 5; // recvmsg: msghdr
    pub const SENDMSG: u32 = 6; // sendmsg: msghdr
    pub const ACCEPT: u32 = 7; // accept, accept4: ptr = peer sockaddr (may be null)
    pub const CONNECT: u32 = 8; // connect: ptr = destination sockaddr
}

/// Where a replay instance's outbound TCP connections go instead of their destination: the
/// agent's mock server for that instance. Value of the `REDIRECT` map, keyed by cgroup id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct MockTarget {
    /// IPv4 address in network byte order, as `sin_addr.s_addr`.
    pub ip4: u32,
    /// Port in network byte order, as `sin_port`.
    pub port_be: u16,
    pub _pad: u16,
}

/// Key of the `CONNS` map.
#[inline(always)]
pub fn conn_key(tgid: u32, fd: u32) -> u64 {
    ((tgid as u64) << 32) | fd as u64
}

/// Names of the maps and globals, shared so user space never spells them differently.
pub mod names {
    pub const DATA_RING: &str = "DATA";
    pub const CONTROL_RING: &str = "CONTROL";
    pub const COUNTERS: &str = "COUNTERS";
    pub const CGROUP_TARGETS: &str = "CGROUP_TARGETS";
    pub const TGID_TARGETS: &str = "TGID_TARGETS";
    pub const ENTER_ARGS_OFFSET: &str = "ENTER_ARGS_OFFSET";
    pub const EXIT_RET_OFFSET: &str = "EXIT_RET_OFFSET";
    pub const AGENT_TGID: &str = "AGENT_TGID";
    pub const REDIRECT: &str = "REDIRECT";
    pub const ORIG_DST: &str = "ORIG_DST";
    pub const CONNECT4: &str = "redirect_connect4";
    pub const CONNECT6: &str = "redirect_connect6";
    pub const GETPEERNAME4: &str = "restore_peer4";
    pub const GETPEERNAME6: &str = "restore_peer6";
}

#[cfg(feature = "user")]
mod pod {
    // SAFETY: all types are #[repr(C)], Copy, with explicit padding and no pointers.
    unsafe impl aya::Pod for super::DataHeader {}
    unsafe impl aya::Pod for super::ControlEvent {}
    unsafe impl aya::Pod for super::ConnState {}
    unsafe impl aya::Pod for super::SyscallStash {}
    unsafe impl aya::Pod for super::SockAddr {}
    unsafe impl aya::Pod for super::MockTarget {}
}
