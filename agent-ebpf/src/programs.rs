use core::ffi::c_void;

use aya_ebpf::{
    helpers::{
        bpf_get_current_cgroup_id, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_user,
        generated,
    },
    macros::{map, tracepoint},
    maps::{HashMap, LruHashMap, PerCpuArray, RingBuf},
    programs::TracePointContext,
};
use kreplay_agent_ebpf::{
    CHUNK_BYTES, CONTROL_CLOSE, CONTROL_OPEN, ConnState, ControlEvent, DIR_READ, DIR_WRITE,
    DataHeader, MAX_IOV, MAX_STEPS, ROLE_CLIENT, ROLE_SERVER, SockAddr, SyscallStash, conn_key,
    counter, syscall,
};

// Offsets of the syscall tracepoint fields, read from tracefs by the agent at start-up.
#[unsafe(no_mangle)]
static ENTER_ARGS_OFFSET: u64 = 16;
#[unsafe(no_mangle)]
static EXIT_RET_OFFSET: u64 = 16;
// The agent itself is never traced.
#[unsafe(no_mangle)]
static AGENT_TGID: u32 = 0;

#[map]
static CGROUP_TARGETS: HashMap<u64, u8> = HashMap::with_max_entries(4096, 0);
#[map]
static TGID_TARGETS: HashMap<u32, u8> = HashMap::with_max_entries(4096, 0);
#[map]
static STASH: LruHashMap<u64, SyscallStash> = LruHashMap::with_max_entries(16384, 0);
#[map]
static CONNS: LruHashMap<u64, ConnState> = LruHashMap::with_max_entries(65536, 0);
#[map]
static DATA: RingBuf = RingBuf::with_byte_size(32 << 20, 0);
#[map]
static CONTROL: RingBuf = RingBuf::with_byte_size(1 << 20, 0);
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Per-CPU staging area for one data record (header + payload); too large for the 512-byte stack.
#[repr(C)]
struct Scratch {
    header: DataHeader,
    payload: [u8; CHUNK_BYTES],
}
#[map]
static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

const HEADER_BYTES: u64 = core::mem::size_of::<DataHeader>() as u64;
const EINPROGRESS: i64 = 115;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;

#[inline(always)]
fn count(index: u32, by: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU while the program runs.
        unsafe { *slot += by };
    }
}

#[inline(always)]
fn read_global<T: Copy>(global: &T) -> T {
    // SAFETY: volatile so the compiler keeps the load; user space rewrites the value at load time.
    unsafe { core::ptr::read_volatile(global) }
}

#[inline(always)]
fn is_target(pid_tgid: u64) -> bool {
    let tgid = (pid_tgid >> 32) as u32;
    if tgid == read_global(&AGENT_TGID) {
        return false;
    }
    // SAFETY: values are plain u8 flags; a concurrent delete at worst yields a stale answer.
    let cgroup = unsafe { bpf_get_current_cgroup_id() };
    unsafe { CGROUP_TARGETS.get(cgroup).is_some() || TGID_TARGETS.get(tgid).is_some() }
}

#[inline(always)]
fn arg(ctx: &TracePointContext, index: u64) -> u64 {
    let offset = read_global(&ENTER_ARGS_OFFSET) + index * 8;
    // SAFETY: offset comes from the tracepoint's format file; read_at is a checked probe read.
    unsafe { ctx.read_at::<u64>(offset as usize) }.unwrap_or(0)
}

#[inline(always)]
fn stash_enter(ctx: &TracePointContext, kind: u32, ptr_arg: u64, count_arg: u64) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let stash = SyscallStash {
        kind,
        fd: arg(ctx, 0) as u32,
        ptr: arg(ctx, ptr_arg),
        count: if count_arg == u64::MAX {
            0
        } else {
            arg(ctx, count_arg)
        },
    };
    // An LRU map: a missed exit can never leak an entry.
    let _ = STASH.insert(pid_tgid, stash, 0);
    0
}

