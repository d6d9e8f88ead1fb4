//! Replay redirect: cgroup/connect4+6 programs, attached to a replay instance's cgroup, send its
//! outbound TCP connections to the agent's mock server; the original destination is kept by
//! socket cookie so cgroup/getpeername4+6 can hand it back (the app believes it talks to its real
//! dependency). UDP (DNS) is left alone: lookups resolve normally.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::{bpf_get_current_cgroup_id, generated::bpf_get_socket_cookie},
    macros::{cgroup_sock_addr, map},
    maps::{HashMap, LruHashMap},
    programs::SockAddrContext,
};
use kreplay_agent_ebpf::{MockTarget, SockAddr};

#[map]
static REDIRECT: HashMap<u64, MockTarget> = HashMap::with_max_entries(256, 0);
#[map]
static ORIG_DST: LruHashMap<u64, SockAddr> = LruHashMap::with_max_entries(65536, 0);

const SOCK_STREAM: u32 = 1;
const AF_INET: u16 = 2;
const AF_INET6: u16 = 10;
/// Let the syscall proceed (with the rewritten address).
const ALLOW: i32 = 1;

#[inline(always)]
fn target_of_current_cgroup() -> Option<MockTarget> {
    // SAFETY: plain helper call; the map value is a Copy struct.
    unsafe { REDIRECT.get(bpf_get_current_cgroup_id()).copied() }
}

#[inline(always)]
fn cookie(ctx: &SockAddrContext) -> u64 {
    // SAFETY: the context pointer is the kernel's bpf_sock_addr.
    unsafe { bpf_get_socket_cookie(ctx.sock_addr as *mut c_void) }
}

#[cgroup_sock_addr(connect4)]
pub fn redirect_connect4(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: the kernel hands a valid bpf_sock_addr for the duration of the program.
    unsafe {
        if (*sa).type_ != SOCK_STREAM {
            return ALLOW;
        }
        let Some(target) = target_of_current_cgroup() else {
            return ALLOW;
        };
        let ip = (*sa).user_ip4;
        let port = (*sa).user_port as u16;
        let mut orig = SockAddr {
            family: AF_INET,
            port_be: port,
            ..SockAddr::default()
        };
        orig.addr[..4].copy_from_slice(&ip.to_ne_bytes());
        let _ = ORIG_DST.insert(cookie(&ctx), orig, 0);
        (*sa).user_ip4 = target.ip4;
        (*sa).user_port = u32::from(target.port_be);
    }
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn redirect_connect6(ctx: SockAddrContext) -> i32 {
    let sa = ctx.sock_addr;
    // SAFETY: as in connect4.
    unsafe {
        if (*sa).type_ != SOCK_STREAM {
            return ALLOW;
        }
        let Some(target) = target_of_current_cgroup() else {
            return ALLOW;
        };
        let mut orig = SockAddr {
            family: AF_INET6,
            port_be: (*sa).user_port as u16,
            ..SockAddr::default()
        };
        let ip6 = (*sa).user_ip6;
        let mut i = 0;
        while i < 4 {
            orig.addr[i * 4..i * 4 + 4].copy_from_slice(&ip6[i].to_ne_bytes());
            i += 1;
        }
        let _ = ORIG_DST.insert(cookie(&ctx), orig, 0);
        // The mock server listens on IPv4 loopback; a dual-stack socket reaches it as
        // ::ffff:127.0.0.1.
        (*sa).user_ip6[0] = 0;
        (*sa).user_ip6[1] = 0;
        (*sa).user_ip6[2] = u32::from_ne_bytes([0, 0, 0xff, 0xff]);
        (*sa).user_ip6[3] = target.ip4;
        (*sa).user_port = u32::from(target.port_be);
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername4)]
pub fn restore_peer4(ctx: SockAddrContext) -> i32 {
    // SAFETY: the map value is a Copy struct; the context is valid for the program's run.
    unsafe {
        if let Some(orig) = ORIG_DST.get(cookie(&ctx)).copied()
            && orig.family == AF_INET
        {
            let sa = ctx.sock_addr;
            (*sa).user_ip4 =
                u32::from_ne_bytes([orig.addr[0], orig.addr[1], orig.addr[2], orig.addr[3]]);
            (*sa).user_port = u32::from(orig.port_be);
        }
    }
    ALLOW
}

#[cgroup_sock_addr(getpeername6)]
pub fn restore_peer6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as in getpeername4.
    unsafe {
        if let Some(orig) = ORIG_DST.get(cookie(&ctx)).copied()
            && orig.family == AF_INET6
        {
            let sa = ctx.sock_addr;
            let mut i = 0;
            while i < 4 {
                let b = &orig.addr[i * 4..i * 4 + 4];
                (*sa).user_ip6[i] = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]);
                i += 1;
            }
            (*sa).user_port = u32::from(orig.port_be);
        }
    }
    ALLOW
}