/// Copies `len` (1..=CHUNK_BYTES) user bytes at `src` into one data record.
#[inline(always)]
fn emit_chunk(header: &DataHeader, src: u64, len: u64) -> bool {
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: scratch is this CPU's map value, large enough for HEADER_BYTES + CHUNK_BYTES.
    unsafe {
        (*scratch).header = *header;
        // The length goes through map memory and comes back as a value the verifier knows
        // nothing about. That stops its precision tracking here: otherwise the copy size would
        // make the loop-carried `left`/`remaining` precise, and it could never prove the
        // `bpf_loop` callback converges. The mask then gives it the bound it needs (and the
        // volatile read keeps LLVM from deleting the mask, which is the identity on 1..=CHUNK).
        core::ptr::write_volatile(&raw mut (*scratch).header.len, len as u32);
        let len = core::ptr::read_volatile(&raw const (*scratch).header.len) as u64;
        let bounded = (len.wrapping_sub(1) & (CHUNK_BYTES as u64 - 1)) + 1;
        let dst = (&raw mut (*scratch).payload).cast::<u8>();
        let read = generated::bpf_probe_read_user(dst.cast(), bounded as u32, src as *const _);
        if read != 0 {
            count(counter::READ_FAULT, 1);
            return false;
        }
        let record = core::slice::from_raw_parts(
            scratch.cast::<u8>() as *const u8,
            (HEADER_BYTES + bounded) as usize,
        );
        if DATA.output::<[u8]>(record, 0).is_err() {
            count(counter::DATA_RING_FULL, 1);
            count(counter::DATA_RING_FULL_BYTES, bounded);
            return false;
        }
    }
    count(counter::DATA_RECORDS, 1);
    true
}

/// State of one payload walk, kept on the program's stack and handed to [`payload_step`] by
/// `bpf_loop`, so the verifier checks the step once instead of unrolling up to
/// `MAX_STEPS` copies of it (which exceeds its 1M-instruction budget).
#[repr(C)]
struct PayloadWalk {
    header: DataHeader,
    /// Transferred bytes not yet emitted or counted.
    remaining: u64,
    /// Current user buffer and the bytes left in it.
    base: u64,
    left: u64,
    /// iovec array (0 for single-buffer syscalls), its length and the next entry to read.
    iov: u64,
    iov_count: u64,
    next_iov: u64,
}

/// Return values of a `bpf_loop` callback.
const LOOP_CONTINUE: i64 = 0;
const LOOP_BREAK: i64 = 1;

/// One `bpf_loop` iteration: either moves to the next iovec entry or emits one chunk.
#[inline(always)]
fn step(walk: &mut PayloadWalk) -> i64 {
    if walk.remaining == 0 {
        return LOOP_BREAK;
    }
    if walk.left == 0 {
        // `iov_count` is clamped to MAX_IOV by the caller. Comparing the loop counters only with
        // values the verifier cannot know keeps them imprecise, so it can widen them and prove the
        // callback once instead of once per iteration.
        if walk.next_iov >= walk.iov_count {
            return LOOP_BREAK;
        }
        // struct iovec { void *iov_base; size_t iov_len; }
        // SAFETY: checked probe read of user memory.
        let entry =
            unsafe { bpf_probe_read_user((walk.iov + walk.next_iov * 16) as *const [u64; 2]) };
        let Ok(entry) = entry else {
            count(counter::READ_FAULT, 1);
            return LOOP_BREAK;
        };
        walk.next_iov += 1;
        walk.base = entry[0];
        walk.left = if entry[1] < walk.remaining {
            entry[1]
        } else {
            walk.remaining
        };
        return LOOP_CONTINUE;
    }
    let len = if walk.left < CHUNK_BYTES as u64 {
        walk.left
    } else {
        CHUNK_BYTES as u64
    };
    emit_chunk(&walk.header, walk.base, len);
    walk.header.pos += len;
    walk.base += len;
    walk.left -= len;
    walk.remaining -= len;
    LOOP_CONTINUE
}

/// The `bpf_loop` callback (a BPF subprogram: never inlined, C ABI).
#[inline(never)]
extern "C" fn payload_step(_index: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: `ctx` is the `PayloadWalk` on the calling program's stack (see `emit_payload`).
    step(unsafe { &mut *ctx.cast::<PayloadWalk>() })
}

/// Emits `total` transferred bytes that live either in one buffer (`iov_count == 0`, `first_base`)
/// or in an iovec array. Returns nothing: every record carries its own position, so a record lost
/// here shows up as a gap in user space, and the count of lost bytes is in the counters.
#[inline(always)]
fn emit_payload(header: &DataHeader, first_base: u64, iov: u64, iov_count: u64, total: u64) {
    let mut walk = PayloadWalk {
        header: *header,
        remaining: total,
        base: first_base,
        left: if iov == 0 { total } else { 0 },
        iov,
        iov_count: if iov == 0 || iov_count == 0 {
            0
        } else if iov_count < MAX_IOV as u64 {
            iov_count
        } else {
            MAX_IOV as u64
        },
        next_iov: 0,
    };
    // SAFETY: the callback only touches `walk`, which outlives the call.
    unsafe {
        generated::bpf_loop(
            MAX_STEPS,
            payload_step as *mut c_void,
            (&raw mut walk).cast(),
            0,
        );
    }
    if walk.remaining > 0 {
        count(counter::TRUNCATED_BYTES, walk.remaining);
    }
}

#[inline(always)]
fn read_sockaddr(ptr: u64) -> SockAddr {
    let mut out = SockAddr::default();
    if ptr == 0 {
        return out;
    }
    // sockaddr_in / sockaddr_in6: family, port, then (v4) addr or (v6) flowinfo + addr.
    // SAFETY: checked probe reads of user memory.
    let Ok(head) = (unsafe { bpf_probe_read_user(ptr as *const [u16; 2]) }) else {
        return out;
    };
    out.family = head[0];
    out.port_be = head[1];
    if out.family == AF_INET {
        if let Ok(v4) = unsafe { bpf_probe_read_user((ptr + 4) as *const [u8; 4]) } {
            out.addr[..4].copy_from_slice(&v4);
        }
    } else if out.family == AF_INET6
        && let Ok(v6) = unsafe { bpf_probe_read_user((ptr + 8) as *const [u8; 16]) }
    {
        out.addr = v6;
    }
    out
}

#[inline(always)]
fn send_control(event: &ControlEvent) {
    if CONTROL.output::<ControlEvent>(event, 0).is_err() {
        count(counter::CONTROL_RING_FULL, 1);
    }
}

#[inline(always)]
fn open_connection(pid_tgid: u64, fd: u32, role: u32, peer: SockAddr) {
    let now = unsafe { bpf_ktime_get_ns() };
    let state = ConnState {
        generation: now,
        role,
        ..Default::default()
    };
    let _ = CONNS.insert(conn_key((pid_tgid >> 32) as u32, fd), state, 0);
    send_control(&ControlEvent {
        ts_ns: now,
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid_tgid,
        conn_gen: now,
        kind: CONTROL_OPEN,
        role,
        fd,
        peer,
        ..Default::default()
    });
}

#[inline(always)]
fn on_exit(ctx: &TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    // SAFETY: the value is copied out before the remove below.
    let Some(stash) = (unsafe { STASH.get(pid_tgid) }).copied() else {
        // Most exits belong to processes we do not trace; only a target's miss is a loss (the
        // agent attached while the syscall was in flight, or the stash was evicted).
        if is_target(pid_tgid) {
            count(counter::STASH_MISS, 1);
        }
        return 0;
    };
    let _ = STASH.remove(pid_tgid);
    // SAFETY: offset from the tracepoint's format file.
    let ret = unsafe { ctx.read_at::<i64>(read_global(&EXIT_RET_OFFSET) as usize) }.unwrap_or(-1);
    match stash.kind {
        syscall::ACCEPT => {
            if ret >= 0 {
                open_connection(pid_tgid, ret as u32, ROLE_SERVER, read_sockaddr(stash.ptr));
            }
        }
        syscall::CONNECT => {
            if ret == 0 || ret == -EINPROGRESS {
                let peer = read_sockaddr(stash.ptr);
                if peer.family == AF_INET || peer.family == AF_INET6 {
                    open_connection(pid_tgid, stash.fd, ROLE_CLIENT, peer);
                }
            }
        }
        _ => {
            if ret > 0 {
                on_data(pid_tgid, &stash, ret as u64);
            }
        }
    }
    0
}

#[inline(always)]
fn on_data(pid_tgid: u64, stash: &SyscallStash, transferred: u64) {
    let key = conn_key((pid_tgid >> 32) as u32, stash.fd);
    let Some(conn) = CONNS.get_ptr_mut(key) else {
        return; // not a connection the target accepted or opened
    };
    let reading = matches!(
        stash.kind,
        syscall::READ | syscall::READV | syscall::RECVMSG
    );
    // SAFETY: map value pointer; racing threads on one fd at worst disorder positions, which user
    // space detects.
    let (generation, pos) = unsafe {
        let pos = if reading {
            (*conn).read_pos
        } else {
            (*conn).write_pos
        };
        if reading {
            (*conn).read_pos += transferred;
        } else {
            (*conn).write_pos += transferred;
        }
        ((*conn).generation, pos)
    };
    let header = DataHeader {
        ts_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid_tgid,
        conn_gen: generation,
        pos,
        fd: stash.fd,
        len: 0,
        direction: if reading { DIR_READ } else { DIR_WRITE },
        _pad: [0; 7],
    };
    match stash.kind {
        syscall::READ | syscall::WRITE => emit_payload(&header, stash.ptr, 0, 0, transferred),
        syscall::READV | syscall::WRITEV => {
            emit_payload(&header, 0, stash.ptr, stash.count, transferred)
        }
        _ => {
            // struct msghdr { name; namelen(+pad); msg_iov @16; msg_iovlen @24; ... }
            // SAFETY: checked probe read of user memory.
            match unsafe { bpf_probe_read_user((stash.ptr + 16) as *const [u64; 2]) } {
                Ok(iov) => emit_payload(&header, 0, iov[0], iov[1], transferred),
                Err(_) => count(counter::READ_FAULT, 1),
            }
        }
    }
}

macro_rules! data_syscall {
    ($enter:ident, $exit:ident, $enter_tp:literal, $exit_tp:literal, $kind:expr, $ptr:expr, $count:expr) => {
        #[tracepoint(category = "syscalls", name = $enter_tp)]
        pub fn $enter(ctx: TracePointContext) -> u32 {
            stash_enter(&ctx, $kind, $ptr, $count)
        }

        #[tracepoint(category = "syscalls", name = $exit_tp)]
        pub fn $exit(ctx: TracePointContext) -> u32 {
            on_exit(&ctx)
        }
    };
}

// (fd, buf, count) for read/write; (fd, vec, vlen) for readv/writev; (fd, buf, len, ...) for
// recvfrom/sendto; (fd, msg, flags) for recvmsg/sendmsg; (fd, sockaddr, ...) for accept/connect.
data_syscall! { enter_read, exit_read, "sys_enter_read", "sys_exit_read", syscall::READ, 1, 2 }
data_syscall! { enter_write, exit_write, "sys_enter_write", "sys_exit_write", syscall::WRITE, 1, 2 }
data_syscall! { enter_readv, exit_readv, "sys_enter_readv", "sys_exit_readv", syscall::READV, 1, 2 }
data_syscall! { enter_writev, exit_writev, "sys_enter_writev", "sys_exit_writev", syscall::WRITEV, 1, 2 }
data_syscall! { enter_recvfrom, exit_recvfrom, "sys_enter_recvfrom", "sys_exit_recvfrom", syscall::READ, 1, 2 }
data_syscall! { enter_sendto, exit_sendto, "sys_enter_sendto", "sys_exit_sendto", syscall::WRITE, 1, 2 }
data_syscall! { enter_recvmsg, exit_recvmsg, "sys_enter_recvmsg", "sys_exit_recvmsg", syscall::RECVMSG, 1, u64::MAX }
data_syscall! { enter_sendmsg, exit_sendmsg, "sys_enter_sendmsg", "sys_exit_sendmsg", syscall::SENDMSG, 1, u64::MAX }
data_syscall! { enter_accept, exit_accept, "sys_enter_accept", "sys_exit_accept", syscall::ACCEPT, 1, u64::MAX }
data_syscall! { enter_accept4, exit_accept4, "sys_enter_accept4", "sys_exit_accept4", syscall::ACCEPT, 1, u64::MAX }
data_syscall! { enter_connect, exit_connect, "sys_enter_connect", "sys_exit_connect", syscall::CONNECT, 1, u64::MAX }

#[tracepoint(category = "syscalls", name = "sys_enter_close")]
pub fn enter_close(ctx: TracePointContext) -> u32 {
    let pid_tgid = bpf_get_current_pid_tgid();
    if !is_target(pid_tgid) {
        return 0;
    }
    let fd = arg(&ctx, 0) as u32;
    let key = conn_key((pid_tgid >> 32) as u32, fd);
    // SAFETY: copied out before the remove.
    let Some(conn) = (unsafe { CONNS.get(key) }).copied() else {
        return 0;
    };
    let _ = CONNS.remove(key);
    send_control(&ControlEvent {
        ts_ns: unsafe { bpf_ktime_get_ns() },
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        pid_tgid,
        conn_gen: conn.generation,
        read_pos: conn.read_pos,
        write_pos: conn.write_pos,
        kind: CONTROL_CLOSE,
        role: conn.role,
        fd,
        ..Default::default()
    });
    0
}
